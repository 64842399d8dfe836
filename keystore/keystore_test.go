package keystore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/hsmkit/cryptech-backup/sim"
)

func TestPutGetListDelete(t *testing.T) {
	path, f, s := newStore(t, testBlocks)
	if s.Free() != testBlocks {
		t.Fatalf("Free() = %d on an empty chip", s.Free())
	}
	a, b, c := rec(3, 1, 100, 0), rec(1, 1, 2000, 0), rec(2, 2, MaxDataSize, 0)
	for _, r := range []Record{a, b, c} {
		if err := s.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	want := state{a.ID: a, b.ID: b, c.ID: c}
	if got := snapshot(t, s); !got.equal(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := s.List(1); !slices.Equal(got, []ID{id(1), id(3)}) {
		t.Fatalf("List(1) = %x, want sorted [1 3]", got)
	}
	if got := s.List(9); len(got) != 0 {
		t.Fatalf("List of an unused kind: %x", got)
	}
	if s.Free() != testBlocks-3 {
		t.Fatalf("Free() = %d", s.Free())
	}

	// Replace one, delete another.
	a2 := rec(3, 5, 7, 1)
	if err := s.Put(a2); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(b.ID); err != nil {
		t.Fatal(err)
	}
	want = state{a2.ID: a2, c.ID: c}
	if got := snapshot(t, s); !got.equal(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if s.Free() != testBlocks-2 {
		t.Fatalf("Free() = %d", s.Free())
	}
	checkClean(t, f, s)

	// Everything survives a reboot.
	f.Close()
	f, s = reboot(t, path)
	if got := snapshot(t, s); !got.equal(want) {
		t.Fatalf("after reboot: got %v, want %v", got, want)
	}
	if f.Writes() != 0 {
		t.Fatalf("Open of a clean chip wrote %d times", f.Writes())
	}
}

func TestGetReturnsOwnedData(t *testing.T) {
	_, _, s := newStore(t, testBlocks)
	r := rec(1, 1, 50, 0)
	if err := s.Put(r); err != nil {
		t.Fatal(err)
	}
	r.Data[0] ^= 0xFF // Put copied it
	got, err := s.Get(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Data, rec(1, 1, 50, 0).Data) {
		t.Fatal("Put kept the caller's buffer")
	}
	got.Data[0] ^= 0xFF
	again, _ := s.Get(r.ID)
	if !bytes.Equal(again.Data, rec(1, 1, 50, 0).Data) {
		t.Fatal("Get returned a shared buffer")
	}
}

func TestWriteCounts(t *testing.T) {
	_, f, s := newStore(t, testBlocks)
	count := func(name string, want int, op func() error) {
		t.Helper()
		w := f.Writes()
		if err := op(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := f.Writes() - w; got != want {
			t.Errorf("%s: %d flash writes, want %d", name, got, want)
		}
	}
	count("put new", 1, func() error { return s.Put(rec(1, 1, 10, 0)) })
	count("put update", 3, func() error { return s.Put(rec(1, 1, 10, 1)) })
	count("delete", 2, func() error { return s.Delete(id(1)) })
	count("put all 1", 1, func() error { return s.PutAll([]Record{rec(1, 1, 10, 0)}) })
	count("put all 3", 8, func() error { return s.PutAll([]Record{rec(2, 1, 1, 0), rec(3, 1, 1, 0), rec(4, 1, 1, 0)}) })
	count("put all 0", 0, func() error { return s.PutAll(nil) })
}

func TestErrors(t *testing.T) {
	_, f, s := newStore(t, testBlocks)
	if err := s.Put(rec(1, 1, 10, 0)); err != nil {
		t.Fatal(err)
	}
	w := f.Writes()
	tests := []struct {
		name string
		err  error
		op   func() error
	}{
		{"get missing", ErrNotFound, func() error { _, err := s.Get(id(2)); return err }},
		{"delete missing", ErrNotFound, func() error { return s.Delete(id(2)) }},
		{"put too large", ErrTooLarge, func() error { return s.Put(rec(2, 1, MaxDataSize+1, 0)) }},
		{"put all too large", ErrTooLarge, func() error {
			return s.PutAll([]Record{rec(2, 1, 1, 0), rec(3, 1, MaxDataSize+1, 0)})
		}},
		{"put kind 0", errBadKind, func() error { return s.Put(rec(2, 0, 1, 0)) }},
		{"put all kind 0", errBadKind, func() error { return s.PutAll([]Record{rec(2, 1, 1, 0), rec(3, 0, 1, 0)}) }},
		{"put all existing", ErrExists, func() error { return s.PutAll([]Record{rec(2, 1, 1, 0), rec(1, 1, 1, 0)}) }},
		{"put all existing alone", ErrExists, func() error { return s.PutAll([]Record{rec(1, 1, 1, 0)}) }},
		{"put all duplicate", ErrExists, func() error { return s.PutAll([]Record{rec(2, 1, 1, 0), rec(2, 1, 2, 0)}) }},
	}
	for _, tt := range tests {
		if err := tt.op(); !errors.Is(err, tt.err) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.err)
		}
		if f.Writes() != w {
			t.Fatalf("%s: wrote to flash", tt.name)
		}
	}
	// The largest record fits.
	if err := s.Put(rec(2, 1, MaxDataSize, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(nil); err == nil {
		t.Fatal("Open(nil) succeeded")
	}
}

func TestErrFull(t *testing.T) {
	const blocks = 5
	_, f, s := newStore(t, blocks)
	// Three free blocks are not enough for a PutAll of three (commit block).
	if err := s.Put(rec(1, 1, 10, 0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(rec(2, 1, 10, 0)); err != nil {
		t.Fatal(err)
	}
	w := f.Writes()
	if err := s.PutAll([]Record{rec(3, 1, 1, 0), rec(4, 1, 1, 0), rec(5, 1, 1, 0)}); !errors.Is(err, ErrFull) {
		t.Fatalf("PutAll of 3 into 3 free blocks: %v, want ErrFull", err)
	}
	if f.Writes() != w {
		t.Fatal("a refused PutAll wrote to flash")
	}
	if err := s.PutAll([]Record{rec(3, 1, 1, 0), rec(4, 1, 1, 0)}); err != nil {
		t.Fatalf("PutAll of 2 into 3 free blocks: %v", err)
	}
	if err := s.Put(rec(5, 1, 10, 0)); err != nil {
		t.Fatal(err)
	}
	if s.Free() != 0 {
		t.Fatalf("Free() = %d, want 0", s.Free())
	}

	w = f.Writes()
	for name, op := range map[string]func() error{
		"put new":    func() error { return s.Put(rec(6, 1, 1, 0)) },
		"put update": func() error { return s.Put(rec(1, 1, 1, 1)) },
		"put all 1":  func() error { return s.PutAll([]Record{rec(6, 1, 1, 0)}) },
		"put all 2":  func() error { return s.PutAll([]Record{rec(6, 1, 1, 0), rec(7, 1, 1, 0)}) },
	} {
		if err := op(); !errors.Is(err, ErrFull) {
			t.Errorf("%s on a full chip: %v, want ErrFull", name, err)
		}
		if f.Writes() != w {
			t.Fatalf("%s: wrote to flash before ErrFull", name)
		}
	}
	// Delete works on a full chip and frees a block.
	if err := s.Delete(id(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(rec(1, 1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	checkClean(t, f, s)
}

// corruptBit clears one bit of block, in the first non-zero byte of the n
// bytes at off, as a failing cell would (clearing is what Program allows).
func corruptBit(t *testing.T, f *sim.Flash, block, off, n int) {
	t.Helper()
	b := make([]byte, n)
	if err := f.Read(block, off, b); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(b, func(c byte) bool { return c != 0 })
	if i < 0 {
		t.Fatalf("bytes %d..%d of block %d are all 0", off, off+n, block)
	}
	c := []byte{b[i] & (b[i] - 1)} // clear the lowest set bit
	if err := f.Program(block, off+i, c); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptBlockErased(t *testing.T) {
	for _, tt := range []struct {
		name   string
		off, n int
	}{
		{"data", headerSize + 17, 8},
		{"kind", offKind, 1},
		{"length", offLen, 4},
		{"ID", offID, 16},
		{"sequence", offSeq, 8},
		{"CRC", offCRC, 4},
	} {
		path, f, s := newStore(t, testBlocks)
		recs := []Record{rec(1, 1, 100, 0), rec(2, 1, 100, 0), rec(3, 1, 100, 0)}
		for _, r := range recs {
			if err := s.Put(r); err != nil {
				t.Fatal(err)
			}
		}
		blk := s.index[id(2)].block
		corruptBit(t, f, blk, tt.off, tt.n)
		if _, err := s.Get(id(2)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Get of a corrupt record: %v, want ErrCorrupt", tt.name, err)
		}
		f.Close()

		f, s = reboot(t, path)
		want := state{id(1): recs[0], id(3): recs[2]}
		if got := snapshot(t, s); !got.equal(want) {
			t.Errorf("%s: after reboot %v, want %v", tt.name, got, want)
		}
		checkClean(t, f, s)
		b := make([]byte, sim.BlockSize)
		if err := f.Read(blk, 0, b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, erasedBlock) {
			t.Errorf("%s: corrupt block not erased", tt.name)
		}
	}
}

// TestGarbageBlocks fills blocks with random and hand-made headers: Open must
// not panic, must erase them all, and must keep the valid records.
func TestGarbageBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	valid := block{status: statusLive, typ: typeRecord, kind: 1, seq: 3, id: id(9), data: []byte("x")}
	// withCRC changes a valid block and fixes its CRC, so that only the
	// header checks can refuse it.
	withCRC := func(mod func(p []byte)) []byte {
		p := valid.encode()
		mod(p)
		n := min(int(binary.BigEndian.Uint32(p[offLen:])), len(p)-headerSize)
		binary.BigEndian.PutUint32(p[offCRC:], blockCRC(p[:headerSize], p[headerSize:headerSize+n]))
		return p
	}
	images := [][]byte{
		{statusLive},                    // status over an erased block
		{statusPending},                 // the same
		{statusErased, statusErased, 0}, // erased status over programmed content
		make([]byte, sim.BlockSize),     // all zero
		withCRC(func(p []byte) { p[offStatus] = 0x12 }),
		withCRC(func(p []byte) { binary.BigEndian.PutUint32(p[offLen:], 0xFFFFFFFF) }),
		withCRC(func(p []byte) { p[offKind] = 0 }),
		withCRC(func(p []byte) { p[offType] = 0 }),
		withCRC(func(p []byte) { p[offSeq+7] = 0 }),
	}
	for range 40 {
		n := rng.IntN(200)
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		if n > 0 && rng.IntN(2) == 0 {
			p[0] = []byte{statusLive, statusPending, statusTombstone}[rng.IntN(3)]
		}
		images = append(images, p)
	}

	for start := 0; start < len(images); start += testBlocks - 2 {
		path, f, s := newStore(t, testBlocks)
		keep := []Record{rec(1, 1, 10, 0), rec(2, 2, 3000, 0)}
		for _, r := range keep {
			if err := s.Put(r); err != nil {
				t.Fatal(err)
			}
		}
		free := s.free
		for i, img := range images[start:min(start+testBlocks-2, len(images))] {
			if err := f.Program(free[i], 0, img); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
		f, s = reboot(t, path)
		if got, want := snapshot(t, s), (state{keep[0].ID: keep[0], keep[1].ID: keep[1]}); !got.equal(want) {
			t.Fatalf("images %d..: got %v, want %v", start, got, want)
		}
		checkClean(t, f, s)
		if s.Free() != testBlocks-2 {
			t.Fatalf("images %d..: Free() = %d", start, s.Free())
		}
	}
}

// writeBlocks programs hand-made blocks into a new chip and returns its path.
func writeBlocks(t *testing.T, blocks map[int]block) string {
	t.Helper()
	path, f := newChip(t, testBlocks)
	for i, b := range blocks {
		if err := f.Program(i, 0, b.encode()); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	return path
}

func TestRecoveryRules(t *testing.T) {
	r := func(status byte, n byte, seq, txn uint64, version byte) block {
		rc := rec(n, 1, 100, version)
		return block{status: status, typ: typeRecord, kind: 1, seq: seq, txn: txn, id: rc.ID, data: rc.Data}
	}
	commit := func(seq, txn uint64) block { return block{status: statusLive, typ: typeCommit, seq: seq, txn: txn} }
	tests := []struct {
		name   string
		blocks map[int]block
		want   map[byte]byte // record number -> data version
	}{
		{"two live: newest wins", map[int]block{
			0: r(statusLive, 1, 5, 0, 0), 3: r(statusLive, 1, 7, 0, 1), 5: r(statusLive, 1, 6, 0, 2),
		}, map[byte]byte{1: 1}},
		{"live and tombstone: live wins", map[int]block{
			0: r(statusTombstone, 1, 5, 0, 0), 1: r(statusLive, 1, 6, 0, 1),
		}, map[byte]byte{1: 1}},
		{"tombstone newer than live: live wins", map[int]block{
			0: r(statusTombstone, 1, 9, 0, 0), 1: r(statusLive, 1, 6, 0, 1),
		}, map[byte]byte{1: 1}},
		{"tombstone alone: restored", map[int]block{
			4: r(statusTombstone, 1, 5, 0, 0),
		}, map[byte]byte{1: 0}},
		{"tombstones alone: newest restored", map[int]block{
			2: r(statusTombstone, 1, 5, 0, 0), 3: r(statusTombstone, 1, 8, 0, 1),
		}, map[byte]byte{1: 1}},
		{"pending without commit: erased", map[int]block{
			0: r(statusPending, 1, 5, 5, 0), 1: r(statusPending, 2, 6, 5, 0), 2: r(statusLive, 3, 2, 0, 0),
		}, map[byte]byte{3: 0}},
		{"pending with commit: live", map[int]block{
			0: r(statusPending, 1, 5, 5, 0), 1: r(statusLive, 2, 6, 5, 0), 2: commit(7, 5),
		}, map[byte]byte{1: 0, 2: 0}},
		{"commit of another transaction", map[int]block{
			0: r(statusPending, 1, 5, 5, 0), 2: commit(7, 4),
		}, map[byte]byte{}},
		{"commit alone: erased", map[int]block{
			2: commit(7, 4), 3: r(statusLive, 3, 2, 0, 0),
		}, map[byte]byte{3: 0}},
	}
	for _, tt := range tests {
		path := writeBlocks(t, tt.blocks)
		f, s := reboot(t, path)
		want := make(state)
		for n, v := range tt.want {
			want[id(n)] = rec(n, 1, 100, v)
		}
		if got := snapshot(t, s); !got.equal(want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, want)
		}
		checkClean(t, f, s)
		// New blocks are numbered above everything that was on the chip.
		var maxSeq uint64
		for _, b := range tt.blocks {
			maxSeq = max(maxSeq, b.seq)
		}
		if s.seq < maxSeq {
			t.Errorf("%s: sequence %d below the chip's %d", tt.name, s.seq, maxSeq)
		}
	}
}

// TestRestoreKeepsContent: a restored tombstone keeps its kind and data, gets
// a new sequence number and no transaction.
func TestRestoreKeepsContent(t *testing.T) {
	rc := rec(1, 6, 4000, 0)
	path := writeBlocks(t, map[int]block{
		0: {status: statusTombstone, typ: typeRecord, kind: 6, seq: 40, txn: 38, id: rc.ID, data: rc.Data},
	})
	f, s := reboot(t, path)
	if got := snapshot(t, s); !got.equal(state{rc.ID: rc}) {
		t.Fatalf("got %v", got)
	}
	slots, _, err := scan(f)
	if err != nil {
		t.Fatal(err)
	}
	h := slots[s.index[rc.ID].block].hdr
	if h.seq != 41 || h.txn != 0 {
		t.Fatalf("restored block: seq %d txn %d, want 41 and 0", h.seq, h.txn)
	}
}

// TestRecoveryCrash crashes the recovery of some interrupted operations at
// every write (the crash tests do this for every cut point of every
// operation; this names two cases).
func TestRecoveryCrash(t *testing.T) {
	// A PutAll cut after its commit block and one flip.
	path, f, s := newStore(t, testBlocks)
	seedMixed(t, s)
	all := []Record{rec(10, 1, 1536, 0), rec(11, 2, 5000, 0), rec(12, 1, 0, 0)}
	f.CutPowerAfter(5, false)
	if err := s.PutAll(all); !isPowerLost(err) {
		t.Fatalf("PutAll: %v", err)
	}
	f.Close()
	img := copyFile(t, path, t.TempDir())
	_, s = reboot(t, path)
	want := snapshot(t, s)
	for _, r := range all {
		if !(state{r.ID: want[r.ID]}).equal(state{r.ID: r}) {
			t.Fatalf("committed PutAll not finished: %v", want)
		}
	}
	if n := crashRecovery(t, "put all", img, want, 2); n < 4 {
		t.Fatalf("only %d recovery cut points", n)
	}

	// A Put update cut after its tombstone: the recovery copies the record.
	path, f, s = newStore(t, testBlocks)
	seedMixed(t, s)
	before := snapshot(t, s)
	f.CutPowerAfter(1, false)
	if err := s.Put(rec(2, 1, 10, 1)); !isPowerLost(err) {
		t.Fatalf("Put: %v", err)
	}
	f.Close()
	img = copyFile(t, path, t.TempDir())
	f, s = reboot(t, path)
	if f.Writes() != 2 {
		t.Fatalf("restoring a tombstone took %d writes, want 2", f.Writes())
	}
	if got := snapshot(t, s); !got.equal(before) {
		t.Fatalf("got %v, want %v", got, before)
	}
	if n := crashRecovery(t, "put update", img, before, 2); n < 4 {
		t.Fatalf("only %d recovery cut points", n)
	}
}

func TestConcurrent(t *testing.T) {
	_, f, s := newStore(t, 64)
	var wg sync.WaitGroup
	for g := range byte(8) {
		wg.Go(func() {
			for i := range byte(10) {
				n := g*16 + i
				r := rec(n, Kind(g+1), 200, 0)
				if err := s.Put(r); err != nil {
					t.Error(err)
					return
				}
				if got, err := s.Get(r.ID); err != nil || !bytes.Equal(got.Data, r.Data) {
					t.Errorf("Get: %v", err)
					return
				}
				_ = s.List(Kind(g + 1))
				_ = s.Free()
				if i%2 == 0 {
					if err := s.Delete(r.ID); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for g := range 8 {
		if n := len(s.List(Kind(g + 1))); n != 5 {
			t.Errorf("kind %d: %d records, want 5", g+1, n)
		}
	}
	checkClean(t, f, s)
}
