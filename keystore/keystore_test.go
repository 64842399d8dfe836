package keystore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
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

func TestCreate(t *testing.T) {
	path, f, s := newStore(t, 3)
	a, b := rec(1, 1, 100, 0), rec(2, 2, 4000, 0)
	for _, r := range []Record{a, b} {
		if err := s.Create(r); err != nil {
			t.Fatal(err)
		}
	}
	want := state{a.ID: a, b.ID: b}
	if got := snapshot(t, s); !got.equal(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// An existing ID is refused, and nothing is written.
	w := f.Writes()
	if err := s.Create(rec(1, 1, 7, 1)); !errors.Is(err, ErrExists) {
		t.Fatalf("Create of an existing ID: %v, want ErrExists", err)
	}
	if f.Writes() != w {
		t.Fatal("a refused Create wrote to flash")
	}
	if got := snapshot(t, s); !got.equal(want) {
		t.Fatalf("after a refused Create: got %v, want %v", got, want)
	}
	// On a full chip, an existing ID is still ErrExists; a new one ErrFull.
	c := rec(3, 1, 10, 0)
	if err := s.Create(c); err != nil {
		t.Fatal(err)
	}
	want[c.ID] = c
	if err := s.Create(rec(2, 2, 1, 1)); !errors.Is(err, ErrExists) {
		t.Fatalf("Create of an existing ID on a full chip: %v, want ErrExists", err)
	}
	if err := s.Create(rec(4, 1, 1, 0)); !errors.Is(err, ErrFull) {
		t.Fatalf("Create on a full chip: %v, want ErrFull", err)
	}
	// A deleted ID can be created again.
	if err := s.Delete(a.ID); err != nil {
		t.Fatal(err)
	}
	a2 := rec(1, 3, 50, 2)
	if err := s.Create(a2); err != nil {
		t.Fatal(err)
	}
	want[a2.ID] = a2
	checkClean(t, f, s)
	f.Close()
	if _, s := reboot(t, path); !snapshot(t, s).equal(want) {
		t.Fatalf("after reboot: got %v, want %v", snapshot(t, s), want)
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
	count("create", 1, func() error { return s.Create(rec(9, 1, 10, 0)) })
	count("put update", 3, func() error { return s.Put(rec(1, 1, 10, 1)) })
	count("delete", 2, func() error { return s.Delete(id(1)) })
	// A Commit of n records: n pending blocks, a commit block, n marks and
	// n flips, the replaced blocks and the commit block erased. One record
	// too.
	count("put all 1", 5, func() error { return s.PutAll([]Record{rec(1, 1, 10, 0)}) })
	count("put all 3", 11, func() error { return s.PutAll([]Record{rec(2, 1, 1, 0), rec(3, 1, 1, 0), rec(4, 1, 1, 0)}) })
	count("put all 0", 0, func() error { return s.PutAll(nil) })
	count("commit 1 new 2 replaced", 13, func() error {
		return s.Commit([]Record{rec(5, 1, 1, 0)}, []Record{rec(2, 1, 1, 1), rec(3, 4, 1, 1)})
	})
	count("commit 1 replaced", 6, func() error { return s.Commit(nil, []Record{rec(2, 1, 1, 2)}) })
	count("commit 0", 0, func() error { return s.Commit(nil, nil) })
}

// TestCommitReplaces: a Commit creates some records and replaces others
// (with a new kind too), and a reboot finds exactly that.
func TestCommitReplaces(t *testing.T) {
	path, f, s := newStore(t, testBlocks)
	seedMixed(t, s)
	free := s.Free()
	if err := s.Commit([]Record{rec(10, 1, 300, 0)}, []Record{rec(2, 1, 7000, 1), rec(4, 5, 10, 1), rec(11, 2, 20, 0)}); err != nil {
		t.Fatal(err)
	}
	want := state{id(1): rec(1, 1, 100, 0), id(2): rec(2, 1, 7000, 1), id(3): rec(3, 2, 1536, 0),
		id(4): rec(4, 5, 10, 1), id(5): rec(5, 3, 0, 0), id(10): rec(10, 1, 300, 0), id(11): rec(11, 2, 20, 0)}
	if got := snapshot(t, s); !got.equal(want) {
		t.Fatalf("after Commit\n%v\nwant\n%v", got, want)
	}
	if s.Free() != free-2 {
		t.Errorf("Free() = %d after two new records, want %d", s.Free(), free-2)
	}
	checkClean(t, f, s)
	f.Close()
	f, s = reboot(t, path)
	if f.Writes() != 0 {
		t.Errorf("reboot after a Commit wrote %d times", f.Writes())
	}
	if got := snapshot(t, s); !got.equal(want) {
		t.Fatalf("after reboot\n%v\nwant\n%v", got, want)
	}
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
		{"commit creating an existing ID", ErrExists, func() error { return s.Commit([]Record{rec(1, 1, 1, 1)}, []Record{rec(2, 1, 1, 0)}) }},
		{"commit with an ID twice", ErrExists, func() error { return s.Commit([]Record{rec(2, 1, 1, 0)}, []Record{rec(2, 1, 1, 0)}) }},
		{"commit too large", ErrTooLarge, func() error { return s.Commit(nil, []Record{rec(1, 1, 1, 1), rec(3, 1, MaxDataSize+1, 0)}) }},
		{"create existing", ErrExists, func() error { return s.Create(rec(1, 1, 20, 1)) }},
		{"create existing, another kind", ErrExists, func() error { return s.Create(rec(1, 2, 20, 1)) }},
		{"create too large", ErrTooLarge, func() error { return s.Create(rec(2, 1, MaxDataSize+1, 0)) }},
		{"create kind 0", errBadKind, func() error { return s.Create(rec(2, 0, 1, 0)) }},
	}
	for _, tt := range tests {
		if err := tt.op(); !errors.Is(err, tt.err) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.err)
		}
		if f.Writes() != w {
			t.Fatalf("%s: wrote to flash", tt.name)
		}
	}
	// The refused writes left record 1 as it was.
	if got := snapshot(t, s); !got.equal(state{id(1): rec(1, 1, 10, 0)}) {
		t.Fatalf("after refused writes: %v", got)
	}
	// The largest record fits.
	if err := s.Put(rec(2, 1, MaxDataSize, 0)); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(rec(3, 1, MaxDataSize, 0)); err != nil {
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
		"create":     func() error { return s.Create(rec(6, 1, 1, 0)) },
		"put update": func() error { return s.Put(rec(1, 1, 1, 1)) },
		"put all 1":  func() error { return s.PutAll([]Record{rec(6, 1, 1, 0)}) },
		"put all 2":  func() error { return s.PutAll([]Record{rec(6, 1, 1, 0), rec(7, 1, 1, 0)}) },
		// Replacing needs a free block per record too, and a commit block.
		"commit replacing 1": func() error { return s.Commit(nil, []Record{rec(1, 1, 1, 1)}) },
		"commit replacing 2": func() error { return s.Commit(nil, []Record{rec(1, 1, 1, 1), rec(2, 1, 1, 1)}) },
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

// TestCorruptBlockKept clears one bit in a committed record's block, as a
// failing cell would. Get reports it at once; after a reboot the block is
// kept as it is and reported, and the other records are intact. (Until
// damaged blocks were kept, this test was TestCorruptBlockErased and wanted
// the block erased.)
func TestCorruptBlockKept(t *testing.T) {
	for _, tt := range []struct {
		name   string
		off, n int
		ids    []ID // what DamagedIDs reports
	}{
		{"data", headerSize + 17, 8, []ID{id(2)}},
		{"kind", offKind, 1, nil},
		{"length", offLen, 4, []ID{id(2)}},
		{"ID", offID, 16, []ID{{0: 0xC0, 15: 2}}}, // the damage is in the ID
		{"sequence", offSeq, 8, nil},
		{"CRC", offCRC, 4, []ID{id(2)}},
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
		if _, err := s.Get(id(2)); !errors.Is(err, ErrDamaged) {
			t.Errorf("%s: Get of a corrupt record: %v, want ErrDamaged", tt.name, err)
		}
		img := readBlock(t, f, blk)
		f.Close()

		f, s = reboot(t, path)
		want := state{id(1): recs[0], id(3): recs[2]}
		if got := snapshot(t, s); !got.equal(want) {
			t.Errorf("%s: after reboot %v, want %v", tt.name, got, want)
		}
		checkClean(t, f, s)
		checkCorrupt(t, tt.name, f, s, map[int][]byte{blk: img})
		if f.Writes() != 0 {
			t.Errorf("%s: Open wrote %d times", tt.name, f.Writes())
		}
		if got := s.DamagedIDs(); !slices.Equal(got, tt.ids) {
			t.Errorf("%s: DamagedIDs() = %x, want %x", tt.name, got, tt.ids)
		}
		named := slices.Contains(tt.ids, id(2))
		if _, err := s.Get(id(2)); named && !errors.Is(err, ErrDamaged) || !named && !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Get after reboot: %v", tt.name, err)
		}
	}
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

// damageCases change a committed record of 300 data bytes on the chip file:
// a byte flipped or bytes zeroed in its data, its header and its CRC field.
var damageCases = []struct {
	name   string
	off, n int
	zero   bool
	ids    func(victim ID) []ID // what DamagedIDs reports
}{
	{"data byte flipped", headerSize + 17, 1, false, named},
	{"data: 50 bytes zeroed", headerSize + 100, 50, true, named},
	{"last data byte flipped", headerSize + 299, 1, false, named},
	{"header: status flipped", offStatus, 1, false, unnamed},
	{"header: type flipped", offType, 1, false, unnamed},
	{"header: kind flipped", offKind, 1, false, named},
	{"header: reserved byte flipped", offZero, 1, false, unnamed},
	{"header: sequence high byte flipped", offSeq, 1, false, named},
	{"header: sequence low byte flipped", offSeq + 7, 1, false, named},
	{"header: sequence zeroed", offSeq, 8, true, unnamed},
	{"header: transaction flipped", offTxn + 7, 1, false, named},
	{"header: ID flipped", offID + 15, 1, false, func(v ID) []ID { v[15] ^= 0xFF; return []ID{v} }},
	{"header: length low byte flipped", offLen + 3, 1, false, named},
	{"header: length high byte flipped", offLen, 1, false, unnamed},
	{"header zeroed", 0, headerSize, true, unnamed},
	{"header and data: 50 bytes zeroed", 0, 50, true, unnamed},
	{"CRC byte flipped", offCRC + 2, 1, false, named},
	{"CRC zeroed", offCRC, 4, true, named},
	{"CRC and on: 50 bytes zeroed", offCRC, 50, true, unnamed},
}

func named(v ID) []ID { return []ID{v} }
func unnamed(ID) []ID { return nil }

// damagedChip writes four records (two of them through PutAll: records 3 and
// 4, 4 the newest) and damages the block of record victim on the chip file.
// It returns the path, the block, its damaged image and the other records.
func damagedChip(t *testing.T, victim byte, off, n int, zero bool) (string, int, []byte, state) {
	t.Helper()
	path, f, s := newStore(t, testBlocks)
	recs := []Record{rec(1, 1, 100, 0), rec(2, 1, 300, 0), rec(3, 2, 100, 0), rec(4, 2, 300, 0)}
	for _, r := range recs[:2] {
		if err := s.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutAll(recs[2:]); err != nil {
		t.Fatal(err)
	}
	blk := s.index[id(victim)].block
	f.Close()
	damageFile(t, path, blk, off, n, zero)
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	others := make(state)
	for _, r := range recs {
		if r.ID != id(victim) {
			others[r.ID] = r
		}
	}
	return path, blk, img[blk*sim.BlockSize:][:sim.BlockSize], others
}

// TestDamagedRecordKept damages an old committed record (and the newest one)
// in every way of damageCases: Open succeeds and writes nothing, the other
// records are intact, the block is left as it is and reported, Free does not
// count it, later writes do not touch it, and reboots give the same. The
// newest record is a Commit's: no damage makes it pass for a torn write,
// not even a length that now ends on an erased byte (which, before such
// records were told apart, had Open erase it).
func TestDamagedRecordKept(t *testing.T) {
	for _, victim := range []byte{2, 4} {
		for _, tt := range damageCases {
			name := fmt.Sprintf("record %d: %s", victim, tt.name)
			path, blk, img, want := damagedChip(t, victim, tt.off, tt.n, tt.zero)
			f, s := reboot(t, path)
			corrupt := map[int][]byte{blk: img}
			ids := tt.ids(id(victim))
			check := func(when string, want state) {
				t.Helper()
				if got := snapshot(t, s); !got.equal(want) {
					t.Fatalf("%s, %s: got %v, want %v", name, when, got, want)
				}
				checkClean(t, f, s)
				checkCorrupt(t, name+", "+when, f, s, corrupt)
				if got := s.DamagedIDs(); !slices.Equal(got, ids) {
					t.Fatalf("%s, %s: DamagedIDs() = %x, want %x", name, when, got, ids)
				}
				// A block that names no ID is reported as such.
				if got, unnamed := s.DamagedUnnamed(), len(ids) == 0; unnamed != slices.Equal(got, []int{blk}) || !unnamed && len(got) != 0 {
					t.Fatalf("%s, %s: DamagedUnnamed() = %v, block %d, named %x", name, when, got, blk, ids)
				}
				if got := s.DamagedRecords(); len(got) != len(ids) || len(ids) == 1 && (got[0].Block != blk || got[0].ID != ids[0]) {
					t.Fatalf("%s, %s: DamagedRecords() = %+v, block %d, named %x", name, when, got, blk, ids)
				}
				if s.Free() != testBlocks-len(want)-1 {
					t.Fatalf("%s, %s: Free() = %d with %d records", name, when, s.Free(), len(want))
				}
			}
			if f.Writes() != 0 {
				t.Fatalf("%s: Open wrote %d times", name, f.Writes())
			}
			check("open", want)

			// Get tells a damaged record from a missing one, and nothing
			// writes a second record with a damaged record's ID.
			wantErr := ErrNotFound
			if slices.Contains(ids, id(victim)) {
				wantErr = ErrDamaged
			}
			if _, err := s.Get(id(victim)); !errors.Is(err, wantErr) {
				t.Fatalf("%s: Get: %v, want %v", name, err, wantErr)
			}
			for _, d := range ids {
				w := f.Writes()
				for op, fn := range map[string]func() error{
					"get":     func() error { _, err := s.Get(d); return err },
					"create":  func() error { return s.Create(Record{ID: d, Kind: 1, Data: []byte("new")}) },
					"put":     func() error { return s.Put(Record{ID: d, Kind: 1, Data: []byte("new")}) },
					"put all": func() error { return s.PutAll([]Record{rec(30, 1, 1, 0), {ID: d, Kind: 1}}) },
					"put 1":   func() error { return s.PutAll([]Record{{ID: d, Kind: 1}}) },
					"commit":  func() error { return s.Commit(nil, []Record{rec(30, 1, 1, 0), {ID: d, Kind: 1}}) },
					"delete":  func() error { return s.Delete(d) },
				} {
					if err := fn(); !errors.Is(err, ErrDamaged) {
						t.Fatalf("%s: %s of the damaged ID: %v, want ErrDamaged", name, op, err)
					}
				}
				if f.Writes() != w {
					t.Fatalf("%s: a refused write wrote to flash", name)
				}
			}
			f.Close()
			f, s = reboot(t, path)
			if f.Writes() != 0 {
				t.Fatalf("%s: second Open wrote %d times", name, f.Writes())
			}
			check("reboot", want)

			// Fill the chip, replace and delete records: the damaged block
			// is never taken.
			for n := byte(40); s.Free() > 0; n++ {
				r := rec(n, 3, 2000, 0)
				put := s.Put
				if n%2 == 1 {
					put = s.Create
				}
				if err := put(r); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				want[r.ID] = r
			}
			if err := s.Put(rec(50, 3, 10, 0)); !errors.Is(err, ErrFull) {
				t.Fatalf("%s: Put on a full chip: %v", name, err)
			}
			if err := s.Delete(id(40)); err != nil {
				t.Fatal(err)
			}
			delete(want, id(40))
			r := rec(1, 1, 500, 1)
			if err := s.Put(r); err != nil {
				t.Fatal(err)
			}
			want[r.ID] = r
			check("writes", want)
			f.Close()
			f, s = reboot(t, path)
			check("reboot after writes", want)
			f.Close()
		}
	}
}

// TestDamagedRecordAfterDeletes: deleting every record newer than a damaged
// one leaves its sequence number above every valid block's; it is still kept,
// even when it is all that is left on the chip.
func TestDamagedRecordAfterDeletes(t *testing.T) {
	path, blk, img, want := damagedChip(t, 1, headerSize+50, 1, false)
	for _, n := range []byte{4, 3, 2} {
		f, s := reboot(t, path)
		checkCorrupt(t, "before delete", f, s, map[int][]byte{blk: img})
		if err := s.Delete(id(n)); err != nil {
			t.Fatal(err)
		}
		delete(want, id(n))
		f.Close()
		f, s = reboot(t, path)
		if f.Writes() != 0 {
			t.Fatalf("after deleting record %d: Open wrote %d times", n, f.Writes())
		}
		if got := snapshot(t, s); !got.equal(want) {
			t.Fatalf("after deleting record %d: got %v, want %v", n, got, want)
		}
		checkClean(t, f, s)
		checkCorrupt(t, fmt.Sprintf("after deleting record %d", n), f, s, map[int][]byte{blk: img})
		if s.Free() != testBlocks-1-len(want) {
			t.Fatalf("Free() = %d", s.Free())
		}
		f.Close()
	}
}

// TestCorruptBlockDuringRecovery: recovery erases the only valid block
// numbered above a damaged one (an uncommitted PutAll); Open still reports
// the damaged block, which looks torn but was not the newest write, rather
// than failing on a chip its own rescan finds unclean.
//
// Known limit, pinned here: the damaged block is now numbered above every
// valid block and looks torn, so the next Open takes it for a torn newest
// write and erases it. Only a damaged block whose last byte is erased (1 in
// 256 for random data, or a length damaged to end in the erased tail) can
// look torn.
func TestCorruptBlockDuringRecovery(t *testing.T) {
	path, f := newChip(t, testBlocks)
	r1, r2, r3 := rec(1, 1, 100, 0), rec(2, 1, 100, 0), rec(3, 1, 100, 0)
	images := map[int][]byte{
		0: (&block{status: statusLive, typ: typeRecord, kind: 1, seq: 1, id: r1.ID, data: r1.Data}).encode(),
		1: (&block{status: statusLive, typ: typeRecord, kind: 1, seq: 2, id: r2.ID, data: r2.Data}).encode(),
		2: (&block{status: statusPending, typ: typeRecord, kind: 1, seq: 3, txn: 3, id: r3.ID, data: r3.Data}).encode(),
	}
	// Damage record 2: its length now ends in the erased tail, as a torn
	// write's would.
	binary.BigEndian.PutUint32(images[1][offLen:], 200)
	for blk, img := range images {
		if err := f.Program(blk, 0, img); err != nil {
			t.Fatal(err)
		}
	}
	damaged := readBlock(t, f, 1)
	f.Close()
	f, s := reboot(t, path)
	if got := snapshot(t, s); !got.equal(state{r1.ID: r1}) {
		t.Fatalf("got %v", got)
	}
	if s.Free() != testBlocks-2 {
		t.Fatalf("Free() = %d", s.Free())
	}
	checkCorrupt(t, "recovery", f, s, map[int][]byte{1: damaged})
	if !slices.Equal(s.DamagedIDs(), []ID{r2.ID}) {
		t.Fatalf("DamagedIDs() = %x", s.DamagedIDs())
	}
	f.Close()
	f, s = reboot(t, path)
	if got := snapshot(t, s); !got.equal(state{r1.ID: r1}) {
		t.Fatalf("next Open: got %v", got)
	}
	if len(s.Damaged()) != 0 || !bytes.Equal(readBlock(t, f, 1), erasedBlock) {
		t.Fatalf("next Open: Damaged() = %v; the known limit no longer holds, update this test", s.Damaged())
	}
}

// TestGarbageBlocks fills free blocks with random and hand-made images: Open
// must not panic, must keep the valid records, must erase what can only be a
// torn write, and must keep every other block as it is and report it. (Until
// damaged blocks were kept, it wanted every one of them erased.)
func TestGarbageBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// The records kept below have sequence numbers 1 and 2: valid's is above
	// them, and its data ends on a programmed byte.
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
	type image struct {
		p    []byte
		torn bool // erased; else kept and reported (random images: either)
		name bool // DamagedIDs names id(9)
	}
	images := []image{
		{p: []byte{statusLive}, torn: true},                                              // status over an erased block
		{p: []byte{statusPending}, torn: true},                                           // the same
		{p: []byte{statusErased, statusErased, 0}, torn: true},                           // erased status over programmed content
		{p: make([]byte, sim.BlockSize)},                                                 // all zero: sequence 0
		{p: append(bytes.Repeat([]byte{statusErased}, headerSize), 1, 2, 3), torn: true}, // a torn erase
		{p: withCRC(func(p []byte) { p[offStatus] = 0x12 })},
		// Its header ends on an erased byte: a write cut inside the header.
		{p: withCRC(func(p []byte) { binary.BigEndian.PutUint32(p[offLen:], 0xFFFFFFFF) }), torn: true},
		{p: withCRC(func(p []byte) { p[offKind] = 0 })},
		{p: withCRC(func(p []byte) { p[offType] = 0 })},
		{p: withCRC(func(p []byte) { p[offSeq+7] = 0 })},
		// Bad CRCs: the data byte changed; the sequence number not above
		// the valid blocks' (so not torn, though the data byte is erased);
		// the data byte not programmed (torn).
		{p: func() []byte { p := valid.encode(); p[headerSize] = 'y'; return p }(), name: true},
		{p: func() []byte { p := valid.encode(); p[offSeq+7] = 2; return p[:headerSize] }(), name: true},
		{p: valid.encode()[:headerSize], torn: true},
	}
	random := len(images)
	for range 40 {
		n := rng.IntN(200)
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		if n > 0 && rng.IntN(2) == 0 {
			p[0] = []byte{statusLive, statusPending, statusTombstone}[rng.IntN(3)]
		}
		images = append(images, image{p: p})
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
		batch := images[start:min(start+testBlocks-2, len(images))]
		for i, img := range batch {
			if err := f.Program(free[i], 0, img.p); err != nil {
				t.Fatal(err)
			}
		}
		imgs := make(map[int][]byte)
		for i := range batch {
			imgs[free[i]] = readBlock(t, f, free[i])
		}
		f.Close()
		f, s = reboot(t, path)
		if got, want := snapshot(t, s), (state{keep[0].ID: keep[0], keep[1].ID: keep[1]}); !got.equal(want) {
			t.Fatalf("images %d..: got %v, want %v", start, got, want)
		}
		checkClean(t, f, s)
		corrupt := make(map[int][]byte)
		named := false
		for i, img := range batch {
			blk := free[i]
			erased := bytes.Equal(readBlock(t, f, blk), erasedBlock)
			if !erased {
				corrupt[blk] = imgs[blk]
			}
			if start+i < random && erased != img.torn {
				t.Errorf("image %d: erased %v, want %v", start+i, erased, img.torn)
			}
			named = named || start+i < random && img.name
		}
		checkCorrupt(t, fmt.Sprintf("images %d..", start), f, s, corrupt)
		if s.Free() != testBlocks-2-len(corrupt) {
			t.Fatalf("images %d..: Free() = %d", start, s.Free())
		}
		if named != slices.Contains(s.DamagedIDs(), id(9)) {
			t.Errorf("images %d..: DamagedIDs() = %x", start, s.DamagedIDs())
		}
		// The same on the next boot, with no write.
		f.Close()
		f, s = reboot(t, path)
		if f.Writes() != 0 {
			t.Fatalf("images %d..: second Open wrote %d times", start, f.Writes())
		}
		checkCorrupt(t, fmt.Sprintf("images %d.., second boot", start), f, s, corrupt)
		f.Close()
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
	if n := crashRecovery(t, "put all", img, want, nil, 2); n < 4 {
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
	if n := crashRecovery(t, "put update", img, before, nil, 2); n < 4 {
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
				put := s.Put
				if i%3 == 0 {
					put = s.Create
				}
				if err := put(r); err != nil {
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

// TestCommittedRecordKept: a record a Commit wrote, even alone and the
// newest on the chip, is kept and reported when damage makes its last data
// byte read erased (as a torn write's would) or its status byte read
// pending (as a Commit's that never committed would); DamagedRecords says
// what it claims to be. A record Put wrote, damaged so, is still taken for
// a torn write: the rule's known limit, which is why records that must not
// vanish without a trace go through Commit.
func TestCommittedRecordKept(t *testing.T) {
	for _, c := range []struct {
		name   string
		commit bool
		off    func(size int) int
		value  byte
		kept   bool
	}{
		{"commit: last data byte erased", true, func(n int) int { return headerSize + n - 1 }, statusErased, true},
		{"commit: status reads pending", true, func(int) int { return offStatus }, statusPending, true},
		{"put: last data byte erased", false, func(n int) int { return headerSize + n - 1 }, statusErased, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, f, s := newStore(t, testBlocks)
			old := []Record{rec(1, 1, 100, 0), rec(2, 2, 300, 0)}
			for _, r := range old {
				if err := s.Put(r); err != nil {
					t.Fatal(err)
				}
			}
			victim := rec(3, 6, 200, 0)
			write := s.Put
			if c.commit {
				write = func(r Record) error { return s.Commit([]Record{r}, nil) }
			}
			if err := write(victim); err != nil {
				t.Fatal(err)
			}
			blk := s.index[victim.ID].block
			f.Close()
			img, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			img[blk*sim.BlockSize+c.off(len(victim.Data))] = c.value
			if err := os.WriteFile(path, img, 0o600); err != nil {
				t.Fatal(err)
			}
			f, s = reboot(t, path)
			if got, want := snapshot(t, s), (state{old[0].ID: old[0], old[1].ID: old[1]}); !got.equal(want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			checkClean(t, f, s)
			if !c.kept {
				if len(s.Damaged()) != 0 || !bytes.Equal(readBlock(t, f, blk), erasedBlock) {
					t.Fatalf("Damaged() = %v: the known limit no longer holds, update this test", s.Damaged())
				}
				return
			}
			if !slices.Equal(s.Damaged(), []int{blk}) || !slices.Equal(s.DamagedIDs(), []ID{victim.ID}) {
				t.Fatalf("the damaged record is not reported: Damaged() = %v, DamagedIDs() = %x", s.Damaged(), s.DamagedIDs())
			}
			if _, err := s.Get(victim.ID); !errors.Is(err, ErrDamaged) {
				t.Errorf("Get: %v, want ErrDamaged", err)
			}
			if got, want := s.DamagedRecords(), []DamagedRecord{{blk, victim.ID, victim.Kind}}; !slices.Equal(got, want) {
				t.Errorf("DamagedRecords() = %+v, want %+v", got, want)
			}
			// It stays so: later writes and reboots leave it alone.
			if err := s.Delete(old[1].ID); err != nil {
				t.Fatal(err)
			}
			f.Close()
			f, s = reboot(t, path)
			if !slices.Equal(s.Damaged(), []int{blk}) || f.Writes() != 0 {
				t.Errorf("after a reboot: Damaged() = %v, %d writes", s.Damaged(), f.Writes())
			}
		})
	}
}
