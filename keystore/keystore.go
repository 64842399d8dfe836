package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/sim"
)

// ID names a record.
type ID [16]byte

// Kind tells the caller's record types apart (keys, PINs, ...). Zero is not
// a valid kind.
type Kind uint8

// Record is one entry of the keystore.
type Record struct {
	ID   ID
	Kind Kind
	Data []byte
}

var (
	ErrNotFound = errors.New("keystore: record not found")
	ErrExists   = errors.New("keystore: record already exists")
	ErrFull     = errors.New("keystore: no free flash blocks")
	ErrTooLarge = errors.New("keystore: record too large for a flash block")
)

// errBadKind reports a record of kind 0.
var errBadKind = errors.New("keystore: record kind 0 is not valid")

// MaxDataSize is the largest Data a record can hold. The block header takes
// 44 bytes; the other 20 are kept for later header fields.
const MaxDataSize = sim.BlockSize - 64

// Store is a keystore on one flash chip. It is safe for concurrent use.
//
// When a flash write fails (a power cut, an I/O error), the store stops:
// every later Get, Create, Put, PutAll, Commit and Delete returns that error, since
// only a new Open can tell what reached the chip.
type Store struct {
	// mu serializes every call. Callers may hold their own locks across a
	// call (the HSM holds its own); under mu the store takes no lock but
	// the flash file's, and calls nothing of its callers.
	mu         sync.Mutex
	flash      *sim.Flash
	index      map[ID]entry
	free       []int           // erased blocks, used oldest-freed first
	seq        uint64          // last number given; at Open, the valid blocks' highest
	corrupt    []int           // damaged blocks found by Open, sorted; never written
	corruptIDs map[ID]int      // IDs named by damaged blocks: the lowest block
	named      []DamagedRecord // damaged blocks whose header names an ID, by block
	unnamed    []int           // damaged blocks whose header names no ID, sorted
	failed     error
}

// entry locates a record.
type entry struct {
	block int
	kind  Kind
}

// Open scans flash, recovers from any interrupted operation and returns the
// store. Damaged blocks do not make it fail: it leaves them as they are and
// reports them by Damaged and DamagedIDs (see the package documentation).
func Open(f *sim.Flash) (*Store, error) {
	if f == nil {
		return nil, errors.New("keystore: open: no flash")
	}
	slots, maxSeq, err := scan(f)
	if err != nil {
		return nil, err
	}
	if clean(slots) != nil {
		r := &recoverer{f: f, slots: slots, maxSeq: maxSeq}
		if err := r.run(); err != nil {
			return nil, err
		}
		// Read back what recovery left rather than trusting its bookkeeping.
		// A block corrupt in the first scan stays corrupt though recovery
		// may have erased every valid block numbered above it.
		slots, maxSeq, err = scanAbove(f, maxSeq)
		if err != nil {
			return nil, err
		}
		maxSeq = max(maxSeq, r.maxSeq)
		if err := clean(slots); err != nil {
			return nil, fmt.Errorf("keystore: open: recovery left an unclean chip: %s", err)
		}
	}
	s := &Store{flash: f, index: make(map[ID]entry), seq: maxSeq, corruptIDs: make(map[ID]int)}
	for i, sl := range slots {
		switch sl.class {
		case classErased:
			s.free = append(s.free, i)
		case classDamaged:
			s.corrupt = append(s.corrupt, i)
			if _, dup := s.corruptIDs[sl.hdr.id]; sl.named && !dup {
				s.corruptIDs[sl.hdr.id] = i
			}
			if sl.named {
				s.named = append(s.named, DamagedRecord{Block: i, ID: sl.hdr.id, Kind: sl.hdr.kind})
			} else {
				s.unnamed = append(s.unnamed, i)
			}
		default:
			s.index[sl.hdr.id] = entry{block: i, kind: sl.hdr.kind}
		}
	}
	return s, nil
}

// Damaged returns the numbers of the damaged blocks that Open found, sorted.
//
// A damaged block fails its CRC or does not parse, yet cannot be the write
// that a power cut interrupted (the package documentation gives the rule), so
// it once held complete data, likely a committed record. The store leaves it
// exactly as it is: it never erases it, reuses it or counts it as free, and
// keeps it out of Get, List and Delete (see DamagedIDs). What to do with it
// (copy the image for analysis, restore the key from a backup, erase the
// block) is the operator's decision; the store has no call that erases it.
//
// The list is fixed at Open: a record's block that goes bad later is reported
// by Get (ErrDamaged), and here after the next Open.
func (s *Store) Damaged() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.corrupt)
}

// DamagedIDs returns the IDs named by the headers of the damaged blocks that
// Damaged lists, sorted, so that callers can tell which records are damaged.
//
// It is best effort. An ID is taken only from a record header whose own
// fields are sane (status, type, kind, reserved byte, sequence number,
// length), but the CRC covers header and data together, so the damage may be
// in the ID itself; and a block whose header is too damaged names no ID.
//
// Get of a listed ID that has no valid record returns ErrDamaged rather than
// ErrNotFound, and Delete of it returns ErrDamaged. Create, Put, PutAll and
// Commit refuse a listed ID with ErrDamaged rather than write a second
// record with that ID. Should a listed ID also have a valid record (the damaged block
// being an older copy), Get returns that record and Delete removes it.
func (s *Store) DamagedIDs() []ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := slices.Collect(maps.Keys(s.corruptIDs))
	slices.SortFunc(ids, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

// DamagedUnnamed returns the damaged blocks (see Damaged) whose header is
// too damaged to name an ID, sorted: what they held is unknown, so a caller
// that must not miss a record of some kind can tell that one may be there.
func (s *Store) DamagedUnnamed() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.unnamed)
}

// DamagedRecord is a damaged block (see Damaged) whose header names a
// record: the ID and kind it claims, as they read. Neither is checked: the
// damage may be in either (see DamagedIDs).
type DamagedRecord struct {
	Block int
	ID    ID
	Kind  Kind
}

// DamagedRecords returns the damaged blocks whose header names a record,
// sorted by block (the others are DamagedUnnamed), with the ID and kind
// each claims, so that a caller that must not miss a record of some kind
// can tell which damaged blocks may have been one.
func (s *Store) DamagedRecords() []DamagedRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.named)
}

// damaged returns an ErrDamaged error if a damaged block names id. Called
// with s.mu held.
func (s *Store) damaged(id ID) error {
	lockassert.Held(&s.mu)
	if blk, ok := s.corruptIDs[id]; ok {
		return fmt.Errorf("%w: block %d holds a damaged record with this ID", ErrDamaged, blk)
	}
	return nil
}

// usable returns the error that stopped the store, if any. Called with s.mu
// held.
func (s *Store) usable() error {
	lockassert.Held(&s.mu)
	if s.failed != nil {
		return fmt.Errorf("keystore: stopped after a failed write, reopen: %w", s.failed)
	}
	return nil
}

// fail stops the store. Called with s.mu held.
func (s *Store) fail(err error) error {
	lockassert.Held(&s.mu)
	s.failed = err
	return err
}

// Get returns the record with the given id. It returns ErrNotFound if there
// is none, and ErrDamaged if the record's block is damaged or if, though no
// valid record has this id, a damaged block names it (see DamagedIDs).
func (s *Store) Get(id ID) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return Record{}, err
	}
	e, ok := s.index[id]
	if !ok {
		if err := s.damaged(id); err != nil {
			return Record{}, fmt.Errorf("keystore: get: %w", err)
		}
		return Record{}, ErrNotFound
	}
	var hdr [headerSize]byte
	if err := s.flash.Read(e.block, 0, hdr[:]); err != nil {
		return Record{}, fmt.Errorf("keystore: get: %w", err)
	}
	b, n, err := parseHeader(hdr[:])
	if err != nil {
		return Record{}, fmt.Errorf("keystore: get: block %d: %w", e.block, err)
	}
	data := make([]byte, n)
	if err := s.flash.Read(e.block, headerSize, data); err != nil {
		return Record{}, fmt.Errorf("keystore: get: %w", err)
	}
	switch {
	case blockCRC(hdr[:], data) != storedCRC(hdr[:]):
		err = fmt.Errorf("%w: bad CRC", ErrDamaged)
	case b.status != statusLive || b.typ != typeRecord || b.id != id || b.kind != e.kind:
		err = fmt.Errorf("%w: block does not hold this record", ErrDamaged)
	}
	if err != nil {
		clear(data)
		return Record{}, fmt.Errorf("keystore: get: block %d: %w", e.block, err)
	}
	return Record{ID: id, Kind: b.kind, Data: data}, nil
}

// List returns the IDs of every record of the given kind, sorted.
func (s *Store) List(kind Kind) []ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []ID
	for id, e := range s.index {
		if e.kind == kind {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

// check validates a record before anything is written.
func check(r *Record) error {
	if r.Kind == 0 {
		return errBadKind
	}
	if len(r.Data) > MaxDataSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(r.Data), MaxDataSize)
	}
	return nil
}

// takeFree removes and returns the free block that has been free longest;
// s.free is not empty. Called with s.mu held.
func (s *Store) takeFree() int {
	lockassert.Held(&s.mu)
	b := s.free[0]
	s.free = s.free[1:]
	return b
}

// program writes a new block image into the erased block blk. Called with
// s.mu held.
func (s *Store) program(blk int, b *block) error {
	lockassert.Held(&s.mu)
	img := b.encode()
	defer clear(img)
	return s.flash.Program(blk, 0, img)
}

// writeNew writes r, whose ID is in no block, as one live block and syncs:
// one program operation, which a power cut either completed or left torn (and
// Open erases a torn one). A block is free; op names the caller in errors.
// Called with s.mu held.
func (s *Store) writeNew(op string, r *Record) error {
	lockassert.Held(&s.mu)
	blk := s.takeFree()
	s.seq++
	b := block{status: statusLive, typ: typeRecord, kind: r.Kind, seq: s.seq, id: r.ID, data: r.Data}
	if err := s.program(blk, &b); err != nil {
		return s.fail(fmt.Errorf("keystore: %s: write block %d: %w", op, blk, err))
	}
	if err := s.flash.Sync(); err != nil {
		return s.fail(fmt.Errorf("keystore: %s: %w", op, err))
	}
	s.index[r.ID] = entry{block: blk, kind: r.Kind}
	return nil
}

// Create stores a new record; it is durable when Create returns. It fails
// with ErrExists if a record with that ID is present, and with ErrDamaged if a
// damaged block names the ID (see DamagedIDs), writing nothing in either case:
// unlike Put, it can never replace a record.
//
// It is one program operation and one sync, like Put of a new ID.
func (s *Store) Create(r Record) error {
	if err := check(&r); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if _, ok := s.index[r.ID]; ok {
		return ErrExists
	}
	if err := s.damaged(r.ID); err != nil {
		return fmt.Errorf("keystore: create: %w", err)
	}
	if len(s.free) == 0 {
		return ErrFull
	}
	return s.writeNew("create", &r)
}

// Put creates or replaces one record; it is durable when Put returns. Use
// Create for a record that must be new. Put fails with ErrDamaged, writing
// nothing, if a damaged block names the ID (see DamagedIDs).
//
// A new record is one program operation. Replacing a record marks the old
// block as a tombstone, writes the new block, syncs, then erases the old
// block; a power cut anywhere leaves the old or the new record (see Open).
func (s *Store) Put(r Record) error {
	if err := check(&r); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.damaged(r.ID); err != nil {
		return fmt.Errorf("keystore: put: %w", err)
	}
	if len(s.free) == 0 {
		return ErrFull
	}
	return s.put("put", &r)
}

// put writes r, new or replacing the record with its ID, as Put does. r's
// ID is named by no damaged block and a block is free; op names the caller
// in errors. Called with s.mu held.
func (s *Store) put(op string, r *Record) error {
	lockassert.Held(&s.mu)
	old, exists := s.index[r.ID]
	if !exists {
		return s.writeNew(op, r)
	}
	blk := s.takeFree()
	s.seq++
	b := block{status: statusLive, typ: typeRecord, kind: r.Kind, seq: s.seq, id: r.ID, data: r.Data}
	if err := s.flash.Program(old.block, offStatus, []byte{statusTombstone}); err != nil {
		return s.fail(fmt.Errorf("keystore: %s: mark block %d: %w", op, old.block, err))
	}
	if err := s.program(blk, &b); err != nil {
		return s.fail(fmt.Errorf("keystore: %s: write block %d: %w", op, blk, err))
	}
	// Commit point. Had the tombstone not reached the disk, the new block
	// would still win on its higher sequence number.
	if err := s.flash.Sync(); err != nil {
		return s.fail(fmt.Errorf("keystore: %s: %w", op, err))
	}
	s.index[r.ID] = entry{block: blk, kind: r.Kind}
	// Not synced: should it be lost, Open erases the tombstone anyway.
	if err := s.flash.Erase(old.block); err != nil {
		return s.fail(fmt.Errorf("keystore: %s: erase block %d: %w", op, old.block, err))
	}
	s.free = append(s.free, old.block)
	return nil
}

// PutAll creates several new records atomically: it is Commit(rs, nil).
func (s *Store) PutAll(rs []Record) error { return s.Commit(rs, nil) }

// Commit stores several records atomically: after a power cut, either all
// of them are as given or none has changed. The records in create must be
// new (ErrExists otherwise, and nothing is written); those in put are new
// or replace the record with their ID. No ID may be given twice, and none
// may be named by a damaged block (ErrDamaged otherwise, see DamagedIDs).
//
// It needs a free block per record and one for the commit block, however
// many records it replaces, even for one record. The records are written as
// pending blocks under a new transaction number and synced; a commit block
// for the transaction is written and synced (the commit point); each
// pending block gets its commit mark and is flipped to live, and they are
// synced; the blocks of the replaced records are erased, then the commit
// block. Until the commit point a replaced record's live block is
// untouched; after it, the pending block that replaces it has the higher
// sequence number, which is what Open keeps of two live blocks with one ID.
//
// So a record Commit wrote never passes for a write a power cut tore, nor
// for one of a Commit that never committed, whatever damage later does to
// its last byte or its status byte alone (see the package documentation):
// a caller that must not lose a record to such damage without a trace
// writes it with Commit, even alone.
func (s *Store) Commit(create, put []Record) error {
	rs := append(slices.Clip(create), put...)
	seen := make(map[ID]bool, len(rs))
	for i := range rs {
		if err := check(&rs[i]); err != nil {
			return err
		}
		if seen[rs[i].ID] {
			return fmt.Errorf("%w: ID given twice", ErrExists)
		}
		seen[rs[i].ID] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	for i, r := range rs {
		if _, ok := s.index[r.ID]; ok && i < len(create) {
			return ErrExists
		}
		if err := s.damaged(r.ID); err != nil {
			return fmt.Errorf("keystore: commit: %w", err)
		}
	}
	switch {
	case len(rs) == 0:
		return nil
	case len(s.free) < len(rs)+1:
		return ErrFull
	}

	// The transaction number is the first pending block's sequence number:
	// higher than any on the chip, so no block there carries it already.
	txn := s.seq + 1
	blks := make([]int, len(rs))
	for i, r := range rs {
		blks[i] = s.takeFree()
		s.seq++
		b := block{status: statusPending, typ: typeRecord, kind: r.Kind, seq: s.seq, txn: txn, id: r.ID, data: r.Data}
		if err := s.program(blks[i], &b); err != nil {
			return s.fail(fmt.Errorf("keystore: commit: write block %d: %w", blks[i], err))
		}
	}
	if err := s.flash.Sync(); err != nil {
		return s.fail(fmt.Errorf("keystore: commit: %w", err))
	}
	commit := s.takeFree()
	s.seq++
	cb := block{status: statusLive, typ: typeCommit, seq: s.seq, txn: txn}
	if err := s.program(commit, &cb); err != nil {
		return s.fail(fmt.Errorf("keystore: commit: write commit block %d: %w", commit, err))
	}
	if err := s.flash.Sync(); err != nil {
		return s.fail(fmt.Errorf("keystore: commit: %w", err))
	}
	// Committed: from here a power cut is finished by Open. The mark first:
	// a pending block that carries it committed.
	for _, blk := range blks {
		if err := s.flash.Program(blk, offMark, []byte{markCommitted}); err != nil {
			return s.fail(fmt.Errorf("keystore: commit: mark block %d: %w", blk, err))
		}
		if err := s.flash.Program(blk, offStatus, []byte{statusLive}); err != nil {
			return s.fail(fmt.Errorf("keystore: commit: flip block %d: %w", blk, err))
		}
	}
	if err := s.flash.Sync(); err != nil {
		return s.fail(fmt.Errorf("keystore: commit: %w", err))
	}
	// Not synced: should they be lost, Open erases the replaced blocks (the
	// newer live block wins) and the commit block anyway.
	for i, r := range rs {
		old, replaced := s.index[r.ID]
		s.index[r.ID] = entry{block: blks[i], kind: r.Kind}
		if !replaced {
			continue
		}
		if err := s.flash.Erase(old.block); err != nil {
			return s.fail(fmt.Errorf("keystore: commit: erase replaced block %d: %w", old.block, err))
		}
		s.free = append(s.free, old.block)
	}
	if err := s.flash.Erase(commit); err != nil {
		return s.fail(fmt.Errorf("keystore: commit: erase commit block %d: %w", commit, err))
	}
	s.free = append(s.free, commit)
	return nil
}

// Delete removes the record with the given id. It returns ErrNotFound if
// there is none, and ErrDamaged if there is none but a damaged block names
// the id (the store never erases a damaged block; see DamagedIDs).
//
// It marks the block as a tombstone, erases it and syncs.
func (s *Store) Delete(id ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	e, ok := s.index[id]
	if !ok {
		if err := s.damaged(id); err != nil {
			return fmt.Errorf("keystore: delete: %w", err)
		}
		return ErrNotFound
	}
	if err := s.flash.Program(e.block, offStatus, []byte{statusTombstone}); err != nil {
		return s.fail(fmt.Errorf("keystore: delete: mark block %d: %w", e.block, err))
	}
	if err := s.flash.Erase(e.block); err != nil {
		return s.fail(fmt.Errorf("keystore: delete: erase block %d: %w", e.block, err))
	}
	if err := s.flash.Sync(); err != nil {
		return s.fail(fmt.Errorf("keystore: delete: %w", err))
	}
	delete(s.index, id)
	s.free = append(s.free, e.block)
	return nil
}

// Free returns the number of erased blocks available for new records. Damaged
// blocks (see Damaged) are not among them.
func (s *Store) Free() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.free)
}
