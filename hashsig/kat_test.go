package hashsig

import (
	"bytes"
	"encoding/hex"
	"sync/atomic"
	"testing"
	"time"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRFC8554TopTreeFromSeed: RFC 8554 Appendix F, test case 2, gives the
// SEED and I of its top tree; the root computed from them by the
// pseudorandom key generation of Appendix A must be the published one.
func TestRFC8554TopTreeFromSeed(t *testing.T) {
	var id [IDSize]byte
	copy(id[:], mustHex(t, "d08fabd4a2091ff0a8cb4ed834e74534"))
	tr := newTree(LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4, id, mustHex(t, "558b8966c48ae9cb898b423c83443aae014a72f1b1ab5cc85cf1d892903b5439"), 0, new(atomic.Bool))
	start := time.Now()
	tr.build(nil)
	t.Logf("h10/w4 tree in %v", time.Since(start))
	if got, want := hex.EncodeToString(tr.root()), "32a58885cd9ba0431235466bff9651c6c92124404d45fa53cf161c28f1ad5a8e"; got != want {
		t.Fatalf("root %s, want %s", got, want)
	}
}

// TestDraftVectorsFromSeed rebuilds the trees of the three test cases of
// draft-fluhrer-lms-more-parm-sets from the SEED and I the draft publishes
// (bytes counting up from 0x00, 0x30 and 0x60; I from 0x20, 0x50 and 0x80),
// and compares their roots with the public keys the draft publishes.
func TestDraftVectorsFromSeed(t *testing.T) {
	cases := readVectors(t, draftVectors)
	counting := func(from byte, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = from + byte(i)
		}
		return b
	}
	for _, tc := range []struct {
		seedFrom, idFrom byte
		n                int
	}{{0x00, 0x20, 24}, {0x30, 0x50, 24}, {0x60, 0x80, 32}} {
		var pk *PublicKey
		for _, c := range cases {
			p, err := ParsePublicKey(c.publicKey)
			if err == nil && p.top.id[0] == tc.idFrom {
				pk = p
			}
		}
		if pk == nil {
			t.Fatalf("no vector with I starting %#x", tc.idFrom)
		}
		var id [IDSize]byte
		copy(id[:], counting(tc.idFrom, IDSize))
		tr := newTree(pk.top.typ, pk.top.otsTyp, id, counting(tc.seedFrom, tc.n), 0, new(atomic.Bool))
		tr.build(nil)
		if !bytes.Equal(tr.root(), pk.top.root) {
			t.Errorf("%v/%v: root from the published seed differs from the public key", pk.top.typ, pk.top.otsTyp)
		}
	}
}
