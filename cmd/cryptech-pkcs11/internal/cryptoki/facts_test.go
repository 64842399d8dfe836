package cryptoki

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// describeCounter opens sessions of an emulated HSM that count how often
// the module asks them to describe a key.
type describeCounter struct {
	h     *hsm.HSM
	calls atomic.Int64
}

func (o *describeCounter) Open(ctx context.Context) (hsmapi.Token, error) {
	tok, err := o.h.Open(ctx)
	return &countingToken{Token: tok, calls: &o.calls}, err
}

type countingToken struct {
	hsmapi.Token
	calls *atomic.Int64
}

func (t *countingToken) Key(ctx context.Context, id hsmapi.UUID) (hsmapi.KeyInfo, error) {
	t.calls.Add(1)
	return t.Token.Key(ctx, id)
}

// C_SignInit describes a key once per handle, not before every signature
// (over RPC a description takes three round trips); a key the module
// deleted, or that the HSM dropped at a logout, is not signed with from
// what the handle kept.
func TestSignInitDescribesOnce(t *testing.T) {
	o := &describeCounter{h: newHSM(t)}
	m, sh := moduleOn(t, o)
	tok := tokenOf(m)
	k, err := tok.GenerateKey(context.Background(), hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken})
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := objectsOf(t, m, sh, k.UUID)
	o.calls.Store(0)
	digest := make([]byte, 32)
	signOnce := func() RV {
		if rv := m.SignInit(sh, Mechanism{Type: MechECDSA}, priv); rv != OK {
			return rv
		}
		_, _, rv := m.Sign(sh, digest, Output{Room: 64})
		return rv
	}
	for range 3 {
		if rv := signOnce(); rv != OK {
			t.Fatal(rv)
		}
	}
	if n := o.calls.Load(); n != 0 {
		t.Errorf("three signatures with a listed key described it %d times, want 0", n)
	}

	// A volatile key is gone after a logout: its handle is invalid once
	// logged in again.
	v, err := tok.GenerateKey(context.Background(), hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagDigitalSignature})
	if err != nil {
		t.Fatal(err)
	}
	vpriv, _ := objectsOf(t, m, sh, v.UUID)
	if rv := m.SignInit(sh, Mechanism{Type: MechECDSA}, vpriv); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.Logout(sh); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.Login(sh, UserUser, hsmtest.PIN); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.SignInit(sh, Mechanism{Type: MechECDSA}, vpriv); rv != KeyHandleInvalid {
		t.Errorf("C_SignInit with a volatile key after a logout: %#x, want CKR_KEY_HANDLE_INVALID", rv)
	}

	// A session object goes with its session.
	s2, rv := m.OpenSession(slotID, FlagSerialSession|FlagRWSession)
	if rv != OK {
		t.Fatal(rv)
	}
	so, err := tok.GenerateKey(context.Background(), hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagDigitalSignature})
	if err != nil {
		t.Fatal(err)
	}
	hs, rv := m.adopt(s2, so)
	if rv != OK {
		t.Fatal(rv)
	}
	if rv := m.SignInit(sh, Mechanism{Type: MechECDSA}, hs.priv); rv != OK {
		t.Fatal(rv)
	}
	if _, _, rv := m.Sign(sh, digest, Output{Room: 64}); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.CloseSession(s2); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.SignInit(sh, Mechanism{Type: MechECDSA}, hs.priv); rv != KeyHandleInvalid {
		t.Errorf("C_SignInit with a session object of a closed session: %#x, want CKR_KEY_HANDLE_INVALID", rv)
	}

	// Destroyed through the module: the handle is invalid.
	if rv := signOnce(); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.DestroyObject(sh, priv); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.SignInit(sh, Mechanism{Type: MechECDSA}, priv); rv != KeyHandleInvalid {
		t.Errorf("C_SignInit with a destroyed key: %#x, want CKR_KEY_HANDLE_INVALID", rv)
	}
}
