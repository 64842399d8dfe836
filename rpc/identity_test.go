package rpc

import (
	"errors"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// EXT_IDENTITY tells what the HSM itself tells, to a client not logged in;
// a server without it (a Cryptech HSM, an older version of this one) is
// not asked, and the client says it cannot tell.
func TestIdentityOverRPC(t *testing.T) {
	addr, _, h, _ := servedHSM(t, testOptions)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := h.Identity()
	if got != want || want.Serial == "" || want.Label != "hsm" {
		t.Fatalf("identity over RPC %+v, in process %+v", got, want)
	}
	if err := h.SetLabel("renamed"); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Identity(ctx); err != nil || got.Label != "renamed" || got.Serial != want.Serial {
		t.Fatalf("after a rename: %+v, %v", got, err)
	}

	c.ext.Version = 2
	if _, err := c.Identity(ctx); !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Fatalf("identity from a server of version 2: %v", err)
	}
	c.ext = nil
	if _, err := c.Identity(ctx); !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Fatalf("identity from a libhal server: %v", err)
	}
}

// SetPIN over RPC changes the PIN on the HSM, within its rules: the normal
// user its own, never the SO's.
func TestSetPINOverRPC(t *testing.T) {
	addr, _, _, _ := servedHSM(t, testOptions)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(ctx, hsmapi.UserNormal, userPIN); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPIN(ctx, hsmapi.UserSO, []byte("new-so-pin")); !errors.Is(err, wire.StatusForbidden) {
		t.Fatalf("the user set the SO's PIN: %v", err)
	}
	if err := c.SetPIN(ctx, hsmapi.UserNormal, []byte("new-user-pin")); err != nil {
		t.Fatal(err)
	}
	if err := c.Login(ctx, hsmapi.UserNormal, userPIN); !errors.Is(err, hsmapi.ErrPINIncorrect) {
		t.Fatalf("login with the old PIN: %v", err)
	}
	if err := c.Login(ctx, hsmapi.UserNormal, []byte("new-user-pin")); err != nil {
		t.Fatalf("login with the new PIN: %v", err)
	}
}
