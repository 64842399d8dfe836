package hsm

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/keyshare"
	"github.com/hsmkit/cryptech-backup/sim"
)

// Rotation: a new master key from the TRNG replaces the current one, which
// moves into the old-key ring of the master key memory (sim.MasterKeyMemory),
// and every keystore record is sealed again under the new key.
//
// The memory is written first, in one atomic write that holds both keys;
// then the records are sealed again one by one, each a crash-safe keystore
// write. A power cut at any write leaves every record sealed under the
// new key or the old one, both of which the memory holds, and unseal tries
// the current key, then the ring: nothing is lost, and the next rotation
// seals again whatever is left under an old key. An old key leaves the
// ring only by retire, which refuses while a record is still under it, so
// that files stored outside under it (issue 12's external storage) can be
// taken back for as long as the operator keeps it.

// openRecord unwraps a keystore record under mk, else under an old key.
func (h *HSM) openRecord(mk, data []byte) ([]byte, error) {
	plain, err := keywrap.UnwrapPad(mk, data)
	if err == nil {
		return plain, nil
	}
	old := h.board.MKM.OldKeys()
	defer wipeKeys(old)
	for _, k := range old {
		if plain, err := keywrap.UnwrapPad(k, data); err == nil {
			return plain, nil
		}
	}
	return nil, err
}

func wipeKeys(keys [][]byte) {
	for _, k := range keys {
		clear(k)
	}
}

// RotateMasterKey replaces the master key and seals every record again.
func (s *Session) RotateMasterKey(context.Context) (hsmapi.RotateResult, error) {
	if err := s.requireOfficer("rotate the master key"); err != nil {
		return hsmapi.RotateResult{}, err
	}
	res, err := s.h.rotate()
	if err != nil {
		return res, fmt.Errorf("rotate the master key: %w", err)
	}
	return res, nil
}

func (h *HSM) rotate() (hsmapi.RotateResult, error) {
	var res hsmapi.RotateResult
	next := make([]byte, sim.MasterKeySize)
	defer clear(next)
	if _, err := h.board.TRNG.Read(next); err != nil {
		return res, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cur, err := h.masterKey()
	if err != nil {
		return res, err
	}
	res.OldCheckValue = keyshare.CheckValue(cur)
	clear(cur)
	if err := h.board.MKM.Rotate(next); err != nil {
		if errors.Is(err, sim.ErrRingFull) {
			return res, fmt.Errorf("%w: %w", hsmapi.ErrBadArguments, err)
		}
		return res, err
	}
	res.CheckValue = keyshare.CheckValue(next)
	// A crash before this write leaves the old check value recorded;
	// Open puts it right (healCheckValue).
	if err := h.recordCheckValue(res.CheckValue); err != nil {
		return res, err
	}
	n, skipped, err := h.resealAll(next)
	res.Resealed, res.Skipped = n, skipped
	if err != nil {
		return res, fmt.Errorf("%w (sealed %d records again; every record opens under the new key or an old one: rotate again to finish)", err, n)
	}
	// HSS tree caches, counted nowhere: one that fails here is rebuilt,
	// and none holds back the retirement of an old key.
	_ = h.resealTreeCaches()
	return res, nil
}

// resealAll seals again under mk every key record that does not open under
// it. Records in damaged blocks cannot be read and are skipped (counted).
// Called with h.mu held.
func (h *HSM) resealAll(mk []byte) (resealed, skipped int, err error) {
	lockassert.Held(&h.mu)
	for _, id := range h.ks.List(kindKey) {
		rec, err := h.ks.Get(id)
		if err != nil {
			skipped++
			continue
		}
		if plain, err := keywrap.UnwrapPad(mk, rec.Data); err == nil {
			clear(plain)
			continue
		}
		plain, err := h.openRecord(mk, rec.Data)
		if err != nil {
			return resealed, skipped, fmt.Errorf("keystore record %x opens under no key the master key memory holds", id)
		}
		data, err := keywrap.WrapPad(mk, plain)
		clear(plain)
		if err != nil {
			return resealed, skipped, err
		}
		rec.Data = data
		if err := h.ks.Put(rec); err != nil {
			return resealed, skipped, err
		}
		resealed++
	}
	return resealed, skipped, nil
}

// oldKeyRecords counts, per old key, the records still sealed under it.
func (h *HSM) oldKeyRecords() ([]hsmapi.OldKey, error) {
	old := h.board.MKM.OldKeys()
	defer wipeKeys(old)
	out := make([]hsmapi.OldKey, len(old))
	for i, k := range old {
		out[i].CheckValue = keyshare.CheckValue(k)
	}
	if len(old) == 0 {
		return out, nil
	}
	mk, err := h.masterKey()
	if err != nil {
		return out, nil // wiped: nothing opens, nothing to count
	}
	defer clear(mk)
	for _, id := range h.ks.List(kindKey) {
		rec, err := h.ks.Get(id)
		if err != nil {
			continue
		}
		if plain, err := keywrap.UnwrapPad(mk, rec.Data); err == nil {
			clear(plain)
			continue
		}
		for i, k := range old {
			if plain, err := keywrap.UnwrapPad(k, rec.Data); err == nil {
				clear(plain)
				out[i].Records++
				break
			}
		}
	}
	return out, nil
}

// RetireMasterKey drops the old key with check value cv from the ring,
// refusing while a keystore record is still sealed under it.
func (s *Session) RetireMasterKey(_ context.Context, cv [hsmapi.MasterKeyCheckSize]byte) error {
	if err := s.requireOfficer("retire an old master key"); err != nil {
		return err
	}
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	old, err := h.oldKeyRecords()
	if err != nil {
		return err
	}
	for i, k := range old {
		if subtle.ConstantTimeCompare(k.CheckValue[:], cv[:]) != 1 {
			continue
		}
		if k.Records > 0 {
			return fmt.Errorf("retire old master key %x: %w: %d keystore records are still sealed under it (rotate again to seal them under the current key)", cv, hsmapi.ErrForbidden, k.Records)
		}
		return h.board.MKM.Retire(i)
	}
	return fmt.Errorf("retire old master key %x: %w: no old key has that check value", cv, hsmapi.ErrKeyNotFound)
}

// healCheckValue makes the recorded check value the master key's, should a
// crash have come between a rotation's two writes. Called at power-up.
func (h *HSM) healCheckValue() error {
	mk, err := h.board.MKM.Get()
	if err != nil {
		return nil // wiped: the record is what a restore needs
	}
	cv := keyshare.CheckValue(mk)
	clear(mk)
	if _, ok, err := h.recordedCheckValue(); err != nil || !ok {
		return err
	}
	return h.recordCheckValue(cv)
}
