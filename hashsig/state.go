package hashsig

import (
	"fmt"

	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// This file is the stateful part of a private key, kept apart so that one
// reading checks the argument that no signature index is ever used twice:
//
//   - A key may sign with the indexes in [next, end) only.
//   - persisted is the next value that durable storage holds; indexes in
//     [next, persisted) were reserved by an earlier persist and may be used
//     without another one. Sign persists (next + reserve) before it uses an
//     index at or beyond persisted, and returns no signature if that fails.
//     After a crash the key reloads with next = persisted: reserved indexes
//     that were never used are skipped, never reused.
//   - Split divides [persisted, end) and persists this key's shrunken end
//     before it hands out the other part; the other part starts at or after
//     the old end of this key's usable range, so the two never meet.
//   - All of it runs under the key's state lock (PrivateKey.mu). Sign also
//     holds the signing lock (signMu) from before it reads next until it
//     has signed, and next changes only under both: the index it builds
//     its trees for is the one it claims, and no other signature claims
//     one meanwhile. Reading the state (Remaining, Range) and splitting
//     it never wait for a build, which holds signMu only.

// PersistFunc stores a private key's serialized state durably. The key calls
// it before it uses a signature index the stored state does not cover, and
// before it gives away part of its range; if it fails, nothing is signed or
// given away.
type PersistFunc func(state []byte) error

// Remaining is how many signatures the key can still make.
func (sk *PrivateKey) Remaining() uint64 {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	return sk.end - sk.next
}

// Range returns the indexes [next, end) the key may still sign with.
func (sk *PrivateKey) Range() (next, end uint64) {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	return sk.next, sk.end
}

// SetReserve makes Sign persist once per n signatures instead of before every
// one, as the Cisco reference implementation's reserve does: faster, at the
// cost of up to n-1 indexes skipped after a crash.
func (sk *PrivateKey) SetReserve(n uint64) {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	sk.reserve = max(n, 1)
}

// SetPersist replaces the function that stores the key's state.
func (sk *PrivateKey) SetPersist(f PersistFunc) {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	sk.persist = f
}

// claim returns the index the next signature uses, persisting first when the
// index is not yet covered by stored state. Called with sk.mu held.
func (sk *PrivateKey) claim() (uint64, error) {
	lockassert.Held(&sk.mu)
	if sk.wiped.Load() {
		return 0, ErrWiped // Wipe is waiting for this signature: use no index
	}
	if sk.next >= sk.end {
		return 0, ErrKeyExhausted
	}
	if sk.next >= sk.persisted {
		reserveTo := sk.next + sk.reserve
		if reserveTo > sk.end || reserveTo < sk.next {
			reserveTo = sk.end
		}
		if err := sk.store(reserveTo, sk.end); err != nil {
			return 0, err
		}
	}
	s := sk.next
	sk.next++
	return s, nil
}

// store persists a state with the given range and, once that succeeded,
// makes it the key's. Called with sk.mu held.
func (sk *PrivateKey) store(next, end uint64) error {
	lockassert.Held(&sk.mu)
	if sk.persist != nil {
		state := sk.marshal(next, end)
		err := sk.persist(state)
		clear(state)
		if err != nil {
			return fmt.Errorf("hashsig: persist key state: %w", err)
		}
	}
	sk.persisted, sk.end = next, end
	return nil
}

// Split divides the key's remaining signatures in two, as libhal does on
// export: this key keeps the first half and the returned key, which has no
// PersistFunc yet, gets the second. The shrunken range of this key is
// persisted before Split returns; if that fails, nothing changes.
func (sk *PrivateKey) Split() (*PrivateKey, error) {
	parts, err := sk.SplitN(2)
	if err != nil {
		return nil, err
	}
	return parts[0], nil
}

// SplitN divides the key's remaining signatures into n parts of (nearly)
// equal size: this key keeps the first, the n-1 returned keys get the
// others, in order. Every part gets at least one signature, or ErrCannotSplit.
func (sk *PrivateKey) SplitN(n int) ([]*PrivateKey, error) {
	if n < 2 {
		return nil, fmt.Errorf("%w: split into %d parts", ErrBadParameters, n)
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if sk.wiped.Load() {
		return nil, ErrWiped
	}
	// Indexes below persisted may be in use without a trace in storage: the
	// parts given away start at persisted or later.
	start := max(sk.next, sk.persisted)
	if sk.end < start || sk.end-start < uint64(n) {
		return nil, fmt.Errorf("%w: %d left, %d parts", ErrCannotSplit, sk.end-min(start, sk.end), n)
	}
	size := (sk.end - start) / uint64(n)
	bounds := make([]uint64, n+1)
	for i := range n {
		bounds[i] = start + uint64(i)*size
	}
	bounds[n] = sk.end
	if err := sk.store(max(sk.persisted, sk.next), bounds[1]); err != nil {
		return nil, err
	}
	parts := make([]*PrivateKey, 0, n-1)
	for i := 1; i < n; i++ {
		p := sk.cloneRange(bounds[i], bounds[i+1])
		parts = append(parts, p)
	}
	return parts, nil
}

// Detach gives away every signature the key has left: the returned key,
// which has no PersistFunc yet, gets them all, and this key keeps none. Its
// emptied range, starting and ending where the other's starts, is persisted
// before Detach returns, so it remembers the first index it never released;
// if that fails, nothing changes. Indexes reserved by an earlier persist
// and not used are skipped (as after a crash), never given away.
func (sk *PrivateKey) Detach() (*PrivateKey, error) {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if sk.wiped.Load() {
		return nil, ErrWiped
	}
	start := max(sk.next, sk.persisted)
	if start >= sk.end {
		return nil, fmt.Errorf("%w: no signatures left to detach", ErrCannotSplit)
	}
	end := sk.end
	if err := sk.store(start, start); err != nil {
		return nil, err
	}
	sk.next = start
	return sk.cloneRange(start, end), nil
}

// indexPath splits a global signature index into each level's leaf.
func indexPath(levels []Level, s uint64) []uint32 {
	q := make([]uint32, len(levels))
	shift := 0
	for l := len(levels) - 1; l >= 0; l-- {
		p, _ := levels[l].LMS.Params()
		q[l] = uint32(s>>shift) & (1<<p.H - 1)
		shift += p.H
	}
	return q
}

// capacity is 2^totalHeight, saturating at 2^64-1 (8 levels of height 25
// would overflow; such a key never runs out in practice).
func capacity(levels []Level) uint64 {
	h := totalHeight(levels)
	if h >= 64 {
		return ^uint64(0)
	}
	return 1 << h
}
