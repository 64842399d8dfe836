//go:build cgo

package p11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/softhsm"
	"github.com/hsmkit/cryptech-backup/internal/transfertest"
)

var ctx = context.Background()

const userPIN = "user-pin-1234"

// SoftHSM2 reads its configuration once per process, so every test shares
// one throwaway token directory, with tokens of their own.
var (
	envOnce sync.Once
	env     *softhsm.Env
	envErr  error
	tokenN  atomic.Int32
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "p11-test-")
	if err != nil {
		panic(err)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		envOnce.Do(func() {
			if _, err := softhsm.FindModule(); err == nil {
				env, envErr = softhsm.Setup(dir)
			}
		})
		return m.Run()
	}()
	os.Exit(code)
}

// newToken makes a fresh SoftHSM2 token and returns it opened and logged in.
func newToken(t testing.TB) *Token {
	t.Helper()
	softhsm.Require(t)
	if envErr != nil || env == nil {
		t.Fatalf("SoftHSM2 set-up: %v", envErr)
	}
	label := fmt.Sprintf("tok-%d", tokenN.Add(1))
	if err := env.InitToken(label, "so-pin-5678", userPIN); err != nil {
		t.Fatal(err)
	}
	tok, err := Open(Config{Module: env.Module(), TokenLabel: label})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	if err := tok.Login(ctx, hsmapi.UserNormal, []byte(userPIN)); err != nil {
		t.Fatal(err)
	}
	return tok
}

// newTokens makes one token of each kind named: "softhsm" (SoftHSM2
// through this package), "emulated" (an emulated HSM in-process) or
// "module" (an emulated HSM through its PKCS#11 module and this package)
// or "module-rpc" (the same, with the HSM behind an RPC server).
func newTokens(t testing.TB, kinds ...string) []hsmapi.Token {
	t.Helper()
	var overRPC []bool
	for _, k := range kinds {
		if k == "module" || k == "module-rpc" {
			overRPC = append(overRPC, k == "module-rpc")
		}
	}
	var mods []*Token
	if len(overRPC) > 0 {
		mods = newModuleTokensOver(t, overRPC...)
	}
	var toks []hsmapi.Token
	for _, k := range kinds {
		switch k {
		case "softhsm":
			toks = append(toks, newToken(t))
		case "emulated":
			toks = append(toks, hsmtest.New(t))
		case "module", "module-rpc":
			toks, mods = append(toks, mods[0]), mods[1:]
		default:
			t.Fatalf("no token kind %q", k)
		}
	}
	return toks
}

const exportable = hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable

var testKeys = []hsmapi.GenerateRequest{
	{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: exportable, Label: "rsa-2048"},
	{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable, Label: "p-256"},
	{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384, Flags: exportable, Label: "p-384"},
}

func generate(t testing.TB, tok hsmapi.Token, req hsmapi.GenerateRequest) hsmapi.KeyInfo {
	t.Helper()
	k, err := tok.GenerateKey(ctx, req)
	if err != nil {
		t.Fatalf("generate %s: %v", req.Label, err)
	}
	return k
}

// TestTransfers moves RSA-2048, P-256 and P-384 keys SoftHSM2 to SoftHSM2,
// emulated to SoftHSM2 and SoftHSM2 to emulated, and through the emulated
// HSM's module, in process and over RPC (where the transfer's tag key is
// stored with EXT_LOAD_SECRET): each key arrives under its UUID and label,
// signs on the destination so that the source's public key verifies, and
// the key that is not extractable stays behind. Where both sides keep HSS
// keys (the module and the emulated HSM), an HSS key goes too (hsmSplit).
func TestTransfers(t *testing.T) {
	for _, pair := range [][2]string{{"softhsm", "softhsm"}, {"emulated", "softhsm"}, {"softhsm", "emulated"},
		{"module", "softhsm"}, {"softhsm", "module"}, {"module", "module"}, {"emulated", "module"}, {"module", "emulated"},
		{"module-rpc", "module-rpc"}, {"softhsm", "module-rpc"}} {
		t.Run(pair[0]+"-to-"+pair[1], func(t *testing.T) {
			toks := newTokens(t, pair[0], pair[1])
			src, dst := toks[0], toks[1]
			var moved []hsmapi.KeyInfo
			for _, req := range testKeys {
				moved = append(moved, generate(t, src, req))
			}
			stays := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
				Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken, Label: "stays"})
			withHSS := !slices.Contains(pair[:], "softhsm")
			var hss hsmSplit
			if withHSS {
				levels := testLevels
				if strings.HasSuffix(pair[0], "-rpc") {
					levels = uniformLevels
				}
				hss = newHSSKey(t, src, levels)
			}
			_, b := transfertest.ExportFor(t, src, dst)
			if withHSS {
				hss.refusedTampered(t, dst, b)
			}
			_, b = importBundle(t, dst, b)
			if withHSS {
				hss.arrives(t, src, dst)
			}
			if slices.Contains(pair[:], "softhsm") {
				if b.KEKEncryption != hsmapi.KEKOAEPSHA1 {
					t.Errorf("KEK encryption %s; with SoftHSM2 2.6 on one side only OAEP-SHA-1 can work", b.KEKEncryption)
				}
			} else if b.KEKEncryption != hsmapi.KEKOAEPSHA256 {
				t.Errorf("KEK encryption %s; the emulated HSM does OAEP with SHA-256 on either side", b.KEKEncryption)
			}
			for _, k := range moved {
				got, err := dst.Key(ctx, k.UUID)
				if err != nil {
					t.Fatalf("%s did not arrive: %v", k.Label, err)
				}
				if got.Label != k.Label || !hsmapi.SamePublicKey(got.PublicKey, k.PublicKey) || got.Flags&hsmapi.FlagExportable == 0 {
					t.Errorf("%s arrived as %+v", k.Label, got)
				}
				digest := sha256.Sum256([]byte(k.Label))
				sig, err := dst.Sign(ctx, k.UUID, digest[:], crypto.SHA256)
				if err != nil {
					t.Fatal(err)
				}
				if err := hsmapi.VerifySignature(k.PublicKey, digest[:], sig, crypto.SHA256); err != nil {
					t.Errorf("%s: the destination's signature fails under the source's key: %v", k.Label, err)
				}
			}
			if _, err := dst.Key(ctx, stays.UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
				t.Errorf("the key that is not extractable reached the destination: %v", err)
			}
			res, err := backup.Import(ctx, dst, b, backup.ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				if !r.Present {
					t.Errorf("second import: %s not present", r.UUID)
				}
			}
		})
	}
}

func TestKEKEncryptionsAreNegotiated(t *testing.T) {
	tok := newToken(t)
	got, err := tok.KEKEncryptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []hsmapi.KEKEncryption{hsmapi.KEKOAEPSHA1, hsmapi.KEKPKCS1v15}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("SoftHSM2 offers %v, want %v (it refuses OAEP with SHA-256)", got, want)
	}
}

// TestImportedKeyAttributes: CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not
// extractable unless the bundle says exportable, CKA_ID and CKA_LABEL kept,
// a public key object beside.
func TestImportedKeyAttributes(t *testing.T) {
	src, dst := hsmtest.New(t), newToken(t)
	k := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable, Label: "attrs"})
	_, b := transfertest.ExportFor(t, src, dst)
	b.Keys[0].Flags &^= hsmapi.FlagExportable // as if the source said so; the tag must then refuse it
	if _, err := backup.Import(ctx, dst, b, backup.ImportOptions{}); !errors.Is(err, hsmapi.ErrDecryption) {
		t.Fatalf("changed flags: %v", err)
	}
	b.Keys[0].Flags |= hsmapi.FlagExportable
	if _, err := backup.Import(ctx, dst, b, backup.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	dst.mu.Lock()
	defer dst.mu.Unlock()
	privs, _ := dst.find(pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, k.UUID[:]))
	pubs, _ := dst.find(pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, k.UUID[:]))
	if len(privs) != 1 || len(pubs) != 1 {
		t.Fatalf("%d private and %d public objects with the key's CKA_ID", len(privs), len(pubs))
	}
	a, err := dst.attrs(privs[0], pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_LABEL)
	if err != nil {
		t.Fatal(err)
	}
	for _, attr := range []uint{pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE} {
		if !boolAttr(a[attr]) {
			t.Errorf("attribute 0x%x is false", attr)
		}
	}
	if string(a[pkcs11.CKA_LABEL]) != "attrs" {
		t.Errorf("CKA_LABEL %q", a[pkcs11.CKA_LABEL])
	}
}

// objectCount counts every object on a token, session objects included.
func objectCount(t testing.TB, tok *Token) int {
	t.Helper()
	tok.mu.Lock()
	defer tok.mu.Unlock()
	if err := tok.raw.FindObjectsInit(tok.sess, nil); err != nil {
		t.Fatal(err)
	}
	defer tok.raw.FindObjectsFinal(tok.sess)
	n := 0
	for {
		hs, _, err := tok.raw.FindObjects(tok.sess, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) == 0 {
			return n
		}
		n += len(hs)
	}
}

func TestBadInput(t *testing.T) {
	if _, err := Open(Config{Module: "/nonexistent/libnothing.so", TokenLabel: "x"}); !errors.Is(err, ErrModule) {
		t.Errorf("module that does not load: %v", err)
	}
	softhsm.Require(t)
	tok := newToken(t)
	other, err := Open(Config{Module: env.Module(), TokenLabel: "no such token"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Login(ctx, hsmapi.UserNormal, []byte(userPIN)); !errors.Is(err, ErrNoToken) {
		t.Errorf("unknown token label: %v", err)
	}
	wrong, err := Open(Config{Module: env.Module(), TokenLabel: tok.cfg.TokenLabel})
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	// crypto11 keeps the application logged in while another context is
	// open; log this one out first so the wrong PIN is really checked.
	tok.Logout(ctx)
	if err := wrong.Login(ctx, hsmapi.UserNormal, []byte("wrong-pin")); !errors.Is(err, hsmapi.ErrPINIncorrect) {
		t.Errorf("wrong PIN: %v", err)
	}
	if err := tok.Login(ctx, hsmapi.UserNormal, []byte(userPIN)); err != nil {
		t.Fatal(err)
	}

	dst := hsmtest.New(t)
	kekekFile, err := backup.Setup(ctx, dst, backup.SetupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kekek, err := hsmapi.ParseKEKEK(kekekFile.KEKEKPubkey)
	if err != nil {
		t.Fatal(err)
	}
	stays := generate(t, tok, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken})
	before := objectCount(t, tok)
	_, err = tok.Export(ctx, hsmapi.ExportRequest{Key: stays.UUID, KEKEKPublicKey: kekek, Encryption: hsmapi.KEKOAEPSHA1})
	if !errors.Is(err, hsmapi.ErrNotExportable) {
		t.Errorf("export of a key that is not extractable: %v", err)
	}
	if n := objectCount(t, tok); n != before {
		t.Errorf("the refused export left %d objects, had %d", n, before)
	}

	// A token without key wrap with padding: the missing mechanism is named
	// and nothing is created.
	k := generate(t, tok, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable})
	before = objectCount(t, tok)
	tok.mu.Lock()
	delete(tok.mechs, pkcs11.CKM_AES_KEY_WRAP_PAD)
	tok.mu.Unlock()
	_, err = tok.Export(ctx, hsmapi.ExportRequest{Key: k.UUID, KEKEKPublicKey: kekek, Encryption: hsmapi.KEKOAEPSHA1})
	if !errors.Is(err, ErrMechanism) || !bytes.Contains([]byte(err.Error()), []byte("CKM_AES_KEY_WRAP_PAD")) {
		t.Errorf("token without CKM_AES_KEY_WRAP_PAD: %v", err)
	}
	if n := objectCount(t, tok); n != before {
		t.Errorf("the refused export left %d objects, had %d", n, before)
	}
	tok.mu.Lock()
	tok.mechs = nil
	tok.mu.Unlock()

	// A tampered bundle creates nothing on the destination token.
	src := hsmtest.New(t)
	generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable})
	_, b := transfertest.ExportFor(t, src, tok)
	before = objectCount(t, tok)
	for _, mutate := range []func(k *backup.BundleKey){
		func(k *backup.BundleKey) {
			k.PKCS8 = append(bytes.Clone(k.PKCS8[:len(k.PKCS8)-1]), k.PKCS8[len(k.PKCS8)-1]^1)
		},
		func(k *backup.BundleKey) { k.KEK = append(bytes.Clone(k.KEK[:len(k.KEK)-1]), k.KEK[len(k.KEK)-1]^1) },
		func(k *backup.BundleKey) { k.Tag = append(bytes.Clone(k.Tag[:len(k.Tag)-1]), k.Tag[len(k.Tag)-1]^1) },
		func(k *backup.BundleKey) { k.Label = "changed" },
	} {
		c := *b
		c.Keys = []backup.BundleKey{b.Keys[0]}
		mutate(&c.Keys[0])
		if _, err := backup.Import(ctx, tok, &c, backup.ImportOptions{}); !errors.Is(err, hsmapi.ErrDecryption) {
			t.Errorf("tampered bundle: %v", err)
		}
	}
	if n := objectCount(t, tok); n != before {
		t.Errorf("tampered bundles left %d objects, had %d", n, before)
	}
}
