package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/testtool"
	"github.com/hsmkit/cryptech-backup/p11"
)

// pkcs11Tool runs pkcs11-tool on the module, logged in as the user.
func pkcs11Tool(t *testing.T, tool, lib string, args ...string) string {
	t.Helper()
	all := append([]string{"--module", lib, "--login", "--pin", string(hsmtest.PIN)}, args...)
	out, err := exec.Command(tool, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// hsmKeys lists the keys of the emulated HSM in dir by label, as the HSM
// itself has them (the module is not loaded meanwhile).
func hsmKeys(t *testing.T, dir string) map[string]hsmapi.KeyInfo {
	t.Helper()
	h, err := hsm.Open(dir, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s := h.NewSession()
	defer s.Close()
	if err := s.Login(context.Background(), hsmapi.UserNormal, hsmtest.PIN); err != nil {
		t.Fatal(err)
	}
	keys, err := s.Keys(context.Background(), hsmapi.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]hsmapi.KeyInfo{}
	for _, k := range keys {
		out[k.Label] = k
	}
	return out
}

// pkcs11-tool makes RSA and EC key pairs on the module, lists them with
// their labels and IDs, and reads back public keys that are the HSM's.
func TestPKCS11ToolKeys(t *testing.T) {
	tool := testtool.Require(t, "pkcs11-tool", "opensc")
	lib := buildModule(t)
	dir := newHSM(t)

	pkcs11Tool(t, tool, lib, "--keypairgen", "--key-type", "rsa:2048", "--label", "rsa-key", "--id", "a1")
	pkcs11Tool(t, tool, lib, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "ec-key", "--id", "b2")
	list := pkcs11Tool(t, tool, lib, "--list-objects")
	t.Logf("pkcs11-tool --list-objects:\n%s", list)
	objects := listedObjects(list)
	if len(objects) != 4 {
		t.Fatalf("%d objects listed, want 4", len(objects))
	}
	for _, want := range []listed{
		{"Private Key Object; RSA", map[string]string{"label": "rsa-key", "ID": "a1", "Usage": "sign", "Access": "never extractable"}},
		{"Public Key Object; RSA 2048 bits", map[string]string{"label": "rsa-key", "ID": "a1", "Usage": "verify"}},
		{"Private Key Object; EC", map[string]string{"label": "ec-key", "ID": "b2", "Usage": "sign"}},
		{"Public Key Object; EC", map[string]string{"label": "ec-key", "ID": "b2", "Usage": "verify", "EC_PARAMS": "06082a8648ce3d030107"}},
	} {
		if !slices.ContainsFunc(objects, want.in) {
			t.Errorf("no %s with %v listed", want.head, want.fields)
		}
	}
	// The public keys read off the module are the keys the HSM holds.
	tmp := t.TempDir()
	read := map[string]string{"a1": filepath.Join(tmp, "rsa.der"), "b2": filepath.Join(tmp, "ec.der")}
	for id, file := range read {
		pkcs11Tool(t, tool, lib, "--read-object", "--type", "pubkey", "--id", id, "--output-file", file)
	}
	keys := hsmKeys(t, dir)
	for label, id := range map[string]string{"rsa-key": "a1", "ec-key": "b2"} {
		der, err := os.ReadFile(read[id])
		if err != nil {
			t.Fatal(err)
		}
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			t.Fatalf("public key %s read off the module: %v", id, err)
		}
		k, ok := keys[label]
		if !ok {
			t.Fatalf("the HSM has no key %s", label)
		}
		want, err := hsmapi.ParsePublicKey(k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		switch w := want.(type) {
		case *rsa.PublicKey:
			if !w.Equal(pub) || k.Bits != 2048 {
				t.Errorf("%s: read %T, the HSM holds another key", label, pub)
			}
		case *ecdsa.PublicKey:
			if !w.Equal(pub) || k.Curve != hsmapi.CurveP256 {
				t.Errorf("%s: read %T, the HSM holds another key", label, pub)
			}
		}
		// pkcs11-tool asks for signing, and for RSA decryption too.
		flags := hsmapi.FlagToken | hsmapi.FlagDigitalSignature
		if k.Type == hsmapi.KeyTypeRSAPrivate {
			flags |= hsmapi.FlagDataEncipherment
		}
		if k.Flags != flags {
			t.Errorf("%s: flags %v, want %v", label, k.Flags, flags)
		}
	}

	// Deleting the private key leaves its public key.
	pkcs11Tool(t, tool, lib, "--delete-object", "--type", "privkey", "--id", "a1")
	list = pkcs11Tool(t, tool, lib, "--list-objects")
	if strings.Count(list, "Object;") != 3 || !strings.Contains(list, "Public Key Object; RSA 2048 bits") {
		t.Errorf("after deleting the RSA private key:\n%s", list)
	}
	keys = hsmKeys(t, dir)
	if k := keys["rsa-key"]; k.Type != hsmapi.KeyTypeRSAPublic {
		t.Errorf("the HSM's rsa-key after its private key went: %v", k.Type)
	}
}

// A listed object is one of pkcs11-tool --list-objects: its first line
// ("Private Key Object; RSA") and its "name: value" lines.
type listed struct {
	head   string
	fields map[string]string
}

func listedObjects(out string) []listed {
	var objs []listed
	for _, l := range strings.Split(out, "\n") {
		switch k, v, ok := strings.Cut(l, ":"); {
		case l != "" && l[0] != ' ' && l[0] != '\t' && strings.Contains(l, "Object;"):
			objs = append(objs, listed{head: strings.TrimSpace(l), fields: map[string]string{}})
		case ok && len(objs) > 0:
			objs[len(objs)-1].fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return objs
}

// in reports whether o is what want describes: its head starts so, and
// each of want's fields is one of the comma-separated items of o's.
func (want listed) in(o listed) bool {
	if !strings.HasPrefix(o.head, want.head) {
		return false
	}
	for k, v := range want.fields {
		if !slices.Contains(strings.Split(o.fields[k], ", "), v) {
			return false
		}
	}
	return true
}

// The project's own PKCS#11 consumer, p11 (crypto11 and miekg/pkcs11),
// makes, lists, describes and deletes keys on the module, and makes a
// KEKEK there whose CKA_UNWRAP_TEMPLATE it reads back: templates cross
// the C boundary both ways.
func TestP11OnModule(t *testing.T) {
	lib := buildModule(t)
	newHSM(t)
	ctx := context.Background()
	tok, err := p11.Open(p11.Config{Module: lib, TokenLabel: "hsm"})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	if err := tok.Login(ctx, hsmapi.UserNormal, hsmtest.PIN); err != nil {
		t.Fatal(err)
	}
	ec, err := tok.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384, Flags: hsmapi.FlagToken | hsmapi.FlagDigitalSignature, Label: "ec"})
	if err != nil {
		t.Fatal(err)
	}
	if ec.Curve != hsmapi.CurveP384 || ec.Flags != hsmapi.FlagToken|hsmapi.FlagDigitalSignature || ec.Label != "ec" {
		t.Errorf("p11 made %+v", ec)
	}
	kekek, err := tok.GenerateKEKEK(ctx, 2048, "kekek")
	if err != nil {
		t.Fatal(err)
	}
	if flaws, err := tok.KEKEKFlaws(ctx, kekek.UUID); err != nil || len(flaws) != 0 {
		t.Errorf("the module's KEKEK: flaws %q, %v", flaws, err)
	}
	if kekek.Flags != hsmapi.FlagToken|hsmapi.FlagKeyEncipherment {
		t.Errorf("KEKEK flags %v", kekek.Flags)
	}
	keys, err := tok.Keys(ctx, hsmapi.Filter{})
	if err != nil || len(keys) != 2 {
		t.Fatalf("p11 lists %d keys, %v", len(keys), err)
	}
	attrs, err := tok.KeyAttributes(ctx, ec.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := attrValue(attrs, hsmapi.CKASign); !ok || string(v) != "\x01" {
		t.Errorf("CKA_SIGN carried as %x, %v", v, ok)
	}
	if err := tok.DeleteKey(ctx, ec.UUID); err != nil {
		t.Fatalf("p11 deletes a key pair on the module: %v", err)
	}
	if keys, _ := tok.Keys(ctx, hsmapi.Filter{}); len(keys) != 1 {
		t.Errorf("%d keys after the delete", len(keys))
	}
}

func attrValue(attrs []hsmapi.Attribute, t uint32) ([]byte, bool) {
	for _, a := range attrs {
		if a.Type == t {
			return a.Value, true
		}
	}
	return nil, false
}

// TestImportedKeysAreNotLocal: a key that came to the HSM by a transfer
// (hsm's Import) shows CKA_LOCAL, CKA_ALWAYS_SENSITIVE and
// CKA_NEVER_EXTRACTABLE false through the module, and has no
// CKA_KEY_GEN_MECHANISM; a key made on the HSM shows CKA_LOCAL true.
func TestImportedKeysAreNotLocal(t *testing.T) {
	lib := buildModule(t)
	dir := newHSM(t)
	ctx := context.Background()
	src := hsmtest.New(t)
	moved, err := src.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagToken | hsmapi.FlagDigitalSignature | hsmapi.FlagExportable, Label: "moved"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := hsm.Open(dir, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	s := h.NewSession()
	if err := s.Login(ctx, hsmapi.UserNormal, hsmtest.PIN); err != nil {
		t.Fatal(err)
	}
	// A key that says it is local arrives not local all the same.
	if err := src.SetAttributes(ctx, moved.UUID, []hsmapi.Attribute{{Type: hsmapi.CKALocal, Value: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	kekek, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagKeyEncipherment})
	if err != nil {
		t.Fatal(err)
	}
	kekekPub, err := hsmapi.ParseKEKEK(kekek.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	w, err := src.Export(ctx, hsmapi.ExportRequest{Key: moved.UUID, KEKEKPublicKey: kekekPub, Encryption: hsmapi.KEKOAEPSHA256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, hsmapi.ImportRequest{KEKEKUUID: kekek.UUID, Wrapped: w, Encryption: hsmapi.KEKOAEPSHA256, UUID: moved.UUID,
		Label: "moved", Flags: moved.Flags, PublicKey: moved.PublicKey, Attributes: []hsmapi.Attribute{{Type: hsmapi.CKALocal, Value: []byte{1}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagToken | hsmapi.FlagDigitalSignature, Label: "made"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	p := pkcs11.New(lib)
	if p == nil {
		t.Fatalf("load %s", lib)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil || len(slots) != 1 {
		t.Fatalf("slots %v, %v", slots, err)
	}
	sh, err := p.OpenSession(slots[0], pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Login(sh, pkcs11.CKU_USER, string(hsmtest.PIN)); err != nil {
		t.Fatal(err)
	}
	for label, local := range map[string]bool{"moved": false, "made": true} {
		if err := p.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
			t.Fatal(err)
		}
		objs, _, err := p.FindObjects(sh, 2)
		p.FindObjectsFinal(sh)
		if err != nil || len(objs) != 1 {
			t.Fatalf("%s: %d private key objects, %v", label, len(objs), err)
		}
		attrs, err := p.GetAttributeValue(sh, objs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LOCAL, nil),
			pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil)})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range attrs {
			if got := len(a.Value) == 1 && a.Value[0] == 1; got != local {
				t.Errorf("%s: attribute 0x%x is %v, want %v", label, a.Type, got, local)
			}
		}
	}
}
