package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/sim"
)

var ctx = context.Background()

// testOptions keep tests fast: a cheap PIN hash and a short wrong-PIN delay.
var testOptions = Options{WrongPINDelay: 20 * time.Millisecond, PINIterations: 1000}

var (
	wheelPIN = []byte("wheel-pin-1")
	soPIN    = []byte("so-pin-22")
	userPIN  = []byte("user-pin-333")
)

// newTestHSM creates an HSM in a fresh directory; it is closed at cleanup.
func newTestHSM(t testing.TB) (*HSM, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hsm")
	h, err := Create(dir, InitConfig{WheelPIN: wheelPIN, SOPIN: soPIN, UserPIN: userPIN, Blocks: 256}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, dir
}

// login opens a session logged in as wheel.
func login(t testing.TB, h *HSM) *Session {
	t.Helper()
	s := h.NewSession()
	if err := s.Login(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func generate(t testing.TB, s *Session, req hsmapi.GenerateRequest) hsmapi.KeyInfo {
	t.Helper()
	k, err := s.GenerateKey(ctx, req)
	if err != nil {
		t.Fatalf("generate %+v: %v", req, err)
	}
	return k
}

const signFlags = hsmapi.FlagDigitalSignature | hsmapi.FlagToken

func TestCreateRefusesExistingHSM(t *testing.T) {
	_, dir := newTestHSM(t)
	_, err := Create(dir, InitConfig{WheelPIN: wheelPIN, SOPIN: soPIN, UserPIN: userPIN}, testOptions)
	if err == nil {
		t.Fatal("Create over an existing HSM succeeded")
	}
}

func TestCreateRefusesBadFlashSizeAndLeavesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hsm")
	for _, blocks := range []int{1, MinBlocks - 1, 1 << 20} {
		if _, err := Create(dir, InitConfig{WheelPIN: wheelPIN, SOPIN: soPIN, UserPIN: userPIN, Blocks: blocks}, testOptions); !errors.Is(err, hsmapi.ErrBadArguments) {
			t.Errorf("%d blocks: got %v", blocks, err)
		}
	}
	h, err := Create(dir, InitConfig{WheelPIN: wheelPIN, SOPIN: soPIN, UserPIN: userPIN, Blocks: MinBlocks}, testOptions)
	if err != nil {
		t.Fatalf("the refusals left something behind: %v", err)
	}
	h.Close()
}

func TestCreateRefusesShortPIN(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hsm")
	_, err := Create(dir, InitConfig{WheelPIN: []byte("123"), SOPIN: soPIN, UserPIN: userPIN}, testOptions)
	if !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Fatalf("got %v, want ErrBadArguments", err)
	}
}

func TestTokenKeysSurviveRestartVolatileKeysDoNot(t *testing.T) {
	h, dir := newTestHSM(t)
	s := login(t, h)
	tokenKey := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags, Label: "kept"})
	volatileKey := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature})
	s.Close()
	h.Close()

	h2, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	s2 := login(t, h2)
	got, err := s2.Key(ctx, tokenKey.UUID)
	if err != nil {
		t.Fatalf("token key lost across restart: %v", err)
	}
	if got.Label != "kept" || got.Type != hsmapi.KeyTypeECPrivate || got.Curve != hsmapi.CurveP256 || string(got.PublicKey) != string(tokenKey.PublicKey) {
		t.Errorf("token key came back as %+v", got)
	}
	if _, err := s2.Key(ctx, volatileKey.UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("volatile key after restart: got %v, want ErrKeyNotFound", err)
	}
	digest := sha256.Sum256([]byte("after restart"))
	sig, err := s2.Sign(ctx, tokenKey.UUID, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := hsmapi.VerifySignature(tokenKey.PublicKey, digest[:], sig, crypto.SHA256); err != nil {
		t.Errorf("signature after restart: %v", err)
	}
}

func TestVolatileKeysBelongToTheirSession(t *testing.T) {
	h, _ := newTestHSM(t)
	a, b := login(t, h), login(t, h)
	k := generate(t, a, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature})
	if _, err := b.Key(ctx, k.UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("another session sees a volatile key: %v", err)
	}
	if err := a.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Login(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Key(ctx, k.UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("volatile key survived logout: %v", err)
	}
}

func TestLogin(t *testing.T) {
	h, _ := newTestHSM(t)
	for _, tc := range []struct {
		user hsmapi.User
		pin  []byte
		want error
	}{
		{hsmapi.UserWheel, wheelPIN, nil},
		{hsmapi.UserSO, soPIN, nil},
		{hsmapi.UserNormal, userPIN, nil},
		{hsmapi.UserWheel, userPIN, hsmapi.ErrPINIncorrect},
		{hsmapi.UserNormal, []byte("user-pin-334"), hsmapi.ErrPINIncorrect},
		{hsmapi.UserNormal, []byte("abc"), hsmapi.ErrBadArguments},
		{hsmapi.UserNone, userPIN, hsmapi.ErrBadArguments},
		{hsmapi.User(9), userPIN, hsmapi.ErrBadArguments},
	} {
		s := h.NewSession()
		start := time.Now()
		err := s.Login(ctx, tc.user, tc.pin)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("login %v %q: got %v, want %v", tc.user, tc.pin, err, tc.want)
		}
		if tc.want == hsmapi.ErrPINIncorrect && time.Since(start) < testOptions.WrongPINDelay {
			t.Errorf("login %v with a wrong PIN returned without the wrong-PIN delay", tc.user)
		}
		if tc.want != nil && s.User() != hsmapi.UserNone {
			t.Errorf("failed login left the session logged in as %v", s.User())
		}
		s.Close()
	}
}

func TestOperationsNeedTheRightLogin(t *testing.T) {
	h, _ := newTestHSM(t)
	k := generate(t, login(t, h), hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	digest := sha256.Sum256(nil)

	anon := h.NewSession()
	defer anon.Close()
	so := h.NewSession()
	defer so.Close()
	if err := so.Login(ctx, hsmapi.UserSO, soPIN); err != nil {
		t.Fatal(err)
	}
	user := h.NewSession()
	defer user.Close()
	if err := user.Login(ctx, hsmapi.UserNormal, userPIN); err != nil {
		t.Fatal(err)
	}
	ops := map[string]func(s *Session) error{
		"generate": func(s *Session) error {
			_, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256})
			return err
		},
		"key":  func(s *Session) error { _, err := s.Key(ctx, k.UUID); return err },
		"keys": func(s *Session) error { _, err := s.Keys(ctx, hsmapi.Filter{}); return err },
		"sign": func(s *Session) error { _, err := s.Sign(ctx, k.UUID, digest[:], crypto.SHA256); return err },
		"import": func(s *Session) error {
			_, err := s.Import(ctx, hsmapi.ImportRequest{PublicKey: k.PublicKey})
			return err
		},
		"export": func(s *Session) error { _, err := s.Export(ctx, hsmapi.ExportRequest{Key: k.UUID}); return err },
		"delete": func(s *Session) error { return s.DeleteKey(ctx, k.UUID) },
	}
	for name, op := range ops {
		if err := op(anon); !errors.Is(err, hsmapi.ErrNotLoggedIn) {
			t.Errorf("%s without login: got %v, want ErrNotLoggedIn", name, err)
		}
		if err := op(so); !errors.Is(err, hsmapi.ErrForbidden) {
			t.Errorf("%s as SO: got %v, want ErrForbidden", name, err)
		}
	}
	if _, err := user.Sign(ctx, k.UUID, digest[:], crypto.SHA256); err != nil {
		t.Errorf("normal user cannot sign: %v", err)
	}
}

func TestSetPIN(t *testing.T) {
	h, _ := newTestHSM(t)
	sessions := map[hsmapi.User]*Session{}
	for u, pin := range map[hsmapi.User][]byte{hsmapi.UserWheel: wheelPIN, hsmapi.UserSO: soPIN, hsmapi.UserNormal: userPIN} {
		s := h.NewSession()
		defer s.Close()
		if err := s.Login(ctx, u, pin); err != nil {
			t.Fatal(err)
		}
		sessions[u] = s
	}
	for _, tc := range []struct {
		by, of hsmapi.User
		ok     bool
	}{
		{hsmapi.UserNormal, hsmapi.UserSO, false}, {hsmapi.UserNormal, hsmapi.UserWheel, false}, {hsmapi.UserSO, hsmapi.UserWheel, false},
		{hsmapi.UserNormal, hsmapi.UserNormal, true}, {hsmapi.UserSO, hsmapi.UserNormal, true}, {hsmapi.UserSO, hsmapi.UserSO, true}, {hsmapi.UserWheel, hsmapi.UserSO, true},
	} {
		pin := []byte("new-pin-" + tc.by.String() + "-" + tc.of.String())
		err := sessions[tc.by].SetPIN(ctx, tc.of, pin)
		if tc.ok != (err == nil) || !tc.ok && !errors.Is(err, hsmapi.ErrForbidden) {
			t.Errorf("%v sets PIN of %v: got %v, want ok=%v", tc.by, tc.of, err, tc.ok)
			continue
		}
		if tc.ok {
			s := h.NewSession()
			if err := s.Login(ctx, tc.of, pin); err != nil {
				t.Errorf("login with PIN set by %v: %v", tc.by, err)
			}
			s.Close()
		}
	}
}

func TestGenerateSignVerify(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	reqs := []hsmapi.GenerateRequest{
		{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048},
		{Type: hsmapi.KeyTypeRSAPrivate, Bits: 3072},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP521},
	}
	if !testing.Short() {
		reqs = append(reqs, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 4096})
	}
	for _, req := range reqs {
		req.Flags = signFlags
		k := generate(t, s, req)
		wantBits := req.Bits
		if req.Type == hsmapi.KeyTypeECPrivate {
			wantBits = map[hsmapi.Curve]int{hsmapi.CurveP256: 256, hsmapi.CurveP384: 384, hsmapi.CurveP521: 521}[req.Curve]
		}
		if k.Type != req.Type || k.Curve != req.Curve || k.Bits != wantBits || k.Flags != req.Flags {
			t.Errorf("generated %+v for %+v", k, req)
		}
		opts := []crypto.SignerOpts{crypto.SHA256, crypto.SHA384}
		if req.Type == hsmapi.KeyTypeRSAPrivate {
			opts = append(opts, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		for _, o := range opts {
			h := o.HashFunc().New()
			h.Write([]byte("message"))
			digest := h.Sum(nil)
			sig, err := s.Sign(ctx, k.UUID, digest, o)
			if err != nil {
				t.Fatalf("sign %v %T: %v", req, o, err)
			}
			if err := s.Verify(ctx, k.UUID, digest, sig, o); err != nil {
				t.Errorf("verify %v %T: %v", req, o, err)
			}
			if err := hsmapi.VerifySignature(k.PublicKey, digest, sig, o); err != nil {
				t.Errorf("software verify %v %T: %v", req, o, err)
			}
			sig[len(sig)/2] ^= 1
			if err := s.Verify(ctx, k.UUID, digest, sig, o); !errors.Is(err, hsmapi.ErrInvalidSignature) {
				t.Errorf("flipped signature %v %T: got %v", req, o, err)
			}
			if _, err := s.Sign(ctx, k.UUID, digest[1:], o); !errors.Is(err, hsmapi.ErrBadArguments) {
				t.Errorf("short digest %v: got %v", req, err)
			}
		}
	}
}

func TestGenerateRefusesBadRequests(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	for _, req := range []hsmapi.GenerateRequest{
		{Type: hsmapi.KeyTypeRSAPrivate, Bits: 1024},
		{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2047},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.Curve(7)},
		{Type: hsmapi.KeyTypeECPublic, Curve: hsmapi.CurveP256},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: 1 << 10},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Label: string(make([]byte, hsmapi.MaxLabelLength+1))},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Label: "evil\x1b[31mred"},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Label: "two\nlines"},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Label: "bad \xff utf-8"},
	} {
		if _, err := s.GenerateKey(ctx, req); !errors.Is(err, hsmapi.ErrBadArguments) {
			t.Errorf("generate %+v: got %v, want ErrBadArguments", req, err)
		}
	}
	if keys, _ := s.Keys(ctx, hsmapi.Filter{}); len(keys) != 0 {
		t.Errorf("refused requests stored %d keys", len(keys))
	}
}

func TestSignNeedsDigitalSignatureAndPrivateKey(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken})
	digest := sha256.Sum256(nil)
	if _, err := s.Sign(ctx, k.UUID, digest[:], crypto.SHA256); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("sign without digitalsignature: got %v", err)
	}
	pub, err := s.Import(ctx, hsmapi.ImportRequest{PublicKey: k.PublicKey, Flags: signFlags})
	if err != nil {
		t.Fatal(err)
	}
	if pub.Key.Type != hsmapi.KeyTypeECPublic {
		t.Errorf("loaded public key has type %v", pub.Key.Type)
	}
	if _, err := s.Sign(ctx, pub.Key.UUID, digest[:], crypto.SHA256); !errors.Is(err, hsmapi.ErrUnsupportedKey) {
		t.Errorf("sign with a public key: got %v", err)
	}
}

func TestKeysFilter(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	rsaKey := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken})
	p256 := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
	p384 := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384, Flags: signFlags})
	for _, tc := range []struct {
		f    hsmapi.Filter
		want []hsmapi.KeyInfo
	}{
		{hsmapi.Filter{}, []hsmapi.KeyInfo{rsaKey, p256, p384}},
		{hsmapi.Filter{Type: hsmapi.KeyTypeECPrivate}, []hsmapi.KeyInfo{p256, p384}},
		{hsmapi.Filter{Curve: hsmapi.CurveP384}, []hsmapi.KeyInfo{p384}},
		{hsmapi.Filter{Mask: hsmapi.FlagExportable, Flags: hsmapi.FlagExportable}, []hsmapi.KeyInfo{p256}},
		{hsmapi.Filter{Mask: hsmapi.FlagExportable}, []hsmapi.KeyInfo{rsaKey, p384}},
		{hsmapi.Filter{Type: hsmapi.KeyTypeRSAPrivate, Mask: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken}, []hsmapi.KeyInfo{rsaKey}},
		{hsmapi.Filter{Type: hsmapi.KeyTypeRSAPublic}, nil},
	} {
		got, err := s.Keys(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if !sameUUIDs(got, tc.want) {
			t.Errorf("Keys(%+v) = %v, want %v", tc.f, uuids(got), uuids(tc.want))
		}
	}
}

func uuids(keys []hsmapi.KeyInfo) map[hsmapi.UUID]bool {
	m := map[hsmapi.UUID]bool{}
	for _, k := range keys {
		m[k.UUID] = true
	}
	return m
}

func sameUUIDs(a, b []hsmapi.KeyInfo) bool {
	ma, mb := uuids(a), uuids(b)
	if len(a) != len(ma) || len(ma) != len(mb) {
		return false
	}
	for id := range ma {
		if !mb[id] {
			return false
		}
	}
	return true
}

func TestDeleteKey(t *testing.T) {
	h, dir := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	if err := s.DeleteKey(ctx, k.UUID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKey(ctx, k.UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("second delete: got %v", err)
	}
	s.Close()
	h.Close()
	h2, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if _, err := login(t, h2).Key(ctx, k.UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("deleted key came back after restart: %v", err)
	}
}

func TestTamperLeavesKeystoreUnreadableUntilMasterKeyRestored(t *testing.T) {
	h, dir := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	mk, err := h.board.MKM.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer clear(mk)
	if err := h.Tamper(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Key(ctx, k.UUID); !errors.Is(err, hsmapi.ErrTamper) {
		t.Errorf("key right after tamper: got %v, want ErrTamper", err)
	}
	s.Close()
	h.Close()

	h2, err := Open(dir, testOptions)
	if err != nil {
		t.Fatalf("a tampered HSM must still open: %v", err)
	}
	defer h2.Close()
	s2 := login(t, h2) // PINs are not under the master key
	if _, err := s2.Key(ctx, k.UUID); !errors.Is(err, hsmapi.ErrTamper) {
		t.Errorf("key after tamper: got %v, want ErrTamper", err)
	}
	if _, err := s2.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags}); !errors.Is(err, hsmapi.ErrTamper) {
		t.Errorf("generate after tamper: got %v, want ErrTamper", err)
	}
	if err := h2.board.MKM.Set(mk); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Key(ctx, k.UUID); err != nil {
		t.Errorf("key after the master key was restored: %v", err)
	}
}

func TestKeyRecordRoundTripAndBadLengths(t *testing.T) {
	r := &keyRecord{uuid: hsmapi.UUID{1, 2, 3}, typ: hsmapi.KeyTypeECPrivate, curve: hsmapi.CurveP256, flags: signFlags,
		label: "label", public: []byte("public"), private: []byte("private")}
	b := r.marshal()
	got, err := parseKeyRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.uuid != r.uuid || got.typ != r.typ || got.curve != r.curve || got.flags != r.flags ||
		got.label != r.label || string(got.public) != "public" || string(got.private) != "private" {
		t.Errorf("round trip: %+v", got)
	}
	for i := range len(b) {
		if _, err := parseKeyRecord(b[:i]); err == nil {
			t.Errorf("record cut to %d bytes parsed", i)
		}
	}
	if _, err := parseKeyRecord(append(b, 0)); err == nil {
		t.Error("record with a trailing byte parsed")
	}
}

// marshal sizes its buffer exactly: an append that outgrew it would leave
// a copy of the private key in an array nothing clears.
func TestKeyRecordMarshalAllocatesOnce(t *testing.T) {
	for _, attrs := range []map[uint32][]byte{nil, {1: []byte("a")}, {1: make([]byte, 3000), 7: nil, 9: []byte("xyz")}} {
		r := &keyRecord{uuid: hsmapi.UUID{1}, typ: hsmapi.KeyTypeRSAPrivate, label: "l", public: make([]byte, 300),
			private: make([]byte, 1200), attrs: attrs}
		if b := r.marshal(); len(b) != cap(b) {
			t.Errorf("%d attributes: record of %d bytes in a buffer of %d", len(attrs), len(b), cap(b))
		}
	}
}

func TestPINRecordBadLengths(t *testing.T) {
	r, err := newPINRecord(randReader{}, userPIN, 1000)
	if err != nil {
		t.Fatal(err)
	}
	b := r.marshal()
	if got, err := parsePINRecord(b); err != nil || !got.verify(userPIN) || got.verify(wheelPIN) {
		t.Fatalf("round trip: %v", err)
	}
	for i := range len(b) {
		if _, err := parsePINRecord(b[:i]); err == nil {
			t.Errorf("PIN record cut to %d bytes parsed", i)
		}
	}
}

type randReader struct{}

func (randReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i * 7)
	}
	return len(p), nil
}

// TestDamagedKeyIsReportedNotLost: a flash block that fails its CRC is left
// alone; the HSM opens, says which block, the other keys work, and the
// damaged key's UUID cannot be taken by another key.
func TestDamagedKeyIsReportedNotLost(t *testing.T) {
	h, dir := newTestHSM(t)
	s := login(t, h)
	damaged := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	intact := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	s.Close()
	h.Close()

	// Corrupt the block that names the damaged key (its UUID is in the header).
	path := filepath.Join(dir, "flash.img")
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(img, damaged.UUID[:])
	if at < 0 {
		t.Fatal("key's block not found")
	}
	block := at / sim.BlockSize
	img[block*sim.BlockSize+200] ^= 0xff
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}

	h2, err := Open(dir, testOptions)
	if err != nil {
		t.Fatalf("one damaged block must not stop the HSM: %v", err)
	}
	defer h2.Close()
	if got := h2.DamagedBlocks(); len(got) != 1 || got[0] != block {
		t.Errorf("DamagedBlocks() = %v, want [%d]", got, block)
	}
	s2 := login(t, h2)
	if _, err := s2.Key(ctx, intact.UUID); err != nil {
		t.Errorf("intact key: %v", err)
	}
	if _, err := s2.Key(ctx, damaged.UUID); err == nil || errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("damaged key: got %v, want a keystore error, not 'not found'", err)
	}
	if _, err := s2.Import(ctx, hsmapi.ImportRequest{UUID: damaged.UUID, PublicKey: intact.PublicKey, Flags: hsmapi.FlagToken}); err == nil {
		t.Error("a new key took the damaged key's UUID")
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after[block*sim.BlockSize:(block+1)*sim.BlockSize], img[block*sim.BlockSize:(block+1)*sim.BlockSize]) {
		t.Error("the damaged block was changed")
	}
}

// A flash image cut short or grown since Create is refused at Open, while
// an HSM made before the size was recorded still opens.
func TestOpenRefusesResizedFlash(t *testing.T) {
	h, dir := newTestHSM(t)
	s := login(t, h)
	generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	s.Close()
	h.Close()
	path := filepath.Join(dir, "flash.img")
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		blocks int
	}{{"one block", 1}, {"three blocks", 3}, {"sixteen blocks", 16}, {"half", 128}, {"grown", 512}} {
		resized := make([]byte, tc.blocks*sim.BlockSize)
		for i := range resized {
			resized[i] = 0xFF
		}
		copy(resized, img)
		if err := os.WriteFile(path, resized, 0o600); err != nil {
			t.Fatal(err)
		}
		if h2, err := Open(dir, testOptions); !errors.Is(err, ErrFlashSize) {
			if err == nil {
				h2.Close()
			}
			t.Errorf("%s: Open gave %v, want ErrFlashSize", tc.name, err)
		}
	}
	// A damaged PIN record is a damaged block, not a short image: the HSM
	// opens and reports it.
	damaged := bytes.Clone(img)
	damaged[50] ^= 0xff // block 0: the first PIN record, past its 44-byte header
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	if hd, err := Open(dir, testOptions); err != nil {
		t.Errorf("a damaged PIN record: %v", err)
	} else {
		if got := hd.DamagedBlocks(); len(got) != 1 || got[0] != 0 {
			t.Errorf("DamagedBlocks() = %v, want [0]", got)
		}
		hd.Close()
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	h2, err := Open(dir, testOptions)
	if err != nil {
		t.Fatalf("the image as it was: %v", err)
	}
	// As an HSM made before the size was recorded.
	if err := h2.ks.Delete(flashID); err != nil {
		t.Fatal(err)
	}
	h2.Close()
	h3, err := Open(dir, testOptions)
	if err != nil {
		t.Fatalf("an HSM without the size record: %v", err)
	}
	h3.Close()
}

// Volatile keys are bounded HSM-wide; closing a session gives its room back.
func TestVolatileKeysAreBounded(t *testing.T) {
	h, _ := newTestHSM(t)
	owner := login(t, h)
	pub := generate(t, owner, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagToken}).PublicKey
	s := login(t, h)
	for i := range MaxVolatileKeys {
		if _, err := s.Import(ctx, hsmapi.ImportRequest{PublicKey: pub}); err != nil {
			t.Fatalf("volatile key %d: %v", i, err)
		}
	}
	if _, err := owner.Import(ctx, hsmapi.ImportRequest{PublicKey: pub}); !errors.Is(err, hsmapi.ErrKeystoreFull) {
		t.Fatalf("one volatile key too many: %v, want ErrKeystoreFull", err)
	}
	s.Close()
	if _, err := owner.Import(ctx, hsmapi.ImportRequest{PublicKey: pub}); err != nil {
		t.Errorf("after the session that held them closed: %v", err)
	}
}

func TestCheckLabel(t *testing.T) {
	for label, ok := range map[string]bool{
		"web server": true, "clé-Ω": true, strings.Repeat("x", hsmapi.MaxLabelLength): true,
		strings.Repeat("x", hsmapi.MaxLabelLength+1): false, "a\tb": false, "a\x00b": false, "bad\xffutf8": false,
		"evil\u202egnp.exe": false, "zero\u200bwidth": false, "bom\ufeff": false,
	} {
		if err := hsmapi.CheckLabel(label); (err == nil) != ok {
			t.Errorf("CheckLabel(%q) = %v", label, err)
		}
	}
}

// restarted powers h off and on again (Open on its directory) and returns
// it with a new wheel session; both are closed when t ends.
func restarted(t *testing.T, h *HSM) (*HSM, *Session) {
	t.Helper()
	h.Close()
	h2, err := Open(h.board.Dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h2.Close() })
	return h2, login(t, h2)
}
