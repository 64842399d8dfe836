package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/hsmkit/cryptech-backup/internal/filelock"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
)

// ErrNoBoard: the state directory holds no board.
var ErrNoBoard = errors.New("sim: no HSM in this directory")

// ErrBoardExists: Create was pointed at a directory that already holds a board.
var ErrBoardExists = errors.New("sim: an HSM already exists in this directory")

// ErrBoardInUse: another process has the board open.
var ErrBoardInUse = errors.New("sim: HSM is in use by another process")

// MaxBlocks bounds the flash size of a board: 512 MiB.
const MaxBlocks = 65536

// DefaultBlocks is the flash size of a new board: 1024 blocks of 8 KiB.
const DefaultBlocks = 1024

// Board is one emulated HSM board, living in a state directory:
// the flash image, the master key memory, and nothing else holding secrets.
type Board struct {
	Dir   string
	TRNG  *TRNG
	MKM   *MasterKeyMemory
	Flash *Flash

	closeOnce sync.Once
	closeErr  error
}

// CreateBoard makes a new board in dir (created 0700 if missing) with an
// erased flash chip of the given number of blocks (DefaultBlocks if 0) and an
// empty master key memory. It refuses a directory that already has a board.
func CreateBoard(dir string, blocks int) (*Board, error) {
	if err := createBoardFiles(dir, blocks); err != nil {
		return nil, fmt.Errorf("create board %s: %w", dir, err)
	}
	return OpenBoard(dir)
}

func createBoardFiles(dir string, blocks int) error {
	if blocks == 0 {
		blocks = DefaultBlocks
	}
	if blocks < 0 || blocks > MaxBlocks {
		return fmt.Errorf("%d blocks: %w", blocks, ErrOutOfRange)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	flashPath, mkmPath := boardPaths(dir)
	for _, p := range []string{flashPath, mkmPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%w: %s", ErrBoardExists, filepath.Base(p))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	// The mkm goes first: it is created under its final name atomically, so
	// a second CreateBoard racing this one fails here before touching flash.
	if err := createMKM(mkmPath); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %w", ErrBoardExists, err)
		}
		return err
	}
	f, err := CreateFlash(flashPath, blocks)
	if err != nil {
		os.Remove(mkmPath)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %w", ErrBoardExists, err)
		}
		return err
	}
	return f.Close()
}

// boardPaths returns the flash image and master key memory paths in dir.
func boardPaths(dir string) (flashPath, mkmPath string) {
	return filepath.Join(dir, flashFileName), filepath.Join(dir, mkmFileName)
}

// powerOnSelfTests runs the board's known-answer and health tests and returns
// the powered-up TRNG. This is the one place the key wrap self test is called.
func powerOnSelfTests() (*TRNG, error) {
	if err := keywrap.SelfTest(); err != nil {
		return nil, err
	}
	return NewTRNG()
}

// OpenBoard powers on the board in dir: it runs the key wrap core's
// known-answer test and the TRNG health check, and takes an exclusive lock so
// that two processes never drive the same flash.
func OpenBoard(dir string) (*Board, error) {
	b, err := openBoard(dir)
	if err != nil {
		return nil, fmt.Errorf("open board %s: %w", dir, err)
	}
	return b, nil
}

func openBoard(dir string) (*Board, error) {
	flashPath, mkmPath := boardPaths(dir)
	for _, p := range []string{flashPath, mkmPath} {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s missing", ErrNoBoard, filepath.Base(p))
		} else if err != nil {
			return nil, err
		}
	}
	trng, err := powerOnSelfTests()
	if err != nil {
		return nil, err
	}
	f, err := OpenFlash(flashPath)
	if err != nil {
		return nil, err
	}
	if err := filelock.Lock(f.file); errors.Is(err, filelock.ErrLocked) {
		f.Close()
		return nil, ErrBoardInUse
	} else if err != nil {
		f.Close()
		return nil, err
	}
	// The lock is held from here on: nobody else touches the mkm either.
	mkm, err := openMKM(mkmPath)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Board{Dir: dir, TRNG: trng, MKM: mkm, Flash: f}, nil
}

// Destroy zeroizes the master key, powers the board off and removes its
// files: the undoing of a CreateBoard that could not be finished.
func (b *Board) Destroy() error {
	errZ := b.MKM.Zeroize()
	errC := b.Close()
	flashPath, mkmPath := boardPaths(b.Dir)
	return errors.Join(errZ, errC, os.Remove(flashPath), os.Remove(mkmPath))
}

// Close powers the board off, releasing the lock. The master key stays in
// the master key memory's file; its in-memory copy is cleared. Closing twice
// is harmless.
func (b *Board) Close() error {
	b.closeOnce.Do(func() {
		if b.MKM != nil {
			b.MKM.wipe()
		}
		if b.Flash != nil {
			// Closing the file releases the flock.
			b.closeErr = b.Flash.Close()
		}
	})
	return b.closeErr
}
