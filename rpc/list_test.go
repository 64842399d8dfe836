package rpc

import (
	"crypto"
	"net"
	"reflect"
	"sync/atomic"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// countingConn counts the requests a Client sends: one Write each.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// dialCounting logs in as wheel with pin on a connection that counts
// requests.
func dialCounting(t testing.TB, addr string, pin []byte) (*Client, *countingConn) {
	t.Helper()
	cc := &countingConn{Conn: dialAddr(t, addr)}
	c, err := NewClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(ctx, hsmapi.UserWheel, pin); err != nil {
		t.Fatal(err)
	}
	return c, cc
}

// TestKeysOverRPC: EXT_LIST_KEYS lists what Token.Keys lists in process,
// field by field and in the same order, under every kind of filter, with
// HSS keys, secret keys and labels of any bytes; a server of version 6
// (PKEY_MATCH and a description per key) lists the same; and the listing
// costs one request and the downloads of its answer, not requests per key.
func TestKeysOverRPC(t *testing.T) {
	addr, _, h, _ := servedHSM(t, testOptions)
	admin := h.NewSession()
	defer admin.Close()
	if err := admin.Login(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
		t.Fatal(err)
	}
	id := []byte{0xC0, 0xFF, 0xEE}
	odd := "\xff\x00\n\u200b label \x1b[0m"
	gen := func(req hsmapi.GenerateRequest) hsmapi.KeyInfo {
		t.Helper()
		k, err := admin.GenerateKey(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	sign := hsmapi.FlagDigitalSignature | hsmapi.FlagToken
	const nP256 = 150 // more than a packet's worth of descriptions
	for i := range nP256 {
		gen(hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: sign | hsmapi.Flags(i%2)*hsmapi.FlagExportable,
			Label: string(rune('a' + i%26))})
	}
	withID := gen(hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384, Flags: sign,
		Attributes: []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: id}}})
	// A label of any bytes, as a libhal client may set one.
	if err := admin.SetAttributes(ctx, withID.UUID, []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte(odd)}}); err != nil {
		t.Fatal(err)
	}
	gen(hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken, Label: "kekek"})
	hss := gen(hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Flags: sign, Label: "hss",
		Levels: []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}})
	// One signature, so that the remaining count is not the first one.
	if _, err := admin.Sign(ctx, hss.UUID, []byte("message"), crypto.Hash(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.GenerateSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 256, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken, Label: "aes"}); err != nil {
		t.Fatal(err)
	}

	v7, reqs := dialCounting(t, addr, wheelPIN)
	if v7.ext.Version < 7 {
		t.Fatalf("server of extensions version %d", v7.ext.Version)
	}
	v6 := dialLogin(t, addr)
	old := *v6.ext
	old.Version = 6
	v6.ext = &old

	for _, tc := range []struct {
		name string
		f    hsmapi.Filter
		want int
	}{
		{"all", hsmapi.Filter{}, nP256 + 3},
		{"secret keys", hsmapi.Filter{Type: hsmapi.KeyTypeAES}, 1},
		{"P-256", hsmapi.Filter{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256}, nP256},
		{"exportable", hsmapi.Filter{Mask: hsmapi.FlagExportable, Flags: hsmapi.FlagExportable}, nP256 / 2},
		{"HSS", hsmapi.Filter{Type: hsmapi.KeyTypeHashsigPrivate}, 1},
		{"odd label", hsmapi.Filter{Attributes: []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte(odd)}}}, 1},
		{"CKA_ID", hsmapi.Filter{Attributes: []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: id}}}, 1},
		{"none", hsmapi.Filter{Type: hsmapi.KeyTypeECPublic}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := admin.Keys(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) != tc.want {
				t.Fatalf("in process: %d keys, want %d", len(want), tc.want)
			}
			before := reqs.writes.Load()
			got, err := v7.Keys(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if n := reqs.writes.Load() - before; n > 1+int64(len(want))/16+1 {
				t.Errorf("%d requests for %d keys", n, len(want))
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("over RPC:\n%+v\nin process:\n%+v", got, want)
			}
			got6, err := v6.Keys(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got6, want) {
				t.Errorf("from a version 6 server:\n%+v\nin process:\n%+v", got6, want)
			}
		})
	}
	if keys, err := v7.Keys(ctx, hsmapi.Filter{Type: hsmapi.KeyTypeHashsigPrivate}); err != nil || len(keys) != 1 ||
		keys[0].Hashsig == nil || keys[0].Hashsig.RemainingUnknown || keys[0].Hashsig.Remaining != 31 {
		t.Errorf("the HSS key over RPC: %+v, %v", keys, err)
	}
	// As PKEY_MATCH: no keys for a client not logged in, nor the SO.
	for _, who := range []struct {
		user hsmapi.User
		pin  []byte
	}{{hsmapi.UserNone, nil}, {hsmapi.UserSO, []byte("so-pin")}} {
		if keys, err := dialAs(t, addr, who.user, who.pin).Keys(ctx, hsmapi.Filter{}); err != nil || len(keys) != 0 {
			t.Errorf("user %v lists %d keys: %v", who.user, len(keys), err)
		}
	}
}

// FuzzDecodeKeyList: whatever a server answers EXT_LIST_KEYS (or
// EXT_CHECK_STORED, EXT_RESTORE_KEYS) with, the client never panics, and
// a list it accepts reads back the same once written again.
func FuzzDecodeKeyList(f *testing.F) {
	hss, err := hashsig.GenerateKey(nil, []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	hssInfo, err := hsmapi.DescribePublicKey(hashsig.MarshalPKIXPublicKey(hss.Public()), true)
	if err != nil {
		f.Fatal(err)
	}
	hssInfo.UUID, hssInfo.Label, hssInfo.Hashsig.Remaining = hsmapi.UUID{9}, "hss", 7
	f.Add(encodeKeyList(nil))
	f.Add(encodeKeyList([]hsmapi.ImportResult{
		{Key: hsmapi.KeyInfo{UUID: hsmapi.UUID{1}, Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Bits: 256,
			Flags: hsmapi.FlagDigitalSignature, Label: "\xff\x00odd", PublicKey: []byte{0x30, 0x03, 1, 2, 3}}},
		{Key: hsmapi.KeyInfo{UUID: hsmapi.UUID{2}, Type: hsmapi.KeyTypeAES, Bits: 256}, Present: true},
		{Key: hssInfo},
	}))
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := decodeKeyList(b)
		if err != nil {
			return
		}
		again, err := decodeKeyList(encodeKeyList(res))
		if err != nil {
			t.Fatalf("a list read once does not read again: %v", err)
		}
		if len(res) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(again, res) {
			t.Fatalf("read again:\n%+v\nfirst:\n%+v", again, res)
		}
	})
}
