package hsm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

var testIdentityPIN = []byte("test-pin")

func createForIdentity(t *testing.T, dir, label string) *HSM {
	t.Helper()
	h, err := Create(dir, InitConfig{WheelPIN: testIdentityPIN, SOPIN: testIdentityPIN, UserPIN: testIdentityPIN, Blocks: MinBlocks, Label: label},
		Options{PINIterations: 1000, WrongPINDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// The serial number is drawn once, at Create, and kept: the same after a
// restart, another for another HSM. The label defaults to the directory's
// name, and a new one survives a restart.
func TestIdentityStable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vault-a")
	h := createForIdentity(t, dir, "")
	first := h.Identity()
	if first.Label != "vault-a" || len(first.Serial) != 16 || first.Manufacturer != Manufacturer || first.Model != Model {
		t.Fatalf("identity of a new HSM: %+v", first)
	}
	if fi, err := os.Stat(filepath.Join(dir, identityFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v, %v", fi, err)
	}
	if err := h.SetLabel("Vault A"); err != nil {
		t.Fatal(err)
	}
	h.Close()

	h, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.NewSession().Identity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.Serial != first.Serial || got.Label != "Vault A" {
		t.Fatalf("after a restart: %+v, want serial %s, label Vault A", got, first.Serial)
	}
	h.Close()

	other := createForIdentity(t, filepath.Join(t.TempDir(), "b"), "Named")
	defer other.Close()
	if id := other.Identity(); id.Serial == first.Serial || id.Label != "Named" {
		t.Fatalf("another HSM: %+v", id)
	}
}

// An HSM made before it had an identity gets one at its next Open, kept
// from then on.
func TestIdentityMadeAtOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "old")
	createForIdentity(t, dir, "").Close()
	if err := os.Remove(filepath.Join(dir, identityFile)); err != nil {
		t.Fatal(err)
	}
	h, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	made := h.Identity()
	h.Close()
	if made.Label != "old" || len(made.Serial) != 16 {
		t.Fatalf("identity made at open: %+v", made)
	}
	h, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.Identity() != made {
		t.Fatalf("identity changed: %+v, then %+v", made, h.Identity())
	}
}

func TestIdentityRefusals(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hsm")
	if _, err := Create(dir, InitConfig{WheelPIN: testIdentityPIN, SOPIN: testIdentityPIN, UserPIN: testIdentityPIN, Blocks: MinBlocks,
		Label: strings.Repeat("x", 33)}, Options{}); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Fatalf("Create with a label of 33 bytes: %v", err)
	}
	h := createForIdentity(t, dir, "")
	for _, l := range []string{strings.Repeat("x", 33), "tab\there", "trailing "} {
		if err := h.SetLabel(l); !errors.Is(err, hsmapi.ErrBadArguments) {
			t.Errorf("SetLabel(%q): %v", l, err)
		}
	}
	if h.Identity().Label != "hsm" {
		t.Errorf("label after refused changes: %q", h.Identity().Label)
	}
	h.Close()
	for _, bad := range []string{`{"serial":"xyz","label":"a"}`, `{"serial":"0011223344556677","label":"a","extra":1}`, `not json`,
		`{"serial":"0011223344556677","label":"` + strings.Repeat("y", 40) + `"}`} {
		if err := os.WriteFile(filepath.Join(dir, identityFile), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if h, err := Open(dir, Options{}); !errors.Is(err, ErrBadIdentity) {
			if err == nil {
				h.Close()
			}
			t.Errorf("Open with identity %s: %v", bad, err)
		}
	}
}

// InitToken wants the SO's PIN, after the wrong-PIN delay when it is
// wrong; with it, every key is gone (token keys for good, volatile keys of
// every session), the HSM has its new label, and the PINs still work.
func TestInitToken(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "hsm")
	h := createForIdentity(t, dir, "")
	serial := h.Identity().Serial
	user, other := h.NewSession(), h.NewSession()
	for _, s := range []*Session{user, other} {
		if err := s.Login(ctx, hsmapi.UserNormal, testIdentityPIN); err != nil {
			t.Fatal(err)
		}
	}
	for _, req := range []struct {
		s     *Session
		flags hsmapi.Flags
	}{{user, hsmapi.FlagToken}, {user, hsmapi.FlagToken}, {user, 0}, {other, 0}} {
		if _, err := req.s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
			Flags: req.flags | hsmapi.FlagDigitalSignature}); err != nil {
			t.Fatal(err)
		}
	}
	so := h.NewSession()
	if err := so.InitToken(ctx, []byte("wrong-pin"), "new"); !errors.Is(err, hsmapi.ErrPINIncorrect) {
		t.Fatalf("InitToken with a wrong SO PIN: %v", err)
	}
	if err := so.InitToken(ctx, testIdentityPIN, "bad\x01label"); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Fatalf("InitToken with a bad label: %v", err)
	}
	if keys, _ := user.Keys(ctx, hsmapi.Filter{}); len(keys) != 3 {
		t.Fatalf("%d keys after refused InitTokens, want 3", len(keys))
	}
	if err := so.InitToken(ctx, testIdentityPIN, "Fresh"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Session{user, other} {
		if keys, err := s.Keys(ctx, hsmapi.Filter{}); err != nil || len(keys) != 0 {
			t.Fatalf("keys after InitToken: %v, %v", keys, err)
		}
	}
	h.Close()
	h, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if id := h.Identity(); id.Label != "Fresh" || id.Serial != serial {
		t.Fatalf("identity after InitToken and a restart: %+v", id)
	}
	s := h.NewSession()
	if err := s.Login(ctx, hsmapi.UserNormal, testIdentityPIN); err != nil {
		t.Fatalf("the user's PIN after InitToken: %v", err)
	}
	if keys, err := s.Keys(ctx, hsmapi.Filter{}); err != nil || len(keys) != 0 {
		t.Fatalf("keys after InitToken and a restart: %v, %v", keys, err)
	}
}
