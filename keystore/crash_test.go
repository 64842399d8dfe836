package keystore

import (
	"fmt"
	"slices"
	"testing"

	"github.com/hsmkit/cryptech-backup/sim"
)

// A crash test runs an operation once to count its flash writes W, then, for
// every k in 0..W and for whole and torn writes, runs it again on a fresh
// chip with the power cut after k writes, reboots, and checks that the store
// is exactly as before the operation or exactly as after it. Each crash image
// that needs recovery is then crashed again at every write of the recovery,
// twice over (a cut during the recovery of a cut during recovery), and must
// recover to the same state as an uninterrupted recovery. No recovery may
// leave a block it reports as corrupt: every torn block must be recognised as
// the newest write and erased. The cases of TestCrashWithCorruptBlocks start
// with damaged blocks on the chip, which must come through untouched.

// crashCase is one operation to crash at every write.
type crashCase struct {
	name   string
	blocks int
	seed   func(t testing.TB, s *Store) // the records committed before
	op     func(s *Store) error
}

// seedMixed commits records of every size class, some through PutAll, so
// live blocks with a transaction number are among them. Record 2 fills more
// than half a block, so a torn erase of its block leaves garbage.
func seedMixed(t testing.TB, s *Store) {
	t.Helper()
	for _, r := range []Record{rec(1, 1, 100, 0), rec(2, 1, 5000, 0), rec(3, 2, 1536, 0)} {
		if err := s.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutAll([]Record{rec(4, 2, 40, 0), rec(5, 3, 0, 0)}); err != nil {
		t.Fatal(err)
	}
}

// seedFull fills all four blocks of a chip.
func seedFull(t testing.TB, s *Store) {
	t.Helper()
	for i := range byte(4) {
		if err := s.Put(rec(i+1, 1, 3000+int(i)*1000, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if s.Free() != 0 {
		t.Fatalf("seedFull left %d free blocks", s.Free())
	}
}

// seedAlmostFull writes three records: on a chip of four blocks, one is
// left free.
func seedAlmostFull(t testing.TB, s *Store) {
	t.Helper()
	for i := range byte(3) {
		if err := s.Put(rec(i+1, 1, 5000, 0)); err != nil {
			t.Fatal(err)
		}
	}
}

var crashCases = []crashCase{
	{"put new", testBlocks, seedMixed, func(s *Store) error { return s.Put(rec(10, 1, 1536, 0)) }},
	{"put new largest", testBlocks, seedMixed, func(s *Store) error { return s.Put(rec(10, 1, MaxDataSize, 0)) }},
	{"put new empty", testBlocks, seedMixed, func(s *Store) error { return s.Put(rec(10, 1, 0, 0)) }},
	{"create", testBlocks, seedMixed, func(s *Store) error { return s.Create(rec(10, 1, 1536, 0)) }},
	{"create largest", testBlocks, seedMixed, func(s *Store) error { return s.Create(rec(10, 1, MaxDataSize, 0)) }},
	{"create empty", testBlocks, seedMixed, func(s *Store) error { return s.Create(rec(10, 1, 0, 0)) }},
	{"create filling the chip", 4, seedAlmostFull, func(s *Store) error { return s.Create(rec(10, 1, 7000, 0)) }},
	{"put update", testBlocks, seedMixed, func(s *Store) error { return s.Put(rec(2, 1, 6000, 1)) }},
	{"put update new kind", testBlocks, seedMixed, func(s *Store) error { return s.Put(rec(1, 4, 10, 1)) }},
	{"put update txn record", testBlocks, seedMixed, func(s *Store) error { return s.Put(rec(4, 2, 1536, 1)) }},
	{"put update last free block", 4, seedAlmostFull, func(s *Store) error { return s.Put(rec(2, 1, 7000, 1)) }},
	{"delete", testBlocks, seedMixed, func(s *Store) error { return s.Delete(id(3)) }},
	{"delete large", testBlocks, seedMixed, func(s *Store) error { return s.Delete(id(2)) }},
	{"delete on full chip", 4, seedFull, func(s *Store) error { return s.Delete(id(4)) }},
	{"put all 3", testBlocks, seedMixed, func(s *Store) error {
		return s.PutAll([]Record{rec(10, 1, 1536, 0), rec(11, 2, 5000, 0), rec(12, 1, 0, 0)})
	}},
	{"put all 3 filling the chip", 9, seedMixed, func(s *Store) error {
		return s.PutAll([]Record{rec(10, 1, 1536, 0), rec(11, 2, 8000, 0), rec(12, 1, 20, 0)})
	}},
	{"put all 1", testBlocks, seedMixed, func(s *Store) error { return s.PutAll([]Record{rec(10, 1, 1536, 0)}) }},
	{"commit creating and replacing", testBlocks, seedMixed, func(s *Store) error {
		return s.Commit([]Record{rec(10, 1, 1536, 0)}, []Record{rec(2, 1, 6000, 1), rec(11, 3, 10, 0)})
	}},
	{"commit replacing only", testBlocks, seedMixed, func(s *Store) error {
		return s.Commit(nil, []Record{rec(1, 1, 3000, 1), rec(5, 4, 5000, 1)})
	}},
	// seedAlmostFull leaves two blocks free here: a Commit of one record is
	// a transaction too, and needs its commit block.
	{"commit replacing 1 on the last free blocks", 5, seedAlmostFull, func(s *Store) error {
		return s.Commit(nil, []Record{rec(2, 1, 7000, 1)})
	}},
	{"commit creating 1", testBlocks, seedMixed, func(s *Store) error { return s.Commit([]Record{rec(10, 1, 1536, 0)}, nil) }},
	{"commit replacing 2 filling the chip", 6, seedAlmostFull, func(s *Store) error {
		return s.Commit(nil, []Record{rec(1, 1, 7000, 1), rec(3, 2, 10, 1)})
	}},
}

func TestCrashEveryWrite(t *testing.T) {
	total, totalRec := 0, 0
	for _, c := range crashCases {
		t.Run(c.name, func(t *testing.T) {
			cuts, recCuts := runCrashCase(t, c, nil)
			total += cuts
			totalRec += recCuts
			t.Logf("%d cut points in the operation, %d in recoveries", cuts, recCuts)
		})
	}
	t.Logf("total: %d cut points in operations, %d in recoveries", total, totalRec)
}

// damageRecords clears one bit in the last data byte of the block of each
// record numbered in ns (in the CRC field for an empty record), as a failing
// cell would.
func damageRecords(t testing.TB, f *sim.Flash, s *Store, ns []byte) {
	t.Helper()
	for _, n := range ns {
		blk := s.index[id(n)].block
		img := readBlock(t, f, blk)
		_, size, err := parseHeader(img)
		if err != nil {
			t.Fatal(err)
		}
		off := headerSize + size - 1
		if size == 0 {
			off = offCRC + slices.IndexFunc(img[offCRC:offCRC+4], func(c byte) bool { return c != 0 })
		}
		c := img[off]
		if err := f.Program(blk, off, []byte{c & (c - 1)}); err != nil {
			t.Fatal(err)
		}
	}
}

// corruptCrashCases crash operations on chips that hold damaged blocks:
// record 3 of seedMixed is an old record, record 5 the newest (highest
// sequence number), so a Delete of record 4 leaves it above every valid block.
var corruptCrashCases = []struct {
	crashCase
	damaged []byte // the records to damage after the seed
}{
	{crashCase{"put new", testBlocks, seedMixed, func(s *Store) error { return s.Put(rec(10, 1, 1536, 0)) }}, []byte{3, 5}},
	{crashCase{"create", testBlocks, seedMixed, func(s *Store) error { return s.Create(rec(10, 1, 3000, 0)) }}, []byte{3, 5}},
	{crashCase{"put update", testBlocks, seedMixed, func(s *Store) error { return s.Put(rec(2, 1, 6000, 1)) }}, []byte{3, 5}},
	{crashCase{"delete newest valid", testBlocks, seedMixed, func(s *Store) error { return s.Delete(id(4)) }}, []byte{3, 5}},
	{crashCase{"put all 3", testBlocks, seedMixed, func(s *Store) error {
		return s.PutAll([]Record{rec(10, 1, 1536, 0), rec(11, 2, 5000, 0), rec(12, 1, 0, 0)})
	}}, []byte{3, 5}},
	{crashCase{"commit creating and replacing", testBlocks, seedMixed, func(s *Store) error {
		return s.Commit([]Record{rec(10, 1, 1536, 0)}, []Record{rec(2, 1, 6000, 1)})
	}}, []byte{3, 5}},
	{crashCase{"put update last free block", 4, seedAlmostFull, func(s *Store) error { return s.Put(rec(2, 1, 7000, 1)) }}, []byte{1}},
	{crashCase{"delete on full chip", 4, seedFull, func(s *Store) error { return s.Delete(id(4)) }}, []byte{2}},
}

func TestCrashWithCorruptBlocks(t *testing.T) {
	for _, c := range corruptCrashCases {
		t.Run(c.name, func(t *testing.T) {
			cuts, recCuts := runCrashCase(t, c.crashCase, c.damaged)
			t.Logf("%d cut points in the operation, %d in recoveries", cuts, recCuts)
		})
	}
}

// seedChip makes a chip for c and seeds it; with records to damage, it
// damages them and opens the store again. It returns the images of the
// corrupt blocks too.
func seedChip(t *testing.T, c crashCase, damaged []byte) (string, *sim.Flash, *Store, map[int][]byte) {
	t.Helper()
	path, f, s := newStore(t, c.blocks)
	c.seed(t, s)
	if len(damaged) > 0 {
		damageRecords(t, f, s, damaged)
		var err error
		if s, err = Open(f); err != nil {
			t.Fatal(err)
		}
		var want []ID
		for _, n := range damaged {
			want = append(want, id(n))
		}
		if got := s.DamagedIDs(); !slices.Equal(got, want) || len(s.Damaged()) != len(damaged) {
			t.Fatalf("damaged records %v: Damaged() = %v, DamagedIDs() = %x", damaged, s.Damaged(), got)
		}
	}
	return path, f, s, corruptImages(t, f, s)
}

// runCrashCase crashes c at every write, on a chip where the records numbered
// in damaged are damaged, and returns the number of cut points it tried in the
// operation and in recoveries.
func runCrashCase(t *testing.T, c crashCase, damaged []byte) (cuts, recCuts int) {
	// The uninterrupted run: W, and the states before and after.
	path, f, s, corrupt := seedChip(t, c, damaged)
	before := snapshot(t, s)
	w0 := f.Writes()
	if err := c.op(s); err != nil {
		t.Fatalf("uninterrupted: %v", err)
	}
	w := f.Writes() - w0
	after := snapshot(t, s)
	checkClean(t, f, s)
	checkCorrupt(t, "uninterrupted", f, s, corrupt)
	if before.equal(after) {
		t.Fatal("the operation changes nothing")
	}
	f.Close()
	f, s = reboot(t, path)
	if !snapshot(t, s).equal(after) {
		t.Fatal("uninterrupted: reboot changed the state")
	}
	checkCorrupt(t, "uninterrupted reboot", f, s, corrupt)
	f.Close()
	t.Logf("W = %d", w)

	images := t.TempDir()
	for k := 0; k <= w; k++ {
		for _, torn := range []bool{false, true} {
			name := fmt.Sprintf("k=%d torn=%v", k, torn)
			cuts++
			path, f, s, _ := seedChip(t, c, damaged)
			f.CutPowerAfter(k, torn)
			err := c.op(s)
			switch {
			case k < w && !isPowerLost(err):
				t.Fatalf("%s: operation returned %v, want ErrPowerLost", name, err)
			case k == w && err != nil:
				t.Fatalf("%s: operation returned %v with no cut", name, err)
			case k < w:
				// The store stopped at the failed write.
				if _, err := s.Get(id(1)); err == nil {
					t.Fatalf("%s: Get works after a failed write", name)
				}
				if err := s.Put(rec(20, 1, 10, 0)); err == nil {
					t.Fatalf("%s: Put works after a failed write", name)
				}
				if err := s.Create(rec(21, 1, 10, 0)); err == nil {
					t.Fatalf("%s: Create works after a failed write", name)
				}
			}
			f.Close()
			img := copyFile(t, path, images)

			f, s = reboot(t, path)
			got := snapshot(t, s)
			switch {
			case got.equal(before), got.equal(after):
			default:
				t.Fatalf("%s: after recovery\n%v\nbefore\n%v\nafter\n%v", name, got, before, after)
			}
			if k == w && !got.equal(after) {
				t.Fatalf("%s: completed operation lost", name)
			}
			checkClean(t, f, s)
			checkCorrupt(t, name, f, s, corrupt)
			checkUsable(t, s, name)
			checkCorrupt(t, name+", after new writes", f, s, corrupt)
			f.Close()

			// Recovery is finished: a second reboot writes nothing.
			f, s = reboot(t, path)
			if f.Writes() != 0 {
				t.Fatalf("%s: second reboot wrote %d times", name, f.Writes())
			}
			if !snapshot(t, s).equal(got) {
				t.Fatalf("%s: second reboot changed the state", name)
			}
			checkCorrupt(t, name+", second reboot", f, s, corrupt)
			f.Close()

			recCuts += crashRecovery(t, name, img, got, corrupt, recoveryDepth())
		}
	}
	return cuts, recCuts
}

// recoveryDepth is how many successive crashes during recovery are tried:
// three, or one under -short.
func recoveryDepth() int {
	if testing.Short() {
		return 1
	}
	return 3
}

// crashRecovery cuts the power at every write of the recovery of the chip
// image img, whole and torn, and checks that the next boot recovers to want,
// with the corrupt blocks of corrupt untouched. depth more levels of crashes
// are applied to the recoveries' own crash images. It returns the number of
// cut points tried.
func crashRecovery(t *testing.T, name, img string, want state, corrupt map[int][]byte, depth int) int {
	t.Helper()
	dir := t.TempDir()
	f, _ := reboot(t, copyFile(t, img, dir))
	wr := f.Writes()
	f.Close()
	cuts := 0
	for k := range wr {
		for _, torn := range []bool{false, true} {
			cuts++
			name := fmt.Sprintf("%s, recovery k=%d torn=%v", name, k, torn)
			path := copyFile(t, img, dir)
			f, err := sim.OpenFlash(path)
			if err != nil {
				t.Fatal(err)
			}
			f.CutPowerAfter(k, torn)
			if _, err := Open(f); !isPowerLost(err) {
				t.Fatalf("%s: Open returned %v, want ErrPowerLost", name, err)
			}
			f.Close()
			crashed := copyFile(t, path, dir)
			f, s := reboot(t, path)
			if got := snapshot(t, s); !got.equal(want) {
				t.Fatalf("%s: recovered to\n%v\nwant\n%v", name, got, want)
			}
			checkClean(t, f, s)
			checkCorrupt(t, name, f, s, corrupt)
			f.Close()
			if depth > 1 {
				cuts += crashRecovery(t, name, crashed, want, corrupt, depth-1)
			}
		}
	}
	return cuts
}

// checkUsable checks that a recovered store takes new records.
func checkUsable(t *testing.T, s *Store, name string) {
	t.Helper()
	if s.Free() == 0 {
		return
	}
	r := rec(99, 7, 300, 0)
	if err := s.Put(r); err != nil {
		t.Fatalf("%s: Put after recovery: %v", name, err)
	}
	got, err := s.Get(r.ID)
	if err != nil || !(state{r.ID: got}).equal(state{r.ID: r}) {
		t.Fatalf("%s: Get after recovery: %v", name, err)
	}
	if err := s.Delete(r.ID); err != nil {
		t.Fatalf("%s: Delete after recovery: %v", name, err)
	}
}
