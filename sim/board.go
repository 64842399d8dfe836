package sim

import "errors"

// ErrNoBoard: the state directory holds no board.
var ErrNoBoard = errors.New("sim: no HSM in this directory")

// ErrBoardExists: Create was pointed at a directory that already holds a board.
var ErrBoardExists = errors.New("sim: an HSM already exists in this directory")

// ErrBoardInUse: another process has the board open.
var ErrBoardInUse = errors.New("sim: HSM is in use by another process")

// DefaultBlocks is the flash size of a new board: 1024 blocks of 8 KiB.
const DefaultBlocks = 1024

// Board is one emulated HSM board, living in a state directory:
// the flash image, the master key memory, and nothing else holding secrets.
type Board struct {
	Dir   string
	TRNG  *TRNG
	MKM   *MasterKeyMemory
	Flash *Flash
}

// CreateBoard makes a new board in dir (created 0700 if missing) with an
// erased flash chip of the given number of blocks (DefaultBlocks if 0) and an
// empty master key memory. It refuses a directory that already has a board.
func CreateBoard(dir string, blocks int) (*Board, error) { panic("TODO") }

// OpenBoard powers on the board in dir: it runs the key wrap core's
// known-answer test and the TRNG health check, and takes an exclusive lock so
// that two processes never drive the same flash.
func OpenBoard(dir string) (*Board, error) { panic("TODO") }

// Close powers the board off, releasing the lock.
func (b *Board) Close() error { panic("TODO") }
