package hashsig

import (
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
)

// subtreeHeight is the height of the subtrees a tree is computed and cached
// in: the nodes above them are kept for the life of the tree, the nodes of
// the one subtree being signed from are kept until signing moves on.
const subtreeHeight = 10

// tree is one LMS tree of an HSS key: its parameters, identifier and seed,
// and the cached nodes needed for authentication paths.
type tree struct {
	typ    LMSType
	otsTyp LMOTSType
	lp     LMSParams
	op     LMOTSParams
	id     [IDSize]byte
	seed   []byte
	// number is the tree's position among the trees of its level.
	number uint64

	// top holds the nodes of heights subH..h (node r of the tree at
	// top[r]), where subH = min(h, subtreeHeight); nil entries are unused.
	top [][]byte
	// sub holds the nodes of the subtree with index subIndex, numbered as
	// within that subtree (1 is its root).
	sub      [][]byte
	subIndex int
	subH     int

	// stop is the wiped flag of the key the tree belongs to: once it is
	// set, the computation in progress gives up at the next leaf.
	stop *atomic.Bool
}

func newTree(t LMSType, ot LMOTSType, id [IDSize]byte, seed []byte, number uint64, stop *atomic.Bool) *tree {
	lp, _ := t.Params()
	op, _ := ot.Params()
	tr := &tree{typ: t, otsTyp: ot, lp: lp, op: op, id: id, seed: seed, number: number, subIndex: -1, stop: stop}
	tr.subH = min(lp.H, subtreeHeight)
	return tr
}

// build computes the whole tree: every subtree, in turn, with its leaves
// spread over all cores, and keeps the nodes above the subtrees. It returns
// false, the tree unusable, if the key was wiped meanwhile. m, if not
// nil, counts the leaves.
func (tr *tree) build(m *meter) bool {
	subtrees := 1 << (tr.lp.H - tr.subH)
	// The subtrees' roots are copied into one row: keeping nodes[1] itself
	// would keep each subtree's whole array of nodes alive.
	row := make([]byte, subtrees*tr.lp.M)
	for s := range subtrees {
		nodes := tr.computeSubtree(s, m)
		if nodes == nil {
			return false
		}
		copy(row[s*tr.lp.M:], nodes[1])
		if s == 0 {
			tr.sub, tr.subIndex = nodes, 0
		}
	}
	tr.setRow(row)
	return true
}

// setRow makes row, the roots of the subtrees from left to right, the
// tree's nodes of height subH, and computes the nodes above them (one hash
// each: 1,023 for a tree of height 20). tr keeps row.
func (tr *tree) setRow(row []byte) {
	subtrees, mlen := 1<<(tr.lp.H-tr.subH), tr.lp.M
	top := make([][]byte, 2*subtrees)
	for s := range subtrees {
		top[subtrees+s] = row[s*mlen : (s+1)*mlen]
	}
	upper := make([]byte, subtrees*mlen)
	hs := newHasher(tr.lp.Hash, mlen)
	for r := subtrees - 1; r >= 1; r-- {
		top[r] = upper[r*mlen : (r+1)*mlen]
		interiorHash(hs, &tr.id, uint32(r), top[2*r], top[2*r+1], top[r])
	}
	tr.top = top
}

// row returns the roots of the subtrees, left to right, as setRow takes
// them.
func (tr *tree) row() []byte {
	subtrees := 1 << (tr.lp.H - tr.subH)
	row := make([]byte, 0, subtrees*tr.lp.M)
	for _, n := range tr.top[subtrees:] {
		row = append(row, n...)
	}
	return row
}

// root is T[1], the LMS public key's value.
func (tr *tree) root() []byte { return tr.top[1] }

func (tr *tree) publicKey() *lmsPublicKey {
	return &lmsPublicKey{typ: tr.typ, otsTyp: tr.otsTyp, id: tr.id, root: tr.root()}
}

// computeSubtree computes subtree s: its 2^subH leaves in parallel, then its
// interior nodes. Node j of the subtree (1 is its root) is node
// j + (2^level - 1)·... of the tree, as subtreeNode says. It returns nil if
// the key was wiped meanwhile: the workers look at tr.stop before each leaf
// (a leaf is milliseconds at most), so a wiped key's build ends promptly.
func (tr *tree) computeSubtree(s int, m *meter) [][]byte {
	nodes := tr.newSubtree()
	leaves := 1 << tr.subH
	firstLeaf := s << tr.subH
	workers := min(runtime.GOMAXPROCS(0), leaves)
	var wg sync.WaitGroup
	chunk := (leaves + workers - 1) / workers
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, leaves)
		wg.Go(func() {
			hs := newHasher(tr.lp.Hash, tr.lp.M)
			k := make([]byte, tr.op.N)
			for j := lo; j < hi; j++ {
				if tr.stop.Load() {
					return
				}
				q := uint32(firstLeaf + j)
				otsPublicKey(hs, tr.op, &tr.id, q, tr.seed, k)
				leafHash(hs, &tr.id, uint32(1)<<tr.lp.H+q, k, nodes[leaves+j])
				m.leaf()
			}
		})
	}
	wg.Wait()
	if tr.stop.Load() {
		return nil
	}
	tr.subtreeInterior(s, nodes)
	return nodes
}

// newSubtree allocates the nodes of a subtree, 1 to 2^(subH+1)-1, in one
// array: its leaves, nodes 2^subH and up, are contiguous.
func (tr *tree) newSubtree() [][]byte {
	leaves := 1 << tr.subH
	nodes := make([][]byte, 2*leaves)
	store := make([]byte, 2*leaves*tr.lp.M)
	for j := range nodes {
		nodes[j] = store[j*tr.lp.M : (j+1)*tr.lp.M]
	}
	return nodes
}

// subtreeInterior computes the interior nodes of subtree s from its leaves.
func (tr *tree) subtreeInterior(s int, nodes [][]byte) {
	hs := newHasher(tr.lp.Hash, tr.lp.M)
	for j := 1<<tr.subH - 1; j >= 1; j-- {
		interiorHash(hs, &tr.id, tr.subtreeNode(s, j), nodes[2*j], nodes[2*j+1], nodes[j])
	}
}

// subtreeNode is the tree's node number of node j (1-based, heap order) of
// subtree s.
func (tr *tree) subtreeNode(s, j int) uint32 {
	level := 0
	for v := j; v > 1; v >>= 1 {
		level++
	}
	// j is at depth level within the subtree; its row in the tree starts at
	// 2^(h - subH + level).
	rowStart := 1 << (tr.lp.H - tr.subH + level)
	return uint32(rowStart + s<<level + (j - 1<<level))
}

// cache makes the subtree of leaf q the one whose nodes are kept, computing
// it if it is not (m, if not nil, counting the leaves); false if the key
// was wiped meanwhile.
func (tr *tree) cache(q uint32, m *meter) bool {
	s := int(q >> tr.subH)
	if tr.subIndex != s {
		nodes := tr.computeSubtree(s, m)
		if nodes == nil {
			return false
		}
		tr.sub, tr.subIndex = nodes, s
	}
	return true
}

// authPath returns the authentication path of leaf q: the siblings of the
// nodes from the leaf up to the root. Called after cache(q).
func (tr *tree) authPath(q uint32) []byte {
	h, subH := tr.lp.H, tr.subH
	s := int(q >> subH)
	path := make([]byte, 0, h*tr.lp.M)
	j := 1<<subH + int(q)&(1<<subH-1)
	for j > 1 {
		path = append(path, tr.sub[j^1]...)
		j >>= 1
	}
	r := 1<<(h-subH) + s
	for r > 1 {
		path = append(path, tr.top[r^1]...)
		r >>= 1
	}
	return path
}

// sign makes an LMS signature of msg with leaf q, C given; nil if the key
// was wiped before q's subtree was computed (m counting its leaves).
func (tr *tree) sign(hs *hasher, q uint32, c, msg []byte, m *meter) []byte {
	if !tr.cache(q, m) {
		return nil
	}
	sig := binary.BigEndian.AppendUint32(nil, q)
	sig = append(sig, otsSign(hs, tr.otsTyp, &tr.id, q, tr.seed, c, msg)...)
	sig = binary.BigEndian.AppendUint32(sig, uint32(tr.typ))
	return append(sig, tr.authPath(q)...)
}

// Derivation of child trees and randomizers from a tree's seed, in the style
// of RFC 8554 Appendix A: the same one-block hash as the one-time keys, with
// chain numbers no parameter set reaches (p is at most 265).
const (
	deriveChildSeed = 0xffff
	deriveChildID   = 0xfffe
	deriveC         = 0xfffd
)

// derive returns H(I || u32(q) || u16(i) || 0xff || SEED), truncated to n.
func (tr *tree) derive(hs *hasher, q uint32, i uint16) []byte {
	hs.chainSetup(0, &tr.id, q, i, tr.seed)
	hs.chainStep(otsSeedStep)
	return append([]byte(nil), hs.chainValue(0)...)
}

// child returns the tree that leaf q of tr signs: identifier and seed
// derived from tr's, so all lower trees follow from the top seed.
func (tr *tree) child(hs *hasher, q uint32, t LMSType, ot LMOTSType) *tree {
	lp, _ := tr.typ.Params()
	var id [IDSize]byte
	copy(id[:], tr.derive(hs, q, deriveChildID))
	return newTree(t, ot, id, tr.derive(hs, q, deriveChildSeed), tr.number<<lp.H+uint64(q), tr.stop)
}
