package hsm

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// loginTestDelay is the wrong-PIN delay of the login tests: long enough to
// measure, short enough for eight of them in a row.
const loginTestDelay = 50 * time.Millisecond

func newLoginTestHSM(t *testing.T) *HSM {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hsm")
	h, err := Create(dir, InitConfig{WheelPIN: wheelPIN, SOPIN: soPIN, UserPIN: userPIN, Blocks: 64},
		Options{WrongPINDelay: loginTestDelay, PINIterations: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestWrongPINDelayIsHSMWide checks that wrong PINs cost their delay one
// after the other, across sessions, as on a Cryptech HSM that serves one
// request at a time: N guesses in parallel take N delays. A right PIN with
// nobody guessing is let in at once.
func TestWrongPINDelayIsHSMWide(t *testing.T) {
	h := newLoginTestHSM(t)

	s := h.NewSession()
	defer s.Close()
	start := time.Now()
	if err := s.Login(ctx, hsmapi.UserNormal, userPIN); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= loginTestDelay {
		t.Errorf("a right PIN with nobody guessing took %v", d)
	}

	const guesses = 8
	var wg sync.WaitGroup
	errs := make([]error, guesses)
	start = time.Now()
	for i := range guesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := h.NewSession()
			defer g.Close()
			errs[i] = g.Login(ctx, hsmapi.UserNormal, fmt.Appendf(nil, "guess-%d", i))
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i, err := range errs {
		if !errors.Is(err, hsmapi.ErrPINIncorrect) {
			t.Errorf("guess %d: %v, want ErrPINIncorrect", i, err)
		}
	}
	if elapsed < guesses*loginTestDelay {
		t.Errorf("%d wrong PINs in parallel took %v, less than %d delays of %v", guesses, elapsed, guesses, loginTestDelay)
	}
	t.Logf("%d wrong PINs in parallel: %v", guesses, elapsed)

	// Nobody is guessing any more: a right PIN is let in at once again.
	start = time.Now()
	if err := h.NewSession().Login(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= loginTestDelay {
		t.Errorf("a right PIN after the guesses took %v", d)
	}
}

// TestRightPINWaitsItsTurn checks that a right PIN is checked under the
// same lock as the wrong ones and their delay (or it would answer at once
// while wrong guesses queue, and guessing in parallel would find it
// sooner), that waiting for the turn gives up with the context, and that
// nothing but PIN checks waits for that lock.
func TestRightPINWaitsItsTurn(t *testing.T) {
	h := newLoginTestHSM(t)
	user := h.NewSession()
	defer user.Close()
	if err := user.Login(ctx, hsmapi.UserNormal, userPIN); err != nil {
		t.Fatal(err)
	}
	k := generate(t, user, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})

	// Take the turn, as a wrong guess in its delay does.
	lock := h.loginTurn
	lock <- struct{}{}
	held := true
	release := func() {
		if held {
			<-lock
			held = false
		}
	}
	defer release()

	s := h.NewSession()
	defer s.Close()
	done := make(chan error, 1)
	go func() { done <- s.Login(ctx, hsmapi.UserWheel, wheelPIN) }()
	select {
	case err := <-done:
		t.Fatalf("a right PIN was checked while another check held the turn: %v", err)
	case <-time.After(2 * loginTestDelay):
	}
	if s.User() != hsmapi.UserNone {
		t.Fatal("logged in while another check held the turn")
	}

	// Meanwhile the other operations go on.
	opStart := time.Now()
	digest := make([]byte, 32)
	if _, err := user.Sign(ctx, k.UUID, digest, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if _, err := user.Keys(ctx, hsmapi.Filter{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(opStart); d >= loginTestDelay {
		t.Errorf("signing and listing took %v while a PIN check held the turn", d)
	}
	// And another HSM's logins do not wait for this one's.
	other := newLoginTestHSM(t)
	if err := other.NewSession().Login(ctx, hsmapi.UserNormal, userPIN); err != nil {
		t.Fatal(err)
	}

	// A login that gives up waiting checks nothing and logs nobody in.
	tctx, cancel := context.WithTimeout(ctx, loginTestDelay)
	defer cancel()
	s2 := h.NewSession()
	defer s2.Close()
	if err := s2.Login(tctx, hsmapi.UserNormal, userPIN); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a login that could not get its turn: %v, want the context's error", err)
	}
	if s2.User() != hsmapi.UserNone {
		t.Error("a login that gave up waiting logged in")
	}

	// Its turn come, the right PIN is let in.
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the login never got its turn")
	}
	if s.User() != hsmapi.UserWheel {
		t.Errorf("logged in as %v, want wheel", s.User())
	}
}
