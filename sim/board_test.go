package sim

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCreateBoard(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hsm")
	b, err := CreateBoard(dir, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("board directory mode %v, want 0700", fi.Mode().Perm())
	}
	checkMode0600(t, filepath.Join(dir, flashFileName))
	checkMode0600(t, filepath.Join(dir, mkmFileName))
	if b.Dir != dir || b.TRNG == nil || b.MKM == nil || b.Flash == nil {
		t.Fatalf("incomplete board: %+v", b)
	}
	if b.Flash.Blocks() != 8 {
		t.Errorf("Blocks() = %d, want 8", b.Flash.Blocks())
	}
	if !bytes.Equal(readBlock(t, b.Flash, 7), erasedBlock) {
		t.Error("new board's flash is not erased")
	}
	if _, err := b.MKM.Get(); !errors.Is(err, ErrMasterKeyNotSet) {
		t.Errorf("new board's master key: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	names, _ := os.ReadDir(dir)
	if len(names) != 2 {
		t.Errorf("board directory holds %d entries, want 2 (flash.img, mkm)", len(names))
	}
}

func TestCreateBoardDefaultSize(t *testing.T) {
	b, err := CreateBoard(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Flash.Blocks() != DefaultBlocks {
		t.Fatalf("Blocks() = %d, want %d", b.Flash.Blocks(), DefaultBlocks)
	}
}

func TestCreateBoardTwice(t *testing.T) {
	dir := t.TempDir()
	b, err := CreateBoard(dir, 4)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := CreateBoard(dir, 4); !errors.Is(err, ErrBoardExists) {
		t.Fatalf("second CreateBoard: %v, want ErrBoardExists", err)
	}
	// One of the two files is enough to refuse.
	for _, name := range []string{flashFileName, mkmFileName} {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := CreateBoard(d, 4); !errors.Is(err, ErrBoardExists) {
			t.Errorf("CreateBoard beside a %s: %v, want ErrBoardExists", name, err)
		}
	}
	if _, err := CreateBoard(t.TempDir(), -1); err == nil {
		t.Error("CreateBoard of -1 blocks succeeded")
	}
}

func TestOpenBoardNoBoard(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Join(dir, "missing")} {
		_, err := OpenBoard(d)
		if !errors.Is(err, ErrNoBoard) {
			t.Fatalf("OpenBoard(%s): %v, want ErrNoBoard", d, err)
		}
		if !strings.Contains(err.Error(), "open board "+d) {
			t.Errorf("error lacks context: %v", err)
		}
	}
	// Half a board is no board.
	if err := os.WriteFile(filepath.Join(dir, mkmFileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBoard(dir); !errors.Is(err, ErrNoBoard) {
		t.Fatalf("OpenBoard without flash.img: %v, want ErrNoBoard", err)
	}
}

func TestOpenBoardInUse(t *testing.T) {
	dir := t.TempDir()
	b, err := CreateBoard(dir, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBoard(dir); !errors.Is(err, ErrBoardInUse) {
		t.Fatalf("second OpenBoard: %v, want ErrBoardInUse", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, err := OpenBoard(dir)
	if err != nil {
		t.Fatalf("OpenBoard after Close: %v", err)
	}
	b2.Close()
}

func TestBoardPersists(t *testing.T) {
	dir := t.TempDir()
	b, err := CreateBoard(dir, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.MKM.Set(testKey(0x77)); err != nil {
		t.Fatal(err)
	}
	if err := b.Flash.Program(3, 0, []byte("keep")); err != nil {
		t.Fatal(err)
	}
	mkm := b.MKM
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := mkm.Get(); !errors.Is(err, ErrMasterKeyNotSet) {
		t.Error("power-off left the master key in memory")
	}

	b, err = OpenBoard(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got, err := b.MKM.Get(); err != nil || !bytes.Equal(got, testKey(0x77)) {
		t.Fatalf("master key after reboot: %x, %v", got, err)
	}
	got := make([]byte, 4)
	if err := b.Flash.Read(3, 0, got); err != nil || string(got) != "keep" {
		t.Fatalf("flash after reboot: %q, %v", got, err)
	}
}

func TestOpenBoardCorruptMKM(t *testing.T) {
	dir := t.TempDir()
	b, err := CreateBoard(dir, 4)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := os.WriteFile(filepath.Join(dir, mkmFileName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBoard(dir); !errors.Is(err, errMKMCorrupt) {
		t.Fatalf("OpenBoard with a corrupt mkm: %v", err)
	}
	// The failed open released the lock.
	os.Remove(filepath.Join(dir, mkmFileName))
	if err := createMKM(filepath.Join(dir, mkmFileName)); err != nil {
		t.Fatal(err)
	}
	b, err = OpenBoard(dir)
	if err != nil {
		t.Fatalf("OpenBoard after a failed open: %v", err)
	}
	b.Close()
}
