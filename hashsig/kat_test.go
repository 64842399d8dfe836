package hashsig

import (
	"encoding/hex"
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
	tr := newTree(LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4, id, mustHex(t, "558b8966c48ae9cb898b423c83443aae014a72f1b1ab5cc85cf1d892903b5439"), 0)
	start := time.Now()
	tr.build()
	t.Logf("h10/w4 tree in %v", time.Since(start))
	if got, want := hex.EncodeToString(tr.root()), "32a58885cd9ba0431235466bff9651c6c92124404d45fa53cf161c28f1ad5a8e"; got != want {
		t.Fatalf("root %s, want %s", got, want)
	}
}
