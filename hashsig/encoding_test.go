package hashsig

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
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

// libhalSPKIOfRFC8554Case1 is RFC 8554 Test Case 1's public key written out
// by hand in Cryptech libhal's SubjectPublicKeyInfo layout
// (hal_hashsig_public_key_to_der, hal_asn1_encode_spki): the algorithm with
// NULL parameters, and in the bit string a SEQUENCE of INTEGER L, INTEGER
// lms type, INTEGER lmots type, OCTET STRING I, OCTET STRING T1.
const (
	libhalSPKIOfRFC8554Case1 = "3053" +
		"300f 060b2a864886f70d0109100311 0500" +
		"0340 00" + libhalKeyOfRFC8554Case1
	libhalKeyOfRFC8554Case1 = "303d 020102 020105 020104" +
		"0410 61a5d57d37f5e46bfb7520806b07a1b8" +
		"0420 50650e3b31fe4a773ea29a07f09cf2ea30e579f0df58ef8e298da0434cb2b878"
)

func TestLibhalPKIXPublicKey(t *testing.T) {
	tc := readVectors(t, "testdata/rfc8554.vec")[0]
	libhal := mustHex(t, strings.ReplaceAll(libhalSPKIOfRFC8554Case1, " ", ""))
	pk, err := ParsePKIXPublicKey(libhal)
	if err != nil {
		t.Fatalf("libhal's SubjectPublicKeyInfo of RFC 8554 test case 1: %v", err)
	}
	if !bytes.Equal(pk.Bytes(), tc.publicKey) {
		t.Fatalf("libhal's encoding read as %x, RFC 8554 says %x", pk.Bytes(), tc.publicKey)
	}
	if err := pk.Verify(tc.msg, tc.sig); err != nil {
		t.Fatalf("the RFC's signature does not verify under the key read from libhal's encoding: %v", err)
	}
	if got := MarshalLibhalPKIXPublicKey(pk); !bytes.Equal(got, libhal) {
		t.Errorf("MarshalLibhalPKIXPublicKey:\n got %x\nwant %x", got, libhal)
	}
	rfc9708 := MarshalPKIXPublicKey(pk)
	if back, err := ParsePKIXPublicKey(rfc9708); err != nil || !back.Equal(pk) {
		t.Errorf("RFC 9708 encoding of the same key: %v", err)
	}

	// libhal reads the parameters absent as well as NULL.
	noParams := mustHex(t, strings.ReplaceAll("3051 300d 060b2a864886f70d0109100311 0340 00"+libhalKeyOfRFC8554Case1, " ", ""))
	if back, err := ParsePKIXPublicKey(noParams); err != nil || !back.Equal(pk) {
		t.Errorf("libhal's layout without NULL parameters: %v", err)
	}
	bad := map[string][]byte{
		"RFC 9708 bytes with NULL parameters": append(mustHex(t, "3050300f060b2a864886f70d01091003110500033d00"), tc.publicKey...),
		"parameters not NULL":                 bytes.Replace(libhal, []byte{0x05, 0x00}, []byte{0x04, 0x00}, 1),
		"L not minimal": mustHex(t, strings.ReplaceAll("3054 300f 060b2a864886f70d0109100311 0500 0341 00 303e 02020002 020105 020104"+
			"0410 61a5d57d37f5e46bfb7520806b07a1b8 0420 50650e3b31fe4a773ea29a07f09cf2ea30e579f0df58ef8e298da0434cb2b878", " ", "")),
		"I of 15 bytes": mustHex(t, strings.ReplaceAll("3052 300f 060b2a864886f70d0109100311 0500 033f 00 303c 020102 020105 020104"+
			"040f 61a5d57d37f5e46bfb7520806b07a1 0420 50650e3b31fe4a773ea29a07f09cf2ea30e579f0df58ef8e298da0434cb2b878", " ", "")),
		"negative L": bytes.Replace(libhal, []byte{0x02, 0x01, 0x02}, []byte{0x02, 0x01, 0xfe}, 1),
	}
	for name, der := range bad {
		if _, err := ParsePKIXPublicKey(der); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	for i := range len(libhal) {
		if _, err := ParsePKIXPublicKey(libhal[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("libhal's SPKI cut to %d bytes: %v", i, err)
		}
	}
	for i := range libhal {
		flipped := bytes.Clone(libhal)
		flipped[i] ^= 0x01
		if back, err := ParsePKIXPublicKey(flipped); err == nil && back.Equal(pk) {
			t.Fatalf("byte %d flipped still reads as the same key", i)
		}
	}
}

// PKCS8Size, computed from the parameters alone, is the length of every
// part's encoding: the module sizes a wrapped HSS key's buffer with it
// before it splits the key.
func TestPKCS8SizeOfEveryPart(t *testing.T) {
	for _, levels := range [][]Level{
		{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W8}},
		{{LMS_SHA256_M24_H5, LMOTS_SHA256_N24_W4}, {LMS_SHA256_M24_H5, LMOTS_SHA256_N24_W4}},
		{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W4}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W4}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W4}},
	} {
		want, err := PKCS8Size(len(levels), levels[0].LMS)
		if err != nil {
			t.Fatal(err)
		}
		sk, err := GenerateKey(nil, levels, nil)
		if err != nil {
			t.Fatal(err)
		}
		part, err := sk.Split()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []*PrivateKey{sk, part} {
			der, err := k.MarshalPKCS8()
			if err != nil {
				t.Fatal(err)
			}
			if len(der) != want {
				t.Errorf("%v: PKCS#8 of %d bytes, PKCS8Size says %d", levels, len(der), want)
			}
		}
	}
	if _, err := PKCS8Size(0, LMS_SHA256_M32_H5); !errors.Is(err, ErrBadParameters) {
		t.Errorf("no levels: %v", err)
	}
	if _, err := PKCS8Size(1, 0); !errors.Is(err, ErrBadParameters) {
		t.Errorf("unknown LMS type: %v", err)
	}
}
