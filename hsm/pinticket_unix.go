//go:build unix

package hsm

import (
	"io/fs"
	"os"
	"syscall"
)

// mineAlone reports whether fi is owned by this process's user, with no
// access for group or others.
func mineAlone(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid() && fi.Mode().Perm()&ticketNoAccess == 0
}

// openNoFollow opens path for reading, refusing a symbolic link.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}
