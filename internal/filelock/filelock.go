// Package filelock takes exclusive advisory locks on open files, so that two
// processes never drive the same emulated HSM or sign with the same
// hash-based key file at once.
package filelock

import "errors"

// ErrLocked: another process (or another open of the file in this one)
// holds the lock.
var ErrLocked = errors.New("locked by another process")
