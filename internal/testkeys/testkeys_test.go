package testkeys

import (
	"crypto/rsa"
	"testing"
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
