package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
