package hashsig

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// loadedKey parses sk's state as a new process would, at index next.
func loadedKey(t testing.TB, sk *PrivateKey, next uint64) *PrivateKey {
	t.Helper()
	sk.mu.Lock()
	state := sk.marshal(next, sk.end)
	sk.mu.Unlock()
	k, err := ParsePrivateKey(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Wipe)
	return k
}

// signAt signs with k, checks that the signature verifies under pub and
// used index want, and returns how many leaves the signature computed.
func signAt(t *testing.T, k *PrivateKey, pub *PublicKey, want uint64) int {
	t.Helper()
	msg := []byte("cached")
	computed := 0
	sig, err := k.SignProgress(msg, func(done, total int) { computed = done })
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Verify(msg, sig); err != nil {
		t.Fatal(err)
	}
	if i, err := SignatureIndex(sig); err != nil || i != want {
		t.Fatalf("signed with index %d (%v), want %d", i, err, want)
	}
	return computed
}

var cacheLevels = [][]Level{
	{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W4}},
	{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W4}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W2}},
	{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}, {LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W1}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}},
	{{LMS_SHAKE_M24_H5, LMOTS_SHAKE_N24_W4}, {LMS_SHAKE_M24_H5, LMOTS_SHAKE_N24_W4}},
}

// TestCacheLoadsTrees: a key loaded with its cache signs without computing
// a leaf, with the index it would have used without, and its signatures
// verify; its cache is the same bytes and generation as the original's.
func TestCacheLoadsTrees(t *testing.T) {
	for _, levels := range cacheLevels {
		sk, err := GenerateKey(nil, levels, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer sk.Wipe()
		for i := range uint64(3) {
			signAt(t, sk, sk.Public(), i)
		}
		cache, gen := sk.Cache()
		if cache == nil || gen == 0 || len(cache) > MaxCacheSize(levels) {
			t.Fatalf("%v: cache of %d bytes (bound %d), generation %d", levels, len(cache), MaxCacheSize(levels), gen)
		}
		k := loadedKey(t, sk, 3)
		if c, g := k.Cache(); c != nil || g != 0 {
			t.Fatalf("a key just parsed has a cache of %d bytes, generation %d", len(c), g)
		}
		if err := k.LoadCache(cache); err != nil {
			t.Fatalf("%v: %v", levels, err)
		}
		if c, g := k.Cache(); !bytes.Equal(c, cache) || g != gen {
			t.Errorf("%v: the loaded key's cache differs (generation %d, want %d)", levels, g, gen)
		}
		if n := signAt(t, k, sk.Public(), 3); n != 0 {
			t.Errorf("%v: the first signature after loading the cache computed %d leaves", levels, n)
		}
		if c, g := k.Cache(); !bytes.Equal(c, cache) || g != gen {
			t.Errorf("%v: a signature in the same subtree changed the cache", levels)
		}
	}
}

// TestCacheOfTallTree: a top tree taller than a subtree is cached as its row
// of subtree roots, and the bottom tree's subtree is the one of the index.
func TestCacheOfTallTree(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a tree of height 15")
	}
	levels := []Level{{LMS_SHA256_M32_H15, LMOTS_SHA256_N32_W1}}
	sk, err := GenerateKey(nil, levels, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Wipe()
	const next = 5*1024 + 17
	k := loadedKey(t, sk, next)
	sk.signMu.Lock()
	if !sk.trees[0].cache(next, nil) {
		t.Fatal("wiped")
	}
	sk.signMu.Unlock()
	cache, _ := sk.Cache()
	if want := MaxCacheSize(levels); len(cache) != want {
		t.Errorf("cache of %d bytes, want %d", len(cache), want)
	}
	if err := k.LoadCache(cache); err != nil {
		t.Fatal(err)
	}
	if n := signAt(t, k, sk.Public(), next); n != 0 {
		t.Errorf("computed %d leaves", n)
	}
	// A cache of another subtree gives the top tree, not the leaves.
	k = loadedKey(t, sk, 9*1024)
	if err := k.LoadCache(cache); err != nil {
		t.Fatal(err)
	}
	if n := signAt(t, k, sk.Public(), 9*1024); n != 1024 {
		t.Errorf("computed %d leaves, want one subtree", n)
	}
}

// TestCacheFromAnEarlierPoint: a cache taken before the key moved to other
// lower trees gives the top tree, and the rest is rebuilt; the index is the
// key's, never the cache's.
func TestCacheFromAnEarlierPoint(t *testing.T) {
	levels := []Level{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}}
	sk, err := GenerateKey(nil, levels, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Wipe()
	signAt(t, sk, sk.Public(), 0)
	cache, gen := sk.Cache()
	for _, tc := range []struct {
		next     uint64
		computed int // leaves the first signature computes
	}{
		{7, 0},
		{32 + 1, 32 + 32},         // the next bottom tree, linked by the middle tree's one subtree
		{32*32 + 1, 32 + 32 + 32}, // a new middle and bottom tree, linked by the top tree's one subtree
	} {
		k := loadedKey(t, sk, tc.next)
		if err := k.LoadCache(cache); err != nil {
			t.Fatal(err)
		}
		if n := signAt(t, k, sk.Public(), tc.next); n != tc.computed {
			t.Errorf("at %d: computed %d leaves, want %d", tc.next, n, tc.computed)
		}
		if _, g := k.Cache(); (g == gen) != (tc.computed == 0) {
			t.Errorf("at %d: generation %d, the cache's was %d", tc.next, g, gen)
		}
	}
}

// TestBadCacheIsRefused: a damaged cache, a truncated one, another key's,
// and one whose MAC is right but whose trees are not the key's are each
// refused with ErrBadCache, leave the key as it was, and the key signs as
// without them.
func TestBadCacheIsRefused(t *testing.T) {
	levels := []Level{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W2}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W2}}
	sk, err := GenerateKey(nil, levels, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Wipe()
	signAt(t, sk, sk.Public(), 0)
	cache, _ := sk.Cache()
	other, err := GenerateKey(nil, levels, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Wipe()
	signAt(t, other, other.Public(), 0)
	otherCache, _ := other.Cache()

	// remac encodes sk's cache after change has altered its trees (and
	// undone it): the MAC is right, the content is not.
	remac := func(change func(undo bool)) []byte {
		sk.signMu.Lock()
		defer sk.signMu.Unlock()
		change(false)
		defer change(true)
		return sk.encodeCache()
	}
	flip := func(b []byte) func(bool) { return func(bool) { b[0] ^= 1 } }
	sk.signMu.Lock()
	top, lower := sk.trees[0], sk.trees[1]
	sk.signMu.Unlock()
	bad := map[string][]byte{
		"truncated":      cache[:len(cache)-1],
		"empty":          {},
		"another key's":  otherCache,
		"with more":      append(bytes.Clone(cache), 0),
		"top row":        remac(flip(top.top[1])),
		"lower tree row": remac(flip(lower.top[1])),
		"link":           remac(func(bool) { sk.childSigs[0][len(sk.childSigs[0])-1] ^= 1 }),
		"bottom leaf":    remac(flip(lower.sub[1<<lower.subH+3])),
	}
	for i := 0; i < len(cache); i += 97 {
		c := bytes.Clone(cache)
		c[i] ^= 0x10
		bad[fmt.Sprintf("byte %d flipped", i)] = c
	}
	for what, c := range bad {
		k := loadedKey(t, sk, 1)
		if err := k.LoadCache(c); !errors.Is(err, ErrBadCache) {
			t.Errorf("%s: LoadCache: %v", what, err)
		}
		if c, _ := k.Cache(); c != nil {
			t.Errorf("%s: a refused cache installed trees", what)
		}
		if n := signAt(t, k, sk.Public(), 1); n != 32+32 {
			t.Errorf("%s: signed after computing %d leaves, want all", what, n)
		}
	}
	// The good one still loads: the changes were undone.
	k := loadedKey(t, sk, 1)
	if err := k.LoadCache(cache); err != nil {
		t.Fatal(err)
	}
}

// TestCacheGeneration: the generation changes when the bottom subtree or a
// lower tree does, and only then; a wiped key has no cache.
func TestCacheGeneration(t *testing.T) {
	levels := []Level{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}}
	sk, err := GenerateKey(nil, levels, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Wipe()
	gens := map[uint64]uint64{}
	for i := range uint64(70) {
		signAt(t, sk, sk.Public(), i)
		c, g := sk.Cache()
		if c == nil {
			t.Fatal("no cache")
		}
		if cg := sk.CacheGeneration(); cg != g {
			t.Fatalf("index %d: CacheGeneration %x, Cache's generation %x", i, cg, g)
		}
		if first, ok := gens[g]; ok && first/32 != i/32 {
			t.Fatalf("index %d: generation of index %d", i, first)
		} else if !ok {
			gens[g] = i
		}
	}
	if len(gens) != 3 {
		t.Errorf("%d generations over 3 bottom trees", len(gens))
	}
	sk.Wipe()
	if c, g := sk.Cache(); c != nil || g != 0 || sk.CacheGeneration() != 0 {
		t.Error("a wiped key has a cache")
	}
	if err := sk.LoadCache(nil); !errors.Is(err, ErrWiped) {
		t.Errorf("LoadCache on a wiped key: %v", err)
	}
}

func TestMaxCacheSize(t *testing.T) {
	for _, tc := range []struct {
		levels []Level
		about  int
	}{
		{[]Level{{LMS_SHA256_M32_H20, LMOTS_SHA256_N32_W8}}, 64 << 10},
		{[]Level{{LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W8}, {LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W8}}, 34 << 10},
	} {
		if n := MaxCacheSize(tc.levels); n < tc.about-tc.about/20 || n > tc.about+tc.about/20 {
			t.Errorf("%v: %d bytes, want about %d", tc.levels, n, tc.about)
		}
	}
	if MaxCacheSize(nil) != 0 {
		t.Error("a bound for no levels")
	}
}
