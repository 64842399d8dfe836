package main

import (
	"bytes"
	"fmt"
	"io"
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
// leaves; export, import, store (and its check before --delete) and
// restore count keys.
func TestProgressOnTerminal(t *testing.T) {
	dir := t.TempDir()
	kekek, id := makeSource(t, dir)
	msg := filepath.Join(dir, "msg")
	if err := os.WriteFile(msg, []byte("m"), 0o600); err != nil {
		t.Fatal(err)
	}
	prv, src, dst := filepath.Join(dir, "k.prv"), filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	bundle, stored := filepath.Join(dir, "bundle.json"), filepath.Join(dir, "stored.json")
	// drawn is a progress line drawn over itself, then cleared.
	drawn := func(what, unit string) string {
		return `(?:\rcryptech-backup ` + what + `: \d+/\d+ ` + unit + ` \(\d+%\))+\r\x1b\[K`
	}
	trees := func(what string) string { return drawn(what+": building HSS trees", "leaves") }
	noCache := func() {
		if err := os.Remove(prv + ".cache"); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		args  []string
		want  string
		first func()
	}{
		{args: []string{"hashsig", "keygen", "--lms", "sha256-m32-h5", "--lmots", "sha256-n32-w4", "--priv", prv, "--pub", filepath.Join(dir, "k.pub")},
			want: trees("hashsig keygen") + `cryptech-backup: HSS key with 32 signatures; keep \S+k.prv secret and never copy it to sign elsewhere\r\n`},
		// With the tree cache keygen wrote, nothing to build; without, the trees.
		{args: []string{"hashsig", "sign", "--priv", prv, "-i", msg, "-o", filepath.Join(dir, "k.sig")}, want: ``},
		{args: []string{"hashsig", "sign", "--priv", prv, "-i", msg, "-o", filepath.Join(dir, "k2.sig")}, want: trees("hashsig sign"), first: noCache},
		{args: []string{"sign", "--hsm", src, "--key", id.String(), "-i", msg, "-o", filepath.Join(dir, "hsm.sig")}, want: trees("sign")},
		{args: []string{"keygen", "hashsig", "--hsm", src, "--lms", "sha256-m32-h5", "--lmots", "sha256-n32-w4"}, want: trees("keygen")},
		{args: []string{"export", "--hsm", src, "-i", kekek, "-o", bundle}, want: drawn("export", "keys") + `cryptech-backup: exported 2 keys (?s:.*)`},
		{args: []string{"import", "--hsm", dst, "-i", bundle}, want: drawn("import", "keys") + `(?s:.*)`},
		{args: []string{"store", "--hsm", src, "--all", "-o", stored, "--delete"},
			want: drawn("store", "keys") + `cryptech-backup: stored 3 keys .*\r\n` + drawn("store --delete: checking", "keys") + `cryptech-backup: \S+ read back and checked; .*\r\n`},
		{args: []string{"restore", "--hsm", src, "-i", stored}, want: drawn("restore", "keys") + `(?s:.*)`},
	} {
		if tc.first != nil {
			tc.first()
		}
		status, shown := onTerminal(t, pinEnv(&bytes.Buffer{}, nil), tc.args)
		if status != 0 {
			t.Fatalf("%v: exit status %d, terminal %q", tc.args, status, shown)
		}
		if !regexp.MustCompile(`^` + tc.want + `$`).MatchString(shown) {
			t.Errorf("%v: terminal got %q, want %s", tc.args, shown, tc.want)
		}
	}
}

// The line of work that an unanswered interrupt gives up on is cleared
// before "interrupted" is written, which then starts a line of its own;
// the work's own end, later, writes nothing more.
func TestEndProgressClearsTheLine(t *testing.T) {
	master, tty := openPTYPair(t)
	e := pinEnv(&bytes.Buffer{}, tty)
	report, end := e.progress("keygen"+buildingTrees, "leaves")
	report(7, 32)
	e.endProgress()
	report(8, 32)
	end()
	tty.Close()
	shown, _ := io.ReadAll(master) // EIO at the end
	if want := "\rcryptech-backup keygen: building HSS trees: 7/32 leaves (21%)\r\x1b[K"; string(shown) != want {
		t.Errorf("terminal got %q, want %q", shown, want)
	}
}
