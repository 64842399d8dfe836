//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package filelock

import "io/fs"

// Links cannot count hard links on this platform: ok is always false.
func Links(fi fs.FileInfo) (n uint64, ok bool) {
	return 0, false
}
