package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the terminal end of a new pseudo-terminal.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return tty
}

// export or import without -i on a terminal says what file to give,
// instead of waiting for JSON typed at the keyboard.
func TestInputFromTerminal(t *testing.T) {
	dir := t.TempDir()
	makeSource(t, dir)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "--hsm", filepath.Join(dir, "src"), "-o", filepath.Join(dir, "backup.json")},
			`^cryptech-backup export: stdin is a terminal: give the KEKEK file with -i FILE \(cryptech-backup export --help shows the flags\)$`},
		{[]string{"import", "--hsm", filepath.Join(dir, "dst")},
			`^cryptech-backup import: stdin is a terminal: give the bundle with -i FILE \(cryptech-backup import --help shows the flags\)$`},
	} {
		var stdout, stderr bytes.Buffer
		e := pinEnv(&stdout, &stderr)
		e.stdin = openPTY(t)
		done := make(chan int, 1)
		go func() { done <- run(tc.args, e) }()
		select {
		case status := <-done:
			if status != 2 {
				t.Errorf("%v: exit status %d, want 2", tc.args, status)
			}
			checkOneLine(t, stderr.String(), tc.want)
		case <-time.After(10 * time.Second):
			t.Fatalf("%v: still reading the terminal after 10 s", tc.args)
		}
	}
}
