package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

type brokenPipe struct{}

func (brokenPipe) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// An HSS signature that cannot be written to stdout (a closed pipe) fails
// with one line that says a signature was used, and exactly one was.
func TestSignHashsigToClosedPipe(t *testing.T) {
	dir := t.TempDir()
	_, id := makeSource(t, dir)
	src := filepath.Join(dir, "src")
	msg := filepath.Join(dir, "msg")
	os.WriteFile(msg, []byte("message"), 0o600)
	before := remaining(t, src, id)
	var stderr bytes.Buffer
	if status := run([]string{"sign", "--hsm", src, "--key", id.String(), "-i", msg}, pinEnv(brokenPipe{}, &stderr)); status != 1 {
		t.Fatalf("exit status %d, want 1; stderr %q", status, stderr.String())
	}
	checkOneLine(t, stderr.String(), `^cryptech-backup: error: write standard output: broken pipe; the signature was made and lost: one signature of HSS key `+id.String()+` was used \(\d+ left\)$`)
	if after := remaining(t, src, id); after != before-1 {
		t.Errorf("signatures left: %d before, %d after; want one fewer", before, after)
	}
}

// remaining is what the HSS key id in the emulated HSM dir has left.
func remaining(t *testing.T, dir string, id hsmapi.UUID) uint64 {
	t.Helper()
	h, err := hsm.Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s := h.NewSession()
	defer s.Close()
	ctx := context.Background()
	if err := s.Login(ctx, hsmapi.UserWheel, []byte(fixesPIN)); err != nil {
		t.Fatal(err)
	}
	k, err := s.Key(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return k.Hashsig.Remaining
}
