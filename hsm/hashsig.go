package hsm

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/internal/shellquote"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// An HSS key must never sign twice with one index, and two HSMs hold
// disjoint parts of one key. Within one HSM, two dangers remain: the same
// part arriving twice (under two UUIDs, or again after the first copy was
// deleted, or as a volatile key and then a token key), and a different part
// of a key the HSM already holds. So the HSM refuses a part whose identifier
// a key it holds already has (hsmapi.ErrHashsigRangeUsed; libhal's
// KEY_NAME_IN_USE), and remembers, in history records kept in flash for good
// (history.go), every index range it ever imported of that identifier,
// refusing a part that overlaps any of them. The one exception is an import of exactly a range it
// received before, under the UUID that key still has: that is re-running an
// import, reported present and left alone.
//
// An import stores the history records and the keys in one keystore
// transaction (keystore.Commit): after a power cut, both or neither.
//
// Keys generated here need no history. While such a key exists it holds
// its identifier, and every part of it is refused. Once it is deleted, the
// indexes it may have used never left the HSM: Split persists the key's
// shrunken range before it hands out a part, and the parts handed out start
// at or above the key's persisted state, so this HSM never signed with them.
// Such a part comes back only as a bundle wrapped to this HSM's KEKEK, that
// is, as any part of any key would; importing it records its range, and a
// second import of it is refused. So no index this HSM signed with can come
// back through a generated key. (A key record damaged in flash does not
// change this: its range and its parts' are still disjoint.)
//
// Versions before that wrote each history record (of kind
// kindHashsigLegacy) in a write of its own before the keys, for imported
// and generated keys alike. A power cut in between left a history record
// and no key, and nothing on the flash tells that apart from a key
// imported, then deleted: both are a history record whose identifier no
// key holds, and a Delete leaves no trace. So:
//
//   - The ranges of legacy records are "unconfirmed". An import that
//     overlaps one is refused, with an error that says what may have
//     happened and names the way out: the operator, who knows whether that
//     key was ever imported and used here, forgets the range offline
//     ([HSM.HashsigOrphans], [HSM.ForgetHashsigRange]; the CLI's
//     hashsig-history command). Ranges recorded with their keys, in one
//     transaction, cannot be forgotten.
//   - A legacy record holding one range [0, 2^h) is a generated key's (an
//     imported part starts above 0: Split hands out the upper parts), so
//     useless; Open deletes those whose identifier no key holds, when it can
//     read every key (master key present, no damaged key record). A
//     hand-made bundle of a whole, unsplit key imported by an older version
//     and deleted since looks the same; such a bundle can be imported into
//     any HSM, so the history never protected its indexes from it anyway.

// hashsigPresent reports whether an imported HSS part is exactly one this
// HSM received before, and the key old, under its UUID, is that part. Called
// with h.mu held, k not yet shared.
func (h *HSM) hashsigPresent(b *historyBook, old, k *key) (bool, error) {
	lockassert.Held(&h.mu)
	if old.hss == nil || old.hss.ID() != k.hss.ID() {
		return false, nil
	}
	hh, err := b.get(k.hss.ID())
	if err != nil {
		return false, err
	}
	next, end := k.hss.Range()
	if !hh.has(next, end) {
		return false, nil
	}
	// old may be another part of the same key, imported under this UUID
	// once this one was deleted. The ranges recorded do not overlap (an
	// import that overlaps one is refused), and old holds a part of the
	// one it was imported as: so that is the one recorded range that holds
	// where old started here, and it must be this part's. (A key exhausted
	// where two recorded ranges meet is in both, and not told apart.)
	var in []historyRange
	for _, r := range hh.ranges {
		if r.next <= old.hssFrom[0] && old.hssFrom[1] <= r.end {
			in = append(in, r)
		}
	}
	return len(in) == 1 && in[0].next == next && in[0].end == end, nil
}

// hashsigConflict says why a new HSS part may not be stored ("" if it may):
// a key of this HSM (token, or volatile of any session) has its identifier,
// or its range overlaps something this HSM ever received of that key.
// Called with h.mu held, k not yet shared.
func (h *HSM) hashsigConflict(b *historyBook, k *key) (string, error) {
	lockassert.Held(&h.mu)
	id := k.hss.ID()
	held, _, err := h.hashsigHolders(map[[16]byte]bool{id: true})
	if err != nil {
		return "", err
	}
	if other, ok := held[id]; ok {
		return fmt.Sprintf("key %s holds a part of HSS key %x, and one HSM holds one part of an HSS key at a time", other, id), nil
	}
	hh, err := b.get(id)
	if err != nil {
		return "", err
	}
	next, end := k.hss.Range()
	seen := hh.overlapping(next, end)
	if len(seen) == 0 {
		return "", nil
	}
	var unconfirmed []string
	for _, r := range seen {
		if r.unconfirmed {
			unconfirmed = append(unconfirmed, fmt.Sprintf("cryptech-backup hashsig-history --hsm %s --forget %x:%d-%d", shellquote.Quote(h.dir()), id, r.next, r.end))
		}
	}
	if len(unconfirmed) == 0 {
		return fmt.Sprintf("signatures [%d, %d) of HSS key %x, or some of them, were imported before and deleted since; importing them again could sign twice with one index",
			next, end, id), nil
	}
	return fmt.Sprintf("signatures [%d, %d) of HSS key %x, or some of them, by a record an older version wrote apart from the key: "+
		"an import of them was cut short, or they were imported and the key deleted since, and the HSM cannot tell which. "+
		"If no key of this HSM ever signed with them, forget the record with the HSM offline (%s) and import again",
		next, end, id, strings.Join(unconfirmed, "; ")), nil
}

// dir is the HSM's state directory, absolute if it can be, for the commands
// messages name.
func (h *HSM) dir() string {
	if abs, err := filepath.Abs(h.board.Dir); err == nil {
		return abs
	}
	return h.board.Dir
}

// historyUpdates returns the history records to store with the given
// imported keys, in the same keystore transaction: each HSS key's range
// added to its identifier's history. Called with h.mu held, the keys not
// yet shared.
func (h *HSM) historyUpdates(b *historyBook, keys []*key) ([]keystore.Record, error) {
	lockassert.Held(&h.mu)
	for _, k := range keys {
		if k.hss == nil {
			continue
		}
		hh, err := b.get(k.hss.ID())
		if err != nil {
			return nil, err
		}
		next, end := k.hss.Range()
		if err := b.add(hh, historyRange{next: next, end: end}); err != nil {
			return nil, err
		}
	}
	return b.records(), nil
}

// hashsigHolders returns the UUID of a private key that holds each HSS
// identifier, looking at keys held in memory and unsealing the other token
// key records, until every identifier in want is found (want nil: all).
// It returns the key records it could not read (damaged, or not opening
// under the master key) too: any of them may hold an identifier. Called
// with h.mu held.
func (h *HSM) hashsigHolders(want map[[16]byte]bool) (map[[16]byte]hsmapi.UUID, []hsmapi.UUID, error) {
	lockassert.Held(&h.mu)
	// Without the master key no record can be read (ErrTamper).
	mk, err := h.masterKey()
	if err != nil {
		return nil, nil, err
	}
	clear(mk)
	held := map[[16]byte]hsmapi.UUID{}
	found := func(id [16]byte, u hsmapi.UUID) bool {
		if _, dup := held[id]; !dup && (want == nil || want[id]) {
			held[id] = u
		}
		return want != nil && len(held) == len(want)
	}
	for id, k := range h.volatile {
		if k.hss != nil && found(k.hss.ID(), id) {
			return held, nil, nil
		}
	}
	// A damaged block may be a key's, unless it is the HSM's own.
	var unreadable []hsmapi.UUID
	for _, kid := range h.ks.DamagedIDs() {
		if !isReserved(hsmapi.UUID(kid)) {
			unreadable = append(unreadable, hsmapi.UUID(kid))
		}
	}
	for _, rid := range h.ks.List(kindKey) {
		id := hsmapi.UUID(rid)
		if k, ok := h.cache[id]; ok {
			if k.hss != nil && found(k.hss.ID(), id) {
				return held, nil, nil
			}
			continue
		}
		hid, ok, err := h.recordHashsigID(id)
		if errors.Is(err, hsmapi.ErrTamper) {
			return nil, nil, err
		}
		if err != nil {
			unreadable = append(unreadable, id)
			continue
		}
		if ok && found(hid, id) {
			return held, nil, nil
		}
	}
	return held, unreadable, nil
}

// recordHashsigID reads the token key record id and returns the HSS
// identifier of its private key, if it is one, without loading the key.
// Called with h.mu held.
func (h *HSM) recordHashsigID(id hsmapi.UUID) ([16]byte, bool, error) {
	lockassert.Held(&h.mu)
	rec, err := h.ks.Get(keystore.ID(id))
	if err != nil {
		return [16]byte{}, false, err
	}
	r, err := h.unseal(id, rec.Data)
	if err != nil {
		return [16]byte{}, false, err
	}
	defer r.wipe()
	if r.typ != hsmapi.KeyTypeHashsigPrivate {
		return [16]byte{}, false, nil
	}
	pub, err := hashsig.ParsePKIXPublicKey(r.public)
	if err != nil {
		return [16]byte{}, false, err
	}
	_, hid := pub.Top()
	return hid, true, nil
}

// isKeygenRange reports whether [next, end) is the whole range of a new HSS
// key: [0, 2^h) for a total height h, a multiple of 5 (every LMS height
// is), saturating at 2^64-1 as package hashsig does.
func isKeygenRange(next, end uint64) bool {
	if next != 0 {
		return false
	}
	if end == math.MaxUint64 {
		return true
	}
	h := bits.TrailingZeros64(end)
	return bits.OnesCount64(end) == 1 && h >= 5 && h%5 == 0
}

// reclaimKeygenHistory deletes the legacy history records of generated keys
// whose identifier no key holds (see the top of this file): what a power
// cut during keygen left behind with older versions. Open calls it; it
// reads the key records only when there is such a record, and leaves
// everything as it is unless it can read every key record.
func (h *HSM) reclaimKeygenHistory() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	candidates := map[[16]byte]bool{}
	at := map[[16]byte]keystore.ID{}
	for _, rid := range h.ks.List(kindHashsigLegacy) {
		rec, err := h.ks.Get(rid)
		if err != nil {
			continue
		}
		hh, err := readHistory(rec)
		if err == nil && len(hh.ranges) == 1 && isKeygenRange(hh.ranges[0].next, hh.ranges[0].end) {
			candidates[hh.id], at[hh.id] = true, rid
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	// Unless every key can be read (no tamper, no damage), leave it all.
	held, unreadable, err := h.hashsigHolders(candidates)
	if err != nil || len(unreadable) > 0 {
		return nil
	}
	for id := range candidates {
		if _, ok := held[id]; ok {
			continue
		}
		if err := h.ks.Delete(at[id]); err != nil {
			return fmt.Errorf("reclaim the HSS history of a generated key: %w", err)
		}
	}
	return nil
}

// HashsigRange is a range of signature indexes [Next, End) of an HSS key.
type HashsigRange struct {
	Next, End uint64
	// Unconfirmed: recorded by an older version in a write of its own,
	// before the key: perhaps for an import that a crash cut short, which
	// [HSM.ForgetHashsigRange] can forget.
	Unconfirmed bool
}

// HashsigHistory is what an HSM remembers of the parts of an HSS key it
// received: its identifier (I) and the ranges.
type HashsigHistory struct {
	ID     [16]byte
	Ranges []HashsigRange
}

// ErrHashsigKeysUnreadable: some keystore records cannot be read (damaged
// blocks, any of which may be a key's, or keys that do not open under the
// master key), so the HSM cannot tell which HSS identifiers its keys hold.
var ErrHashsigKeysUnreadable = errors.New("some keystore records that may be keys cannot be read")

// HashsigOrphans lists the HSS history records whose identifier no key of
// the HSM holds: the parts of keys imported and deleted since, and, from
// older versions, imports a crash cut short (their ranges Unconfirmed). It
// is for the operator of the HSM's state directory, with the HSM offline
// (no session; the CLI's hashsig-history command). It needs the master key
// (ErrTamper) and every key record readable (ErrHashsigKeysUnreadable).
func (h *HSM) HashsigOrphans() ([]HashsigHistory, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	held, err := h.readableHolders()
	if err != nil {
		return nil, fmt.Errorf("HSS history: %w", err)
	}
	b, err := h.readPacks()
	if err != nil {
		return nil, err
	}
	all, err := b.all()
	if err != nil {
		return nil, err
	}
	var out []HashsigHistory
	for _, hh := range all {
		if _, ok := held[hh.id]; !ok {
			out = append(out, hh.export())
		}
	}
	return out, nil
}

// readableHolders is hashsigHolders for every identifier, refusing when a
// key record cannot be read. Called with h.mu held.
func (h *HSM) readableHolders() (map[[16]byte]hsmapi.UUID, error) {
	lockassert.Held(&h.mu)
	held, unreadable, err := h.hashsigHolders(nil)
	if err != nil {
		return nil, err
	}
	if len(unreadable) > 0 {
		return nil, fmt.Errorf("%w: %d of them, %s first", ErrHashsigKeysUnreadable, len(unreadable), unreadable[0])
	}
	return held, nil
}

func (hh *hashsigHistory) export() HashsigHistory {
	out := HashsigHistory{ID: hh.id}
	for _, r := range hh.ranges {
		out.Ranges = append(out.Ranges, HashsigRange{Next: r.next, End: r.end, Unconfirmed: r.unconfirmed})
	}
	return out
}

// ErrHashsigConfirmed: a history range was stored with its key, so the key
// was imported, and may have signed; forgetting it could let this HSM sign
// twice with one index.
var ErrHashsigConfirmed = errors.New("the range was recorded with its key: the key was imported here and may have signed with it")

// ForgetHashsigRange removes the unconfirmed range [next, end) from the
// history of HSS identifier id, so that a part of that key covering it can
// be imported again. It is the operator's decision that no key of this HSM
// ever signed with that range (the import that recorded it was cut short by
// a crash, see HashsigRange), taken with the HSM offline, as for
// HashsigOrphans.
//
// It refuses, changing nothing: a range not recorded (ErrKeyNotFound), a
// range recorded with its key (ErrHashsigConfirmed), an identifier a key of
// this HSM holds (hsmapi.ErrHashsigRangeUsed), and an HSM whose keys it cannot all
// read (ErrTamper, ErrHashsigKeysUnreadable).
func (h *HSM) ForgetHashsigRange(id [16]byte, next, end uint64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.forgetHashsigRange(id, next, end); err != nil {
		return fmt.Errorf("forget signatures [%d, %d) of HSS key %x: %w", next, end, id, err)
	}
	return nil
}

// forgetHashsigRange is ForgetHashsigRange. Called with h.mu held.
func (h *HSM) forgetHashsigRange(id [16]byte, next, end uint64) error {
	lockassert.Held(&h.mu)
	b, err := h.readPacks()
	if err != nil {
		return err
	}
	hh, err := b.get(id)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(hh.ranges, func(r historyRange) bool { return r.next == next && r.end == end })
	if i < 0 {
		return fmt.Errorf("%w: this HSM has no such record", hsmapi.ErrKeyNotFound)
	}
	if !hh.ranges[i].unconfirmed {
		return ErrHashsigConfirmed
	}
	held, err := h.readableHolders()
	if err != nil {
		return err
	}
	if other, ok := held[id]; ok {
		return fmt.Errorf("%w: key %s holds a part of this HSS key, and may sign with them", hsmapi.ErrHashsigRangeUsed, other)
	}
	// Unconfirmed ranges are in records of their own only: packs hold
	// ranges recorded with their keys.
	hh.ranges = slices.Delete(hh.ranges, i, i+1)
	if len(hh.ranges) == 0 {
		return h.ks.Delete(hh.at)
	}
	// A Commit, as every history record is written (see HSM.store).
	return h.ks.Commit(nil, []keystore.Record{hh.record()})
}
