//go:build unix

package sim

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A FIFO or a device in the master key file's place is refused without
// waiting for a writer or reading without end.
func TestMKMNotARegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), mkmFileName)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openMKM(path); !errors.Is(err, errMKMCorrupt) {
		t.Errorf("a FIFO: %v", err)
	}
	os.Remove(path)
	if err := os.Symlink("/dev/zero", path); err != nil {
		t.Fatal(err)
	}
	if _, err := openMKM(path); !errors.Is(err, errMKMCorrupt) {
		t.Errorf("/dev/zero: %v", err)
	}
}
