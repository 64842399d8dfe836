package rpc

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// isLoggedIn asks IS_LOGGED_IN on c's connection.
func isLoggedIn(t *testing.T, c *Client, u hsmapi.User) bool {
	t.Helper()
	err := c.call(wire.FuncIsLoggedIn, &wire.IsLoggedInRequest{User: uint32(u)}, &wire.IsLoggedInResponse{})
	switch {
	case err == nil:
		return true
	case errors.Is(err, wire.StatusForbidden):
		return false
	}
	t.Fatalf("IS_LOGGED_IN: %v", err)
	return false
}

func hasKey(keys []hsmapi.KeyInfo, id hsmapi.UUID) bool {
	for _, k := range keys {
		if k.UUID == id {
			return true
		}
	}
	return false
}

// TestServerPerConnectionState checks that each connection has its own
// login and volatile keys, as with cryptech_muxd: a login, a volatile key,
// a hang-up touch that connection only; LOGOUT_ALL, for wheel alone, logs
// every connection out.
func TestServerPerConnectionState(t *testing.T) {
	addr, srv := served(t)
	a := dialAs(t, addr, hsmapi.UserNone, nil)
	b := dialAs(t, addr, hsmapi.UserNone, nil)

	// A login is the connection's own.
	if err := a.Login(ctx, hsmapi.UserNormal, userPIN); err != nil {
		t.Fatal(err)
	}
	if !isLoggedIn(t, a, hsmapi.UserNormal) {
		t.Fatal("a: not logged in after LOGIN")
	}
	if isLoggedIn(t, a, hsmapi.UserWheel) {
		t.Error("a: logged in as wheel after logging in as the normal user")
	}
	if isLoggedIn(t, b, hsmapi.UserNormal) {
		t.Fatal("b: logged in by a's LOGIN")
	}
	// As libhal's PKEY_MATCH: no keys for a client not logged in.
	if keys, err := b.Keys(ctx, hsmapi.Filter{}); err != nil || len(keys) != 0 {
		t.Errorf("b lists %d keys without logging in: %v", len(keys), err)
	}
	if st := srv.Stats(); st.Conns != 2 || st.LoggedIn != 1 {
		t.Errorf("server holds %+v", st)
	}

	// A volatile key is the connection's own.
	vk, err := a.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature})
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("mine"))
	if _, err := a.Sign(ctx, vk.UUID, d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if err := b.Login(ctx, hsmapi.UserNormal, userPIN); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Key(ctx, vk.UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("b opens a's volatile key: %v", err)
	}
	if _, err := b.Sign(ctx, vk.UUID, d[:], crypto.SHA256); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("b signs with a's volatile key: %v", err)
	}
	if keys, err := b.Keys(ctx, hsmapi.Filter{}); err != nil || hasKey(keys, vk.UUID) {
		t.Errorf("b lists a's volatile key: %v, %v", keys, err)
	}
	if keys, err := a.Keys(ctx, hsmapi.Filter{}); err != nil || !hasKey(keys, vk.UUID) {
		t.Errorf("a does not list its own volatile key: %v, %v", keys, err)
	}

	// Hanging up logs that connection out, and that one only.
	if st := srv.Stats(); st.Conns != 2 || st.LoggedIn != 2 {
		t.Errorf("server holds %+v", st)
	}
	a.Close()
	waitStats(t, srv, Stats{Conns: 1, LoggedIn: 1}) // b opened no key: there was none it could see
	if !isLoggedIn(t, b, hsmapi.UserNormal) {
		t.Fatal("b was logged out when a hung up")
	}

	// LOGOUT_ALL: forbidden to the normal user and the security officer,
	// and when wheel sends it, everybody is logged out, wheel too.
	so := dialAs(t, addr, hsmapi.UserSO, []byte("so-pin"))
	w := dialAs(t, addr, hsmapi.UserWheel, wheelPIN)
	bk, err := b.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{b, so} {
		if err := c.call(wire.FuncLogoutAll, &wire.LogoutAllRequest{}, &wire.LogoutAllResponse{}); !errors.Is(err, wire.StatusForbidden) {
			t.Errorf("LOGOUT_ALL by a user other than wheel: %v, want FORBIDDEN", err)
		}
	}
	if !isLoggedIn(t, b, hsmapi.UserNormal) || !isLoggedIn(t, so, hsmapi.UserSO) || !isLoggedIn(t, w, hsmapi.UserWheel) {
		t.Fatal("a forbidden LOGOUT_ALL logged someone out")
	}
	if st := srv.Stats(); st.LoggedIn != 3 {
		t.Errorf("server holds %+v", st)
	}
	if err := w.call(wire.FuncLogoutAll, &wire.LogoutAllRequest{}, &wire.LogoutAllResponse{}); err != nil {
		t.Fatalf("LOGOUT_ALL by wheel: %v", err)
	}
	if isLoggedIn(t, b, hsmapi.UserNormal) || isLoggedIn(t, so, hsmapi.UserSO) || isLoggedIn(t, w, hsmapi.UserWheel) {
		t.Fatal("LOGOUT_ALL left someone logged in")
	}
	if st := srv.Stats(); st.Conns != 3 || st.LoggedIn != 0 {
		t.Errorf("after LOGOUT_ALL the server holds %+v", st)
	}
	// The connections still work, and the logout dropped b's volatile key.
	if err := b.Login(ctx, hsmapi.UserNormal, userPIN); err != nil {
		t.Fatal(err)
	}
	var r wire.PkeyOpenResponse
	if err := b.call(wire.FuncPkeyOpen, &wire.PkeyOpenRequest{UUID: bk.UUID[:]}, &r); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("b's volatile key outlived LOGOUT_ALL: %v", err)
	}
}

// Random asks GET_RANDOM a packet's worth at a time, with no login: more
// than one answer holds arrives whole, to its last byte.
func TestClientRandom(t *testing.T) {
	addr, _ := served(t)
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, n := range []int{0, 1, maxRandom, 2*maxRandom + 5} {
		p := make([]byte, n)
		if err := c.Random(ctx, p); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		// The last 32 bytes all zero: 2^-256 for random bytes.
		if tail := p[max(0, n-32):]; n >= 32 && bytes.Count(tail, []byte{0}) == len(tail) {
			t.Fatalf("%d bytes: the tail was not filled", n)
		}
	}
}
