package cryptoki

import (
	"bytes"
	"context"
	"crypto"
	"net"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/rpc"
)

// plainToken hides every optional interface of the token it holds: a
// token that can do only what the contract requires.
type plainToken struct{ hsmapi.Token }

type plainOpener struct{ frontend.Opener }

func (o plainOpener) Open(ctx context.Context) (hsmapi.Token, error) {
	t, err := o.Opener.Open(ctx)
	return plainToken{t}, err
}

// moduleOn is a module over the token sessions o opens, one R/W session
// logged in as the user.
func moduleOn(t testing.TB, o frontend.Opener) (*Module, uint) {
	t.Helper()
	m := New(func() ([]*Token, error) {
		return []*Token{{Opener: o, Close: func() error { return nil }, MinPIN: hsm.MinPINLength, MaxPIN: hsm.MaxPINLength}}, nil
	})
	if rv := m.Initialize(nil); rv != OK {
		t.Fatal(rv)
	}
	t.Cleanup(func() { m.Finalize(false) })
	h, rv := m.OpenSession(slotID, FlagSerialSession|FlagRWSession)
	if rv != OK {
		t.Fatal(rv)
	}
	if rv := m.Login(h, UserUser, hsmtest.PIN); rv != OK {
		t.Fatal(rv)
	}
	return m, h
}

func newHSM(t testing.TB) *hsm.HSM {
	t.Helper()
	h, err := hsm.Create(filepath.Join(t.TempDir(), "hsm"), hsm.InitConfig{WheelPIN: hsmtest.PIN, SOPIN: hsmtest.PIN, UserPIN: hsmtest.PIN, Blocks: 128}, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// The emulated HSM serves every mechanism of the registry, each with the
// flags of its entry.
func TestMechanismList(t *testing.T) {
	m, _ := loggedIn(t)
	list, rv := m.Mechanisms(slotID)
	if rv != OK || len(list) != len(registry) {
		t.Fatalf("%d mechanisms %#x, want the registry's %d", len(list), rv, len(registry))
	}
	for i, typ := range list {
		info, rv := m.MechanismInfo(slotID, typ)
		if rv != OK || typ != registry[i].typ || info != registry[i].info {
			t.Errorf("mechanism %#x: %+v %#x, want %+v", typ, info, rv, registry[i].info)
		}
	}
	for _, want := range []struct {
		typ  uint
		info MechanismInfo
	}{
		{MechSHA256, MechanismInfo{Flags: MechFlagDigest}},
		{MechSHA256RSAPKCSPSS, MechanismInfo{1024, 8192, MechFlagHW | MechFlagSign | MechFlagVerify}},
		{MechECDSA, MechanismInfo{256, 521, MechFlagHW | MechFlagSign | MechFlagVerify | MechFlagECFp | MechFlagECNamedCurve | MechFlagECUncompress}},
		{MechHSS, MechanismInfo{Flags: MechFlagHW | MechFlagSign | MechFlagVerify}},
	} {
		if info, rv := m.MechanismInfo(slotID, want.typ); rv != OK || info != want.info {
			t.Errorf("%#x: %+v %#x, want %+v", want.typ, info, rv, want.info)
		}
	}
	if _, rv := m.MechanismInfo(slotID, 0x80000000); rv != MechanismInvalid {
		t.Errorf("unknown mechanism: %#x", rv)
	}
	if _, rv := m.MechanismInfo(slotID+1, MechSHA256); rv != SlotIDInvalid {
		t.Errorf("no such slot: %#x", rv)
	}
}

// A token that does not say it signs PSS keeps the PSS mechanisms for
// verification only; one without randomness has no RNG.
func TestMechanismsFollowTheToken(t *testing.T) {
	m, h := moduleOn(t, plainOpener{newHSM(t)})
	for _, typ := range []uint{MechRSAPKCSPSS, MechSHA256RSAPKCSPSS} {
		info, rv := m.MechanismInfo(slotID, typ)
		if rv != OK || info.Flags != MechFlagVerify {
			t.Errorf("%#x on a token without PSS: %+v %#x", typ, info, rv)
		}
	}
	k := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048})
	priv, pub := objectsOf(t, m, h, k.UUID)
	if rv := m.SignInit(h, Mechanism{Type: MechSHA256RSAPKCSPSS, PSS: pss(crypto.SHA256, 32)}, priv); rv != MechanismInvalid {
		t.Errorf("PSS SignInit on a token without PSS: %#x", rv)
	}
	if rv := m.VerifyInit(h, Mechanism{Type: MechSHA256RSAPKCSPSS, PSS: pss(crypto.SHA256, 32)}, pub); rv != OK {
		t.Errorf("PSS VerifyInit on a token without PSS: %#x", rv)
	}
	if ok, _ := m.HasRNG(slotID); ok {
		t.Error("HasRNG on a token without randomness")
	}
	if rv := m.GenerateRandom(h, make([]byte, 8)); rv != RandomNoRNG {
		t.Errorf("GenerateRandom: %#x", rv)
	}
}

// Over libhal's RPC: no PSS signing, randomness from GET_RANDOM, and an HSS
// signature's length bounded from the top level alone (the RPC names no
// other), so that the bound leaves room for the signature without
// spending one.
func TestOverRPC(t *testing.T) {
	m, sh := loggedInOverRPC(t)

	if info, rv := m.MechanismInfo(slotID, MechRSAPKCSPSS); rv != OK || info.Flags != MechFlagVerify {
		t.Errorf("PSS over RPC: %+v %#x", info, rv)
	}
	p := make([]byte, 100)
	if rv := m.GenerateRandom(sh, p); rv != OK || bytes.Equal(p, make([]byte, 100)) {
		t.Fatalf("GenerateRandom over RPC: %#x", rv)
	}

	levels := []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}, {LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}
	k := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: levels})
	priv, pub := objectsOf(t, m, sh, k.UUID)
	exact, err := hashsig.SignatureSize(levels)
	if err != nil {
		t.Fatal(err)
	}
	if rv := m.SignInit(sh, Mechanism{Type: MechHSS}, priv); rv != OK {
		t.Fatal(rv)
	}
	msg := []byte("over RPC")
	_, n, rv := m.Sign(sh, msg, Output{Query: true})
	if rv != OK || n < exact {
		t.Fatalf("length over RPC: %d %#x, the signature takes %d", n, rv, exact)
	}
	sig, got, rv := m.Sign(sh, msg, Output{Room: n})
	if rv != OK || got != exact {
		t.Fatalf("sign over RPC: %d bytes %#x, want %d", got, rv, exact)
	}
	if rv := verify(m, sh, Mechanism{Type: MechHSS}, pub, msg, sig); rv != OK {
		t.Fatalf("verify over RPC: %#x", rv)
	}
	ec := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256})
	ecPriv, ecPub := objectsOf(t, m, sh, ec.UUID)
	sig = sign(t, m, sh, Mechanism{Type: MechECDSASHA256}, ecPriv, msg)
	if rv := verify(m, sh, Mechanism{Type: MechECDSASHA256}, ecPub, msg, sig); rv != OK {
		t.Fatalf("ECDSA over RPC: %#x", rv)
	}
}

// loggedInOverRPC is loggedIn with the module reaching a new HSM through
// libhal's RPC.
func loggedInOverRPC(t *testing.T) (*Module, uint) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "rpc.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(newHSM(t), nil)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return moduleOn(t, dialer("unix:"+sock))
}

// dialer opens a libhal RPC connection per token session.
type dialer string

func (d dialer) Open(ctx context.Context) (hsmapi.Token, error) { return rpc.Dial(ctx, string(d), nil) }

func TestRandom(t *testing.T) {
	m, h := loggedIn(t)
	if ok, rv := m.HasRNG(slotID); !ok || rv != OK {
		t.Fatalf("HasRNG: %v %#x", ok, rv)
	}
	a, b := make([]byte, 64), make([]byte, 64)
	if rv := m.GenerateRandom(h, a); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.GenerateRandom(h, b); rv != OK {
		t.Fatal(rv)
	}
	if bytes.Equal(a, b) || bytes.Equal(a, make([]byte, 64)) {
		t.Fatalf("not random: %x, %x", a, b)
	}
	if rv := m.GenerateRandom(h, nil); rv != OK {
		t.Fatalf("no bytes: %#x", rv)
	}
	if rv := m.SeedRandom(h); rv != RandomSeedNotSupported {
		t.Fatalf("SeedRandom: %#x", rv)
	}
	if rv := m.GenerateRandom(h+100, a); rv != SessionHandleInvalid {
		t.Fatalf("no session: %#x", rv)
	}
	if !slices.Contains(mustList(t, m), MechHSS) {
		t.Fatal("HSS not listed")
	}
}

func mustList(t *testing.T, m *Module) []uint {
	t.Helper()
	l, rv := m.Mechanisms(slotID)
	if rv != OK {
		t.Fatal(rv)
	}
	return l
}
