package testkeys

import (
	"crypto/rsa"
	"slices"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
)

func TestKeys(t *testing.T) {
	for _, c := range []struct {
		name    string
		bits, e int
		key     func(testing.TB) *rsa.PrivateKey
	}{
		{"RSA8192", 8192, 65537, RSA8192},
		{"RSA1024E3", 1024, 3, RSA1024E3},
	} {
		k := c.key(t)
		if k.N.BitLen() != c.bits || k.E != c.e {
			t.Errorf("%s: %d bits, e = %d", c.name, k.N.BitLen(), k.E)
		}
		if err := k.Validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// The HSS key parses, is unused, and is the public key stored with it. (That
// its seed gives its root is checked by its first signature, which takes
// seconds: `hashsig sign` with a copy of the file, then `hashsig verify`.)
func TestHSSH15W8(t *testing.T) {
	state, pub := HSSH15W8()
	sk, err := hashsig.ParsePrivateKey(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := hashsig.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	want := []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H15, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}
	if !slices.Equal(sk.Levels(), want) || !sk.Public().Equal(pk) {
		t.Errorf("levels %v, public key %x", sk.Levels(), sk.Public().Bytes())
	}
	if next, end := sk.Range(); next != 0 || end != 1<<15 {
		t.Errorf("range [%d, %d)", next, end)
	}
}
