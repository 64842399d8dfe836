package rpc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	mrand "math/rand/v2"
	"testing"

	"github.com/hsmkit/cryptech-backup/rpc/internal/wiretest"
)

// The ECDSA signature conversions of sig.go (cryptobyte) against
// encoding/asn1: the same bytes out, the same inputs accepted.

type asn1Sig struct{ R, S *big.Int }

func refRawToDER(raw []byte) []byte {
	n := len(raw) / 2
	der, err := asn1.Marshal(asn1Sig{new(big.Int).SetBytes(raw[:n]), new(big.Int).SetBytes(raw[n:])})
	if err != nil {
		panic(err)
	}
	return der
}

// refDERToRaw accepts what encoding/asn1 parses as two positive integers
// that fit size bytes, and that is DER with nothing in the sequence after
// s (encoding/asn1 ignores trailing sequence elements; crypto/ecdsa does
// not).
func refDERToRaw(der []byte, size int) ([]byte, bool) {
	var sig asn1Sig
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 ||
		sig.R.BitLen() > 8*size || sig.S.BitLen() > 8*size {
		return nil, false
	}
	if again, _ := asn1.Marshal(sig); !bytes.Equal(again, der) {
		return nil, false
	}
	raw := make([]byte, 2*size)
	sig.R.FillBytes(raw[:size])
	sig.S.FillBytes(raw[size:])
	return raw, true
}

func checkDERToRaw(t *testing.T, der []byte, size int) {
	t.Helper()
	want, wantOK := refDERToRaw(der, size)
	got, err := ecdsaDERToRaw(der, size)
	if (err == nil) != wantOK || !bytes.Equal(got, want) {
		t.Fatalf("ecdsaDERToRaw(%x, %d) = %x, %v; encoding/asn1 says %x, %v", der, size, got, err, want, wantOK)
	}
}

func TestECDSASignatureConversions(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(3, 4))
	// Raw signatures of every shape: zeros, leading zeros, top bits set,
	// the three curves' sizes and large ones (long-form lengths).
	for _, size := range []int{1, 2, 32, 48, 66, 127, 128, 300} {
		for range 40 {
			raw := make([]byte, 2*size)
			for i := range raw {
				raw[i] = byte(rng.Uint32())
			}
			switch rng.IntN(5) {
			case 0:
				clear(raw[:rng.IntN(size+1)])
			case 1:
				clear(raw[size : size+rng.IntN(size+1)])
			case 2:
				raw[0] |= 0x80
				raw[size] &= 0x7f
			}
			der, err := ecdsaRawToDER(raw, size)
			if err != nil {
				t.Fatal(err)
			}
			if want := refRawToDER(raw); !bytes.Equal(der, want) {
				t.Fatalf("ecdsaRawToDER(%x) = %x, want %x", raw, der, want)
			}
			checkDERToRaw(t, der, size)
			checkDERToRaw(t, der, size-1)
			// Mutations: bytes changed (every one of the headers), cut,
			// extended.
			for j := range 24 {
				i := j
				if j >= 8 {
					i = rng.IntN(len(der))
				}
				m := bytes.Clone(der)
				m[i] ^= byte(1 << rng.IntN(8))
				checkDERToRaw(t, m, size)
				checkDERToRaw(t, der[:i], size)
			}
			checkDERToRaw(t, append(bytes.Clone(der), 0), size)
		}
	}
	// Anything but twice the curve's size: r || s with a zero byte added
	// or dropped would encode the same signature.
	for _, raw := range [][]byte{nil, {1}, {1, 2, 3}, make([]byte, 62), make([]byte, 63), make([]byte, 65), make([]byte, 66)} {
		if _, err := ecdsaRawToDER(raw, 32); err == nil {
			t.Errorf("ecdsaRawToDER(%x, 32) succeeded", raw)
		}
	}
	if _, err := ecdsaRawToDER(nil, 0); err == nil {
		t.Error("ecdsaRawToDER(nil, 0) succeeded")
	}
	// Hand-made DER: non-minimal lengths and integers, zero, negative,
	// trailing elements, indefinite length.
	for _, der := range []string{
		"3006 020101 020101",
		"308106 020101 020101",
		"3007 02020001 020101",
		"3006 020100 020101",
		"3006 0201ff 020101",
		"3007 02020080 020101",
		"3009 020101 020101 020101",
		"3080 020101 020101 0000",
		"3106 020101 020101",
		"3006 030101 020101",
		"3006 02810101 020101",
		"",
		"30",
		"3000",
	} {
		checkDERToRaw(t, wiretest.Unhex(der), 32)
	}
	// What crypto/ecdsa makes, and what it verifies.
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		size := (c.Params().BitSize + 7) / 8
		for range 20 {
			d := sha256.Sum256([]byte{byte(rng.Uint32())})
			der, err := ecdsa.SignASN1(rand.Reader, k, d[:])
			if err != nil {
				t.Fatal(err)
			}
			raw, err := ecdsaDERToRaw(der, size)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ecdsaRawToDER(raw, size)
			if err != nil || !bytes.Equal(again, der) {
				t.Fatalf("%x -> %x -> %x, %v", der, raw, again, err)
			}
			if !ecdsa.VerifyASN1(&k.PublicKey, d[:], again) {
				t.Fatal("crypto/ecdsa does not verify the converted signature")
			}
		}
	}
}

// FuzzECDSADERToRaw: the cryptobyte parser accepts exactly what
// encoding/asn1 accepts as a DER signature, with the same result.
func FuzzECDSADERToRaw(f *testing.F) {
	f.Add(wiretest.Unhex("3006020101020101"), 32)
	f.Add(wiretest.Unhex("3007020200800201ff"), 32)
	f.Fuzz(func(t *testing.T, der []byte, size int) {
		if size < 0 || size > 200 {
			return
		}
		checkDERToRaw(t, der, size)
	})
}
