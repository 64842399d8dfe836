package sim

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func newTestFlash(t *testing.T, blocks int) (*Flash, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), flashFileName)
	f, err := CreateFlash(path, blocks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, path
}

func readBlock(t *testing.T, f *Flash, block int) []byte {
	t.Helper()
	p := make([]byte, BlockSize)
	if err := f.Read(block, 0, p); err != nil {
		t.Fatalf("read block %d: %v", block, err)
	}
	return p
}

func reopenFlash(t *testing.T, path string) *Flash {
	t.Helper()
	f, err := OpenFlash(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestFlashNewIsErased(t *testing.T) {
	f, path := newTestFlash(t, 3)
	if f.Blocks() != 3 {
		t.Fatalf("Blocks() = %d, want 3", f.Blocks())
	}
	for b := range 3 {
		if !bytes.Equal(readBlock(t, f, b), erasedBlock) {
			t.Errorf("block %d of a new chip is not erased", b)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 3*BlockSize {
		t.Errorf("size %d, want %d", fi.Size(), 3*BlockSize)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if f.Writes() != 0 {
		t.Errorf("Writes() = %d on a new chip", f.Writes())
	}
}

func TestCreateFlashRefusesExisting(t *testing.T) {
	_, path := newTestFlash(t, 1)
	if _, err := CreateFlash(path, 1); !errors.Is(err, os.ErrExist) {
		t.Fatalf("CreateFlash over an existing file: %v, want ErrExist", err)
	}
	if _, err := CreateFlash(filepath.Join(t.TempDir(), "x"), 0); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("CreateFlash of 0 blocks: %v", err)
	}
}

func TestOpenFlashBadSize(t *testing.T) {
	dir := t.TempDir()
	for _, size := range []int{0, 1, BlockSize - 1, BlockSize + 1} {
		path := filepath.Join(dir, "bad")
		if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if f, err := OpenFlash(path); err == nil {
			f.Close()
			t.Errorf("OpenFlash of a %d-byte file succeeded", size)
		}
	}
	if _, err := OpenFlash(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenFlash of a missing file: %v", err)
	}
}

func TestFlashProgramClearsOnly(t *testing.T) {
	f, _ := newTestFlash(t, 2)
	if err := f.Program(1, 100, []byte{0xF0, 0x0F, 0x00, 0xAA}); err != nil {
		t.Fatal(err)
	}
	// Clearing more bits is allowed; the result is old & data.
	if err := f.Program(1, 100, []byte{0xE0, 0x0F, 0x00, 0x0A}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if err := f.Read(1, 99, got); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0xFF, 0xE0, 0x0F, 0x00, 0x0A, 0xFF}; !bytes.Equal(got, want) {
		t.Fatalf("after two programs: % x, want % x", got, want)
	}
	if f.Writes() != 2 {
		t.Fatalf("Writes() = %d, want 2", f.Writes())
	}

	// Setting a bit is refused, and nothing is written, not even the bytes
	// before the offending one.
	err := f.Program(1, 100, []byte{0x00, 0x1F})
	if !errors.Is(err, ErrProgramSetsBits) {
		t.Fatalf("program setting a bit: %v, want ErrProgramSetsBits", err)
	}
	if err := f.Read(1, 99, got); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0xFF, 0xE0, 0x0F, 0x00, 0x0A, 0xFF}; !bytes.Equal(got, want) {
		t.Fatalf("after a refused program: % x, want % x", got, want)
	}
	if f.Writes() != 2 {
		t.Fatalf("a refused program was counted: Writes() = %d", f.Writes())
	}
	// Block 0 is untouched.
	if !bytes.Equal(readBlock(t, f, 0), erasedBlock) {
		t.Fatal("program of block 1 touched block 0")
	}
}

func TestFlashErase(t *testing.T) {
	f, _ := newTestFlash(t, 2)
	data := bytes.Repeat([]byte{0x5A}, BlockSize)
	for b := range 2 {
		if err := f.Program(b, 0, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Erase(0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readBlock(t, f, 0), erasedBlock) {
		t.Fatal("erased block is not all 0xFF")
	}
	if !bytes.Equal(readBlock(t, f, 1), data) {
		t.Fatal("erase of block 0 touched block 1")
	}
	// After an erase, any data can be programmed again.
	if err := f.Program(0, 0, []byte{0xA5}); err != nil {
		t.Fatal(err)
	}
	if f.Writes() != 4 {
		t.Fatalf("Writes() = %d, want 4", f.Writes())
	}
}

func TestFlashOutOfRange(t *testing.T) {
	f, _ := newTestFlash(t, 2)
	tests := []struct{ block, off, n int }{
		{-1, 0, 1},
		{2, 0, 1},
		{0, -1, 1},
		{0, BlockSize, 1},
		{0, BlockSize - 1, 2},
		{1, 1, BlockSize},
		{0, BlockSize + 1, 0},
	}
	for i, tt := range tests {
		p := make([]byte, tt.n)
		if err := f.Read(tt.block, tt.off, p); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("#%d Read(%d, %d, %d bytes): %v", i, tt.block, tt.off, tt.n, err)
		}
		if err := f.Program(tt.block, tt.off, p); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("#%d Program(%d, %d, %d bytes): %v", i, tt.block, tt.off, tt.n, err)
		}
	}
	for _, b := range []int{-1, 2} {
		if err := f.Erase(b); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("Erase(%d): %v", b, err)
		}
	}
	// The last byte of the last block is in range.
	if err := f.Program(1, BlockSize-1, []byte{0}); err != nil {
		t.Errorf("last byte: %v", err)
	}
	if f.Writes() != 1 {
		t.Errorf("Writes() = %d, want 1", f.Writes())
	}
}

func TestFlashPersistsAcrossReopen(t *testing.T) {
	f, path := newTestFlash(t, 3)
	if err := f.Program(2, 10, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := f.Program(0, 0, []byte{0}); err != nil {
		t.Fatal(err)
	}
	if err := f.Erase(0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g := reopenFlash(t, path)
	got := make([]byte, 5)
	if err := g.Read(2, 10, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "hello" {
		t.Fatalf("after reopen: %q", got)
	}
	if !bytes.Equal(readBlock(t, g, 0), erasedBlock) {
		t.Fatal("erase did not persist")
	}
	if g.Blocks() != 3 {
		t.Fatalf("Blocks() = %d after reopen", g.Blocks())
	}
}

func TestFlashCutPower(t *testing.T) {
	pattern := func(n int, v byte) []byte { return bytes.Repeat([]byte{v}, n) }
	for _, torn := range []bool{false, true} {
		f, path := newTestFlash(t, 3)
		if err := f.Program(2, 0, pattern(BlockSize, 0x00)); err != nil {
			t.Fatal(err)
		}
		f.CutPowerAfter(2, torn)
		if err := f.Program(0, 0, pattern(8, 0x11)); err != nil {
			t.Fatal(err)
		}
		if err := f.Program(0, 8, pattern(8, 0x22)); err != nil {
			t.Fatal(err)
		}
		// A refused program is no operation and does not trip the cut.
		if err := f.Program(0, 0, pattern(1, 0xFF)); !errors.Is(err, ErrProgramSetsBits) {
			t.Fatal(err)
		}
		if err := f.Program(1, 0, pattern(8, 0x33)); !errors.Is(err, ErrPowerLost) {
			t.Fatalf("torn=%v: third program: %v, want ErrPowerLost", torn, err)
		}
		if f.Writes() != 3 {
			t.Fatalf("torn=%v: Writes() = %d, want 3", torn, f.Writes())
		}
		// Everything fails from now on, reads included.
		if err := f.Read(0, 0, make([]byte, 1)); !errors.Is(err, ErrPowerLost) {
			t.Errorf("read after the cut: %v", err)
		}
		if err := f.Erase(1); !errors.Is(err, ErrPowerLost) {
			t.Errorf("erase after the cut: %v", err)
		}
		if err := f.Sync(); !errors.Is(err, ErrPowerLost) {
			t.Errorf("sync after the cut: %v", err)
		}
		f.CutPowerAfter(-1, false)
		if err := f.Program(1, 0, []byte{0}); !errors.Is(err, ErrPowerLost) {
			t.Errorf("cancelling after the cut brought power back: %v", err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}

		// Reboot: the completed writes are there, the cut one is not (or
		// half of it is).
		g := reopenFlash(t, path)
		got := make([]byte, 16)
		if err := g.Read(0, 0, got); err != nil {
			t.Fatal(err)
		}
		if want := append(pattern(8, 0x11), pattern(8, 0x22)...); !bytes.Equal(got, want) {
			t.Fatalf("torn=%v: completed writes: % x", torn, got)
		}
		if err := g.Read(1, 0, got[:8]); err != nil {
			t.Fatal(err)
		}
		want := pattern(8, 0xFF)
		if torn {
			copy(want, pattern(4, 0x33))
		}
		if !bytes.Equal(got[:8], want) {
			t.Fatalf("torn=%v: cut program left % x, want % x", torn, got[:8], want)
		}

		// A cut erase: nothing, or the first half of the block erased.
		g.CutPowerAfter(0, torn)
		if err := g.Erase(2); !errors.Is(err, ErrPowerLost) {
			t.Fatalf("cut erase: %v", err)
		}
		g.Close()
		h := reopenFlash(t, path)
		blk := readBlock(t, h, 2)
		wantBlk := pattern(BlockSize, 0x00)
		if torn {
			copy(wantBlk, pattern(BlockSize/2, 0xFF))
		}
		if !bytes.Equal(blk, wantBlk) {
			t.Fatalf("torn=%v: cut erase left the wrong content", torn)
		}
		if h.Writes() != 0 {
			t.Fatalf("a rebooted chip counts %d writes", h.Writes())
		}
	}
}

func TestFlashCutPowerCancel(t *testing.T) {
	f, _ := newTestFlash(t, 1)
	f.CutPowerAfter(0, false)
	f.CutPowerAfter(-1, false)
	if err := f.Program(0, 0, []byte{1}); err != nil {
		t.Fatalf("program after cancelling the cut: %v", err)
	}
}

func TestFlashClose(t *testing.T) {
	f, _ := newTestFlash(t, 1)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := f.Read(0, 0, make([]byte, 1)); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
}

func TestFlashConcurrent(t *testing.T) {
	const blocks, perBlock = 8, 64
	f, _ := newTestFlash(t, blocks)
	var wg sync.WaitGroup
	for b := range blocks {
		wg.Go(func() {
			for i := range perBlock {
				if err := f.Program(b, i, []byte{byte(b)}); err != nil {
					t.Error(err)
					return
				}
				if err := f.Read(b, 0, make([]byte, i+1)); err != nil {
					t.Error(err)
					return
				}
				_ = f.Writes()
			}
		})
	}
	wg.Wait()
	if f.Writes() != blocks*perBlock {
		t.Fatalf("Writes() = %d, want %d", f.Writes(), blocks*perBlock)
	}
	for b := range blocks {
		got := readBlock(t, f, b)[:perBlock]
		if !bytes.Equal(got, bytes.Repeat([]byte{byte(b)}, perBlock)) {
			t.Fatalf("block %d: % x", b, got)
		}
	}
}

// The cost of the two halves of a keystore write: programming a record and
// making it durable.
func BenchmarkFlashProgram(b *testing.B) {
	f, err := CreateFlash(filepath.Join(b.TempDir(), flashFileName), 64)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	data := bytes.Repeat([]byte{0x42}, 1536)
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		blk := i % f.Blocks()
		if err := f.Erase(blk); err != nil {
			b.Fatal(err)
		}
		if err := f.Program(blk, 0, data); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkFlashProgramSync(b *testing.B) {
	f, err := CreateFlash(filepath.Join(b.TempDir(), flashFileName), 64)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	data := bytes.Repeat([]byte{0x42}, 1536)
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		blk := i % f.Blocks()
		if err := f.Erase(blk); err != nil {
			b.Fatal(err)
		}
		if err := f.Program(blk, 0, data); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestReadBlocksIsReadPerBlock: ReadBlocks reads what Read reads block by
// block, and refuses a range off the chip or not of whole blocks.
func TestReadBlocksIsReadPerBlock(t *testing.T) {
	f, _ := newTestFlash(t, 8)
	for i := range 8 {
		if err := f.Program(i, 100*i, []byte{byte(i), 0x5a}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 3*BlockSize)
	if err := f.ReadBlocks(4, buf); err != nil {
		t.Fatal(err)
	}
	for j := range 3 {
		if want := readBlock(t, f, 4+j); !bytes.Equal(buf[j*BlockSize:(j+1)*BlockSize], want) {
			t.Errorf("block %d read in a batch differs from Read's", 4+j)
		}
	}
	for _, tc := range []struct{ first, n int }{{6, 3 * BlockSize}, {-1, BlockSize}, {0, BlockSize + 1}, {0, 0}, {8, BlockSize}} {
		if err := f.ReadBlocks(tc.first, make([]byte, tc.n)); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("ReadBlocks(%d, %d bytes): got %v, want ErrOutOfRange", tc.first, tc.n, err)
		}
	}
}
