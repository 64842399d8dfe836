package hsm

import (
	"errors"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// store is the keystore as the HSM uses it. A damaged block is the
// keystore's ErrDamaged, which callers of a Token know as the contract's
// hsmapi.ErrDamaged: every call that can meet one reports it so here, on
// reads and writes alike (a write refuses an ID a damaged block names), so
// that no keystore error reaches a caller of the HSM.
type store struct{ *keystore.Store }

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

func (s store) Create(r keystore.Record) error { return damaged(s.Store.Create(r)) }

func (s store) Put(r keystore.Record) error { return damaged(s.Store.Put(r)) }

func (s store) PutAll(rs []keystore.Record) error { return damaged(s.Store.PutAll(rs)) }

func (s store) Commit(create, put []keystore.Record) error {
	return damaged(s.Store.Commit(create, put))
}

func (s store) Delete(id keystore.ID) error { return damaged(s.Store.Delete(id)) }
