package hashsig

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func TestPKIXAndPKCS8RoundTrip(t *testing.T) {
	levels := []Level{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W4}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W4}}
	sk, err := GenerateKey(nil, levels, nil)
	if err != nil {
		t.Fatal(err)
	}
	sk.Sign([]byte("use index 0"))
	spki := MarshalPKIXPublicKey(sk.Public())
	// SEQUENCE { SEQUENCE { OID 1.2.840.113549.1.9.16.3.17 }, BIT STRING }
	if want := "300d060b2a864886f70d0109100311"; !bytes.Contains(spki, mustHex(t, want[4:])) {
		t.Errorf("SPKI %x lacks the id-alg-hss-lms-hashsig algorithm", spki)
	}
	pk, err := ParsePKIXPublicKey(spki)
	if err != nil || !pk.Equal(sk.Public()) {
		t.Fatalf("SPKI round trip: %v", err)
	}
	der, err := sk.MarshalPKCS8()
	if err != nil {
		t.Fatal(err)
	}
	if !IsPKCS8(der) {
		t.Error("IsPKCS8 does not recognise a PKCS#8 HSS key")
	}
	back, err := ParsePKCS8(der, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Public().Equal(sk.Public()) {
		t.Error("PKCS#8 round trip changed the public key")
	}
	if n, e := back.Range(); n != 1 || e != 1024 {
		t.Errorf("PKCS#8 round trip gave range [%d, %d), want [1, 1024)", n, e)
	}
	for i := range len(der) {
		if _, err := ParsePKCS8(der[:i], nil); !errors.Is(err, ErrMalformed) {
			t.Fatalf("PKCS#8 cut to %d bytes: %v", i, err)
		}
	}
	for i := range len(spki) {
		if _, err := ParsePKIXPublicKey(spki[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("SPKI cut to %d bytes: %v", i, err)
		}
	}
}

func TestSignatureIndexOfRFCVectors(t *testing.T) {
	// The index starts with the leaf of the top level, in the first LMS
	// signature (whose q follows the u32 level count).
	cases := readVectors(t, "testdata/rfc8554.vec")
	s, err := SignatureIndex(cases[0].sig)
	if err != nil {
		t.Fatal(err)
	}
	top := uint64(mustHex(t, hex.EncodeToString(cases[0].sig[4:8]))[3])
	if s>>5 != top {
		t.Errorf("index %d does not start with the top leaf %d", s, top)
	}
	for i := 0; i < len(cases[0].sig); i += 97 {
		SignatureIndex(cases[0].sig[:i]) // must not panic
	}
}
