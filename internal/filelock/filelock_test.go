package filelock

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestSecondLockIsRefusedUntilTheFirstCloses(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock on this platform: Lock always fails")
	}
	path := filepath.Join(t.TempDir(), "state")
	open := func() *os.File {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a, b := open(), open()
	defer b.Close()
	if err := Lock(a); err != nil {
		t.Fatal(err)
	}
	if err := Lock(b); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: got %v, want ErrLocked", err)
	}
	a.Close()
	if err := Lock(b); err != nil {
		t.Fatalf("lock after the first holder closed: %v", err)
	}
}

func TestLinksCountsHardLinks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	count := func() uint64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		n, ok := Links(fi)
		if !ok {
			t.Skip("no link count on this platform")
		}
		return n
	}
	if n := count(); n != 1 {
		t.Fatalf("a new file has %d links, want 1", n)
	}
	if err := os.Link(path, filepath.Join(dir, "other")); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	if n := count(); n != 2 {
		t.Fatalf("after os.Link: %d links, want 2", n)
	}
}
