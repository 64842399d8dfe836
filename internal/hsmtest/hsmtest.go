// Package hsmtest makes emulated HSMs for tests in other packages: quick to
// create, quick to log in to, closed when the test ends.
package hsmtest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hsm"
)

// Options make PINs cheap to check and a wrong one quick to refuse; tests
// log in far more often than an operator does.
var Options = hsm.Options{WrongPINDelay: time.Millisecond, PINIterations: 1000}

// PIN is the wheel, SO and user PIN of the HSMs this package creates.
var PIN = []byte("test-pin")

// Create creates an emulated HSM in dir with 128 flash blocks and returns a
// wheel session on it. The HSM and the session are closed when t ends.
func Create(t testing.TB, dir string) *hsm.Session {
	t.Helper()
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: PIN, SOPIN: PIN, UserPIN: PIN, Blocks: 128}, Options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	s := h.NewSession()
	if err := s.Login(context.Background(), hsm.UserWheel, PIN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// New is Create in a directory of t's own.
func New(t testing.TB) *hsm.Session {
	t.Helper()
	return Create(t, filepath.Join(t.TempDir(), "hsm"))
}
