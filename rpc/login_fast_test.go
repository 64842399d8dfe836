package rpc

import (
	"errors"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// TestSecondConnectionLogsInWithoutPBKDF2: each client of serve logs in on
// its own connection; after the first, the HSM's in-memory PIN verifier
// spares the others the PIN record's PBKDF2 (counted, not timed), and a
// wrong PIN on another connection still pays the full check and the delay.
func TestSecondConnectionLogsInWithoutPBKDF2(t *testing.T) {
	addr, _, h, _ := servedHSM(t, testOptions)
	first := dialLogin(t, addr)
	k, err := first.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken})
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	if got := h.PINChecks(); got.Full != 1 || got.Verifier != 0 {
		t.Fatalf("first connection: %+v, want one full check", got)
	}
	second := dialLogin(t, addr)
	if got := h.PINChecks(); got.Full != 1 || got.Verifier != 1 {
		t.Errorf("second connection: %+v, want its login on the verifier", got)
	}
	if err := hsmapi.SignAndVerify(ctx, second, k, []byte("second connection")); err != nil {
		t.Errorf("signature over the second connection: %v", err)
	}

	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(ctx, hsmapi.UserWheel, []byte("wheel-pim")); !errors.Is(err, hsmapi.ErrPINIncorrect) {
		t.Errorf("wrong PIN: got %v, want ErrPINIncorrect", err)
	}
	if got := h.PINChecks(); got.Full != 2 || got.Delayed != 1 {
		t.Errorf("wrong PIN: %+v, want a full check and the delay", got)
	}
}
