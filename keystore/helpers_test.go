package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hsmkit/cryptech-backup/sim"
)

// testBlocks is the chip size of most tests: small, so every test can make
// many chips.
const testBlocks = 16

// newChip creates an erased chip file in a new temporary directory.
func newChip(t testing.TB, blocks int) (string, *sim.Flash) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flash.img")
	f, err := sim.CreateFlash(path, blocks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return path, f
}

// newStore creates a chip and opens an empty store on it.
func newStore(t testing.TB, blocks int) (string, *sim.Flash, *Store) {
	t.Helper()
	path, f := newChip(t, blocks)
	s, err := Open(f)
	if err != nil {
		t.Fatal(err)
	}
	return path, f, s
}

// reboot opens the chip file again, as after a power cut, and the store on it.
func reboot(t testing.TB, path string) (*sim.Flash, *Store) {
	t.Helper()
	f, err := sim.OpenFlash(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	s, err := Open(f)
	if err != nil {
		t.Fatalf("Open after reboot: %v", err)
	}
	return f, s
}

// id returns a test ID.
func id(n byte) ID { return ID{0: 0xD0, 15: n} }

// rec returns a record whose data of size bytes depends on n and version.
func rec(n byte, kind Kind, size int, version byte) Record {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7) ^ n ^ version<<4
	}
	return Record{ID: id(n), Kind: kind, Data: data}
}

// state is the content of a store: every record by ID.
type state map[ID]Record

func (st state) String() string {
	var b bytes.Buffer
	ids := slices.SortedFunc(maps.Keys(st), func(a, b ID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range ids {
		r := st[id]
		fmt.Fprintf(&b, "[%x kind %d %d bytes %x...] ", id[15], r.Kind, len(r.Data), r.Data[:min(4, len(r.Data))])
	}
	return b.String()
}

func (st state) equal(o state) bool {
	return maps.EqualFunc(st, o, func(a, b Record) bool {
		return a.ID == b.ID && a.Kind == b.Kind && bytes.Equal(a.Data, b.Data)
	})
}

// snapshot reads every record of s through Get and checks that List agrees.
func snapshot(t testing.TB, s *Store) state {
	t.Helper()
	st := make(state)
	kinds := make(map[Kind]int)
	s.mu.Lock()
	ids := slices.Collect(maps.Keys(s.index))
	s.mu.Unlock()
	for _, id := range ids {
		r, err := s.Get(id)
		if err != nil {
			t.Fatalf("Get(%x): %v", id, err)
		}
		st[id] = r
		kinds[r.Kind]++
	}
	for k, n := range kinds {
		if got := len(s.List(k)); got != n {
			t.Fatalf("List(%d) has %d IDs, want %d", k, got, n)
		}
	}
	return st
}

// checkClean checks that the chip holds only erased blocks, live records and
// the damaged blocks that s reports, and that the store's free count matches.
func checkClean(t testing.TB, f *sim.Flash, s *Store) {
	t.Helper()
	slots, _, err := scan(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := clean(slots); err != nil {
		t.Fatalf("chip not clean: %v", err)
	}
	erased := 0
	var corrupt []int
	for i, sl := range slots {
		switch sl.class {
		case classErased:
			erased++
		case classDamaged:
			corrupt = append(corrupt, i)
		}
	}
	if s.Free() != erased {
		t.Fatalf("Free() = %d, chip has %d erased blocks", s.Free(), erased)
	}
	if got := s.Damaged(); !slices.Equal(got, corrupt) {
		t.Fatalf("Damaged() = %v, the chip's corrupt blocks are %v", got, corrupt)
	}
}

// readBlock returns the whole image of block blk.
func readBlock(t testing.TB, f *sim.Flash, blk int) []byte {
	t.Helper()
	b := make([]byte, sim.BlockSize)
	if err := f.Read(blk, 0, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// damageFile changes the n bytes at offset off of block blk in the chip file
// at path, as a failing disk or a hand edit would: it zeroes them, or flips
// every bit of them. No Flash may have the file open.
func damageFile(t testing.TB, path string, blk, off, n int, zero bool) {
	t.Helper()
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := img[blk*sim.BlockSize+off:][:n]
	for i := range p {
		if zero {
			p[i] = 0
		} else {
			p[i] ^= 0xFF
		}
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
}

// corruptImages returns the image of every block that s reports as corrupt.
func corruptImages(t testing.TB, f *sim.Flash, s *Store) map[int][]byte {
	t.Helper()
	m := make(map[int][]byte)
	for _, blk := range s.Damaged() {
		m[blk] = readBlock(t, f, blk)
	}
	return m
}

// checkCorrupt checks that s reports exactly the corrupt blocks of want and
// that each still holds the same bytes.
func checkCorrupt(t testing.TB, name string, f *sim.Flash, s *Store, want map[int][]byte) {
	t.Helper()
	if got, w := s.Damaged(), slices.Sorted(maps.Keys(want)); !slices.Equal(got, w) {
		t.Fatalf("%s: Damaged() = %v, want %v", name, got, w)
	}
	for blk, img := range want {
		if !bytes.Equal(readBlock(t, f, blk), img) {
			t.Fatalf("%s: corrupt block %d changed", name, blk)
		}
	}
}

// copyFile copies a chip image to a new file in dir.
func copyFile(t testing.TB, src, dir string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, fmt.Sprintf("copy-%d.img", len(mustReadDir(t, dir))))
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

func mustReadDir(t testing.TB, dir string) []os.DirEntry {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func isPowerLost(err error) bool { return errors.Is(err, sim.ErrPowerLost) }
