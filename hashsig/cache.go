package hashsig

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// A tree cache keeps what the first signature of a loaded key would
// otherwise rebuild (minutes at height 20 and up), as Cisco hash-sigs' aux
// data does, but smaller, so that an HSM can keep it in a few flash blocks:
//
//   - the top tree's row of subtree roots (the nodes above are one hash each
//     to recompute: 1,023 at height 20);
//   - for each lower tree on the path of the key's current index, its
//     number, the signature of its public key by the tree above, and its
//     row of subtree roots;
//   - for the bottom tree, the leaves of the subtree being signed from (its
//     interior is recomputed).
//
// Non-bottom trees' subtrees are left out: they sign only when the key
// moves to the next lower tree, which builds that tree anyway.
//
// The cache is never the key's state: it says nothing of which indexes were
// used, and a cache from an earlier point of the key contributes what still
// applies (the top row always). It holds no secret (tree nodes are public;
// leaves are hashes of one-time public keys), but a wrong node would make
// signatures that do not verify, each burning an index. So it carries an
// HMAC under a key derived one way from the seed, and what it holds is also
// checked against the key: the top row must lead to the key's root, each
// lower tree's root must verify under the tree above, the bottom leaves must
// lead to their subtree's root in the row.
//
// Encoding: u32 version || u32 L || L × (u32 lms, u32 lmots) || I ||
// u32 k (lower trees present, 0 to L-1) || top row || k × (u64 number ||
// linking LMS signature || row) || u32 (1 + the bottom subtree's index, or
// 0 for none) || its leaves || HMAC-SHA-256 of all that before. Every
// length follows from the levels, so a cache's size is bounded by
// MaxCacheSize and checked before anything is allocated.

// cacheVersion starts a cache's encoding.
const cacheVersion = 1

// cacheMACLabel separates the cache's MAC key from every other use of the
// seed.
const cacheMACLabel = "cryptech-backup hashsig tree cache MAC key v1\x00"

// rowSize is the length of a level's row of subtree roots, leavesSize of a
// subtree's leaves.
func rowSize(l Level) int {
	p, _ := l.LMS.Params()
	return (1 << (p.H - min(p.H, subtreeHeight))) * p.M
}

func leavesSize(l Level) int {
	p, _ := l.LMS.Params()
	return (1 << min(p.H, subtreeHeight)) * p.M
}

// MaxCacheSize is an upper bound of the length of Cache's result for a key
// of these levels (0 for levels CheckLevels refuses): enough for an HSM to
// decide whether to keep a key's cache. About 64 KiB for one level of
// height 20, 34 KiB for two of height 10.
func MaxCacheSize(levels []Level) int {
	if CheckLevels(levels) != nil {
		return 0
	}
	n := 4 + 4 + 8*len(levels) + IDSize + 4 + rowSize(levels[0])
	for l := 1; l < len(levels); l++ {
		n += 8 + lmsSignatureSize(levels[l-1].LMS, levels[l-1].LMOTS) + rowSize(levels[l])
	}
	return n + 4 + leavesSize(levels[len(levels)-1]) + sha256.Size
}

// Cache returns the key's trees worth keeping (see above), encoded and
// authenticated, for LoadCache to install on the key loaded again; nil if
// no trees are built (a key just parsed, or wiped). generation changes
// whenever what Cache returns would change (when the signatures move to
// another subtree of the bottom tree: at most once per 1,024, or per 2^h
// for a bottom level of height h under 10), and only then: a caller stores the cache again when the
// generation differs from the one it stored. It is a digest of which
// trees are cached, so the same trees give the same generation in any
// process; 0 means nil. Cache waits for a signature building trees.
func (sk *PrivateKey) Cache() (cache []byte, generation uint64) {
	sk.signMu.Lock()
	defer sk.signMu.Unlock()
	if sk.wiped.Load() || sk.trees == nil {
		return nil, 0
	}
	gen := sk.cacheGeneration()
	if sk.cached == nil || sk.cachedGen != gen {
		sk.cached, sk.cachedGen = sk.encodeCache(), gen
	}
	return bytes.Clone(sk.cached), gen
}

// CacheGeneration is the generation Cache would return now, without
// encoding or copying the cache: a caller that stores caches asks it after
// each signature and asks for the cache itself only when it changed.
func (sk *PrivateKey) CacheGeneration() uint64 {
	sk.signMu.Lock()
	defer sk.signMu.Unlock()
	if sk.wiped.Load() || sk.trees == nil {
		return 0
	}
	return sk.cacheGeneration()
}

// cachedTrees is how many of sk.trees a cache holds: the top tree and the
// lower ones linked to it. Called with sk.signMu held.
func (sk *PrivateKey) cachedTrees() int {
	lockassert.Held(&sk.signMu)
	n := 1
	for n < len(sk.trees) && sk.childSigs[n-1] != nil {
		n++
	}
	return n
}

// cachedSubtree is the index of the bottom subtree a cache holds, -1 if
// none. Called with sk.signMu held.
func (sk *PrivateKey) cachedSubtree() int {
	lockassert.Held(&sk.signMu)
	if sk.cachedTrees() < len(sk.levels) {
		return -1
	}
	return sk.trees[len(sk.levels)-1].subIndex
}

// cacheGeneration digests what decides a cache's content: the trees it
// holds and the bottom subtree. Called with sk.signMu held.
func (sk *PrivateKey) cacheGeneration() uint64 {
	lockassert.Held(&sk.signMu)
	h := sha256.New()
	var b []byte
	for _, t := range sk.trees[:sk.cachedTrees()] {
		b = binary.BigEndian.AppendUint64(b, t.number)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(int64(sk.cachedSubtree())))
	h.Write(b)
	return binary.BigEndian.Uint64(h.Sum(nil)) | 1
}

// encodeCache encodes the cache. Called with sk.signMu held, trees built.
func (sk *PrivateKey) encodeCache() []byte {
	lockassert.Held(&sk.signMu)
	b := binary.BigEndian.AppendUint32(make([]byte, 0, MaxCacheSize(sk.levels)), cacheVersion)
	b = sk.appendLevels(b)
	b = append(b, sk.id[:]...)
	k := sk.cachedTrees()
	b = binary.BigEndian.AppendUint32(b, uint32(k-1))
	b = append(b, sk.trees[0].row()...)
	for l := 1; l < k; l++ {
		b = binary.BigEndian.AppendUint64(b, sk.trees[l].number)
		b = append(b, sk.childSigs[l-1]...)
		b = append(b, sk.trees[l].row()...)
	}
	s := sk.cachedSubtree()
	b = binary.BigEndian.AppendUint32(b, uint32(s+1))
	if s >= 0 {
		bottom := sk.trees[len(sk.levels)-1]
		for _, leaf := range bottom.sub[1<<bottom.subH:] {
			b = append(b, leaf...)
		}
	}
	return append(b, sk.cacheMAC(b)...)
}

// appendLevels appends u32 L and each level's types, as the state's and the
// cache's encodings start.
func (sk *PrivateKey) appendLevels(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(sk.levels)))
	for _, l := range sk.levels {
		b = binary.BigEndian.AppendUint32(b, uint32(l.LMS))
		b = binary.BigEndian.AppendUint32(b, uint32(l.LMOTS))
	}
	return b
}

// cacheMAC is HMAC-SHA-256 of b under a key derived from I and the seed.
// Called with sk.signMu held (the seed changes only under it).
func (sk *PrivateKey) cacheMAC(b []byte) []byte {
	lockassert.Held(&sk.signMu)
	kh := sha256.New()
	kh.Write([]byte(cacheMACLabel))
	kh.Write(sk.id[:])
	kh.Write(sk.seed)
	key := kh.Sum(nil)
	defer clear(key)
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return m.Sum(nil)
}

// cacheReader takes the fields of a cache in order; once a take fails, ok
// is false and every later one returns nothing.
type cacheReader struct {
	b  []byte
	ok bool
}

func (r *cacheReader) take(n int) []byte {
	if !r.ok || n > len(r.b) {
		r.ok = false
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *cacheReader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *cacheReader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// LoadCache installs the trees of a cache that Cache made, for this key or
// any part of it, on a key that has none built yet (a key just parsed):
// its next signature then builds nothing, or only what the cache, taken at
// an earlier point of the key, no longer covers. A cache that is damaged,
// belongs to another key or does not match the key's trees returns an
// error wrapping ErrBadCache, and the key is unchanged: the caller goes on
// without. On a key whose trees are built already it checks the cache and
// changes nothing; on a wiped key it returns ErrWiped. The cache never
// changes which index the key signs with.
func (sk *PrivateKey) LoadCache(cache []byte) error {
	sk.signMu.Lock()
	defer sk.signMu.Unlock()
	if sk.wiped.Load() {
		return ErrWiped
	}
	trees, links, err := sk.parseCache(cache)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadCache, err)
	}
	if sk.trees != nil {
		for _, t := range trees[1:] {
			clear(t.seed) // the top tree's is the key's
		}
		return nil
	}
	sk.trees = trees
	copy(sk.childSigs, links)
	sk.mu.Lock()
	sk.topNodes = trees[0].top
	sk.mu.Unlock()
	return nil
}

// parseCache checks a cache and returns the trees it holds that are on the
// path of the key's next index, with the signatures linking them. Called
// with sk.signMu held.
func (sk *PrivateKey) parseCache(cache []byte) (trees []*tree, links [][]byte, err error) {
	lockassert.Held(&sk.signMu)
	if len(cache) > MaxCacheSize(sk.levels) || len(cache) < sha256.Size {
		return nil, nil, fmt.Errorf("%d bytes", len(cache))
	}
	body, tag := cache[:len(cache)-sha256.Size], cache[len(cache)-sha256.Size:]
	if subtle.ConstantTimeCompare(tag, sk.cacheMAC(body)) != 1 {
		return nil, nil, fmt.Errorf("its MAC does not verify: damaged, or another key's")
	}
	r := &cacheReader{b: body, ok: true}
	head := sk.appendLevels(binary.BigEndian.AppendUint32(nil, cacheVersion))
	head = append(head, sk.id[:]...)
	if !bytes.Equal(r.take(len(head)), head) {
		return nil, nil, fmt.Errorf("another version, key or parameters")
	}
	last := len(sk.levels) - 1
	k := int(r.u32())
	if k > last {
		return nil, nil, fmt.Errorf("%d lower trees for %d levels", k, len(sk.levels))
	}
	// The lower trees' seeds are their own (the top tree's is the key's):
	// a cache refused leaves no copy of them.
	defer func() {
		if err != nil && len(trees) > 1 {
			for _, t := range trees[1:] {
				clear(t.seed)
			}
			trees, links = nil, nil
		}
	}()
	sk.mu.Lock()
	path := indexPath(sk.levels, sk.next)
	sk.mu.Unlock()
	hs := sk.hasher()
	top := sk.topTree()
	trees = []*tree{top}
	row := r.take(rowSize(sk.levels[0]))
	if !r.ok {
		return nil, nil, fmt.Errorf("truncated")
	}
	top.setRow(bytes.Clone(row))
	if subtle.ConstantTimeCompare(top.root(), sk.root) != 1 {
		return nil, nil, fmt.Errorf("its top tree is not the key's")
	}
	links = make([][]byte, last)
	// Trees after one off the path are of an earlier point of the key:
	// read, not used.
	onPath := true
	for l := 1; l <= k; l++ {
		number := r.u64()
		link := r.take(lmsSignatureSize(sk.levels[l-1].LMS, sk.levels[l-1].LMOTS))
		row := r.take(rowSize(sk.levels[l]))
		if !r.ok {
			return trees, nil, fmt.Errorf("truncated")
		}
		parent := trees[len(trees)-1]
		lp := parent.lp
		if !onPath || number != parent.number<<lp.H+uint64(path[l-1]) {
			onPath = false
			continue
		}
		child := parent.child(hs, path[l-1], sk.levels[l].LMS, sk.levels[l].LMOTS)
		trees = append(trees, child)
		child.setRow(bytes.Clone(row))
		if binary.BigEndian.Uint32(link) != path[l-1] || parent.publicKey().verify(hs, child.publicKey().marshal(), link) != nil {
			return trees, nil, fmt.Errorf("the tree of level %d is not the key's", l)
		}
		links[l-1] = bytes.Clone(link)
	}
	bp, _ := sk.levels[last].LMS.Params()
	s := int(r.u32()) - 1
	if !r.ok || s >= 1<<(bp.H-min(bp.H, subtreeHeight)) {
		return trees, nil, fmt.Errorf("truncated or bottom subtree out of range")
	}
	var leaves []byte
	if s >= 0 {
		leaves = r.take(leavesSize(sk.levels[last]))
	}
	if !r.ok || len(r.b) != 0 {
		return trees, nil, fmt.Errorf("%d bytes, not the length its fields give", len(cache))
	}
	if bottom := trees[len(trees)-1]; s >= 0 && len(trees) == last+1 && s == int(path[last]>>bottom.subH) {
		nodes := bottom.newSubtree()
		n := 1 << bottom.subH
		for j := range n {
			copy(nodes[n+j], leaves[j*bottom.lp.M:])
		}
		bottom.subtreeInterior(s, nodes)
		if !bytes.Equal(nodes[1], bottom.top[1<<(bottom.lp.H-bottom.subH)+s]) {
			return trees, nil, fmt.Errorf("its bottom subtree is not the key's")
		}
		bottom.sub, bottom.subIndex = nodes, s
	}
	return trees, links, nil
}
