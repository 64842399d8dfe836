//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sim

import (
	"errors"
	"os"
)

// lockFile fails where flock is not available: without the lock, two
// processes could drive the same flash, so the board is not opened at all.
func lockFile(f *os.File) error {
	return errors.New("sim: board locking is not supported on this platform")
}
