package hsmapi

import (
	"bytes"
	"encoding/asn1"
	"encoding/hex"
	"testing"
)

func TestKEKAlgorithmRoundTrip(t *testing.T) {
	for _, enc := range KEKEncryptions {
		alg, err := kekAlgorithm(enc)
		if err != nil {
			t.Fatal(err)
		}
		der := marshalEPKI(alg, []byte{1})
		e, err := parseEPKI(der)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := kekEncryptionOf(e.Algorithm); err != nil || got != enc {
			t.Errorf("%s came back as %q, %v", enc, got, err)
		}
	}
	// Other spellings of the same parameters, and ones that are refused.
	for _, tc := range []struct {
		hex  string
		want KEKEncryption
	}{
		{"300d06092a864886f70d0101010500", KEKPKCS1v15},
		{"300b06092a864886f70d010107", ""}, // OAEP needs its parameters
		// SHA-256 with absent rather than NULL hash parameters.
		{"303806092a864886f70d010107302ba00d300b0609608648016503040201a11a301806092a864886f70d010108300b0609608648016503040201", KEKOAEPSHA256},
		// SHA-256 hash with the default MGF1-SHA-1: a mix we refuse.
		{"301e06092a864886f70d0101073011a00f300d06096086480165030402010500", ""},
		// pSourceAlgorithm present (an OAEP label).
		{"301f06092a864886f70d0101073012a210300e06092a864886f70d0101090401aa", ""},
		{"300b06092a864886f70d010102", ""}, // not an encryption algorithm
	} {
		der, _ := hex.DecodeString(tc.hex)
		var alg algorithmIdentifier
		if _, err := asn1.Unmarshal(der, &alg); err != nil {
			t.Fatalf("%s: %v", tc.hex, err)
		}
		got, err := kekEncryptionOf(alg)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("%s: got %q, %v; want %q", tc.hex, got, err, tc.want)
		}
	}
}

// Every bit of an encrypted KEK's encoding outside the ciphertext counts:
// a flipped one is refused when the KEK is read, before any decryption.
func TestEncryptedKEKRefusesEveryFlippedBit(t *testing.T) {
	ct := bytes.Repeat([]byte{0x5a}, 256)
	for _, enc := range KEKEncryptions {
		der, err := MarshalEncryptedKEK(enc, ct)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ParseEncryptedKEK(der, enc); err != nil || !bytes.Equal(got, ct) {
			t.Fatalf("%s: %v", enc, err)
		}
		header := len(der) - len(ct)
		for i := range header * 8 {
			mut := bytes.Clone(der)
			mut[i/8] ^= 1 << (i % 8)
			if _, err := ParseEncryptedKEK(mut, enc); err == nil {
				t.Errorf("%s: bit %d of byte %d flipped: accepted (% x)", enc, i%8, i/8, mut[:header])
			}
		}
	}
}

func TestEPKIBadLengths(t *testing.T) {
	der := marshalEPKI(algorithmIdentifier{Algorithm: oidAES256WrapPad}, bytes.Repeat([]byte{1}, 40))
	for i := range len(der) {
		if _, err := parseEPKI(der[:i]); err == nil {
			t.Errorf("EncryptedPrivateKeyInfo cut to %d bytes parsed", i)
		}
	}
	if _, err := parseEPKI(append(bytes.Clone(der), 0)); err == nil {
		t.Error("trailing data accepted")
	}
}
