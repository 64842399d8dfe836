package frontend_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// The emulated HSM is an Opener: a face can put it behind its clients.
var _ frontend.Opener = (*hsm.HSM)(nil)

var ctx = context.Background()

// newHSM creates an emulated HSM for the test, closed when it ends.
func newHSM(t *testing.T) *hsm.HSM {
	t.Helper()
	h, err := hsm.Create(filepath.Join(t.TempDir(), "hsm"), hsm.InitConfig{
		WheelPIN: hsmtest.PIN, SOPIN: hsmtest.PIN, UserPIN: hsmtest.PIN, Blocks: 64}, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// counting opens sessions of an HSM that count their key lookups and
// signatures.
type counting struct {
	h          *hsm.HSM
	keys, sigs atomic.Int32
}

func (o *counting) Open(ctx context.Context) (hsmapi.Token, error) {
	t, err := o.h.Open(ctx)
	return &countingToken{Token: t, o: o}, err
}

type countingToken struct {
	hsmapi.Token
	o *counting
}

func (t *countingToken) Key(ctx context.Context, id hsmapi.UUID) (hsmapi.KeyInfo, error) {
	t.o.keys.Add(1)
	return t.Token.Key(ctx, id)
}

func (t *countingToken) Sign(ctx context.Context, id hsmapi.UUID, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	t.o.sigs.Add(1)
	return t.Token.Sign(ctx, id, digest, opts)
}

// login opens a client of f logged in as user.
func login(t *testing.T, f *frontend.Frontend, user hsmapi.User) *frontend.Client {
	t.Helper()
	c, err := f.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(ctx, user, hsmtest.PIN); err != nil {
		t.Fatal(err)
	}
	return c
}

func generateP256(t *testing.T, c *frontend.Client, flags hsmapi.Flags) (uint32, hsmapi.KeyInfo) {
	t.Helper()
	h, k, err := c.Create(func(tok hsmapi.Token) (hsmapi.KeyInfo, error) {
		return tok.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: flags})
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, k
}

// A signature through a key handle costs the token one lookup of the key,
// its Sign's, and verifies under the key's public key.
func TestSignLooksTheKeyUpOnce(t *testing.T) {
	o := &counting{h: newHSM(t)}
	c := login(t, frontend.New(o), hsmapi.UserNormal)
	h, k := generateP256(t, c, hsmapi.FlagDigitalSignature)
	o.keys.Store(0)
	digest := sha256.Sum256([]byte("one lookup"))
	sig, kh, err := c.Sign(ctx, h, 0, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if n, s := o.keys.Load(), o.sigs.Load(); n != 0 || s != 1 {
		t.Errorf("a sign made %d lookups and %d signatures; want 0 and 1", n, s)
	}
	if kh.UUID != k.UUID || kh.Type != hsmapi.KeyTypeECPrivate || kh.Curve != hsmapi.CurveP256 {
		t.Errorf("the handle names %+v", kh)
	}
	pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if ec, ok := pub.(*ecdsa.PublicKey); !ok || ec.Curve != elliptic.P256() || !ecdsa.VerifyASN1(ec, digest[:], sig) {
		t.Error("the signature does not verify under the key")
	}
}

// A signature through a hash handle signs that hash's digest and closes
// the handle; a key without digitalsignature verifies nothing.
func TestSignWithHashAndVerify(t *testing.T) {
	f := frontend.New(newHSM(t))
	c := login(t, f, hsmapi.UserNormal)
	h, _ := generateP256(t, c, hsmapi.FlagDigitalSignature)
	hh, err := c.NewHash(crypto.SHA256, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := c.Hash(hh)
	st.Write([]byte("message"))
	sig, _, err := c.Sign(ctx, h, hh, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Hash(hh); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("the hash handle after signing: %v", err)
	}
	digest := sha256.Sum256([]byte("message"))
	same := func(frontend.KeyHandle) ([]byte, error) { return sig, nil }
	if err := c.Verify(ctx, h, 0, digest[:], same); err != nil {
		t.Errorf("verify: %v", err)
	}
	other := sha256.Sum256([]byte("other"))
	if err := c.Verify(ctx, h, 0, other[:], same); !errors.Is(err, hsmapi.ErrInvalidSignature) {
		t.Errorf("verify of another digest: %v", err)
	}
	nosig, _ := generateP256(t, c, hsmapi.FlagKeyEncipherment)
	if err := c.Verify(ctx, nosig, 0, digest[:], same); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("verify with a key without digitalsignature: %v", err)
	}
}

// A client holds at most its limits' handles; Create refuses before it
// makes anything.
func TestLimits(t *testing.T) {
	f := frontend.New(newHSM(t))
	f.Limits.KeyHandles, f.Limits.HashHandles = 1, 1
	c := login(t, f, hsmapi.UserNormal)
	generateP256(t, c, hsmapi.FlagDigitalSignature)
	made := false
	_, _, err := c.Create(func(hsmapi.Token) (hsmapi.KeyInfo, error) { made = true; return hsmapi.KeyInfo{}, nil })
	if !errors.Is(err, frontend.ErrNoKeyHandles) || made {
		t.Errorf("a second key handle: %v (made: %v)", err, made)
	}
	if _, err := c.NewHash(crypto.SHA256, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewHash(crypto.SHA256, nil); !errors.Is(err, frontend.ErrNoRoom) {
		t.Errorf("a second hash: %v", err)
	}
	if st := f.Stats(); st.KeyHandles != 1 || st.HashHandles != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Import batches need a login as the normal user or wheel, go with the
// login, and commit as one; Stats sees them come and go, and LOGOUT_ALL
// and Close log clients out.
func TestBatchesAndLogins(t *testing.T) {
	f := frontend.New(newHSM(t))
	so := login(t, f, hsmapi.UserSO)
	if _, err := so.BeginImport(hsmapi.UUID{1}); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("a batch of the SO: %v", err)
	}
	c := login(t, f, hsmapi.UserNormal)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := hsmapi.ImportRequest{UUID: hsmapi.UUID{0x42, 1}, PublicKey: spki, Flags: hsmapi.FlagToken}
	b, err := c.BeginImport(hsmapi.UUID{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddImport(b, pub); err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.Clients != 2 || st.LoggedIn != 2 || st.ImportBatches != 1 || st.ImportBytes != frontend.ImportCost(pub) {
		t.Errorf("stats with a batch: %+v", st)
	}
	if err := c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.LoggedIn != 1 || st.ImportBatches != 0 || st.ImportBytes != 0 {
		t.Errorf("stats after a logout: %+v", st)
	}
	if _, err := c.CommitImport(ctx, b); !errors.Is(err, hsmapi.ErrNotLoggedIn) {
		t.Errorf("commit after logout: %v", err)
	}

	if err := c.Login(ctx, hsmapi.UserNormal, hsmtest.PIN); err != nil {
		t.Fatal(err)
	}
	b, err = c.BeginImport(hsmapi.UUID{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddImport(b, pub); err != nil {
		t.Fatal(err)
	}
	res, err := c.CommitImport(ctx, b)
	if err != nil || len(res) != 1 || res[0].Key.UUID != pub.UUID {
		t.Fatalf("commit: %+v, %v", res, err)
	}
	if _, err := c.Token().Key(ctx, pub.UUID); err != nil {
		t.Errorf("the imported key: %v", err)
	}

	f.LogoutAll(ctx)
	if st := f.Stats(); st.LoggedIn != 0 || st.Clients != 2 {
		t.Errorf("stats after LogoutAll: %+v", st)
	}
	c.Close()
	so.Close()
	if st := f.Stats(); st != (frontend.Stats{}) {
		t.Errorf("stats after Close: %+v", st)
	}
}
