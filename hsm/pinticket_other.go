//go:build !unix

package hsm

import (
	"errors"
	"io/fs"
	"os"
)

// mineAlone: without Unix owners and modes, no directory or file is known
// to be this user's alone, so there are no PIN tickets.
func mineAlone(fs.FileInfo) bool { return false }

func openNoFollow(string) (*os.File, error) {
	return nil, errors.New("PIN tickets need a Unix system")
}
