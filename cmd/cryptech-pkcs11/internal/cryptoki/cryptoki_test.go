package cryptoki

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// newModule is a module on a fresh emulated HSM (PINs hsmtest.PIN); closed
// reports whether Finalize released it.
func newModule(t *testing.T) (m *Module, closed *bool) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hsm")
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: hsmtest.PIN, SOPIN: hsmtest.PIN, UserPIN: hsmtest.PIN, Blocks: 128}, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	closed = new(bool)
	t.Cleanup(func() { h.Close() })
	return New(func() ([]*Token, error) {
		*closed = false
		return []*Token{{Opener: h, Close: func() error { *closed = true; return nil }, MinPIN: hsm.MinPINLength, MaxPIN: hsm.MaxPINLength}}, nil
	}), closed
}

func TestInitializeArgs(t *testing.T) {
	for _, c := range []struct {
		name string
		args InitArgs
		want RV
	}{
		{"no mutexes, no flags", InitArgs{}, OK},
		{"OS locking", InitArgs{Flags: FlagOSLockingOK}, OK},
		{"app mutexes and OS locking", InitArgs{Mutexes: 4, Flags: FlagOSLockingOK}, OK},
		{"app mutexes only", InitArgs{Mutexes: 4}, CantLock},
		{"some mutexes", InitArgs{Mutexes: 2, Flags: FlagOSLockingOK}, ArgumentsBad},
		{"reserved", InitArgs{Reserved: true}, ArgumentsBad},
		// As NSS and GnuTLS ask.
		{"no threads", InitArgs{Flags: FlagLibraryCantCreateOSThreads | FlagOSLockingOK}, OK},
		{"no threads, app mutexes", InitArgs{Mutexes: 4, Flags: FlagLibraryCantCreateOSThreads | FlagOSLockingOK}, OK},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, closed := newModule(t)
			if rv := m.Initialize(&c.args); rv != c.want {
				t.Fatalf("Initialize: %#x, want %#x", rv, c.want)
			}
			want := OK
			if c.want != OK {
				want = CryptokiNotInitialized
			}
			if rv := m.Finalize(false); rv != want {
				t.Fatalf("Finalize: %#x, want %#x", rv, want)
			}
			if c.want == OK && !*closed {
				t.Fatal("Finalize left the HSM open")
			}
		})
	}
}

func TestInitializeWithoutHSM(t *testing.T) {
	m := New(func() ([]*Token, error) { return nil, errors.New("no HSM") })
	if rv := m.Initialize(nil); rv != GeneralError {
		t.Fatalf("Initialize: %#x", rv)
	}
	if rv := m.Initialized(); rv != CryptokiNotInitialized {
		t.Fatalf("after a failed Initialize: %#x", rv)
	}
}

func TestLoginBadInput(t *testing.T) {
	m, _ := newModule(t)
	if rv := m.Initialize(nil); rv != OK {
		t.Fatal(rv)
	}
	defer m.Finalize(false)
	h, rv := m.OpenSession(slotID, FlagSerialSession|FlagRWSession)
	if rv != OK {
		t.Fatal(rv)
	}
	for _, c := range []struct {
		name string
		user uint
		pin  []byte
		want RV
	}{
		{"short PIN", UserUser, []byte("abc"), PINLenRange},
		{"context specific", UserContextSpecific, hsmtest.PIN, OperationNotInitialized},
		{"unknown user", 3, hsmtest.PIN, UserTypeInvalid},
	} {
		if rv := m.Login(h, c.user, c.pin); rv != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, rv, c.want)
		}
	}
	if rv := m.Login(h+1, UserUser, hsmtest.PIN); rv != SessionHandleInvalid {
		t.Errorf("login on no session: %#x", rv)
	}
	if info, _ := m.SessionInfo(h); info.State != StateRWPublic {
		t.Errorf("state after refused logins: %d", info.State)
	}
}

// Sessions opened, used and closed from many goroutines while others log
// in and out: under -race, any state touched outside the locks shows.
func TestSessionsAcrossGoroutines(t *testing.T) {
	m, closed := newModule(t)
	if rv := m.Initialize(&InitArgs{Flags: FlagOSLockingOK}); rv != OK {
		t.Fatal(rv)
	}
	keep, rv := m.OpenSession(slotID, FlagSerialSession|FlagRWSession)
	if rv != OK {
		t.Fatal(rv)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for range 20 {
				h, rv := m.OpenSession(slotID, FlagSerialSession|FlagRWSession)
				if rv != OK {
					errs <- fmt.Errorf("goroutine %d: OpenSession: %#x", g, rv)
					return
				}
				if _, rv := m.SessionInfo(h); rv != OK {
					errs <- fmt.Errorf("goroutine %d: SessionInfo: %#x", g, rv)
				}
				switch rv := m.Login(h, UserUser, hsmtest.PIN); rv {
				case OK, UserAlreadyLoggedIn:
				default:
					errs <- fmt.Errorf("goroutine %d: Login: %#x", g, rv)
				}
				switch rv := m.Logout(h); rv {
				case OK, UserNotLoggedIn:
				default:
					errs <- fmt.Errorf("goroutine %d: Logout: %#x", g, rv)
				}
				if rv := m.CloseSession(h); rv != OK {
					errs <- fmt.Errorf("goroutine %d: CloseSession: %#x", g, rv)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, _ := m.SessionCounts(slotID); n.Sessions != 1 {
		t.Errorf("%d sessions left open, want 1", n.Sessions)
	}
	if rv := m.CloseSession(keep); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.Finalize(false); rv != OK || !*closed {
		t.Fatalf("Finalize: %#x, HSM closed %v", rv, *closed)
	}
}

// failingOpener is an HSM that cannot be reached.
type failingOpener struct{}

func (failingOpener) Open(context.Context) (hsmapi.Token, error) {
	return nil, errors.New("unreachable")
}

// When the front end cannot open one slot's token, Initialize fails and
// every HSM the opener gave is closed: the ones before and after it too.
func TestInitializeAllOrNothing(t *testing.T) {
	h := hsmtest.New(t)
	var closed [3]bool
	var logged []error
	m := New(func() ([]*Token, error) {
		closed = [3]bool{}
		toks := make([]*Token, 3)
		for i := range toks {
			var o frontend.Opener = failingOpener{}
			if i != 1 {
				o = sessionOpener{h}
			}
			toks[i] = &Token{Opener: o, Close: func() error { closed[i] = true; return nil }, MinPIN: hsm.MinPINLength, MaxPIN: hsm.MaxPINLength}
		}
		return toks, nil
	})
	m.Log = func(err error) { logged = append(logged, err) }
	if rv := m.Initialize(nil); rv != GeneralError {
		t.Fatalf("Initialize: %#x", rv)
	}
	if closed != [3]bool{true, true, true} {
		t.Fatalf("closed after a failed Initialize: %v", closed)
	}
	if len(logged) != 1 || !strings.Contains(logged[0].Error(), "slot 1: unreachable") {
		t.Fatalf("logged %v", logged)
	}
	if rv := m.Initialized(); rv != CryptokiNotInitialized {
		t.Fatalf("after a failed Initialize: %#x", rv)
	}
}

// sessionOpener opens sessions on an HSM session's HSM.
type sessionOpener struct{ s *hsm.Session }

func (o sessionOpener) Open(ctx context.Context) (hsmapi.Token, error) { return o.s, nil }

// Two slots used at once from many goroutines: sessions, logins and
// logouts on each, under -race. Each session stays in its slot, and every
// handle is one slot's only.
func TestTwoSlotsAcrossGoroutines(t *testing.T) {
	var hs [2]*hsm.HSM
	for i := range hs {
		h, err := hsm.Create(filepath.Join(t.TempDir(), "hsm"), hsm.InitConfig{WheelPIN: hsmtest.PIN, SOPIN: hsmtest.PIN, UserPIN: hsmtest.PIN, Blocks: 128}, hsmtest.Options)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		hs[i] = h
	}
	m := New(func() ([]*Token, error) {
		var toks []*Token
		for _, h := range hs {
			toks = append(toks, &Token{Opener: h, Close: func() error { return nil }, MinPIN: hsm.MinPINLength, MaxPIN: hsm.MaxPINLength})
		}
		return toks, nil
	})
	if rv := m.Initialize(nil); rv != OK {
		t.Fatal(rv)
	}
	defer m.Finalize(false)
	if ids, rv := m.SlotList(); rv != OK || len(ids) != 2 {
		t.Fatalf("SlotList: %v, %#x", ids, rv)
	}
	var mu sync.Mutex
	seen := map[uint]uint{}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		slot := uint(g % 2)
		wg.Go(func() {
			for range 20 {
				h, rv := m.OpenSession(slot, FlagSerialSession|FlagRWSession)
				if rv != OK {
					errs <- fmt.Errorf("OpenSession on slot %d: %#x", slot, rv)
					return
				}
				mu.Lock()
				if other, ok := seen[h]; ok {
					errs <- fmt.Errorf("handle %d given on slot %d and slot %d", h, other, slot)
				}
				seen[h] = slot
				mu.Unlock()
				if info, rv := m.SessionInfo(h); rv != OK || info.Slot != slot {
					errs <- fmt.Errorf("session %d of slot %d: %+v, %#x", h, slot, info, rv)
				}
				switch rv := m.Login(h, UserUser, hsmtest.PIN); rv {
				case OK, UserAlreadyLoggedIn:
				default:
					errs <- fmt.Errorf("Login on slot %d: %#x", slot, rv)
				}
				if rv := m.CloseSession(h); rv != OK {
					errs <- fmt.Errorf("CloseSession: %#x", rv)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for id := range uint(2) {
		if n, _ := m.SessionCounts(id); n.Sessions != 0 {
			t.Errorf("slot %d: %d sessions left", id, n.Sessions)
		}
	}
}
