package hashsig

import (
	"testing"
)

// recorder checks a Progress's calls: one per leaf, done counting up by
// one, total fixed.
type recorder struct {
	t           *testing.T
	calls       int
	done, total int
}

func (r *recorder) progress(done, total int) {
	r.t.Helper()
	if done != r.done+1 || (r.calls > 0 && total != r.total) {
		r.t.Fatalf("progress(%d, %d) after (%d, %d)", done, total, r.done, r.total)
	}
	r.calls++
	r.done, r.total = done, total
}

// finished checks that the last call said done == total == want.
func (r *recorder) finished(what string, want int) {
	r.t.Helper()
	if r.done != r.total || r.done != want {
		r.t.Errorf("%s: progress ended at %d/%d, want %d/%d", what, r.done, r.total, want, want)
	}
}

func TestGenerateKeyProgress(t *testing.T) {
	levels := []Level{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W2}, {LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W2}}
	r := &recorder{t: t}
	sk, err := GenerateKeyProgress(nil, levels, nil, r.progress)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Wipe()
	r.finished("keygen", 32)
	// The lower tree is the first signature's work.
	r = &recorder{t: t}
	if _, err := sk.SignProgress([]byte("m"), r.progress); err != nil {
		t.Fatal(err)
	}
	r.finished("first signature", 1024)
}

// The total that prepare announces is the number of leaves it computes,
// whatever the trees already built: a fresh key, a part that has only its
// top tree's upper nodes, a key crossing into a new tree at one level or
// several.
func TestProgressCountsEveryLeaf(t *testing.T) {
	levels := []Level{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}}
	sk, err := GenerateKey(nil, levels, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Wipe()
	state, _ := sk.MarshalBinary()
	loaded, err := ParsePrivateKey(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer loaded.Wipe()
	r := &recorder{t: t}
	if _, err := loaded.SignProgress([]byte("m"), r.progress); err != nil {
		t.Fatal(err)
	}
	r.finished("first signature of a loaded key", 3*32)
	r = &recorder{t: t}
	if _, err := loaded.SignProgress([]byte("m"), r.progress); err != nil {
		t.Fatal(err)
	}
	if r.calls != 0 {
		t.Errorf("second signature: %d progress calls, want none", r.calls)
	}

	for _, tc := range []struct {
		next uint64
		want int
	}{
		// A part has the top tree's nodes but no subtree, and no lower tree.
		{0, 32 + 32 + 32},
		{31, 32 + 32 + 32},
		{32*32 + 5, 32 + 32 + 32},
	} {
		sk.mu.Lock()
		part := sk.cloneRange(tc.next, sk.end)
		sk.mu.Unlock()
		r := &recorder{t: t}
		if _, err := part.SignProgress([]byte("m"), r.progress); err != nil {
			t.Fatal(err)
		}
		r.finished("part", tc.want)
		// Crossing into the next bottom tree builds it; into the next
		// middle tree, both.
		_, end := part.Range()
		for _, step := range []struct {
			next uint64
			want int
		}{{32 * (tc.next/32 + 1), 32}, {32 * 32 * (tc.next/(32*32) + 1), 32 + 32}} {
			part.mu.Lock()
			part.next, part.persisted = step.next, step.next
			part.mu.Unlock()
			if step.next >= end {
				continue
			}
			r := &recorder{t: t}
			if _, err := part.SignProgress([]byte("m"), r.progress); err != nil {
				t.Fatal(err)
			}
			r.finished("crossing", step.want)
		}
		part.Wipe()
	}
}

// A tree taller than a subtree is cached one subtree at a time: a part of
// a key whose top tree has height 15 computes the one subtree of the top
// tree that links its next lower tree, and the progress counts it.
func TestProgressCountsSubtrees(t *testing.T) {
	levels := []Level{{LMS_SHA256_M32_H15, LMOTS_SHA256_N32_W1}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W1}}
	p, _ := levels[0].LMS.Params()
	sk := &PrivateKey{levels: levels, seed: make([]byte, 32), reserve: 1, end: capacity(levels)}
	sk.setup()
	// The upper nodes need not be right: prepare never checks them.
	top := sk.topTree()
	top.top = make([][]byte, 2<<(p.H-subtreeHeight))
	sk.trees = []*tree{top}
	sk.signMu.Lock()
	defer sk.signMu.Unlock()
	for _, tc := range []struct {
		next uint64
		want int
	}{
		{0, 1024 + 32},
		{5*1024*32 + 7, 1024 + 32}, // subtree 5 of the top tree
		{5*1024*32 + 40, 32},       // the next bottom tree, linked from the same subtree
		{9*1024*32 + 3, 1024 + 32},
	} {
		r := &recorder{t: t}
		if err := sk.prepare(tc.next, r.progress); err != nil {
			t.Fatal(err)
		}
		r.finished("prepare", tc.want)
	}
}
