package hashsig

import (
	"sync"

	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// Progress is told how far a build of trees has got: done of total leaves
// computed. It is called from the goroutines that compute the leaves, one
// call at a time, after each leaf; it must be quick and must not call back
// into the key.
type Progress func(done, total int)

// meter counts leaves for a Progress. A nil meter counts nothing, so the
// builds pay one comparison per leaf when no one watches.
type meter struct {
	mu          sync.Mutex
	fn          Progress
	done, total int
}

func newMeter(fn Progress, total int) *meter {
	if fn == nil {
		return nil
	}
	return &meter{fn: fn, total: total}
}

func (m *meter) leaf() {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.done++
	m.fn(m.done, m.total)
	m.mu.Unlock()
}

// leaves is the number of leaves of a tree of level l.
func leaves(l Level) int {
	p, _ := l.LMS.Params()
	return 1 << p.H
}

// work counts the leaves prepare(s) computes: the trees descend builds
// (all of them the first time the key signs), and the subtrees that the
// signatures linking them, and the signature at s, need cached. It follows
// descend's and cache's choices; TestProgressCountsEveryLeaf holds it to
// them. Called with sk.signMu held.
func (sk *PrivateKey) work(s uint64) int {
	lockassert.Held(&sk.signMu)
	path := indexPath(sk.levels, s)
	last := len(sk.levels) - 1
	n := 0
	fresh := sk.trees == nil
	if fresh {
		n += leaves(sk.levels[0])
	}
	var number uint64
	for l := 0; l <= last; l++ {
		p, _ := sk.levels[l].LMS.Params()
		subH := min(p.H, subtreeHeight)
		cached := 0 // what a tree just built keeps
		if !fresh {
			number, cached = sk.trees[l].number, sk.trees[l].subIndex
		}
		uses := l == last // the bottom tree signs at path[last]
		if l < last {
			want := number<<p.H + uint64(path[l])
			fresh = fresh || l+1 >= len(sk.trees) || sk.trees[l+1].number != want || sk.childSigs[l] == nil
			uses = fresh // a new child is linked by a signature of this tree
			if fresh {
				n += leaves(sk.levels[l+1])
				number = want
			}
		}
		if uses && int(path[l]>>subH) != cached {
			n += 1 << subH
		}
	}
	return n
}
