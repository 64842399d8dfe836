package hsm

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// An HSS key must never sign twice with one index, and two HSMs hold
// disjoint parts of one key. Within one HSM, two dangers remain: the same
// part arriving twice (under two UUIDs, or again after the first copy was
// deleted, or as a volatile key and then a token key), and a different part
// of a key the HSM already holds. So the HSM remembers, in a history record
// per HSS identifier kept in flash for good, every index range it ever
// received for that identifier, and refuses a part that overlaps any of
// them, or whose identifier a key it holds already has (libhal's
// KEY_NAME_IN_USE). The one exception is an import of exactly a range it
// received before, under the UUID that key still has: that is re-running an
// import, reported present and left alone.

// kindHashsigHistory marks history records in the keystore.
const kindHashsigHistory keystore.Kind = 3

// hashsigHistory is what the HSM ever received of one HSS key.
type hashsigHistory struct {
	id     [16]byte
	ranges [][2]uint64
}

// historyID names the history record of an HSS identifier. It cannot meet a
// key's UUID in practice: it is a hash.
func historyID(id [16]byte) keystore.ID {
	sum := sha256.Sum256(append([]byte("cryptech-backup HSS history\x00"), id[:]...))
	return keystore.ID(sum[:16])
}

func (hh *hashsigHistory) marshal() []byte {
	b := append([]byte(nil), hh.id[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(hh.ranges)))
	for _, r := range hh.ranges {
		b = binary.BigEndian.AppendUint64(b, r[0])
		b = binary.BigEndian.AppendUint64(b, r[1])
	}
	return b
}

var errBadHistory = errors.New("corrupt HSS history record")

func parseHistory(b []byte) (*hashsigHistory, error) {
	if len(b) < 20 {
		return nil, errBadHistory
	}
	hh := &hashsigHistory{}
	copy(hh.id[:], b)
	n := binary.BigEndian.Uint32(b[16:])
	if uint64(len(b)) != 20+16*uint64(n) {
		return nil, errBadHistory
	}
	for i := range int(n) {
		at := 20 + 16*i
		hh.ranges = append(hh.ranges, [2]uint64{binary.BigEndian.Uint64(b[at:]), binary.BigEndian.Uint64(b[at+8:])})
	}
	return hh, nil
}

// history reads the history of an HSS identifier; an identifier never seen
// has an empty one. Called with h.mu held.
func (h *HSM) history(id [16]byte) (*hashsigHistory, error) {
	lockassert.Held(&h.mu)
	rec, err := h.ks.Get(historyID(id))
	if errors.Is(err, keystore.ErrNotFound) {
		return &hashsigHistory{id: id}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("HSS history: %w", err)
	}
	hh, err := parseHistory(rec.Data)
	if err != nil || hh.id != id {
		return nil, errBadHistory
	}
	return hh, nil
}

func (hh *hashsigHistory) overlaps(next, end uint64) bool {
	for _, r := range hh.ranges {
		if next < r[1] && r[0] < end {
			return true
		}
	}
	return false
}

func (hh *hashsigHistory) has(next, end uint64) bool {
	for _, r := range hh.ranges {
		if r[0] == next && r[1] == end {
			return true
		}
	}
	return false
}

// hashsigPresent reports whether an imported HSS part is exactly one this
// HSM received before, under the UUID old still has. Called with h.mu held.
func (h *HSM) hashsigPresent(old, k *key) (bool, error) {
	lockassert.Held(&h.mu)
	if old.hss == nil || old.hss.ID() != k.hss.ID() {
		return false, nil
	}
	hh, err := h.history(k.hss.ID())
	if err != nil {
		return false, err
	}
	next, end := k.hss.Range()
	return hh.has(next, end), nil
}

// hashsigConflict refuses a new HSS part whose identifier a key of this HSM
// (token, or volatile of any session) has, or whose range overlaps anything
// this HSM ever received of that key. Called with h.mu held.
func (h *HSM) hashsigConflict(s *Session, k *key) error {
	lockassert.Held(&h.mu)
	id := k.hss.ID()
	for _, rid := range h.ks.List(kindKey) {
		other, err := h.lookup(s, UUID(rid))
		if err == nil && other.hss != nil && other.hss.ID() == id {
			return fmt.Errorf("%w: key %s holds HSS identifier %x", ErrKeyNameInUse, other.info.UUID, id)
		}
	}
	for _, other := range h.volatile {
		if other.hss != nil && other.hss.ID() == id {
			return fmt.Errorf("%w: a volatile key holds HSS identifier %x", ErrKeyNameInUse, id)
		}
	}
	hh, err := h.history(id)
	if err != nil {
		return err
	}
	if next, end := k.hss.Range(); hh.overlaps(next, end) {
		return fmt.Errorf("%w: this HSM already held signatures [%d, %d) of HSS key %x, or some of them", ErrKeyNameInUse, next, end, id)
	}
	return nil
}

// historyUpdates returns the history records to write, in flash, before the
// given new keys are stored: each HSS key's range added to its identifier's
// history. Called with h.mu held.
func (h *HSM) historyUpdates(keys []*key) ([]keystore.Record, error) {
	lockassert.Held(&h.mu)
	byID := map[[16]byte]*hashsigHistory{}
	var order [][16]byte
	for _, k := range keys {
		if k.hss == nil {
			continue
		}
		id := k.hss.ID()
		hh, ok := byID[id]
		if !ok {
			var err error
			if hh, err = h.history(id); err != nil {
				return nil, err
			}
			byID[id] = hh
			order = append(order, id)
		}
		next, end := k.hss.Range()
		hh.ranges = append(hh.ranges, [2]uint64{next, end})
	}
	recs := make([]keystore.Record, 0, len(order))
	for _, id := range order {
		recs = append(recs, keystore.Record{ID: historyID(id), Kind: kindHashsigHistory, Data: byID[id].marshal()})
	}
	return recs, nil
}
