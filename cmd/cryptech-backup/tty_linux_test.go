package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the terminal end of a new pseudo-terminal.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	_, tty := openPTYPair(t)
	return tty
}

// openPTYPair returns both ends of a new pseudo-terminal: what is written
// to tty is read from master.
func openPTYPair(t *testing.T) (master, tty *os.File) {
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
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return master, tty
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

// onTerminal runs the CLI with stderr on a new pseudo-terminal and returns
// the exit status and what the terminal was sent.
func onTerminal(t *testing.T, e *env, args []string) (int, string) {
	t.Helper()
	master, tty := openPTYPair(t)
	e.stderr = tty
	shown := make(chan []byte, 1)
	go func() {
		var out []byte
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil { // EIO once the terminal end is closed
				shown <- out
				return
			}
		}
	}()
	status := run(args, e)
	tty.Close()
	select {
	case out := <-shown:
		return status, string(out)
	case <-time.After(10 * time.Second):
		t.Fatalf("%v: the terminal did not close", args)
		return 0, ""
	}
}

// Long work on a terminal keeps a progress line up to date, and clears it
// before anything else is written: HSS keygen (to a file or in the HSM) and
// the first signature of a key file or of a key the HSM loads count
// leaves, export counts keys.
func TestProgressOnTerminal(t *testing.T) {
	dir := t.TempDir()
	kekek, id := makeSource(t, dir)
	msg := filepath.Join(dir, "msg")
	if err := os.WriteFile(msg, []byte("m"), 0o600); err != nil {
		t.Fatal(err)
	}
	prv := filepath.Join(dir, "k.prv")
	for _, tc := range []struct {
		args           []string
		progress, rest string
	}{
		{[]string{"hashsig", "keygen", "--lms", "sha256-m32-h5", "--lmots", "sha256-n32-w4", "--priv", prv, "--pub", filepath.Join(dir, "k.pub")},
			`cryptech-backup hashsig keygen: building HSS trees: \d+/32 leaves \(\d+%\)`,
			`cryptech-backup: HSS key with 32 signatures; keep \S+k.prv secret and never copy it to sign elsewhere\r\n`},
		{[]string{"hashsig", "sign", "--priv", prv, "-i", msg, "-o", filepath.Join(dir, "k.sig")},
			`cryptech-backup hashsig sign: building HSS trees: \d+/32 leaves \(\d+%\)`, ``},
		{[]string{"sign", "--hsm", filepath.Join(dir, "src"), "--key", id.String(), "-i", msg, "-o", filepath.Join(dir, "hsm.sig")},
			`cryptech-backup sign: building HSS trees: \d+/32 leaves \(\d+%\)`, ``},
		{[]string{"keygen", "hashsig", "--hsm", filepath.Join(dir, "src"), "--lms", "sha256-m32-h5", "--lmots", "sha256-n32-w4"},
			`cryptech-backup keygen: building HSS trees: \d+/32 leaves \(\d+%\)`, ``},
		{[]string{"export", "--hsm", filepath.Join(dir, "src"), "-i", kekek, "-o", filepath.Join(dir, "bundle.json")},
			`cryptech-backup export: \d/2 keys \(\d+%\)`, `cryptech-backup: exported 2 keys (?s:.*)`},
	} {
		status, shown := onTerminal(t, pinEnv(&bytes.Buffer{}, nil), tc.args)
		if status != 0 {
			t.Fatalf("%v: exit status %d, terminal %q", tc.args, status, shown)
		}
		// Lines drawn over each other, then cleared, then the rest.
		re := regexp.MustCompile(`^(?:\r` + tc.progress + `)+\r\x1b\[K(` + tc.rest + `)$`)
		if !re.MatchString(shown) {
			t.Errorf("%v: terminal got %q, want progress lines matching %s, a clear, then %q", tc.args, shown, tc.progress, tc.rest)
		}
	}
}
