package sim

import "errors"

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

// Flash is a NOR flash chip persisted as a file of Blocks()*BlockSize bytes.
type Flash struct{}

// Blocks returns the number of erase blocks.
func (f *Flash) Blocks() int { panic("TODO") }

// Read reads len(p) bytes of block at offset off.
func (f *Flash) Read(block, off int, p []byte) error { panic("TODO") }

// Erase sets every bit of block to one.
func (f *Flash) Erase(block int) error { panic("TODO") }

// Program writes data at offset off of block. Like real NOR flash it can only
// clear bits: if data has a 1 where the chip holds a 0, nothing is written and
// ErrProgramSetsBits is returned.
func (f *Flash) Program(block, off int, data []byte) error { panic("TODO") }

// Sync makes every completed write durable on the host's disk.
func (f *Flash) Sync() error { panic("TODO") }

// Writes returns how many erase and program operations have completed.
func (f *Flash) Writes() int { panic("TODO") }

// CutPowerAfter arranges for power to fail after n more erase or program
// operations complete: operation n+1 does not happen (or, when torn is true,
// only its first half does), and it and every operation after it return
// ErrPowerLost. Tests use it to crash the keystore at every write point.
func (f *Flash) CutPowerAfter(n int, torn bool) { panic("TODO") }

// Close releases the file.
func (f *Flash) Close() error { panic("TODO") }
