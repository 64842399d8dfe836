package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/internal/filelock"
)

// TestHashsigExhaustedKeyFile signs with a height-5 key file until its
// range is used up: the next sign fails with one line and leaves the file
// as it was.
func TestHashsigExhaustedKeyFile(t *testing.T) {
	dir := t.TempDir()
	priv, pub, msg := filepath.Join(dir, "k.prv"), filepath.Join(dir, "k.pub"), filepath.Join(dir, "msg")
	if err := os.WriteFile(msg, []byte("m"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, _, stderr := testEnv("")
	if st := run([]string{"hashsig", "keygen", "--lms", "sha256-m32-h5", "--lmots", "sha256-n32-w8", "--priv", priv, "--pub", pub}, e); st != 0 {
		t.Fatalf("keygen: %d %s", st, stderr)
	}
	if fi, err := os.Stat(priv); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v %v", fi.Mode(), err)
	}
	for i := range 32 {
		e, _, stderr := testEnv("")
		if st := run([]string{"hashsig", "sign", "--priv", priv, "-i", msg, "-o", filepath.Join(dir, "sig")}, e); st != 0 {
			t.Fatalf("signature %d: %d %s", i, st, stderr)
		}
		os.Remove(filepath.Join(dir, "sig"))
	}
	before, _ := os.ReadFile(priv)
	e, _, stderr = testEnv("")
	st := run([]string{"hashsig", "sign", "--priv", priv, "-i", msg, "-o", filepath.Join(dir, "sig")}, e)
	if st != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "key exhausted") {
		t.Errorf("33rd signature: status %d, stderr %q", st, stderr)
	}
	after, _ := os.ReadFile(priv)
	if !bytes.Equal(before, after) {
		t.Error("the exhausted key file was changed")
	}
	if _, err := os.Stat(filepath.Join(dir, "sig")); err == nil {
		t.Error("a signature file was written")
	}
}

// hashsigKey makes a height-5 key file k.prv (and k.pub) in a new directory.
func hashsigKey(t *testing.T) (dir, priv, pub, msg string) {
	t.Helper()
	dir = t.TempDir()
	priv, pub, msg = filepath.Join(dir, "k.prv"), filepath.Join(dir, "k.pub"), filepath.Join(dir, "msg")
	if err := os.WriteFile(msg, []byte("m"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, _, stderr := testEnv("")
	if st := run([]string{"hashsig", "keygen", "--lms", "sha256-m32-h5", "--lmots", "sha256-n32-w8", "--priv", priv, "--pub", pub}, e); st != 0 {
		t.Fatalf("keygen: %d %s", st, stderr)
	}
	return dir, priv, pub, msg
}

// hashsigSign runs hashsig sign and returns its status, stdout and stderr.
func hashsigSign(args ...string) (int, []byte, string) {
	e, stdout, stderr := testEnv("")
	st := run(append([]string{"hashsig", "sign"}, args...), e)
	return st, stdout.Bytes(), stderr.String()
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestHashsigSignThroughSymlink: a key file signed through a symlink and
// then under its real name uses two indexes, and the symlink stays one.
func TestHashsigSignThroughSymlink(t *testing.T) {
	dir, priv, pub, msg := hashsigKey(t)
	link := filepath.Join(dir, "link.prv")
	if err := os.Symlink("k.prv", link); err != nil {
		t.Skipf("no symlinks here: %v", err)
	}
	states := [][]byte{readFile(t, priv)}
	var sigs [][]byte
	for _, path := range []string{link, priv} {
		st, sig, stderr := hashsigSign("--priv", path, "-i", msg)
		if st != 0 {
			t.Fatalf("sign with %s: %d %s", path, st, stderr)
		}
		sigs = append(sigs, sig)
		states = append(states, readFile(t, priv))
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer a symlink: %v %v", link, fi.Mode(), err)
	}
	var idx [2]uint64
	for i, sig := range sigs {
		var err error
		if idx[i], err = hashsig.SignatureIndex(sig); err != nil {
			t.Fatal(err)
		}
		sigFile := filepath.Join(dir, fmt.Sprint(i, ".sig"))
		if err := os.WriteFile(sigFile, sig, 0o600); err != nil {
			t.Fatal(err)
		}
		e, _, stderr := testEnv("")
		if st := run([]string{"hashsig", "verify", "--pub", pub, "--sig", sigFile, "-i", msg}, e); st != 0 {
			t.Errorf("signature %d does not verify: %s", i, stderr)
		}
	}
	if idx[0] == idx[1] {
		t.Errorf("both signatures use index %d", idx[0])
	}
	if bytes.Equal(states[0], states[1]) || bytes.Equal(states[1], states[2]) {
		t.Error("the real key file did not advance at each signature")
	}
}

// TestHashsigSignLocksTheRealFile: signing through a symlink takes the lock
// of the file the link names.
func TestHashsigSignLocksTheRealFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock on this platform")
	}
	dir, priv, _, msg := hashsigKey(t)
	link := filepath.Join(t.TempDir(), "link.prv")
	if err := os.Symlink(priv, link); err != nil {
		t.Skipf("no symlinks here: %v", err)
	}
	lock, err := os.OpenFile(priv+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := filelock.Lock(lock); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, priv)
	st, _, stderr := hashsigSign("--priv", link, "-i", msg, "-o", filepath.Join(dir, "sig"))
	if st != 1 || stderr != "cryptech-backup: error: "+link+" is in use by another process\n" {
		t.Errorf("sign while the real file is locked: status %d, stderr %q", st, stderr)
	}
	if !bytes.Equal(before, readFile(t, priv)) {
		t.Error("the key file changed")
	}
}

// TestHashsigSignRefusesHardLinks: a key file with another name could be
// signed with under either, so it is refused under both.
func TestHashsigSignRefusesHardLinks(t *testing.T) {
	dir, priv, _, msg := hashsigKey(t)
	other := filepath.Join(dir, "other.prv")
	if err := os.Link(priv, other); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	before := readFile(t, priv)
	for _, path := range []string{priv, other} {
		st, _, stderr := hashsigSign("--priv", path, "-i", msg, "-o", path+".sig")
		want := "cryptech-backup: error: " + path + ": the key file has 2 hard links; a hash-based key file must have one name only\n"
		if st != 1 || stderr != want {
			t.Errorf("sign with %s: status %d, stderr %q; want 1 and %q", path, st, stderr, want)
		}
	}
	if !bytes.Equal(before, readFile(t, priv)) || !bytes.Equal(before, readFile(t, other)) {
		t.Error("the key file changed")
	}
	if _, err := os.Stat(priv + ".sig"); err == nil {
		t.Error("a signature file was written")
	}
}

// TestHashsigSignMissingKeyFile: no key file, no lock file left behind.
func TestHashsigSignMissingKeyFile(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "missing.prv"), dir} {
		st, _, stderr := hashsigSign("--priv", path, "-i", os.DevNull)
		want := map[string]string{dir: "not a regular file"}[path]
		if want == "" {
			want = "no such file or directory"
		}
		if st != 1 || stderr != "cryptech-backup: error: "+path+": "+want+"\n" {
			t.Errorf("sign with %s: status %d, stderr %q", path, st, stderr)
		}
		if _, err := os.Lstat(path + ".lock"); err == nil {
			t.Errorf("%s.lock was created", path)
		}
	}
}

// TestHashsigSignUnwritableOutput: an output directory the signature cannot
// be written to is found before the key file advances.
func TestHashsigSignUnwritableOutput(t *testing.T) {
	if os.Geteuid() == 0 || runtime.GOOS == "windows" {
		t.Skip("needs directory permissions that apply")
	}
	dir, priv, _, msg := hashsigKey(t)
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, priv)
	st, _, stderr := hashsigSign("--priv", priv, "-i", msg, "-o", filepath.Join(ro, "sig"))
	if st != 1 || !strings.Contains(stderr, "permission denied") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("status %d, stderr %q", st, stderr)
	}
	if !bytes.Equal(before, readFile(t, priv)) {
		t.Error("the key file advanced")
	}
}

// TestHashsigKeygenUsage: parameter lists that do not fit --levels, mixed
// hash families and one file for both keys are usage errors, and nothing is
// written.
func TestHashsigKeygenUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"--levels", "1", "--lms", "sha256-m32-h5,sha256-m32-h5", "--lmots", "sha256-n32-w4"}, "--lms and --lmots take one type or 1"},
		{[]string{"--levels", "2", "--lms", "sha256-m32-h5", "--lmots", "sha256-n32-w4,sha256-n32-w4,sha256-n32-w4"}, "--lms and --lmots take one type or 2"},
		{[]string{"--lms", "sha256-m32-h5", "--lmots", "shake256-n32-w4"}, "every level must use one hash and output size"},
		{[]string{"--levels", "2", "--lms", "sha256-m32-h5,sha256-m24-h5", "--lmots", "sha256-n32-w4,sha256-n24-w4"}, "every level must use one hash and output size"},
		{[]string{"--lms", "sha256-m32-h5", "--lmots", "sha256-n32-w4", "--pub", "k.prv"}, "--priv and --pub name the same file"},
		{[]string{"--lms", "sha256-m32-h5", "--lmots", "sha256-n32-w4", "--pub", "sub/../k.prv", "--force"}, "--priv and --pub name the same file"},
	} {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
		args := []string{"hashsig", "keygen", "--priv", filepath.Join(dir, "k.prv"), "--pub", filepath.Join(dir, "k.pub")}
		for i := 0; i < len(tc.args); i += 2 {
			if tc.args[i] == "--pub" {
				tc.args[i+1] = dir + string(filepath.Separator) + tc.args[i+1]
			}
		}
		args = append(args, tc.args...)
		e, _, stderr := testEnv("")
		if st := run(args, e); st != 2 || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%v: status %d, stderr %q; want 2 and %q", tc.args, st, stderr, tc.stderr)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("%v: files were written: %v", tc.args, entries)
		}
	}
}
