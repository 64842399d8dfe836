package cryptoki

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// pinDelay is the wrong-PIN delay of the HSMs of these tests: long enough
// to see that each wrong PIN costs it.
const pinDelay = 100 * time.Millisecond

// pinModule is an initialized module on a fresh emulated HSM (every PIN
// hsmtest.PIN) with a wrong-PIN delay of pinDelay; wrap, when not nil,
// stands between the front end and the HSM.
func pinModule(t *testing.T, label string, wrap func(frontend.Opener) frontend.Opener) (*Module, *hsm.HSM) {
	t.Helper()
	h, err := hsm.Create(filepath.Join(t.TempDir(), "hsm"), hsm.InitConfig{WheelPIN: hsmtest.PIN, SOPIN: hsmtest.PIN, UserPIN: hsmtest.PIN, Blocks: 128},
		hsm.Options{WrongPINDelay: pinDelay, PINIterations: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	var o frontend.Opener = h
	if wrap != nil {
		o = wrap(h)
	}
	m := New(func() ([]*Token, error) {
		return []*Token{{Opener: o, Close: func() error { return nil }, Label: label, MinPIN: hsm.MinPINLength, MaxPIN: hsm.MaxPINLength}}, nil
	})
	if rv := m.Initialize(nil); rv != OK {
		t.Fatalf("Initialize: %#x", rv)
	}
	t.Cleanup(func() { m.Finalize(false) })
	return m, h
}

// pinWorks reports whether the HSM takes pin for user.
func pinWorks(t *testing.T, h *hsm.HSM, user hsmapi.User, pin string) bool {
	t.Helper()
	return h.NewSession().Login(context.Background(), user, []byte(pin)) == nil
}

// timed runs f and fails the test when its answer is not want, or when
// wrongPIN and it came before the HSM's wrong-PIN delay.
func timed(t *testing.T, what string, wrongPIN bool, want RV, f func() RV) {
	t.Helper()
	start := time.Now()
	rv := f()
	if rv != want {
		t.Fatalf("%s: %#x, want %#x", what, rv, want)
	}
	if d := time.Since(start); wrongPIN && d < pinDelay {
		t.Fatalf("%s: answered after %v, before the HSM's wrong-PIN delay of %v", what, d, pinDelay)
	}
}

func TestSetPIN(t *testing.T) {
	pin := string(hsmtest.PIN)
	for _, c := range []struct {
		name    string
		login   uint // UserUser, UserSO, or 9: none
		rw      bool
		old     string
		new     string
		want    RV
		wrong   bool        // a wrong PIN: the delay applies
		changed hsmapi.User // whose PIN is "new-pin" afterwards
	}{
		{"public session: the user's PIN", 9, true, pin, "new-pin", OK, false, hsmapi.UserNormal},
		{"the user logged in: its own", UserUser, true, pin, "new-pin", OK, false, hsmapi.UserNormal},
		{"the SO logged in: its own", UserSO, true, pin, "new-pin", OK, false, hsmapi.UserSO},
		{"read-only session", 9, false, pin, "new-pin", SessionReadOnly, false, 0},
		{"read-only session of the user", UserUser, false, pin, "new-pin", SessionReadOnly, false, 0},
		{"wrong old PIN", 9, true, "wrong-pin", "new-pin", PINIncorrect, true, 0},
		{"wrong old PIN of the SO", UserSO, true, "wrong-pin", "new-pin", PINIncorrect, true, 0},
		{"old PIN of no possible length", 9, true, "abc", "new-pin", PINIncorrect, false, 0},
		{"new PIN too short", 9, true, pin, "abc", PINLenRange, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, h := pinModule(t, "", nil)
			flags := uint(FlagSerialSession)
			if c.rw {
				flags |= FlagRWSession
			}
			if c.login == UserSO {
				flags |= FlagRWSession // the SO has no read-only session
			}
			s, rv := m.OpenSession(slotID, flags)
			if rv != OK {
				t.Fatal(rv)
			}
			if c.login == UserSO && !c.rw {
				t.Fatal("bad case")
			}
			if c.login != 9 {
				if rv := m.Login(s, c.login, hsmtest.PIN); rv != OK {
					t.Fatalf("Login: %#x", rv)
				}
			}
			before, _ := m.SessionInfo(s)
			timed(t, "SetPIN", c.wrong, c.want, func() RV { return m.SetPIN(s, []byte(c.old), []byte(c.new)) })
			if after, _ := m.SessionInfo(s); after != before {
				t.Fatalf("session %+v after SetPIN, %+v before", after, before)
			}
			for _, u := range []hsmapi.User{hsmapi.UserNormal, hsmapi.UserSO, hsmapi.UserWheel} {
				if got := pinWorks(t, h, u, "new-pin"); got != (u == c.changed) {
					t.Errorf("the new PIN works for %s: %v", u, got)
				}
				if got := pinWorks(t, h, u, pin); got != (u != c.changed) {
					t.Errorf("the old PIN works for %s: %v", u, got)
				}
			}
		})
	}
	m, _ := pinModule(t, "", nil)
	if rv := m.SetPIN(99, hsmtest.PIN, []byte("new-pin")); rv != SessionHandleInvalid {
		t.Errorf("SetPIN on no session: %#x", rv)
	}
}

func TestInitPIN(t *testing.T) {
	for _, c := range []struct {
		name  string
		login uint
		pin   string
		want  RV
	}{
		{"the SO", UserSO, "new-pin", OK},
		{"not logged in", 9, "new-pin", UserNotLoggedIn},
		{"the user", UserUser, "new-pin", UserNotLoggedIn},
		{"PIN too short", UserSO, "abc", PINLenRange},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, h := pinModule(t, "", nil)
			s, rv := m.OpenSession(slotID, FlagSerialSession|FlagRWSession)
			if rv != OK {
				t.Fatal(rv)
			}
			if c.login != 9 {
				if rv := m.Login(s, c.login, hsmtest.PIN); rv != OK {
					t.Fatalf("Login: %#x", rv)
				}
			}
			if rv := m.InitPIN(s, []byte(c.pin)); rv != c.want {
				t.Fatalf("InitPIN: %#x, want %#x", rv, c.want)
			}
			if got := pinWorks(t, h, hsmapi.UserNormal, "new-pin"); got != (c.want == OK) {
				t.Fatalf("the user's new PIN works: %v", got)
			}
			if pinWorks(t, h, hsmapi.UserSO, "new-pin") {
				t.Fatal("InitPIN changed the SO's PIN")
			}
		})
	}
}

func label32(s string) (l [LabelLen]byte) {
	for i := range l {
		l[i] = ' '
	}
	copy(l[:], s)
	return l
}

func TestInitToken(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		confName string // the config file's label
		wrap     func(frontend.Opener) frontend.Opener
		session  bool
		pin      string
		label    [LabelLen]byte
		want     RV
		wrong    bool
		shown    string // the token's label afterwards
	}{
		{"with the SO PIN", "", nil, false, "test-pin", label32("Fresh"), OK, false, "Fresh"},
		{"a label of 32 bytes", "", nil, false, "test-pin", label32("0123456789abcdef0123456789abcdef"), OK, false, "0123456789abcdef0123456789abcdef"},
		{"the config's label stays", "Configured", nil, false, "test-pin", label32("Fresh"), OK, false, "Configured"},
		{"a session open", "", nil, true, "test-pin", label32("Fresh"), SessionExists, false, "hsm"},
		{"a wrong SO PIN", "", nil, false, "wrong-pin", label32("Fresh"), PINIncorrect, true, "hsm"},
		{"an SO PIN of no possible length", "", nil, false, "abc", label32("Fresh"), PINIncorrect, false, "hsm"},
		{"a label with a control character", "", nil, false, "test-pin", label32("a\x01b"), ArgumentsBad, false, "hsm"},
		{"a token that cannot", "", func(o frontend.Opener) frontend.Opener { return plainOpener{o} }, false, "test-pin", label32("Fresh"),
			FunctionNotSupported, false, "hsm"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, h := pinModule(t, c.confName, c.wrap)
			if c.wrap == nil && c.confName == "" {
				if tok, _ := m.Token(slotID); tok.Identity.Label != "hsm" {
					t.Fatalf("label before: %q", tok.Identity.Label)
				}
			}
			u := h.NewSession()
			if err := u.Login(ctx, hsmapi.UserNormal, hsmtest.PIN); err != nil {
				t.Fatal(err)
			}
			if _, err := u.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
				Flags: hsmapi.FlagToken | hsmapi.FlagDigitalSignature}); err != nil {
				t.Fatal(err)
			}
			if c.session {
				if _, rv := m.OpenSession(slotID, FlagSerialSession); rv != OK {
					t.Fatal(rv)
				}
			}
			timed(t, "InitToken", c.wrong, c.want, func() RV { return m.InitToken(slotID, []byte(c.pin), c.label) })
			keys, err := u.Keys(ctx, hsmapi.Filter{})
			if err != nil || (len(keys) == 0) != (c.want == OK) {
				t.Fatalf("%d keys after InitToken (%v)", len(keys), err)
			}
			tok, _ := m.Token(slotID)
			if c.wrap == nil && tok.Identity.Label != c.shown {
				t.Fatalf("the token's label %q, want %q", tok.Identity.Label, c.shown)
			}
			if c.want == OK && c.confName == "" && h.Identity().Label != c.shown {
				t.Fatalf("the HSM's label %q", h.Identity().Label)
			}
		})
	}
	m, _ := pinModule(t, "", nil)
	if rv := m.InitToken(1, hsmtest.PIN, label32("x")); rv != SlotIDInvalid {
		t.Errorf("InitToken of slot 1: %#x", rv)
	}
}
