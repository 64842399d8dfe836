package hsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// How the HSS history (see hashsig.go) is kept in flash.
//
// Every HSS key imported here, volatile ones too, leaves its history for
// good, so it must cost little: the histories of many identifiers share a
// record, a pack (kindHashsigPack), which one flash block holds. A pack
// holds 219 identifiers with one range each (37 bytes apiece), or 476
// ranges of one. An import rewrites the packs it adds to in the keys'
// transaction; a history that outgrows its pack moves to another, in the
// same transaction. Still, someone with the user PIN and this HSM's KEKEK
// can make and import HSS keys until the flash is full, and nothing frees
// that space: the operator watches it (FlashUsage; the CLI's
// hashsig-history).
//
// Packs have UUIDs in a namespace no key can have (isHistoryID): imports
// refuse it and new keys are version 4. Were they in the keys' namespace, a
// key imported under a pack's UUID (or, as older versions named history
// records, one computed from an HSS key's public identifier) would stand in
// the history's way and make imports of those HSS keys fail.
//
// Older versions kept one record per identifier at legacyHistoryID, in the
// keys' namespace: of kind kindHashsigLegacy (apart from the keys) or
// kindHashsigHistory (with them). They are still read, and updated where
// they are: no key can be stored under an ID a record has. A key under
// that ID instead means no such record.
//
// A damaged flash block may have been a pack, and nothing tells which
// signatures it recorded. So while a damaged block may have been one (its
// header names no record, or names one that is not provably something
// else: notHistory), this HSM takes no HSS key part (historyIntact):
// failing closed, as an import that overlaps a lost range could sign twice
// with one index. History records are written with Commit, even alone, so
// that no damage to one byte of one has it taken for a torn write and
// erased without a trace (see package keystore).

// Record kinds of HSS history records in the keystore.
const (
	// kindHashsigLegacy: one identifier's, written by older versions apart
	// from the keys (parseLegacyHistory).
	kindHashsigLegacy keystore.Kind = 3
	// kindHashsigHistory: one identifier's, written by older versions with
	// the keys (marshal).
	kindHashsigHistory keystore.Kind = 5
	// kindHashsigPack: many identifiers' (marshalPack).
	kindHashsigPack keystore.Kind = 6
)

const (
	historyVersion = 2 // of a kindHashsigHistory record
	packVersion    = 1 // of a kindHashsigPack record
)

// historyRange is one range of signature indexes an HSM received.
type historyRange struct {
	next, end uint64
	// unconfirmed: recorded by an older version apart from its key, so
	// perhaps for an import cut short (see hashsig.go).
	unconfirmed bool
}

const rangeUnconfirmed = 1 // flag bit in a stored range

// hashsigHistory is what the HSM ever received of one HSS key.
type hashsigHistory struct {
	id     [16]byte
	ranges []historyRange
	// at is the keystore ID of its record: a pack, or legacyHistoryID(id)
	// for a record of its own an older version wrote; zero until placed.
	at keystore.ID
}

// historyPrefix starts the UUIDs kept for HSS history records (isReserved):
// "HSSHST", then a version field of 0, which no RFC 9562 UUID but the nil
// UUID has. So the HSM's own UUIDs (version 4) never meet it, nor do
// libhal's, and a random 16-byte name (a PKCS#11 CKA_ID used as a UUID)
// does with probability 2^-52.
var historyPrefix = [6]byte{'H', 'S', 'S', 'H', 'S', 'T'}

// isHistoryID reports whether id is in the history records' namespace.
func isHistoryID(id hsmapi.UUID) bool {
	return [6]byte(id[:6]) == historyPrefix && id[6]>>4 == 0
}

// packID names the nth pack.
func packID(n uint64) keystore.ID {
	var id keystore.ID
	copy(id[:], historyPrefix[:])
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

// legacyHistoryID is where versions before packs wrote the history record
// of an HSS identifier: a hash, in the keys' namespace.
func legacyHistoryID(id [16]byte) keystore.ID {
	sum := sha256.Sum256(append([]byte("cryptech-backup HSS history\x00"), id[:]...))
	return keystore.ID(sum[:16])
}

// entrySize is the size of one identifier's history as marshalEntry writes
// it, with n ranges.
func entrySize(n int) int { return 16 + 4 + 17*n }

const packHead = 1 + 4

// marshalEntry encodes: I || u32 n || n × (u64 next || u64 end || u8 flags).
func (hh *hashsigHistory) marshalEntry(b []byte) []byte {
	b = append(b, hh.id[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(hh.ranges)))
	for _, r := range hh.ranges {
		b = binary.BigEndian.AppendUint64(b, r.next)
		b = binary.BigEndian.AppendUint64(b, r.end)
		var flags byte
		if r.unconfirmed {
			flags |= rangeUnconfirmed
		}
		b = append(b, flags)
	}
	return b
}

// parseEntry decodes what marshalEntry wrote at the start of b, returning
// the rest.
func parseEntry(b []byte) (*hashsigHistory, []byte, error) {
	if len(b) < entrySize(0) {
		return nil, nil, errBadHistory
	}
	hh := &hashsigHistory{id: [16]byte(b[:16])}
	n := binary.BigEndian.Uint32(b[16:])
	if uint64(len(b)) < uint64(entrySize(0))+17*uint64(n) {
		return nil, nil, errBadHistory
	}
	b = b[entrySize(0):]
	for range n {
		flags := b[16]
		if flags&^rangeUnconfirmed != 0 {
			return nil, nil, errBadHistory
		}
		hh.ranges = append(hh.ranges, historyRange{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:]), flags&rangeUnconfirmed != 0})
		b = b[17:]
	}
	return hh, b, nil
}

// marshal encodes a record of its own: u8 version || entry.
func (hh *hashsigHistory) marshal() []byte {
	return hh.marshalEntry([]byte{historyVersion})
}

// record is hh's record of its own, where an older version wrote it.
func (hh *hashsigHistory) record() keystore.Record {
	return keystore.Record{ID: hh.at, Kind: kindHashsigHistory, Data: hh.marshal()}
}

// marshalPack encodes: u8 version || u32 count || count × entry.
func marshalPack(entries []*hashsigHistory) []byte {
	b := binary.BigEndian.AppendUint32([]byte{packVersion}, uint32(len(entries)))
	for _, hh := range entries {
		b = hh.marshalEntry(b)
	}
	return b
}

func packSize(entries []*hashsigHistory) int {
	n := packHead
	for _, hh := range entries {
		n += entrySize(len(hh.ranges))
	}
	return n
}

// parsePack decodes a pack, each entry's at set to its ID.
func parsePack(rec keystore.Record) ([]*hashsigHistory, error) {
	b := rec.Data
	if rec.Kind != kindHashsigPack || !isHistoryID(hsmapi.UUID(rec.ID)) || len(b) < packHead || b[0] != packVersion {
		return nil, errBadHistory
	}
	n := binary.BigEndian.Uint32(b[1:])
	b = b[packHead:]
	var out []*hashsigHistory
	for range n {
		hh, rest, err := parseEntry(b)
		if err != nil {
			return nil, err
		}
		hh.at, b = rec.ID, rest
		out = append(out, hh)
	}
	if len(b) != 0 {
		return nil, errBadHistory
	}
	return out, nil
}

var errBadHistory = errors.New("corrupt HSS history record")

// parseHistory decodes a record of one identifier's history, of either
// kind.
func parseHistory(kind keystore.Kind, b []byte) (*hashsigHistory, error) {
	switch {
	case kind == kindHashsigLegacy:
		return parseLegacyHistory(b)
	case kind != kindHashsigHistory, len(b) < 1, b[0] != historyVersion:
		return nil, errBadHistory
	}
	hh, rest, err := parseEntry(b[1:])
	if err != nil || len(rest) != 0 {
		return nil, errBadHistory
	}
	return hh, nil
}

// parseLegacyHistory decodes the older format, which has no version:
// I || u32 n || n × (u64 next || u64 end). Every range is unconfirmed.
func parseLegacyHistory(b []byte) (*hashsigHistory, error) {
	if len(b) < 20 {
		return nil, errBadHistory
	}
	hh := &hashsigHistory{id: [16]byte(b[:16])}
	n := binary.BigEndian.Uint32(b[16:])
	if uint64(len(b)) != 20+16*uint64(n) {
		return nil, errBadHistory
	}
	for i := range int(n) {
		at := 20 + 16*i
		hh.ranges = append(hh.ranges, historyRange{binary.BigEndian.Uint64(b[at:]), binary.BigEndian.Uint64(b[at+8:]), true})
	}
	return hh, nil
}

// readHistory parses a record of one identifier's history, checking that
// it is where that identifier's is.
func readHistory(rec keystore.Record) (*hashsigHistory, error) {
	hh, err := parseHistory(rec.Kind, rec.Data)
	if err != nil || legacyHistoryID(hh.id) != rec.ID {
		return nil, errBadHistory
	}
	hh.at = rec.ID
	return hh, nil
}

// overlapping returns the recorded ranges that meet [next, end).
func (hh *hashsigHistory) overlapping(next, end uint64) []historyRange {
	var out []historyRange
	for _, r := range hh.ranges {
		if next < r.end && r.next < end {
			out = append(out, r)
		}
	}
	return out
}

func (hh *hashsigHistory) has(next, end uint64) bool {
	return slices.ContainsFunc(hh.ranges, func(r historyRange) bool { return r.next == next && r.end == end })
}

// historyBook is the HSS history as one operation sees it, under one hold
// of h.mu: the packs read from flash and the records of their own looked
// up so far. Changes are made to it, then written (records) in the keys'
// transaction; if that fails, the book is dropped, and the flash is as
// before.
type historyBook struct {
	h *HSM
	// packs holds each pack's histories, in their order.
	packs map[keystore.ID][]*hashsigHistory
	// packed is the histories in packs, by identifier.
	packed map[[16]byte]*hashsigHistory
	// byID is every history looked up (get), by identifier.
	byID map[[16]byte]*hashsigHistory
	// own is the records of their own looked up, by ID.
	own map[keystore.ID]*hashsigHistory
	// dirty is the records changed, in the order first changed.
	dirty []keystore.ID
}

// historyBook reads the packs, refusing while a damaged block may have been
// one (historyIntact). Called with h.mu held.
func (h *HSM) historyBook() (*historyBook, error) {
	lockassert.Held(&h.mu)
	if err := h.historyIntact(); err != nil {
		return nil, err
	}
	return h.readPacks()
}

// readPacks reads the packs that can be read. Called with h.mu held.
func (h *HSM) readPacks() (*historyBook, error) {
	lockassert.Held(&h.mu)
	b := &historyBook{h: h, packs: map[keystore.ID][]*hashsigHistory{}, packed: map[[16]byte]*hashsigHistory{},
		byID: map[[16]byte]*hashsigHistory{}, own: map[keystore.ID]*hashsigHistory{}}
	for _, rid := range h.ks.List(kindHashsigPack) {
		rec, err := h.ks.Get(rid)
		if err != nil {
			return nil, fmt.Errorf("HSS history record %s: %w", hsmapi.UUID(rid), err)
		}
		entries, err := parsePack(rec)
		if err != nil {
			return nil, fmt.Errorf("HSS history record %s: %w", hsmapi.UUID(rid), err)
		}
		for _, hh := range entries {
			if _, dup := b.packed[hh.id]; dup {
				return nil, fmt.Errorf("HSS history record %s: %w: HSS key %x's history is in two", hsmapi.UUID(rid), errBadHistory, hh.id)
			}
			b.packed[hh.id] = hh
		}
		b.packs[rid] = entries
	}
	return b, nil
}

// historyIntact refuses, with hsmapi.ErrDamaged, while a damaged flash
// block may have been an HSS history record (see the top of this file).
// Called with h.mu held.
func (h *HSM) historyIntact() error {
	lockassert.Held(&h.mu)
	for _, d := range h.ks.DamagedRecords() {
		if !notHistory(d.Kind, hsmapi.UUID(d.ID)) {
			return fmt.Errorf("%w: flash block %d is damaged, and its record (%s, kind %d) may have been HSS history: %s", hsmapi.ErrDamaged, d.Block, hsmapi.UUID(d.ID), d.Kind, historyLost)
		}
	}
	if blocks := h.ks.DamagedUnnamed(); len(blocks) > 0 {
		return fmt.Errorf("%w: flash block %d is damaged past telling what it held, perhaps HSS history: %s", hsmapi.ErrDamaged, blocks[0], historyLost)
	}
	return nil
}

// historyLost says what a damaged history record means, and what to do.
const historyLost = "this HSM cannot tell which HSS signatures it received, so it imports no HSS key (other keys import). " +
	"The keystore never erases a damaged block: export this HSM's keys to a new HSM and import HSS keys there"

// notHistory reports whether a damaged block whose header names kind and
// id was provably no HSS history record, though the damage may be in the
// header, kind and ID included. It decides by what the block was, not by
// what history looks like: a damaged pack's ID may have left the history's
// namespace (the damage in the ID), a damaged record's kind may read as
// any other. So both must name something else, and no one damaged field
// makes a history record name both:
//
//   - a key (kindKey) at an ID no record of the HSM's own has: a pack
//     damaged in its kind keeps its reserved ID, one damaged in its ID
//     keeps its kind. A record an older version wrote for one identifier,
//     in the keys' namespace, damaged in its kind reads as a key; but its
//     ID is intact, so looking up that identifier's history (ownHistory)
//     meets the damaged block and refuses, and it held no other's.
//   - a PIN record at a PIN's ID, the flash size record at its ID: IDs no
//     history record has.
//   - an HSS tree cache part (kindHSSCache) at an ID of their namespace
//     (isCacheID), which is not the history's.
//
// Anything else may have been history: a block of a history kind or of a
// kind this HSM does not write, and a key kind at a reserved ID. Refusing
// HSS imports while any block is damaged would be simpler still, but a
// damaged RSA key would then stop every HSS import though it cannot hide a
// history; it takes a second, independent damage (kind and ID) to hide a
// pack.
func notHistory(kind keystore.Kind, id hsmapi.UUID) bool {
	switch kind {
	case kindKey:
		return !isReserved(id)
	case kindPIN:
		u := hsmapi.User(id[15])
		return keystore.ID(id) == pinID(u) && (u == hsmapi.UserNormal || u == hsmapi.UserSO || u == hsmapi.UserWheel)
	case kindFlash:
		return keystore.ID(id) == flashID
	case kindHSSCache:
		// A pack damaged in its kind keeps its ID, one damaged in its ID
		// its kind: neither reads as both.
		return isCacheID(id)
	}
	return false
}

// get returns the history of id: in a pack, in a record of its own an
// older version wrote, or a new one, empty and not placed.
func (b *historyBook) get(id [16]byte) (*hashsigHistory, error) {
	if hh, ok := b.byID[id]; ok {
		return hh, nil
	}
	own, err := b.h.ownHistory(id)
	if err != nil {
		return nil, err
	}
	hh, packed := b.packed[id]
	switch {
	case own != nil && packed:
		return nil, fmt.Errorf("%w: HSS key %x's history is in two records", errBadHistory, id)
	case own != nil:
		hh = own
		b.own[own.at] = own
	case !packed:
		hh = &hashsigHistory{id: id}
	}
	b.byID[id] = hh
	return hh, nil
}

// ownHistory reads the record of its own an older version wrote for id, if
// there is one. Called with h.mu held.
func (h *HSM) ownHistory(id [16]byte) (*hashsigHistory, error) {
	lockassert.Held(&h.mu)
	rec, err := h.ks.Get(legacyHistoryID(id))
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return nil, nil
	case errors.Is(err, hsmapi.ErrDamaged):
		// Whatever its header now says it is (notHistory).
		return nil, fmt.Errorf("HSS history of %x: %w: %s", id, err, historyLost)
	case err != nil:
		return nil, fmt.Errorf("HSS history of %x: %w", id, err)
	case rec.Kind != kindHashsigLegacy && rec.Kind != kindHashsigHistory:
		return nil, nil // a key has this UUID, as any key may
	}
	hh, err := readHistory(rec)
	if err != nil || hh.id != id {
		return nil, errBadHistory
	}
	return hh, nil
}

// add records a range in the history hh (from get), placing a new history
// in a pack, and moving one that outgrew its pack to another.
func (b *historyBook) add(hh *hashsigHistory, r historyRange) error {
	hh.ranges = append(hh.ranges, r)
	entries, packed := b.packs[hh.at]
	switch {
	case hh.at == keystore.ID{}:
		return b.place(hh)
	case !packed, packSize(entries) <= keystore.MaxDataSize:
		b.touch(hh.at)
		return nil
	}
	// Out of its pack, in the same transaction. A pack left empty stays,
	// and is filled first.
	b.packs[hh.at] = slices.DeleteFunc(entries, func(e *hashsigHistory) bool { return e == hh })
	b.touch(hh.at)
	return b.place(hh)
}

// place puts a history in the first pack with room for it, or a new one.
func (b *historyBook) place(hh *hashsigHistory) error {
	size := entrySize(len(hh.ranges))
	if packHead+size > keystore.MaxDataSize {
		return fmt.Errorf("%w: the history of HSS key %x would have %d ranges, more than a flash block holds", hsmapi.ErrKeystoreFull, hh.id, len(hh.ranges))
	}
	ids := slices.SortedFunc(maps.Keys(b.packs), func(x, y keystore.ID) int { return bytes.Compare(x[:], y[:]) })
	for _, pid := range ids {
		if packSize(b.packs[pid])+size <= keystore.MaxDataSize {
			b.packs[pid] = append(b.packs[pid], hh)
			hh.at = pid
			b.touch(pid)
			return nil
		}
	}
	// The first pack ID no record has: an older version's key may have
	// one.
	for n := uint64(1); ; n++ {
		pid := packID(n)
		if _, ok := b.packs[pid]; ok {
			continue
		}
		if _, err := b.h.ks.Get(pid); !errors.Is(err, keystore.ErrNotFound) {
			continue
		}
		b.packs[pid] = []*hashsigHistory{hh}
		hh.at = pid
		b.touch(pid)
		return nil
	}
}

func (b *historyBook) touch(id keystore.ID) {
	if !slices.Contains(b.dirty, id) {
		b.dirty = append(b.dirty, id)
	}
}

// records returns the records changed, to store.
func (b *historyBook) records() []keystore.Record {
	recs := make([]keystore.Record, 0, len(b.dirty))
	for _, id := range b.dirty {
		if entries, ok := b.packs[id]; ok {
			recs = append(recs, keystore.Record{ID: id, Kind: kindHashsigPack, Data: marshalPack(entries)})
		} else {
			recs = append(recs, b.own[id].record())
		}
	}
	return recs
}

// all returns every history: those in packs and those in records of their
// own, which it reads.
func (b *historyBook) all() ([]*hashsigHistory, error) {
	out := slices.Collect(maps.Values(b.packed))
	for _, rid := range append(b.h.ks.List(kindHashsigLegacy), b.h.ks.List(kindHashsigHistory)...) {
		rec, err := b.h.ks.Get(rid)
		if err != nil {
			return nil, fmt.Errorf("HSS history record %x: %w", rid, err)
		}
		hh, err := readHistory(rec)
		if err != nil {
			return nil, fmt.Errorf("HSS history record %x: %w", rid, err)
		}
		out = append(out, hh)
	}
	slices.SortFunc(out, func(x, y *hashsigHistory) int { return bytes.Compare(x.id[:], y.id[:]) })
	return out, nil
}

// FlashUsage is what an HSM's flash holds, in 8 KiB blocks.
type FlashUsage struct {
	Blocks, Free, Damaged int
	// The HSS history (see [HSM.HashsigOrphans]): the HSS keys it has
	// ranges of, the ranges, and the blocks its records take. A block
	// holds the history of up to 219 keys; nothing frees it.
	HistoryKeys, HistoryRanges, HistoryBlocks int
	// CacheBlocks hold HSS keys' tree caches (hashsig_cache.go): the
	// HSM frees them when keys need the room.
	CacheBlocks int
}

// FlashUsage reports how the flash is used. It needs no login and no
// master key: the HSS history is not sealed.
func (h *HSM) FlashUsage() (FlashUsage, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := h.readPacks()
	if err != nil {
		return FlashUsage{}, err
	}
	all, err := b.all()
	if err != nil {
		return FlashUsage{}, err
	}
	u := FlashUsage{Blocks: h.board.Flash.Blocks(), Free: h.ks.Free(), Damaged: len(h.ks.Damaged()), HistoryKeys: len(all),
		HistoryBlocks: len(b.packs) + len(h.ks.List(kindHashsigLegacy)) + len(h.ks.List(kindHashsigHistory)),
		CacheBlocks:   len(h.ks.List(kindHSSCache))}
	for _, hh := range all {
		u.HistoryRanges += len(hh.ranges)
	}
	return u, nil
}
