package sim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hsmkit/cryptech-backup/internal/atomicfile"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// BlockSize is the size of one erase block of the flash chip.
const BlockSize = 8192

var (
	// ErrPowerLost is returned by every operation after an injected power cut.
	ErrPowerLost = errors.New("sim: flash: power lost")
	// ErrProgramSetsBits: a program operation tried to turn a 0 bit into a 1.
	ErrProgramSetsBits = errors.New("sim: flash: program would set bits; erase first")
	// ErrOutOfRange: block or offset outside the chip.
	ErrOutOfRange = errors.New("sim: flash: address out of range")
)

// flashFileName is the flash image's name in a board directory.
const flashFileName = "flash.img"

// erasedBlock is one block of 0xFF. Never write to it.
var erasedBlock = func() []byte {
	b := make([]byte, BlockSize)
	for i := range b {
		b[i] = 0xFF
	}
	return b
}()

// Flash is a NOR flash chip persisted as a file of Blocks()*BlockSize bytes.
//
// Reads and writes go through the file with ReadAt and WriteAt, so a write
// that has returned survives the process being killed (it is in the host's
// page cache); [Flash.Sync] is needed only against a host crash. A Flash is
// safe for concurrent use.
type Flash struct {
	// mu serializes every access. Nothing is taken under it; it is taken
	// under keystore.Store.mu.
	mu     sync.Mutex
	file   *os.File
	blocks int
	writes int

	cutArmed bool // a power cut is scheduled
	cutAfter int  // completed writes left before the cut
	cutTorn  bool // the cut write is half applied
	dead     bool // power has been lost
	closed   bool
}

// CreateFlash makes a new flash image of blocks erase blocks at path, every
// bit erased to one, and opens it. It refuses to overwrite an existing file.
//
// A [Board] creates and opens its own flash; CreateFlash and [OpenFlash] are
// for tests and tools that need a bare chip (a keystore on a scratch file).
func CreateFlash(path string, blocks int) (*Flash, error) {
	if blocks <= 0 {
		return nil, fmt.Errorf("sim: create flash %s: %d blocks: %w", path, blocks, ErrOutOfRange)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sim: create flash: %w", err)
	}
	werr := func() error {
		for b := range blocks {
			if _, err := f.WriteAt(erasedBlock, int64(b)*BlockSize); err != nil {
				return err
			}
		}
		return f.Sync()
	}()
	if werr == nil {
		werr = atomicfile.SyncDir(filepath.Dir(path))
	}
	if werr != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("sim: create flash: %w", werr)
	}
	return &Flash{file: f, blocks: blocks}, nil
}

// OpenFlash opens the flash image at path: powering the chip on, or
// rebooting after a power cut when a previous *Flash on the same file lost
// power. It takes no lock; [OpenBoard] does.
func OpenFlash(path string) (*Flash, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("sim: open flash: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sim: open flash: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 || fi.Size()%BlockSize != 0 {
		f.Close()
		return nil, fmt.Errorf("sim: open flash %s: size %d is not a positive multiple of %d", path, fi.Size(), BlockSize)
	}
	return &Flash{file: f, blocks: int(fi.Size() / BlockSize)}, nil
}

// Blocks returns the number of erase blocks.
func (f *Flash) Blocks() int { return f.blocks }

// check validates an access and the chip's state. Called with f.mu held.
func (f *Flash) check(block, off, n int) error {
	lockassert.Held(&f.mu)
	if f.closed {
		return fmt.Errorf("sim: flash: %w", os.ErrClosed)
	}
	if f.dead {
		return ErrPowerLost
	}
	if block < 0 || block >= f.blocks || off < 0 || off > BlockSize || n > BlockSize-off {
		return fmt.Errorf("%w: block %d offset %d length %d", ErrOutOfRange, block, off, n)
	}
	return nil
}

// addr returns the file offset of offset off in block.
func addr(block, off int) int64 { return int64(block)*BlockSize + int64(off) }

// Read reads len(p) bytes of block at offset off.
func (f *Flash) Read(block, off int, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(block, off, len(p)); err != nil {
		return err
	}
	if _, err := f.file.ReadAt(p, addr(block, off)); err != nil {
		return fmt.Errorf("sim: flash: read block %d: %w", block, err)
	}
	return nil
}

// ReadBlocks reads whole blocks from first on into p, whose length is a
// multiple of BlockSize: one read where a scan of the chip would make one
// per block (Open reads every block of the chip at power-on).
func (f *Flash) ReadBlocks(first int, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(p) / BlockSize
	if len(p)%BlockSize != 0 || n == 0 || first < 0 || first > f.blocks-n {
		return fmt.Errorf("%w: blocks %d to %d (%d bytes)", ErrOutOfRange, first, first+n, len(p))
	}
	if err := f.check(first, 0, BlockSize); err != nil {
		return err
	}
	if _, err := f.file.ReadAt(p, addr(first, 0)); err != nil {
		return fmt.Errorf("sim: flash: read blocks %d to %d: %w", first, first+n-1, err)
	}
	return nil
}

// Erase sets every bit of block to one.
func (f *Flash) Erase(block int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(block, 0, BlockSize); err != nil {
		return err
	}
	return f.write(block, 0, erasedBlock)
}

// Program writes data at offset off of block. Like real NOR flash it can only
// clear bits: if data has a 1 where the chip holds a 0, nothing is written and
// ErrProgramSetsBits is returned.
func (f *Flash) Program(block, off int, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(block, off, len(data)); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	cur := make([]byte, len(data))
	defer clear(cur)
	if _, err := f.file.ReadAt(cur, addr(block, off)); err != nil {
		return fmt.Errorf("sim: flash: program block %d: %w", block, err)
	}
	for i := range data {
		if data[i]&^cur[i] != 0 {
			return fmt.Errorf("%w: block %d offset %d", ErrProgramSetsBits, block, off+i)
		}
	}
	return f.write(block, off, data)
}

// write performs one erase or program operation, counting it and applying a
// scheduled power cut, the access checked. Called with f.mu held.
func (f *Flash) write(block, off int, data []byte) error {
	lockassert.Held(&f.mu)
	if f.cutArmed && f.cutAfter == 0 {
		f.cutArmed = false
		f.dead = true
		if f.cutTorn {
			// The first half of the bytes land; best effort, since power is
			// lost whatever happens.
			_, _ = f.file.WriteAt(data[:len(data)/2], addr(block, off))
		}
		return ErrPowerLost
	}
	if _, err := f.file.WriteAt(data, addr(block, off)); err != nil {
		return fmt.Errorf("sim: flash: write block %d: %w", block, err)
	}
	f.writes++
	if f.cutArmed {
		f.cutAfter--
	}
	return nil
}

// Sync makes every completed write durable on the host's disk.
func (f *Flash) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(0, 0, 0); err != nil {
		return err
	}
	if err := f.file.Sync(); err != nil {
		return fmt.Errorf("sim: flash: sync: %w", err)
	}
	return nil
}

// Writes returns how many erase and program operations have completed.
func (f *Flash) Writes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

// CutPowerAfter arranges for power to fail after n more erase or program
// operations complete: operation n+1 does not happen (or, when torn is true,
// only its first half does), and it and every operation after it return
// ErrPowerLost. Tests use it to crash the keystore at every write point.
//
// A program refused with ErrProgramSetsBits, or of no bytes, is not an
// operation. A negative n cancels a scheduled cut; once power is lost only a
// new Flash on the same file (a reboot) brings it back.
func (f *Flash) CutPowerAfter(n int, torn bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cutArmed = n >= 0
	f.cutAfter = n
	f.cutTorn = torn
}

// Close releases the file. Closing twice is harmless.
func (f *Flash) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	if err := f.file.Close(); err != nil {
		return fmt.Errorf("sim: flash: close: %w", err)
	}
	return nil
}
