package hashsig

import (
	"bytes"
	"crypto/sha256"
	"errors"
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

// FuzzLoadCache: LoadCache of any input, with or without a MAC made for
// it (remac, so that the parser behind the MAC is reached), either refuses
// it with ErrBadCache and installs nothing, or installs trees with which
// the key's next signature verifies (Sign checks its own signatures) at the
// key's own index.
func FuzzLoadCache(f *testing.F) {
	levels := []Level{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}}
	sk, err := GenerateKey(nil, levels, nil)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := sk.Sign([]byte("m")); err != nil {
		f.Fatal(err)
	}
	cache, _ := sk.Cache()
	state, _ := sk.MarshalBinary()
	f.Add(cache, false)
	f.Add(cache[:len(cache)-sha256.Size], true)
	f.Add(cache[:100], true)
	f.Fuzz(func(t *testing.T, b []byte, remac bool) {
		k, err := ParsePrivateKey(state, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer k.Wipe()
		if remac {
			k.signMu.Lock()
			b = append(bytes.Clone(b), k.cacheMAC(b)...)
			k.signMu.Unlock()
		}
		if err := k.LoadCache(b); err != nil {
			if !errors.Is(err, ErrBadCache) {
				t.Fatalf("LoadCache: %v", err)
			}
			if c, _ := k.Cache(); c != nil {
				t.Fatal("a refused cache installed trees")
			}
			return
		}
		next, _ := k.Range()
		sig, err := k.Sign([]byte("fuzz"))
		if err != nil {
			t.Fatalf("sign after a cache was accepted: %v", err)
		}
		if i, _ := SignatureIndex(sig); i != next {
			t.Fatalf("signed with %d, the key's next was %d", i, next)
		}
	})
}
