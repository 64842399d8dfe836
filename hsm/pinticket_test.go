package hsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/sharetest"
)

// ticketRig is an HSM with PIN tickets, a boot id and a clock the test
// sets, and its ticket directory.
type ticketRig struct {
	t       *testing.T
	dir     string
	tickets string
	boot    []byte
	now     time.Time
	h       *HSM
}

func newTicketRig(t *testing.T, tickets string, cfg InitConfig) *ticketRig {
	t.Helper()
	r := &ticketRig{t: t, dir: filepath.Join(t.TempDir(), "hsm"), tickets: tickets,
		boot: []byte("0f3c2a9e-boot-one"), now: time.Unix(1_800_000_000, 0)}
	cfg.Blocks = 64
	h, err := Create(r.dir, cfg, r.opts())
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	t.Cleanup(func() {
		if r.h != nil {
			r.h.Close()
		}
	})
	return r
}

func (r *ticketRig) opts() Options {
	o := testOptions
	o.PINTickets = &PINTickets{Dir: r.tickets,
		BootID: func() ([]byte, error) { return r.boot, nil },
		Now:    func() time.Time { return r.now }}
	return o
}

// reopen powers the HSM off and on, as the next command of the CLI does:
// whatever the last one kept in memory is gone.
func (r *ticketRig) reopen() *HSM {
	r.t.Helper()
	if r.h != nil {
		r.h.Close()
	}
	h, err := Open(r.dir, r.opts())
	if err != nil {
		r.t.Fatal(err)
	}
	r.h = h
	return h
}

func (r *ticketRig) login(u hsmapi.User, pin []byte) (*Session, error) {
	s := r.h.NewSession()
	if err := s.Login(ctx, u, pin); err != nil {
		s.Close()
		return nil, err
	}
	r.t.Cleanup(func() { s.Close() })
	return s, nil
}

func (r *ticketRig) mustLogin(u hsmapi.User, pin []byte) *Session {
	r.t.Helper()
	s, err := r.login(u, pin)
	if err != nil {
		r.t.Fatalf("login as %s: %v", u, err)
	}
	return s
}

func (r *ticketRig) path(u hsmapi.User) string { return r.h.ticketPath(u) }

func (r *ticketRig) ticket(u hsmapi.User) []byte {
	r.t.Helper()
	b, err := os.ReadFile(r.path(u))
	if err != nil {
		r.t.Fatalf("%s's ticket: %v", u, err)
	}
	return b
}

func (r *ticketRig) checks(want PINCheckStats) {
	r.t.Helper()
	if got := r.h.PINChecks(); got != want {
		r.t.Errorf("PIN checks: got %+v, want %+v", got, want)
	}
}

var ticketPINs = InitConfig{WheelPIN: wheelPIN, SOPIN: soPIN, UserPIN: userPIN}

// TestPINTicketSparesTheFullCheck follows an operator's commands: the first
// login pays the PBKDF2 and leaves a ticket, the next one in the same HSM
// object passes on the in-memory verifier, the next command's on the
// ticket, and the session so opened signs with a key that verifies.
func TestPINTicketSparesTheFullCheck(t *testing.T) {
	r := newTicketRig(t, privateDir(t), ticketPINs)
	r.reopen()
	r.mustLogin(hsmapi.UserWheel, wheelPIN)
	r.checks(PINCheckStats{Full: 1})
	fi, err := os.Stat(r.path(hsmapi.UserWheel))
	if err != nil {
		t.Fatalf("no ticket after a full check: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("ticket mode %v, want 0600", fi.Mode().Perm())
	}
	if tk := r.ticket(hsmapi.UserWheel); bytes.Contains(tk, wheelPIN) {
		t.Errorf("the ticket holds the PIN: %q", tk)
	}
	r.mustLogin(hsmapi.UserWheel, wheelPIN)
	r.checks(PINCheckStats{Full: 1, Verifier: 1})

	r.reopen()
	s := r.mustLogin(hsmapi.UserWheel, wheelPIN)
	r.checks(PINCheckStats{Ticket: 1})
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	if err := hsmapi.SignAndVerify(ctx, s, k, []byte("signed after a ticket login")); err != nil {
		t.Errorf("signature after a ticket login: %v", err)
	}
	// The other users have no ticket yet: each pays once.
	r.mustLogin(hsmapi.UserSO, soPIN)
	r.checks(PINCheckStats{Ticket: 1, Full: 1})
}

// TestPINTicketDoesNotPassAWrongPIN: with a valid ticket beside it, a wrong
// PIN is still refused, after the full check and the wrong-PIN delay, and
// the ticket still serves the right PIN afterwards.
func TestPINTicketDoesNotPassAWrongPIN(t *testing.T) {
	r := newTicketRig(t, privateDir(t), ticketPINs)
	r.reopen()
	r.mustLogin(hsmapi.UserWheel, wheelPIN)
	r.mustLogin(hsmapi.UserWheel, wheelPIN) // and an in-memory verifier
	for _, pin := range [][]byte{userPIN, []byte("wheel-pin-2"), []byte("Wheel-pin-1")} {
		if _, err := r.login(hsmapi.UserWheel, pin); !errors.Is(err, hsmapi.ErrPINIncorrect) {
			t.Errorf("wrong PIN %q beside a ticket: got %v, want ErrPINIncorrect", pin, err)
		}
	}
	r.checks(PINCheckStats{Full: 4, Verifier: 1, Delayed: 3})

	r.reopen()
	if _, err := r.login(hsmapi.UserWheel, soPIN); !errors.Is(err, hsmapi.ErrPINIncorrect) {
		t.Errorf("wrong PIN beside a ticket, new process: got %v, want ErrPINIncorrect", err)
	}
	r.checks(PINCheckStats{Full: 1, Delayed: 1})
	r.mustLogin(hsmapi.UserWheel, wheelPIN)
	r.checks(PINCheckStats{Full: 1, Delayed: 1, Ticket: 1})
}

// TestPINTicketIgnored: a ticket that is not this HSM's, this user's, this
// PIN record's, this master key's or this boot's, or that is damaged,
// expired or not the user's alone, passes nothing; the login takes the full
// check and succeeds, and writes a good ticket in its place.
func TestPINTicketIgnored(t *testing.T) {
	// Every user has the same PIN: a ticket that passed for another user
	// would pass on the PIN alone.
	same := InitConfig{WheelPIN: wheelPIN, SOPIN: wheelPIN, UserPIN: wheelPIN}
	for _, tc := range []struct {
		name string
		// spoil runs with a fresh ticket for wheel in place, on an HSM
		// reopened since, and leaves something for wheel's next login.
		spoil func(t *testing.T, r *ticketRig)
	}{
		{"another HSM's", func(t *testing.T, r *ticketRig) {
			other := newTicketRig(t, r.tickets, same)
			other.reopen()
			other.mustLogin(hsmapi.UserWheel, wheelPIN)
			put(t, r.path(hsmapi.UserWheel), other.ticket(hsmapi.UserWheel))
		}},
		{"another user's", func(t *testing.T, r *ticketRig) {
			r.mustLogin(hsmapi.UserSO, wheelPIN)
			put(t, r.path(hsmapi.UserWheel), r.ticket(hsmapi.UserSO))
		}},
		{"the old PIN record's (the same PIN set again)", func(t *testing.T, r *ticketRig) {
			old := r.ticket(hsmapi.UserWheel)
			s := r.mustLogin(hsmapi.UserWheel, wheelPIN)
			if err := s.SetPIN(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(r.path(hsmapi.UserWheel)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("SetPIN left the old ticket: %v", err)
			}
			put(t, r.path(hsmapi.UserWheel), old)
		}},
		{"the master key's before rotation", func(t *testing.T, r *ticketRig) {
			old := r.ticket(hsmapi.UserWheel)
			s := r.mustLogin(hsmapi.UserSO, wheelPIN)
			if _, err := s.RotateMasterKey(ctx); err != nil {
				t.Fatal(err)
			}
			put(t, r.path(hsmapi.UserWheel), old)
		}},
		{"of a zeroized master key", func(t *testing.T, r *ticketRig) {
			if err := r.h.Tamper(); err != nil {
				t.Fatal(err)
			}
		}},
		{"another boot's", func(t *testing.T, r *ticketRig) { r.boot = []byte("0f3c2a9e-boot-two") }},
		{"expired", func(t *testing.T, r *ticketRig) { r.now = r.now.Add(DefaultPINTicketLifetime) }},
		{"dated ahead (the clock went back)", func(t *testing.T, r *ticketRig) { r.now = r.now.Add(-time.Minute) }},
		{"truncated", func(t *testing.T, r *ticketRig) {
			tk := r.ticket(hsmapi.UserWheel)
			put(t, r.path(hsmapi.UserWheel), tk[:len(tk)-1])
		}},
		{"empty", func(t *testing.T, r *ticketRig) { put(t, r.path(hsmapi.UserWheel), nil) }},
		{"grown", func(t *testing.T, r *ticketRig) {
			put(t, r.path(hsmapi.UserWheel), append(r.ticket(hsmapi.UserWheel), 0))
		}},
		{"bit-flipped in its boot id", func(t *testing.T, r *ticketRig) { flipTicket(t, r, 5) }},
		{"bit-flipped in its expiry", func(t *testing.T, r *ticketRig) { flipTicket(t, r, -sha256.Size-1) }},
		{"bit-flipped in its MAC", func(t *testing.T, r *ticketRig) { flipTicket(t, r, -1) }},
		{"readable by others", func(t *testing.T, r *ticketRig) {
			if err := os.Chmod(r.path(hsmapi.UserWheel), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"a link to a good ticket", func(t *testing.T, r *ticketRig) {
			p := r.path(hsmapi.UserWheel)
			if err := os.Rename(p, p+".real"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(p+".real", p); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTicketRig(t, privateDir(t), same)
			r.reopen()
			r.mustLogin(hsmapi.UserWheel, wheelPIN)
			r.reopen()
			tc.spoil(t, r)
			r.reopen()
			r.mustLogin(hsmapi.UserWheel, wheelPIN)
			if got := r.h.PINChecks(); got.Full != 1 || got.Ticket != 0 {
				t.Errorf("login beside a ticket %s: %+v, want one full check and no ticket pass", tc.name, got)
			}
			if _, err := r.login(hsmapi.UserWheel, []byte("not-the-pin")); !errors.Is(err, hsmapi.ErrPINIncorrect) {
				t.Errorf("wrong PIN after: %v", err)
			}
			// What the full check left is a good ticket, unless there is
			// no master key to key one.
			r.reopen()
			r.mustLogin(hsmapi.UserWheel, wheelPIN)
			want := uint64(1)
			if tc.name == "of a zeroized master key" {
				want = 0
			}
			if got := r.h.PINChecks(); got.Ticket != want {
				t.Errorf("the ticket written after the full check: %+v, want %d ticket pass", got, want)
			}
		})
	}
}

// TestPINTicketsNeedAPrivateDirectory: a ticket directory others may enter,
// or a boot id that cannot be read, means no tickets at all.
func TestPINTicketsNeedAPrivateDirectory(t *testing.T) {
	open := filepath.Join(t.TempDir(), "tickets")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	r := newTicketRig(t, open, ticketPINs)
	r.reopen()
	r.mustLogin(hsmapi.UserWheel, wheelPIN)
	if names, _ := os.ReadDir(open); len(names) != 0 {
		t.Errorf("tickets written to a directory of mode 0755: %v", names)
	}

	missing := filepath.Join(t.TempDir(), "made")
	r = newTicketRig(t, missing, ticketPINs)
	r.reopen()
	r.mustLogin(hsmapi.UserWheel, wheelPIN)
	if fi, err := os.Stat(missing); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("a missing ticket directory is made 0700: %v %v", fi.Mode(), err)
	}

	noBoot := filepath.Join(t.TempDir(), "noboot")
	r = newTicketRig(t, noBoot, ticketPINs)
	o := r.opts()
	o.PINTickets.BootID = func() ([]byte, error) { return nil, os.ErrNotExist }
	h, err := Open(r.dir, o)
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
	r.mustLogin(hsmapi.UserWheel, wheelPIN)
	if names, _ := os.ReadDir(noBoot); len(names) != 0 {
		t.Errorf("tickets written without a boot id: %v", names)
	}
}

// TestPINVerifierForgottenOnTamperAndSetPIN: the in-memory verifier passes
// nothing after a tamper response or once the user's PIN changed.
func TestPINVerifierForgottenOnTamperAndSetPIN(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	login(t, h)
	if got := h.PINChecks(); got.Full != 1 || got.Verifier != 1 {
		t.Fatalf("two logins: %+v, want one full check and one verifier pass", got)
	}
	if err := h.Tamper(); err != nil {
		t.Fatal(err)
	}
	login(t, h)
	if got := h.PINChecks(); got.Full != 2 {
		t.Errorf("login after tamper: %+v, want a second full check", got)
	}
	if err := s.SetPIN(ctx, hsmapi.UserWheel, []byte("new-wheel-pin")); err != nil {
		t.Fatal(err)
	}
	if err := h.NewSession().Login(ctx, hsmapi.UserWheel, wheelPIN); !errors.Is(err, hsmapi.ErrPINIncorrect) {
		t.Errorf("old PIN after SetPIN: got %v, want ErrPINIncorrect", err)
	}
	if got := h.PINChecks(); got.Full != 3 || got.Delayed != 1 {
		t.Errorf("old PIN after SetPIN: %+v, want a full check and the delay", got)
	}
}

// privateDir is a directory for tickets: t.TempDir's own is open to others.
func privateDir(t *testing.T) string {
	return filepath.Join(t.TempDir(), "tickets")
}

func put(t *testing.T, path string, data []byte) {
	t.Helper()
	os.Remove(path)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// flipTicket flips a bit of wheel's ticket at i (from the end if negative).
func flipTicket(t *testing.T, r *ticketRig, i int) {
	t.Helper()
	tk := r.ticket(hsmapi.UserWheel)
	if i < 0 {
		i += len(tk)
	}
	tk[i] ^= 0x10
	put(t, r.path(hsmapi.UserWheel), tk)
}

// TestPINTicketGoneAfterZeroizeAndRestore: a master key restored from its
// shares is the very key that was zeroized, so the tickets keyed from it
// would pass again; zeroize removes them, and the first login after the
// restore pays the full check.
func TestPINTicketGoneAfterZeroizeAndRestore(t *testing.T) {
	r := newTicketRig(t, privateDir(t), ticketPINs)
	r.reopen()
	s := r.mustLogin(hsmapi.UserWheel, wheelPIN)
	f := backupMasterKey(t, s, 2, 2)
	if _, err := os.Stat(r.path(hsmapi.UserWheel)); err != nil {
		t.Fatalf("no ticket before the zeroize: %v", err)
	}
	if err := s.ZeroizeMasterKey(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.path(hsmapi.UserWheel)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the wheel's ticket after a zeroize: %v, want it gone", err)
	}
	sharetest.Restore(t, s, f, 1, 2)
	r.reopen()
	r.mustLogin(hsmapi.UserWheel, wheelPIN)
	r.checks(PINCheckStats{Full: 1})
	r.reopen()
	r.mustLogin(hsmapi.UserWheel, wheelPIN)
	r.checks(PINCheckStats{Ticket: 1})
}
