package keystore

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/hsmkit/cryptech-backup/sim"
)

// class is what a scan finds in a flash block.
type class int

const (
	classErased    class = iota // every byte 0xFF: free
	classGarbage                // a write that a power cut interrupted: erase it
	classDamaged                // a damaged block: leave it as it is, report it
	classLive                   // a record
	classPending                // a record written by a Commit, not yet live
	classTombstone              // a record being replaced or deleted
	classCommit                 // a Commit's commit block
)

func (c class) String() string {
	switch c {
	case classErased:
		return "erased"
	case classGarbage:
		return "garbage"
	case classDamaged:
		return "corrupt"
	case classLive:
		return "live"
	case classPending:
		return "pending"
	case classTombstone:
		return "tombstone"
	case classCommit:
		return "commit"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// slot is the scan result for one block: its class and, for a valid block,
// its header (without data).
type slot struct {
	class class
	hdr   block
	err   error // why the block is garbage or corrupt

	// marked: the commit mark is programmed (markCommitted, or any
	// value but erased: see classify).
	marked bool

	// For a block that fails its CRC or does not parse:
	seq   uint64 // the header's sequence number field, as it reads
	torn  bool   // it can be a program cut short (tornShape)
	named bool   // the header's own fields are sane: hdr holds its ID and kind
}

// erasedBlock is one erased flash block. Never write to it.
var erasedBlock = bytes.Repeat([]byte{statusErased}, sim.BlockSize)

// classify looks at one whole block image. A block that fails its CRC or does
// not parse is classDamaged, unless its header is erased (a torn erase:
// classGarbage); scan decides which corrupt blocks are the newest write, torn.
func classify(p []byte) slot {
	if bytes.Equal(p[:headerSize], erasedBlock[:headerSize]) {
		if bytes.Equal(p, erasedBlock) {
			return slot{class: classErased}
		}
		// A torn erase: the erase clears from the start of the block.
		return slot{class: classGarbage, err: errErasedHeader}
	}
	// Any programmed bit counts: a mark half programmed when the power
	// failed was programmed after the commit point all the same.
	marked := p[offMark] != statusErased
	b, err := decodeBlock(p)
	if err != nil {
		s := slot{class: classDamaged, err: err, seq: binary.BigEndian.Uint64(p[offSeq:]), torn: tornShape(p), marked: marked}
		if h, _, herr := parseHeader(p); herr == nil && h.typ == typeRecord {
			s.hdr, s.named = h, true
		}
		return s
	}
	b.data = nil
	s := slot{hdr: b, marked: marked}
	switch {
	case b.typ == typeCommit:
		s.class = classCommit
	case b.status == statusPending:
		s.class = classPending
	case b.status == statusLive:
		s.class = classLive
	default:
		s.class = classTombstone
	}
	return s
}

// tornShape reports whether the block image p, which fails its CRC or does
// not parse, can be a program operation cut short. Every block image is
// programmed at once into an erased block, and a cut program lands a first
// part of it (package sim lands the first half), so the last byte that the
// write would have programmed is still erased: the last data byte by the
// header's length, or the header's last byte when the length is not one a
// block can have (the cut fell inside the header). A block that was written
// whole and damaged afterwards almost never looks like that: its last byte
// is the length's low byte or data.
//
// Nor can a record a Commit wrote and flipped to live be a cut program,
// whatever its last byte reads: Commit programs its records pending, syncs
// them whole, and flips them only after its commit point. The only record
// images programmed live are those of Create, Put and a recovery's
// restore, with transaction number 0. So a record that reads live, with a
// data length a block can have (the cut fell past the header, so the
// transaction number landed as programmed) and a transaction number, was
// programmed whole; so was a block whose commit mark is programmed (after
// the commit point). Such a block damaged later is kept, however its last
// byte reads: the newest record on the chip included.
func tornShape(p []byte) bool {
	n := binary.BigEndian.Uint32(p[offLen:])
	switch {
	case p[offMark] != statusErased:
		return false
	case p[offStatus] == statusLive && p[offType] == typeRecord && n <= MaxDataSize && binary.BigEndian.Uint64(p[offTxn:]) != 0:
		return false
	}
	end := headerSize
	if n <= MaxDataSize {
		end += int(n)
	}
	return p[end-1] == statusErased
}

// scan reads and classifies every block of f. It also returns the highest
// sequence number of any valid block.
func scan(f *sim.Flash) ([]slot, uint64, error) { return scanAbove(f, 0) }

// scanBatch is how many blocks scanAbove reads at once: 512 KiB.
const scanBatch = 64

// scanAbove is scan, where a block that fails its CRC or does not parse is
// the newest write, cut short (classGarbage), only if it has a torn shape and
// its sequence number is above floor and above every valid block's; any other
// is classDamaged.
//
// Every block image is written with a sequence number above every valid
// block on the chip: Put, Create and Commit number from the highest that Open
// found, and so does a recovery's restore. Status changes keep the number and
// erases remove blocks, so until the next image write that number stays the
// highest of the valid blocks, and a power cut can only tear the block that
// carries it. Recovery erases such a block (and syncs) before it writes any
// block of its own. Open passes the first scan's highest number as floor when
// it scans again after recovery, so that a damaged block stays damaged though
// recovery erased blocks numbered above it.
func scanAbove(f *sim.Flash, floor uint64) ([]slot, uint64, error) {
	slots := make([]slot, f.Blocks())
	// The chip is read scanBatch blocks at a time: a read per block was a
	// quarter of a one-shot command's time (issue 13).
	buf := make([]byte, min(scanBatch, len(slots))*sim.BlockSize)
	defer clear(buf)
	var maxSeq uint64
	for first := 0; first < len(slots); first += scanBatch {
		n := min(scanBatch, len(slots)-first)
		if err := f.ReadBlocks(first, buf[:n*sim.BlockSize]); err != nil {
			return nil, 0, fmt.Errorf("keystore: scan blocks %d to %d: %w", first, first+n-1, err)
		}
		for j := range n {
			i := first + j
			slots[i] = classify(buf[j*sim.BlockSize : (j+1)*sim.BlockSize])
			switch slots[i].class {
			case classErased, classGarbage, classDamaged:
			default:
				maxSeq = max(maxSeq, slots[i].hdr.seq)
			}
		}
	}
	limit := max(maxSeq, floor)
	for i, s := range slots {
		if s.class == classDamaged && s.torn && s.seq > limit {
			slots[i].class = classGarbage
		}
	}
	strayPending(slots)
	return slots, maxSeq, nil
}

// strayPending makes corrupt the pending records that no Commit cut short
// can have left, so that recovery does not undo them: those with their
// commit mark programmed but no commit block. Commit programs the mark only
// after its commit point, and erases the commit block only once every
// record of the transaction is durably live; so such a record committed,
// and its status byte, which the CRC does not cover, came to read pending
// since (live 0x66 is pending 0x77 with two bits up). Its data is whole;
// like any damaged block it is kept and reported.
//
// A record committed before records carried the mark looks, with its
// status byte so damaged, exactly like one of a Commit cut short, and is
// undone.
func strayPending(slots []slot) {
	committed := make(map[uint64]bool)
	for _, s := range slots {
		if s.class == classCommit {
			committed[s.hdr.txn] = true
		}
	}
	for i, s := range slots {
		if s.class == classPending && s.marked && !committed[s.hdr.txn] {
			slots[i].class, slots[i].named = classDamaged, true
			slots[i].err = fmt.Errorf("%w: a committed record whose status reads pending", ErrDamaged)
		}
	}
}

// clean reports whether slots hold only erased blocks, corrupt blocks and
// live records with distinct IDs: the state every operation starts from and
// ends in.
func clean(slots []slot) error {
	seen := make(map[ID]int)
	for i, s := range slots {
		switch s.class {
		case classErased, classDamaged:
		case classLive:
			if j, dup := seen[s.hdr.id]; dup {
				return fmt.Errorf("blocks %d and %d hold the same ID", j, i)
			}
			seen[s.hdr.id] = i
		default:
			return fmt.Errorf("block %d is %v", i, s.class)
		}
	}
	return nil
}

// recoverer finishes or undoes the operation a power cut interrupted.
//
// It works in three phases, each made durable (Sync) before the next, and
// every step of it is itself safe to interrupt: the state after any prefix of
// its writes is one that the same rules map to the same end state.
//
//  1. Erase garbage (the torn newest write or a torn erase), and pending
//     blocks whose transaction has no commit block (the Commit never
//     committed: undo it; strayPending has made corrupt those that did).
//     Corrupt blocks are never written to, in any phase.
//  2. For each commit block: mark its transaction's pending blocks and flip
//     them to live, sync, erase the commit block (the Commit committed:
//     finish it).
//  3. For each ID: if it has live blocks, keep the one with the highest
//     sequence number and erase its other live blocks and its tombstones (an
//     update or delete whose new state is durable, or a committed
//     transaction's replacement of a record: finish it). If it has only
//     tombstones, copy the newest one into a free block as live, sync, and
//     erase the tombstones (an update that never wrote its new block, or an
//     interrupted delete: undo it). With no free block, the tombstones are
//     erased instead: only a Delete can leave a tombstone on a full chip,
//     because a Put over an existing ID checks for a free block first, and
//     phase 1 has freed whatever the interrupted operation half-wrote.
type recoverer struct {
	f      *sim.Flash
	slots  []slot
	maxSeq uint64
	dirty  bool // writes since the last sync
}

func (r *recoverer) erase(i int) error {
	if err := r.f.Erase(i); err != nil {
		return fmt.Errorf("keystore: recover: erase block %d: %w", i, err)
	}
	r.slots[i] = slot{class: classErased}
	r.dirty = true
	return nil
}

func (r *recoverer) sync() error {
	if !r.dirty {
		return nil
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("keystore: recover: %w", err)
	}
	r.dirty = false
	return nil
}

func (r *recoverer) run() error {
	if err := r.undoUncommitted(); err != nil {
		return err
	}
	if err := r.finishCommitted(); err != nil {
		return err
	}
	return r.settleIDs()
}

// undoUncommitted is phase 1.
func (r *recoverer) undoUncommitted() error {
	committed := make(map[uint64]bool)
	for _, s := range r.slots {
		if s.class == classCommit {
			committed[s.hdr.txn] = true
		}
	}
	for i, s := range r.slots {
		if s.class == classGarbage || s.class == classPending && !committed[s.hdr.txn] {
			if err := r.erase(i); err != nil {
				return err
			}
		}
	}
	return r.sync()
}

// finishCommitted is phase 2.
func (r *recoverer) finishCommitted() error {
	var txns []uint64
	for _, s := range r.slots {
		if s.class == classCommit {
			txns = append(txns, s.hdr.txn)
		}
	}
	slices.Sort(txns)
	txns = slices.Compact(txns)
	for _, txn := range txns {
		for i, s := range r.slots {
			if s.class == classPending && s.hdr.txn == txn {
				if err := r.f.Program(i, offMark, []byte{markCommitted}); err != nil {
					return fmt.Errorf("keystore: recover: mark block %d: %w", i, err)
				}
				if err := r.f.Program(i, offStatus, []byte{statusLive}); err != nil {
					return fmt.Errorf("keystore: recover: commit block %d: %w", i, err)
				}
				r.slots[i].class = classLive
				r.slots[i].hdr.status = statusLive
				r.dirty = true
			}
		}
		// The records must be durably live before the commit block goes.
		if err := r.sync(); err != nil {
			return err
		}
		for i, s := range r.slots {
			if s.class == classCommit && s.hdr.txn == txn {
				if err := r.erase(i); err != nil {
					return err
				}
			}
		}
	}
	return r.sync()
}

// settleIDs is phase 3.
func (r *recoverer) settleIDs() error {
	type blocks struct{ live, tombs []int }
	byID := make(map[ID]*blocks)
	var ids []ID
	for i, s := range r.slots {
		if s.class != classLive && s.class != classTombstone {
			continue
		}
		b := byID[s.hdr.id]
		if b == nil {
			b = new(blocks)
			byID[s.hdr.id] = b
			ids = append(ids, s.hdr.id)
		}
		if s.class == classLive {
			b.live = append(b.live, i)
		} else {
			b.tombs = append(b.tombs, i)
		}
	}
	slices.SortFunc(ids, func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	newest := func(is []int) int {
		return slices.MaxFunc(is, func(a, b int) int {
			return cmp.Compare(r.slots[a].hdr.seq, r.slots[b].hdr.seq)
		})
	}
	for _, id := range ids {
		b := byID[id]
		if len(b.live) == 0 {
			if err := r.restore(newest(b.tombs)); err != nil {
				return err
			}
		} else {
			keep := newest(b.live)
			for _, i := range b.live {
				if i != keep {
					if err := r.erase(i); err != nil {
						return err
					}
				}
			}
		}
		for _, i := range b.tombs {
			if err := r.erase(i); err != nil {
				return err
			}
		}
	}
	return r.sync()
}

// restore copies the tombstone in block t into a free block as a live record,
// with a new sequence number, and syncs. With no free block it does nothing.
func (r *recoverer) restore(t int) error {
	free := slices.IndexFunc(r.slots, func(s slot) bool { return s.class == classErased })
	if free < 0 {
		return nil
	}
	buf := make([]byte, sim.BlockSize)
	defer clear(buf)
	if err := r.f.Read(t, 0, buf); err != nil {
		return fmt.Errorf("keystore: recover: read block %d: %w", t, err)
	}
	b, err := decodeBlock(buf)
	if err != nil {
		// The scan found it valid: the chip changed under us.
		return fmt.Errorf("keystore: recover: block %d: %w", t, err)
	}
	r.maxSeq++
	b.status = statusLive
	b.seq = r.maxSeq
	b.txn = 0
	img := b.encode()
	defer clear(img)
	if err := r.f.Program(free, 0, img); err != nil {
		return fmt.Errorf("keystore: recover: restore block %d into %d: %w", t, free, err)
	}
	r.slots[free] = slot{class: classLive, hdr: block{status: statusLive, typ: b.typ, kind: b.kind, seq: b.seq, id: b.id}}
	r.dirty = true
	// The copy must be durable before the tombstone goes.
	return r.sync()
}
