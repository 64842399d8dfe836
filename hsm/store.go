package hsm

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// store is the keystore as the HSM uses it. A damaged block is the
// keystore's ErrDamaged, which callers of a Token know as the contract's
// hsmapi.ErrDamaged: every call that can meet one reports it so here, on
// reads and writes alike (a write refuses an ID a damaged block names), so
// that no keystore error reaches a caller of the HSM.
//
// HSS tree caches (hashsig_cache.go) are optional: a write that finds the
// flash full evicts them and tries once more, so that they never make a
// key, a PIN, a key's state or the HSS history fail to be stored.
type store struct {
	*keystore.Store
	// evictions counts the evictions of tree caches, so that a key knows
	// its cache may be gone (treeCache.evictions).
	evictions *atomic.Uint64
}

func newStore(ks *keystore.Store) store { return store{Store: ks, evictions: new(atomic.Uint64)} }

// damaged restates the keystore's damaged-block error as the contract's.
func damaged(err error) error {
	if errors.Is(err, keystore.ErrDamaged) {
		return fmt.Errorf("%w: %v", hsmapi.ErrDamaged, err)
	}
	return err
}

func (s store) Get(id keystore.ID) (keystore.Record, error) {
	r, err := s.Store.Get(id)
	return r, damaged(err)
}

func (s store) Create(r keystore.Record) error {
	return damaged(s.roomy(1, func() error { return s.Store.Create(r) }))
}

func (s store) Put(r keystore.Record) error {
	return damaged(s.roomy(1, func() error { return s.Store.Put(r) }))
}

func (s store) PutAll(rs []keystore.Record) error {
	return damaged(s.roomy(len(rs)+1, func() error { return s.Store.PutAll(rs) }))
}

func (s store) Commit(create, put []keystore.Record) error {
	return damaged(s.roomy(len(create)+len(put)+1, func() error { return s.Store.Commit(create, put) }))
}

func (s store) Delete(id keystore.ID) error { return damaged(s.Store.Delete(id)) }

// roomy runs a write that needs need free blocks, and once more if it
// found the flash full and evicting tree caches made room.
func (s store) roomy(need int, write func() error) error {
	err := write()
	if errors.Is(err, keystore.ErrFull) && s.makeRoom(need) {
		err = write()
	}
	return err
}

// makeRoom evicts tree caches, a key's whole cache at a time, until need
// blocks are free or no cache is left; it reports whether it evicted any.
// A cache evicted is rebuilt by its key's next first signature after a
// restart, and stored again when there is room.
func (s store) makeRoom(need int) bool {
	ids := s.List(kindHSSCache)
	evicted := false
	for i := 0; i < len(ids) && s.Free() < need; {
		// A key's parts are next to each other: their IDs share all but
		// the last byte (cacheID).
		j := i
		for j < len(ids) && [15]byte(ids[j][:15]) == [15]byte(ids[i][:15]) {
			j++
		}
		for _, id := range ids[i:j] {
			if err := s.Store.Delete(id); err != nil {
				return evicted
			}
			// After each delete: a key that read the count before it stored
			// its cache sees it changed.
			s.evictions.Add(1)
			evicted = true
		}
		i = j
	}
	return evicted
}
