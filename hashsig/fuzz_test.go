package hashsig

import (
	"os"
	"testing"
)

// seedVectors adds the RFC 8554 vectors of testdata to a fuzz corpus.
func seedVectors(f *testing.F, add func(c vectorCase)) {
	t := &testing.T{}
	if _, err := os.Stat("testdata/rfc8554.vec"); err != nil {
		f.Fatal(err)
	}
	for _, c := range readVectors(t, "testdata/rfc8554.vec") {
		add(c)
	}
}

// FuzzParsePublicKey: any input either fails to parse or parses to a key
// that encodes back to exactly the input.
func FuzzParsePublicKey(f *testing.F) {
	seedVectors(f, func(c vectorCase) { f.Add(c.publicKey) })
	f.Fuzz(func(t *testing.T, b []byte) {
		pk, err := ParsePublicKey(b)
		if err != nil {
			return
		}
		if string(pk.Bytes()) != string(b) {
			t.Fatalf("parsed %x, encodes as %x", b, pk.Bytes())
		}
	})
}

// FuzzVerify: verification of any signature under a real key returns an
// error or nil, never panics; what verifies is the real signature.
func FuzzVerify(f *testing.F) {
	var cases []vectorCase
	seedVectors(f, func(c vectorCase) { cases = append(cases, c) })
	for i, c := range cases {
		f.Add(uint8(i), c.sig)
	}
	f.Fuzz(func(t *testing.T, which uint8, sig []byte) {
		c := cases[int(which)%len(cases)]
		pk, err := ParsePublicKey(c.publicKey)
		if err != nil {
			t.Fatal(err)
		}
		if pk.Verify(c.msg, sig) == nil && string(sig) != string(c.sig) {
			t.Fatalf("a signature other than the vector's verifies: %x", sig)
		}
	})
}

// FuzzParsePrivateKey: any input either fails or parses to a state that
// encodes back to the input; the trees are never built for junk.
func FuzzParsePrivateKey(f *testing.F) {
	sk, err := GenerateKey(nil, small, nil)
	if err != nil {
		f.Fatal(err)
	}
	good, _ := sk.MarshalBinary()
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parsePrivateKeyState(b)
		if err != nil {
			return
		}
		if string(k.marshal(k.next, k.end)) != string(b) {
			t.Fatal("private key state does not round-trip")
		}
	})
}
