package sigder

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
)

// The DigestInfo prefixes of RFC 8017, section 9.2, note 1.
func TestDigestInfoMatchesRFC8017(t *testing.T) {
	for _, tc := range []struct {
		h      crypto.Hash
		prefix string
	}{
		{crypto.SHA1, "3021300906052b0e03021a05000414"},
		{crypto.SHA224, "302d300d06096086480165030402040500041c"},
		{crypto.SHA256, "3031300d060960864801650304020105000420"},
		{crypto.SHA384, "3041300d060960864801650304020205000430"},
		{crypto.SHA512, "3051300d060960864801650304020305000440"},
		{crypto.SHA512_224, "302d300d06096086480165030402050500041c"},
		{crypto.SHA512_256, "3031300d060960864801650304020605000420"},
	} {
		digest := bytes.Repeat([]byte{0xab}, tc.h.Size())
		got, err := DigestInfo(tc.h, digest)
		if err != nil {
			t.Fatalf("%v: %v", tc.h, err)
		}
		prefix, _ := hex.DecodeString(tc.prefix)
		if want := append(prefix, digest...); !bytes.Equal(got, want) {
			t.Errorf("%v: DigestInfo %x, want %x", tc.h, got, want)
		}
		alg, err := AlgorithmIdentifier(tc.h)
		if err != nil || !bytes.Equal(alg, prefix[2:len(prefix)-2]) {
			t.Errorf("%v: AlgorithmIdentifier %x, %v; want %x", tc.h, alg, err, prefix[2:len(prefix)-2])
		}
	}
	if got, err := DigestInfo(0, []byte("as it is")); err != nil || string(got) != "as it is" {
		t.Errorf("DigestInfo(0) = %q, %v; want the digest itself", got, err)
	}
	if _, err := DigestInfo(crypto.MD5, make([]byte, 16)); !errors.Is(err, ErrUnknownHash) {
		t.Errorf("DigestInfo(MD5): %v, want ErrUnknownHash", err)
	}
}

// A signature of crypto/ecdsa survives DER -> r||s -> DER unchanged and
// verifies; a flipped length byte or a short r||s is refused.
func TestECDSARoundTrip(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("message"))
	for range 50 {
		der, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		raw, err := ECDSADERToRaw(der, 32)
		if err != nil || len(raw) != 64 {
			t.Fatalf("ECDSADERToRaw(%x) = %x, %v", der, raw, err)
		}
		again, err := ECDSARawToDER(raw, 32)
		if err != nil || !bytes.Equal(again, der) {
			t.Fatalf("ECDSARawToDER(%x) = %x, %v; want %x", raw, again, err, der)
		}
		if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], again) {
			t.Fatal("the converted signature does not verify")
		}
		bad := bytes.Clone(der)
		bad[1]++
		if _, err := ECDSADERToRaw(bad, 32); !errors.Is(err, ErrMalformed) {
			t.Fatalf("a wrong SEQUENCE length: %v, want ErrMalformed", err)
		}
		if _, err := ECDSARawToDER(raw[1:], 32); !errors.Is(err, ErrMalformed) {
			t.Fatalf("63 bytes of r||s: %v, want ErrMalformed", err)
		}
	}
}
