package rpc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/transfertest"
	"github.com/hsmkit/cryptech-backup/sim"
)

var ctx = context.Background()

var testOptions = hsm.Options{WrongPINDelay: time.Millisecond, PINIterations: 1000}

var wheelPIN = []byte("wheel-pin")

// served starts an emulated HSM behind a Server on a Unix socket and
// returns its address.
func served(t testing.TB) (string, *Server) {
	t.Helper()
	addr, srv, _, _ := servedHSM(t, testOptions)
	return addr, srv
}

func dialLogin(t testing.TB, addr string) *Client {
	t.Helper()
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTransferOverRPC runs setup, export and import with both HSMs behind
// sockets, then checks signatures across them.
func TestTransferOverRPC(t *testing.T) {
	srcAddr, _ := served(t)
	dstAddr, _ := served(t)
	src, dst := dialLogin(t, srcAddr), dialLogin(t, dstAddr)
	if !src.Extended() {
		t.Fatal("the emulated HSM's server offers no extensions")
	}
	flags := hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable
	var keys []hsmapi.KeyInfo
	for _, req := range []hsmapi.GenerateRequest{
		{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: flags, Label: "rsa"},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384, Flags: flags, Label: "ec"},
		{Type: hsmapi.KeyTypeHashsigPrivate, Flags: flags, Label: "hss", Levels: []hashsig.Level{
			{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4}, {LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4}}},
	} {
		k, err := src.GenerateKey(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if k.Label != req.Label || k.Type != req.Type {
			t.Fatalf("generated %+v", k)
		}
		keys = append(keys, k)
	}
	_, b := transfertest.ExportFor(t, src, dst)
	if b.KEKEncryption != hsmapi.KEKOAEPSHA256 {
		t.Errorf("KEKs encrypted with %s", b.KEKEncryption)
	}
	res, err := backup.Import(ctx, dst, b, backup.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(keys) {
		t.Fatalf("%d keys imported", len(res))
	}
	for _, k := range keys {
		got, err := dst.Key(ctx, k.UUID)
		if err != nil {
			t.Fatalf("%s did not arrive under its UUID: %v", k.Label, err)
		}
		if got.Label != k.Label {
			t.Errorf("label %q, want %q", got.Label, k.Label)
		}
		msg, opts := []byte("over the wire"), crypto.SignerOpts(crypto.Hash(0))
		if k.Hashsig == nil {
			d := sha256.Sum256(msg)
			msg, opts = d[:], crypto.SHA256
		}
		sig, err := dst.Sign(ctx, k.UUID, msg, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := hsmapi.VerifySignature(k.PublicKey, msg, sig, opts); err != nil {
			t.Errorf("%s: %v", k.Label, err)
		}
		if err := src.Verify(ctx, k.UUID, msg, sig, opts); err != nil {
			t.Errorf("%s: the source does not verify the destination's signature: %v", k.Label, err)
		}
	}
	again, err := backup.Import(ctx, dst, b, backup.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range again {
		if !r.Present {
			t.Errorf("second import: %s not present", r.UUID)
		}
	}
}

// TestRawLabelsOverRPC: keys whose labels a libhal client set to any bytes
// (PKEY_SET_ATTRIBUTES), up to the longest a key keeps, go from one server
// to another through a bundle and arrive with exactly those bytes.
func TestRawLabelsOverRPC(t *testing.T) {
	srcAddr, _ := served(t)
	dstAddr, _ := served(t)
	src, dst := dialLogin(t, srcAddr), dialLogin(t, dstAddr)
	var keys []hsmapi.KeyInfo
	for _, label := range []string{"a\x00b\xffc\u202e", strings.Repeat("\xfe", hsmapi.MaxRawLabelLength), strings.Repeat("l", hsmapi.MaxLabelLength+1)} {
		k, err := src.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
			Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable})
		if err != nil {
			t.Fatal(err)
		}
		if err := src.setLabel(src.open[k.UUID].handle, label); err != nil {
			t.Fatal(err)
		}
		k.Label = label
		keys = append(keys, k)
	}
	var buf bytes.Buffer
	_, exported := transfertest.ExportFor(t, src, dst)
	backup.Write(&buf, exported)
	b, err := backup.ReadBundle(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Import(ctx, dst, b, backup.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		got, err := dst.Key(ctx, k.UUID)
		if err != nil || got.Label != k.Label {
			t.Errorf("label %q arrived as %q (%v)", k.Label, got.Label, err)
		}
		signsUnder(t, dst, k.UUID, k.PublicKey)
	}
}

// signsUnder checks that key id of tok (RSA or EC) signs so that pub
// verifies.
func signsUnder(t *testing.T, tok hsmapi.Token, id hsmapi.UUID, pub []byte) {
	t.Helper()
	d := sha256.Sum256([]byte("signed with " + id.String()))
	sig, err := tok.Sign(ctx, id, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := hsmapi.VerifySignature(pub, d[:], sig, crypto.SHA256); err != nil {
		t.Errorf("%s: %v", id, err)
	}
}

// loadRecorder is a Client that records what LoadPrivateKey loaded.
type loadRecorder struct {
	*Client
	flags  []hsmapi.Flags
	loaded []hsmapi.UUID
}

func (r *loadRecorder) LoadPrivateKey(ctx context.Context, req hsmapi.LoadRequest) (hsmapi.KeyInfo, error) {
	r.flags = append(r.flags, req.Flags)
	k, err := r.Client.LoadPrivateKey(ctx, req)
	if err == nil {
		r.loaded = append(r.loaded, k.UUID)
	}
	return k, err
}

// TestSoftKEKEKImportOverRPC: a bundle made for a soft KEKEK imports into a
// server over RPC. The KEKEK's private half is loaded over the connection
// as a volatile key and deleted after the import: the connection that
// loaded it no longer finds it. A wrong passphrase fails with one line,
// before anything is loaded or stored.
func TestSoftKEKEKImportOverRPC(t *testing.T) {
	src := hsmtest.New(t)
	var keys []hsmapi.KeyInfo
	for _, req := range []hsmapi.GenerateRequest{
		{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Label: "rsa"},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384, Label: "ec"},
	} {
		req.Flags = hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable
		k, err := src.GenerateKey(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	const pass = "a passphrase for the soft KEKEK"
	f, err := backup.NewSoftKEKEK([]byte(pass), backup.SoftOptions{KDF: &backup.KDF{Name: "argon2id", Time: 1, Memory: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.Export(ctx, src, f, backup.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := served(t)
	passphrase := func(p string) func(context.Context) ([]byte, error) {
		return func(context.Context) ([]byte, error) { return []byte(p), nil }
	}

	dst := &loadRecorder{Client: dialLogin(t, addr)}
	_, err = backup.Import(ctx, dst, b, backup.ImportOptions{Passphrase: passphrase(pass + "x")})
	if !errors.Is(err, backup.ErrPassphrase) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a wrong passphrase: %q, want one line of %v", err, backup.ErrPassphrase)
	}
	if len(dst.flags) != 0 {
		t.Errorf("a wrong passphrase loaded %d keys", len(dst.flags))
	}
	if stored, err := dialLogin(t, addr).Keys(ctx, hsmapi.Filter{}); err != nil || len(stored) != 0 {
		t.Fatalf("a wrong passphrase stored %d keys (%v)", len(stored), err)
	}

	res, err := backup.Import(ctx, dst, b, backup.ImportOptions{Passphrase: passphrase(pass)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(keys) {
		t.Fatalf("%d keys imported, want %d", len(res), len(keys))
	}
	for _, k := range keys {
		signsUnder(t, dst, k.UUID, k.PublicKey)
	}
	if len(dst.loaded) != 1 || dst.flags[0]&hsmapi.FlagToken != 0 {
		t.Fatalf("loaded %v with flags %v: want one volatile key", dst.loaded, dst.flags)
	}
	if _, err := dst.Key(ctx, dst.loaded[0]); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("the loaded KEKEK after the import, on the connection that loaded it: %v", err)
	}
	for _, c := range []*Client{dst.Client, dialLogin(t, addr)} {
		left, err := c.Keys(ctx, hsmapi.Filter{Mask: hsmapi.FlagKeyEncipherment, Flags: hsmapi.FlagKeyEncipherment})
		if err != nil || len(left) != 0 {
			t.Errorf("%d keys with keyencipherment left on the server (%v)", len(left), err)
		}
	}
}

// TestTransferLibhalOnly drives both HSMs through libhal's 32 functions
// alone, as against a Cryptech HSM: the transfer needs --legacy-kek, writes
// cryptech_backup's bundle format, and the keys arrive under new UUIDs.
func TestTransferLibhalOnly(t *testing.T) {
	srcAddr, _ := served(t)
	dstAddr, _ := served(t)
	src, dst := dialLogin(t, srcAddr), dialLogin(t, dstAddr)
	src.ext, dst.ext = nil, nil // as a Cryptech HSM answers: no extensions
	flags := hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable
	ec, err := src.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: flags, Label: "old"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := backup.Setup(ctx, dst, backup.SetupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Export(ctx, src, f, backup.ExportOptions{}); err == nil {
		t.Fatal("export to a libhal-only HSM without --legacy-kek succeeded")
	}
	b, err := backup.Export(ctx, src, f, backup.ExportOptions{LegacyKEK: true})
	if err != nil {
		t.Fatal(err)
	}
	if b.Version != 0 || b.KEKEncryption != "" || b.Keys[0].Tag != nil {
		t.Fatalf("not cryptech_backup's format: version %d, %q", b.Version, b.KEKEncryption)
	}
	res, err := backup.Import(ctx, dst, b, backup.ImportOptions{LegacyKEK: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].UUID == ec.UUID {
		t.Fatalf("imported %+v: libhal gives imported keys new UUIDs", res)
	}
	got, err := dst.Key(ctx, res[0].UUID)
	if err != nil {
		t.Fatal(err)
	}
	if !hsmapi.SamePublicKey(got.PublicKey, ec.PublicKey) {
		t.Error("the imported key is not the source's")
	}
	signsUnder(t, dst, got.UUID, ec.PublicKey)
}

// An export over RPC from an HSM with a damaged flash block fails, as it
// does in process, rather than leave the block's key out.
func TestExportOverRPCRefusesDamagedHSM(t *testing.T) {
	dstAddr, _ := served(t)
	dir := filepath.Join(t.TempDir(), "hsm")
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: wheelPIN, SOPIN: []byte("so-pin"), UserPIN: userPIN, Blocks: 64}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	s := h.NewSession()
	if err := s.Login(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
		t.Fatal(err)
	}
	flags := hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable
	var ids []hsmapi.UUID
	for range 2 {
		k, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: flags})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.UUID)
	}
	s.Close()
	h.Close()
	block := damageKeyBlock(t, filepath.Join(dir, "flash.img"), ids[0])
	h, err = hsm.Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	addr, _ := serveHSM(t, h)
	src := dialLogin(t, addr)
	if got, err := src.DamagedBlocks(ctx); err != nil || len(got) != 1 || got[0] != block {
		t.Fatalf("DamagedBlocks() = %v, %v; want [%d]", got, err, block)
	}
	f, err := backup.Setup(ctx, dialLogin(t, dstAddr), backup.SetupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Export(ctx, src, f, backup.ExportOptions{}); !errors.Is(err, hsmapi.ErrDamaged) {
		t.Fatalf("export: %v, want ErrDamaged", err)
	}
	b, err := backup.Export(ctx, src, f, backup.ExportOptions{SkipDamaged: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Keys) != 1 || b.Keys[0].UUID != ids[1].String() {
		t.Errorf("export with SkipDamaged: %d keys, want the intact one", len(b.Keys))
	}
}

// damageKeyBlock flips a byte in the flash block of the key id and returns
// the block's number.
func damageKeyBlock(t *testing.T, path string, id hsmapi.UUID) int {
	t.Helper()
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(img, id[:])
	if at < 0 {
		t.Fatal("key's block not found")
	}
	block := at / sim.BlockSize
	img[block*sim.BlockSize+200] ^= 0xff
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return block
}

// TestSetAttributesOverRPC: Client.SetAttributes sets a key's label and
// attributes in one PKEY_SET_ATTRIBUTES, and deletes one given as Delete.
func TestSetAttributesOverRPC(t *testing.T) {
	addr, _ := served(t)
	c := dialLogin(t, addr)
	k, err := c.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken})
	if err != nil {
		t.Fatal(err)
	}
	id := []byte{1, 2, 3}
	if err := c.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte("set")},
		{Type: hsmapi.CKAID, Value: id}, {Type: hsmapi.CKASubject, Value: []byte("subject")}}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Key(ctx, k.UUID); err != nil || got.Label != "set" {
		t.Fatalf("label %q (%v), want %q", got.Label, err, "set")
	}
	if err := c.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: hsmapi.CKASubject, Delete: true}}); err != nil {
		t.Fatal(err)
	}
	attrs, err := c.KeyAttributes(ctx, k.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if want := []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: id}}; !reflect.DeepEqual(attrs, want) {
		t.Fatalf("attributes %+v, want %+v", attrs, want)
	}
	var missing hsmapi.UUID
	missing[0] = 1
	if err := c.SetAttributes(ctx, missing, []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: id}}); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Fatalf("set attributes of a key that does not exist: %v", err)
	}
}

// TestImportFreshUUIDOverRPC: an import that asks for a fresh UUID (zero)
// gets one, as in process, though EXT_IMPORT_COMMIT tells no UUIDs back:
// a public key imported twice so is two keys, each found under its UUID.
func TestImportFreshUUIDOverRPC(t *testing.T) {
	addr, _ := served(t)
	c := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	_, spki := rsaPublicKey(t)
	var ids []hsmapi.UUID
	for range 2 {
		res, err := c.Import(ctx, hsmapi.ImportRequest{PublicKey: spki, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken, Label: "fresh"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Key.UUID.IsZero() || res.Present {
			t.Fatalf("imported %+v", res)
		}
		k, err := c.Key(ctx, res.Key.UUID)
		if err != nil || k.Label != "fresh" || !hsmapi.SamePublicKey(k.PublicKey, spki) {
			t.Fatalf("the imported key: %+v, %v", k, err)
		}
		ids = append(ids, res.Key.UUID)
	}
	if ids[0] == ids[1] {
		t.Errorf("two imports, one UUID %s", ids[0])
	}
}
