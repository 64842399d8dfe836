package rpc

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// The extensions of version 5: EXT_REFUSAL, EXT_LOAD_SECRET and
// EXT_TRUST_CANDIDATE.

// asVersion4 makes c a client of a server of extensions version 4, which
// has none of them.
func asVersion4(c *Client) {
	v4 := *c.ext
	v4.Version = 4
	c.ext = &v4
}

// TestRefusalsOverRPC: a FORBIDDEN answer reaches the caller as the HSM
// meant it, refusal or no login, with the HSM's words; a libhal client
// gets FORBIDDEN alone, as before.
func TestRefusalsOverRPC(t *testing.T) {
	addr, _ := served(t)
	user := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	guarded, err := user.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Label: "guarded",
		Flags:      hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable,
		Attributes: []hsmapi.Attribute{{Type: hsmapi.CKAWrapWithTrusted, Value: []byte{1}}}})
	if err != nil {
		t.Fatal(err)
	}
	stays, err := user.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature})
	if err != nil {
		t.Fatal(err)
	}
	_, spki := rsaPublicKey(t)
	kekek, err := hsmapi.ParseKEKEK(spki)
	if err != nil {
		t.Fatal(err)
	}
	export := func(c *Client, id hsmapi.UUID) error {
		_, err := c.Export(ctx, hsmapi.ExportRequest{Key: id, KEKEKPublicKey: kekek, Encryption: hsmapi.KEKOAEPSHA256})
		return err
	}

	err = export(user, guarded.UUID)
	if !errors.Is(err, hsmapi.ErrForbidden) || errors.Is(err, hsmapi.ErrNotLoggedIn) || !errors.Is(err, wire.StatusForbidden) ||
		!strings.Contains(err.Error(), "has CKA_WRAP_WITH_TRUSTED and this HSM does not trust the KEKEK (fingerprint SHA256:") {
		t.Errorf("export to an untrusted KEKEK: %v", err)
	}
	if strings.Count(err.Error(), guarded.UUID.String()) != 2 || strings.Count(err.Error(), "export ") != 1 {
		t.Errorf("export to an untrusted KEKEK says the context twice or not at all: %v", err)
	}
	if err := export(user, stays.UUID); !errors.Is(err, hsmapi.ErrNotExportable) || errors.Is(err, hsmapi.ErrNotLoggedIn) {
		t.Errorf("export of a key not exportable: %v", err)
	}
	so := dialAs(t, addr, hsmapi.UserSO, []byte("so-pin"))
	if _, err := so.Key(ctx, guarded.UUID); !errors.Is(err, hsmapi.ErrForbidden) || errors.Is(err, hsmapi.ErrNotLoggedIn) {
		t.Errorf("the SO opens a key: %v", err)
	}
	none := dialAs(t, addr, hsmapi.UserNone, nil)
	if _, err := none.Key(ctx, guarded.UUID); !errors.Is(err, hsmapi.ErrNotLoggedIn) || errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("a client not logged in opens a key: %v", err)
	}
	// A server of version 4 cannot tell: FORBIDDEN reads as before.
	asVersion4(user)
	if err := export(user, guarded.UUID); !errors.Is(err, hsmapi.ErrNotLoggedIn) || !errors.Is(err, wire.StatusForbidden) {
		t.Errorf("export to an untrusted KEKEK, told by a server of version 4: %v", err)
	}

	// On the wire: FORBIDDEN is libhal's answer, func, client and status
	// alone; EXT_REFUSAL after it tells why, and after any other answer
	// nothing.
	r := dialRaw(t, addr)
	open := wire.EncodeRequest(wire.FuncPkeyOpen, 0, &wire.PkeyOpenRequest{UUID: guarded.UUID[:]})
	if ans := r.roundTrip(open); len(ans) != 12 || r.checkAnswer(wire.FuncPkeyOpen, ans, nil) != wire.StatusForbidden {
		t.Fatalf("PKEY_OPEN not logged in answers %x", ans)
	}
	var why wire.ExtRefusalResponse
	if st := r.call(wire.FuncExtRefusal, nil, &why); st != wire.StatusOK || why != (wire.ExtRefusalResponse{Reason: wire.RefusalNotLoggedIn}) {
		t.Errorf("EXT_REFUSAL after PKEY_OPEN not logged in: %v %+v", st, why)
	}
	if st := r.call(wire.FuncExtRefusal, nil, &why); st != wire.StatusOK || why.Reason != wire.RefusalNotLoggedIn {
		t.Errorf("EXT_REFUSAL twice: %v %+v", st, why)
	}
	if st := r.call(wire.FuncGetVersion, nil, &wire.GetVersionResponse{}); st != wire.StatusOK {
		t.Fatal(st)
	}
	if st := r.call(wire.FuncExtRefusal, nil, &why); st != wire.StatusOK || why != (wire.ExtRefusalResponse{}) {
		t.Errorf("EXT_REFUSAL after GET_VERSION: %v %+v", st, why)
	}
}

// TestRefusalText: the message is the HSM's words from the sentinel on,
// bounded, and valid UTF-8 when cut.
func TestRefusalText(t *testing.T) {
	id := hsmapi.UUID{1}
	for _, tc := range []struct {
		err  error
		want wire.ExtRefusalResponse
	}{
		{hsmapi.ErrNotLoggedIn, wire.ExtRefusalResponse{Reason: wire.RefusalNotLoggedIn}},
		{errors.Join(errors.New("x"), hsmapi.ErrForbidden), wire.ExtRefusalResponse{Reason: wire.RefusalForbidden, Message: "forbidden"}},
		{hsmapi.ErrForbidden, wire.ExtRefusalResponse{Reason: wire.RefusalForbidden}},
		{fmt.Errorf("export %s: %w: key lacks it", id, hsmapi.ErrForbidden), wire.ExtRefusalResponse{Reason: wire.RefusalForbidden, Message: "forbidden: key lacks it"}},
		{fmt.Errorf("wrap %s: %w", id, hsmapi.ErrNotExportable), wire.ExtRefusalResponse{Reason: wire.RefusalNotExportable, Message: "key is not exportable"}},
		{fmt.Errorf("a: %w", fmt.Errorf("%w: é%s", hsmapi.ErrForbidden, strings.Repeat("é", wire.MaxRefusal))),
			wire.ExtRefusalResponse{Reason: wire.RefusalForbidden, Message: "forbidden: " + strings.Repeat("é", (wire.MaxRefusal-len("forbidden: "))/2)}},
	} {
		if got := refusalOf(wire.FuncPkeyExport, wire.StatusForbidden, tc.err); got != tc.want {
			t.Errorf("%v:\n got %+v\nwant %+v", tc.err, got, tc.want)
		}
	}
	if got := refusalOf(wire.FuncPkeyExport, wire.StatusKeyNotFound, hsmapi.ErrForbidden); got != (wire.ExtRefusalResponse{}) {
		t.Errorf("KEY_NOT_FOUND: %+v", got)
	}
	// A label of any bytes in the message is not cut down to nothing.
	long := fmt.Errorf("%w: key \xff%s", hsmapi.ErrForbidden, strings.Repeat("x", wire.MaxRefusal))
	if got := refusalOf(wire.FuncPkeyExport, wire.StatusForbidden, long); len(got.Message) != wire.MaxRefusal {
		t.Errorf("a long message with a byte that is no UTF-8: %d bytes", len(got.Message))
	}

	// What a client makes of the server's words: one printable line.
	err := explainedError(wire.StatusForbidden, &wire.ExtRefusalResponse{Reason: wire.RefusalForbidden, Message: "forbidden: a\nb\x1b[31m\xff"})
	if err.Error() != "forbidden: a?b?[31m?" || !errors.Is(err, hsmapi.ErrForbidden) || !errors.Is(err, wire.StatusForbidden) {
		t.Errorf("refusal with control characters: %q", err)
	}
	if err := explainedError(wire.StatusForbidden, &wire.ExtRefusalResponse{Reason: 9}); err != nil {
		t.Errorf("a reason this client does not know: %v", err)
	}
}

// TestLoadSecretOverRPC: an AES key given in the clear is stored as given
// (a key it wraps unwraps under the value), refused whole when bad, and
// refused by a server of version 4.
func TestLoadSecretOverRPC(t *testing.T) {
	addr, _ := served(t)
	c := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	value := make([]byte, 32)
	rand.Read(value)
	k, err := c.LoadSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 256, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken, Label: "tag",
		Attributes: []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: []byte{7}}}}, value)
	if err != nil {
		t.Fatal(err)
	}
	if k.Type != hsmapi.KeyTypeAES || k.Bits != 256 || k.Label != "tag" {
		t.Errorf("loaded %+v", k)
	}
	target, err := c.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagExportable})
	if err != nil {
		t.Fatal(err)
	}
	blob, err := c.WrapKey(ctx, k.UUID, target.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrapKWP})
	if err != nil {
		t.Fatal(err)
	}
	der, err := keywrap.UnwrapPad(value, blob)
	if err != nil {
		t.Fatalf("the blob does not open under the value loaded: %v", err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hsmapi.ParsePublicKey(target.PublicKey)
	if !priv.(*ecdsa.PrivateKey).PublicKey.Equal(want) {
		t.Error("the key wrapped under the loaded AES key is another")
	}

	count := func() int {
		keys, err := c.Keys(ctx, hsmapi.Filter{Type: hsmapi.KeyTypeAES})
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	before := count()
	if _, err := c.LoadSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 160, Flags: hsmapi.FlagKeyEncipherment}, make([]byte, 20)); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("a 160-bit AES key: %v", err)
	}
	if _, err := c.LoadSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 128, Flags: hsmapi.FlagKeyEncipherment}, make([]byte, 24)); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("192 bits of value for a 128-bit key: %v", err)
	}
	if _, err := c.LoadSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 128, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagDataEncipherment}, make([]byte, 16)); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("an AES key that encrypts data: %v", err)
	}
	none := dialAs(t, addr, hsmapi.UserNone, nil)
	if _, err := none.LoadSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 128, Flags: hsmapi.FlagKeyEncipherment}, make([]byte, 16)); !errors.Is(err, hsmapi.ErrNotLoggedIn) {
		t.Errorf("not logged in: %v", err)
	}
	asVersion4(c)
	if _, err := c.LoadSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 128, Flags: hsmapi.FlagKeyEncipherment}, make([]byte, 16)); !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Errorf("a server of version 4: %v", err)
	}
	if n := count(); n != before {
		t.Errorf("%d AES keys after the refused loads, want %d", n, before)
	}
}

// TestTrustCandidatesOverRPC: the SO's list over RPC is the list in
// process, key by key and attribute by attribute, and follows what the SO
// sets; no one else gets it.
func TestTrustCandidatesOverRPC(t *testing.T) {
	addr, _, h, _ := servedHSM(t, testOptions)
	user := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	for _, req := range []hsmapi.GenerateRequest{
		{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken, Label: "kekek",
			Attributes: []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: []byte{1, 2}}}},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken, Label: "ec"},
		{Type: hsmapi.KeyTypeHashsigPrivate, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken, Label: "hss",
			Levels: []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}},
	} {
		if _, err := user.GenerateKey(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	aes, err := user.GenerateSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 128, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken, Label: "aes"})
	if err != nil {
		t.Fatal(err)
	}
	// A public key alone, as the SO stores a destination's KEKEK.
	_, spki := rsaPublicKey(t)
	if _, err := user.Import(ctx, hsmapi.ImportRequest{PublicKey: spki, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken, Label: "destination"}); err != nil {
		t.Fatal(err)
	}

	inProcess := h.NewSession()
	defer inProcess.Close()
	if err := inProcess.Login(ctx, hsmapi.UserSO, []byte("so-pin")); err != nil {
		t.Fatal(err)
	}
	so := dialAs(t, addr, hsmapi.UserSO, []byte("so-pin"))
	same := func(what string) []hsmapi.TrustCandidate {
		t.Helper()
		want, err := inProcess.TrustCandidates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := so.TrustCandidates(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != 5 || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: over RPC the SO sees\n%+v\nin process\n%+v", what, got, want)
		}
		return got
	}
	same("at first")
	if err := so.SetTrusted(ctx, aes.UUID, true); err != nil {
		t.Fatal(err)
	}
	for _, c := range same("after SetTrusted") {
		trusted := trustedIn(c.Attributes)
		if trusted != (c.Key.UUID == aes.UUID) {
			t.Errorf("key %s (%s): CKA_TRUSTED %v", c.Key.UUID, c.Key.Label, trusted)
		}
	}

	if _, err := user.TrustCandidates(ctx); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("the user lists keys to trust: %v", err)
	}
	none := dialAs(t, addr, hsmapi.UserNone, nil)
	if _, err := none.TrustCandidates(ctx); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("a client not logged in lists keys to trust: %v", err)
	}
	asVersion4(so)
	if _, err := so.TrustCandidates(ctx); !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Errorf("a server of version 4: %v", err)
	}
}

func trustedIn(attrs []hsmapi.Attribute) bool {
	for _, a := range attrs {
		if a.Type == hsmapi.CKATrusted {
			return bytes.Equal(a.Value, []byte{1})
		}
	}
	return false
}

// rsaPublicKey makes an RSA-2048 key and returns it with its public key's
// SubjectPublicKeyInfo.
func rsaPublicKey(t testing.TB) (*rsa.PrivateKey, []byte) {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return rk, spki
}
