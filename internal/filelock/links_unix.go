//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"io/fs"
	"syscall"
)

// Links returns how many hard links (names) the file fi describes has; ok is
// false where the platform does not say.
func Links(fi fs.FileInfo) (n uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Nlink), true
}
