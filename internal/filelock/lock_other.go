//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package filelock

import (
	"errors"
	"os"
)

// Lock fails where flock is not available: without the lock two processes
// could use one state file at once, so callers refuse to go on.
func Lock(f *os.File) error {
	return errors.New("file locking is not supported on this platform")
}
