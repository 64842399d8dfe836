//go:build cgo

package p11

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/testtool"
	"github.com/hsmkit/cryptech-backup/internal/transfertest"
)

// made is a key made on a token as an application would make it, with
// the attributes it asked for.
type made struct {
	name      string
	rsa       bool
	curve     hsmapi.Curve
	priv, pub []*pkcs11.Attribute
}

func attr(typ uint, v any) *pkcs11.Attribute { return pkcs11.NewAttribute(typ, v) }

// makeKey generates a key pair on tok with C_GenerateKeyPair, as
// pkcs11-tool does, and returns its UUID.
func makeKey(t testing.TB, tok *Token, m made) hsmapi.UUID {
	t.Helper()
	return keyOfPublic(t, tok, makePair(t, tok, m))
}

// makePair generates a key pair as makeKey does, and returns its public
// object.
func makePair(t testing.TB, tok *Token, m made) pkcs11.ObjectHandle {
	t.Helper()
	tok.mu.Lock()
	defer tok.mu.Unlock()
	pub := template{attr(pkcs11.CKA_TOKEN, true)}
	priv := template{attr(pkcs11.CKA_TOKEN, true)}
	mech := uint(pkcs11.CKM_EC_KEY_PAIR_GEN)
	if m.rsa {
		mech = pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN
		pub.set(pkcs11.CKA_MODULUS_BITS, 2048)
		pub.set(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1})
	} else {
		params, _, err := curveParams(m.curve)
		if err != nil {
			t.Fatal(err)
		}
		pub.set(pkcs11.CKA_EC_PARAMS, params)
	}
	for _, a := range m.pub {
		pub.set(a.Type, a.Value)
	}
	for _, a := range m.priv {
		priv.set(a.Type, a.Value)
	}
	ph, _, err := tok.raw.GenerateKeyPair(tok.sess, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pub.final(), priv.final())
	if err != nil {
		t.Fatalf("make %s: %v", m.name, err)
	}
	return ph
}

// keyOfPublic is the UUID of the key whose public object is ph.
func keyOfPublic(t testing.TB, tok *Token, ph pkcs11.ObjectHandle) hsmapi.UUID {
	t.Helper()
	tok.mu.Lock()
	defer tok.mu.Unlock()
	objs, err := tok.keyObjects()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.hasPub && o.pub == ph {
			if err := tok.describe(o); err != nil {
				t.Fatal(err)
			}
			return o.info.UUID
		}
	}
	t.Fatalf("public key object %d is no key's", ph)
	return hsmapi.UUID{}
}

// unusual are keys whose attributes a flag-based import would change: a
// key that unwraps but does not decrypt, one that derives, one that cannot
// be changed, one that is not sensitive, one that is not private, each
// with a CKA_ID of its own that is not a UUID.
var unusual = []made{
	{name: "rsa-unwrap-only", rsa: true,
		priv: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte{0x0a, 0x01}), attr(pkcs11.CKA_LABEL, "rsa-unwrap-only"),
			attr(pkcs11.CKA_UNWRAP, true), attr(pkcs11.CKA_DECRYPT, false), attr(pkcs11.CKA_SIGN, true),
			attr(pkcs11.CKA_SIGN_RECOVER, false), attr(pkcs11.CKA_EXTRACTABLE, true), attr(pkcs11.CKA_SENSITIVE, true),
			attr(pkcs11.CKA_MODIFIABLE, false), attr(pkcs11.CKA_SUBJECT, []byte{0x30, 0x00})},
		pub: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte{0x0a, 0x01}), attr(pkcs11.CKA_LABEL, "rsa-unwrap-only public"),
			attr(pkcs11.CKA_WRAP, true), attr(pkcs11.CKA_ENCRYPT, false), attr(pkcs11.CKA_VERIFY, true),
			attr(pkcs11.CKA_VERIFY_RECOVER, false), attr(pkcs11.CKA_MODIFIABLE, false)}},
	{name: "ec-derive-not-sensitive", curve: hsmapi.CurveP256,
		priv: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte{0x0a, 0x02}), attr(pkcs11.CKA_LABEL, "ec-derive"),
			attr(pkcs11.CKA_SIGN, true), attr(pkcs11.CKA_DERIVE, true), attr(pkcs11.CKA_SENSITIVE, false),
			attr(pkcs11.CKA_EXTRACTABLE, true), attr(pkcs11.CKA_COPYABLE, false)},
		pub: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte{0x0a, 0x02}), attr(pkcs11.CKA_LABEL, "ec-derive"),
			attr(pkcs11.CKA_VERIFY, true), attr(pkcs11.CKA_DERIVE, true)}},
	{name: "ec-public-private-key", curve: hsmapi.CurveP384,
		priv: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte("app key 3")), attr(pkcs11.CKA_LABEL, "ec-p384"),
			attr(pkcs11.CKA_SIGN, true), attr(pkcs11.CKA_PRIVATE, false), attr(pkcs11.CKA_EXTRACTABLE, true),
			attr(pkcs11.CKA_SENSITIVE, true), attr(pkcs11.CKA_MODIFIABLE, false), attr(pkcs11.CKA_DERIVE, false)},
		pub: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte("app key 3")), attr(pkcs11.CKA_LABEL, "ec-p384"),
			attr(pkcs11.CKA_VERIFY, true), attr(pkcs11.CKA_PRIVATE, true)}},
}

// compared are every attribute a private or public key object may have,
// read back and compared object by object. Left out: what a destination
// computes and cannot be given (CKA_LOCAL, CKA_ALWAYS_SENSITIVE,
// CKA_NEVER_EXTRACTABLE, CKA_KEY_GEN_MECHANISM).
var compared = []uint{
	pkcs11.CKA_CLASS, pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE, pkcs11.CKA_LABEL, pkcs11.CKA_TRUSTED,
	pkcs11.CKA_KEY_TYPE, pkcs11.CKA_SUBJECT, pkcs11.CKA_ID, pkcs11.CKA_SENSITIVE, pkcs11.CKA_ENCRYPT,
	pkcs11.CKA_DECRYPT, pkcs11.CKA_WRAP, pkcs11.CKA_UNWRAP, pkcs11.CKA_SIGN, pkcs11.CKA_SIGN_RECOVER,
	pkcs11.CKA_VERIFY, pkcs11.CKA_VERIFY_RECOVER, pkcs11.CKA_DERIVE, pkcs11.CKA_START_DATE, pkcs11.CKA_END_DATE,
	pkcs11.CKA_MODULUS, pkcs11.CKA_MODULUS_BITS, pkcs11.CKA_PUBLIC_EXPONENT, pkcs11.CKA_PRIVATE_EXPONENT,
	pkcs11.CKA_PRIME_1, pkcs11.CKA_PRIME_2, pkcs11.CKA_EXPONENT_1, pkcs11.CKA_EXPONENT_2, pkcs11.CKA_COEFFICIENT,
	pkcs11.CKA_VALUE, pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_MODIFIABLE,
	pkcs11.CKA_COPYABLE, pkcs11.CKA_DESTROYABLE, pkcs11.CKA_ALWAYS_AUTHENTICATE, pkcs11.CKA_WRAP_WITH_TRUSTED,
	pkcs11.CKA_ALLOWED_MECHANISMS, pkcs11.CKA_PUBLIC_KEY_INFO,
}

// objectDump reads every compared attribute of an object, one at a time:
// its value, or the error that refused it (an attribute the object lacks,
// or keeps secret).
func objectDump(t testing.TB, tok *Token, h pkcs11.ObjectHandle) map[uint]string {
	t.Helper()
	out := map[uint]string{}
	for _, ty := range compared {
		got, err := tok.raw.GetAttributeValue(tok.sess, h, []*pkcs11.Attribute{pkcs11.NewAttribute(ty, nil)})
		if err != nil {
			out[ty] = "error " + err.Error()
		} else {
			out[ty] = fmt.Sprintf("%x", got[0].Value)
		}
	}
	return out
}

// publicAttrs reads attributes of the public key object of key id.
func publicAttrs(t *testing.T, tok *Token, id hsmapi.UUID, types ...uint) map[uint]string {
	t.Helper()
	tok.mu.Lock()
	defer tok.mu.Unlock()
	o, err := tok.object(id)
	if err != nil || !o.hasPub {
		t.Fatalf("%s: %v (public object %v)", id, err, err == nil && o.hasPub)
	}
	all := objectDump(t, tok, o.pub)
	out := map[uint]string{}
	for _, ty := range types {
		out[ty] = all[ty]
	}
	return out
}

// keyDump is objectDump of both objects of the key id.
type keyDump struct{ priv, pub map[uint]string }

func dumpKey(t testing.TB, tok *Token, id hsmapi.UUID) keyDump {
	t.Helper()
	tok.mu.Lock()
	defer tok.mu.Unlock()
	o, err := tok.object(id)
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	if !o.hasPriv || !o.hasPub {
		t.Fatalf("%s: private object %v, public object %v", id, o.hasPriv, o.hasPub)
	}
	return keyDump{objectDump(t, tok, o.priv), objectDump(t, tok, o.pub)}
}

// sameObjects compares, object by object, the key id on src and on dst.
func sameObjects(t *testing.T, src, dst *Token, id hsmapi.UUID) {
	t.Helper()
	sameDump(t, id, dumpKey(t, src, id), dumpKey(t, dst, id))
}

// sameDump compares two dumps of the key id, as it left and as it arrived.
func sameDump(t testing.TB, id hsmapi.UUID, src, dst keyDump) {
	t.Helper()
	sPriv, sPub, dPriv, dPub := src.priv, src.pub, dst.priv, dst.pub
	for _, c := range []struct {
		what     string
		src, dst map[uint]string
	}{{"private", sPriv, dPriv}, {"public", sPub, dPub}} {
		for _, ty := range compared {
			// Computed by each token from the key, or left empty
			// (SoftHSM2 2.6).
			if ty == pkcs11.CKA_PUBLIC_KEY_INFO && (c.src[ty] == "" || c.dst[ty] == "") {
				continue
			}
			if c.src[ty] != c.dst[ty] {
				t.Errorf("%s %s object, attribute 0x%x: left as %s, arrived as %s", id, c.what, ty, c.src[ty], c.dst[ty])
			}
		}
	}
}

// transfer moves every exportable key of src to dst, the bundle going
// through its file form.
func transfer(t *testing.T, src, dst hsmapi.Token) []backup.ImportedKey {
	t.Helper()
	res, _ := transferBundle(t, src, dst)
	return res
}

func transferBundle(t *testing.T, src, dst hsmapi.Token) ([]backup.ImportedKey, *backup.Bundle) {
	t.Helper()
	_, b := transfertest.ExportFor(t, src, dst)
	return importBundle(t, dst, b)
}

// importBundle imports b into dst as read back from its file.
func importBundle(t *testing.T, dst hsmapi.Token, b *backup.Bundle) ([]backup.ImportedKey, *backup.Bundle) {
	t.Helper()
	var buf bytes.Buffer
	if err := backup.Write(&buf, b); err != nil {
		t.Fatal(err)
	}
	b, err := backup.ReadBundle(&buf)
	if err != nil {
		t.Fatal(err)
	}
	res, err := backup.Import(ctx, dst, b, backup.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

// signsAsSource checks that the key id signs on dst so that its public key
// on src verifies.
func signsAsSource(t *testing.T, src, dst hsmapi.Token, id hsmapi.UUID) {
	t.Helper()
	k, err := src.Key(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	signsAs(t, k, dst)
}

// signsAs checks that the key k signs on dst so that its public key
// verifies.
func signsAs(t testing.TB, k hsmapi.KeyInfo, dst hsmapi.Token) {
	t.Helper()
	id := k.UUID
	digest := sha256.Sum256([]byte("signed on the destination " + id.String()))
	sig, err := dst.Sign(ctx, id, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("%s (%s): %v", id, k.Label, err)
	}
	if err := hsmapi.VerifySignature(k.PublicKey, digest[:], sig, crypto.SHA256); err != nil {
		t.Errorf("%s (%s): the destination's signature fails under the source's key: %v", id, k.Label, err)
	}
}

// TestAttributesArriveExactly: keys with unusual attribute sets, moved
// SoftHSM2 to SoftHSM2 and SoftHSM2 to an emulated HSM to SoftHSM2, have
// on the destination every attribute they had on the source, object by
// object: nothing more, nothing less.
func TestAttributesArriveExactly(t *testing.T) {
	src := newToken(t)
	var ids []hsmapi.UUID
	for _, m := range unusual {
		ids = append(ids, makeKey(t, src, m))
	}
	t.Run("direct", func(t *testing.T) {
		dst := newToken(t)
		res := transfer(t, src, dst)
		if len(res) != len(ids) {
			t.Fatalf("%d keys moved, want %d", len(res), len(ids))
		}
		for _, id := range ids {
			sameObjects(t, src, dst, id)
			signsAsSource(t, src, dst, id)
		}
	})
	// The emulated HSM's module holds no key that is not sensitive, nor one
	// that both unwraps and decrypts (SoftHSM2's default for an EC key,
	// whose public object also encrypts and wraps; docs/key-policy.md): the
	// others go through it, from a token of their own, public objects that
	// are not modifiable or are private included (the module takes their
	// attributes with the unwrap: unwrapPair).
	t.Run("through the module", func(t *testing.T) {
		src, mid, dst := newToken(t), newModuleTokens(t, 1)[0], newToken(t)
		rsaKey, ecKey := unusual[0], unusual[2]
		ecKey.priv = append(slices.Clone(ecKey.priv), attr(pkcs11.CKA_DECRYPT, false), attr(pkcs11.CKA_UNWRAP, false), attr(pkcs11.CKA_SIGN_RECOVER, false))
		ecKey.pub = append(slices.Clone(ecKey.pub), attr(pkcs11.CKA_ENCRYPT, false), attr(pkcs11.CKA_WRAP, false), attr(pkcs11.CKA_VERIFY_RECOVER, false))
		// Both at once, on a key whose private object is neither.
		locked := made{name: "ec-public-locked", curve: hsmapi.CurveP256,
			priv: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte("locked")), attr(pkcs11.CKA_LABEL, "locked"),
				attr(pkcs11.CKA_SIGN, true), attr(pkcs11.CKA_DECRYPT, false), attr(pkcs11.CKA_UNWRAP, false),
				attr(pkcs11.CKA_SIGN_RECOVER, false), attr(pkcs11.CKA_DERIVE, false), attr(pkcs11.CKA_EXTRACTABLE, true),
				attr(pkcs11.CKA_SENSITIVE, true)},
			pub: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte("locked")), attr(pkcs11.CKA_LABEL, "locked, public"),
				attr(pkcs11.CKA_VERIFY, true), attr(pkcs11.CKA_ENCRYPT, false), attr(pkcs11.CKA_WRAP, false),
				attr(pkcs11.CKA_VERIFY_RECOVER, false), attr(pkcs11.CKA_DERIVE, false),
				attr(pkcs11.CKA_PRIVATE, true), attr(pkcs11.CKA_MODIFIABLE, false)}}
		ids := []hsmapi.UUID{makeKey(t, src, rsaKey), makeKey(t, src, ecKey), makeKey(t, src, locked)}
		if a := publicAttrs(t, src, ids[2], pkcs11.CKA_PRIVATE, pkcs11.CKA_MODIFIABLE); a[pkcs11.CKA_PRIVATE] != "01" || a[pkcs11.CKA_MODIFIABLE] != "00" {
			t.Fatalf("SoftHSM2 made the public object with CKA_PRIVATE %s, CKA_MODIFIABLE %s", a[pkcs11.CKA_PRIVATE], a[pkcs11.CKA_MODIFIABLE])
		}
		if res := transfer(t, src, mid); len(res) != len(ids) {
			t.Fatalf("%d keys reached the module, want %d", len(res), len(ids))
		}
		for _, id := range ids {
			sameObjects(t, src, mid, id)
			signsAsSource(t, src, mid, id)
		}
		transfer(t, mid, dst)
		for _, id := range ids {
			sameObjects(t, src, dst, id)
			signsAsSource(t, src, dst, id)
		}

		// A key whose public object verifies nothing while its private
		// object signs is one the module cannot hold (one flag for both):
		// refused whole, before anything is stored.
		other := newToken(t)
		makeKey(t, other, made{name: "sign-no-verify", curve: hsmapi.CurveP256,
			priv: []*pkcs11.Attribute{attr(pkcs11.CKA_SIGN, true), attr(pkcs11.CKA_DECRYPT, false), attr(pkcs11.CKA_UNWRAP, false),
				attr(pkcs11.CKA_EXTRACTABLE, true), attr(pkcs11.CKA_SENSITIVE, true)},
			pub: []*pkcs11.Attribute{attr(pkcs11.CKA_VERIFY, false), attr(pkcs11.CKA_ENCRYPT, false), attr(pkcs11.CKA_WRAP, false),
				attr(pkcs11.CKA_PRIVATE, true), attr(pkcs11.CKA_MODIFIABLE, false)}})
		_, b := transfertest.ExportFor(t, other, mid)
		before := objectCount(t, mid)
		if _, err := backup.Import(ctx, mid, b, backup.ImportOptions{}); !isCode(err, pkcs11.CKR_TEMPLATE_INCONSISTENT) {
			t.Errorf("import of a key whose public object verifies nothing: %v", err)
		}
		if n := objectCount(t, mid); n != before {
			t.Errorf("the refused import left %d objects, had %d", n, before)
		}
	})
	t.Run("through an emulated HSM", func(t *testing.T) {
		mid, dst := hsmtest.New(t), newToken(t)
		transfer(t, src, mid)
		for _, id := range ids {
			if _, err := mid.Key(ctx, id); err != nil {
				t.Fatalf("%s did not arrive on the emulated HSM under its UUID: %v", id, err)
			}
		}
		transfer(t, mid, dst)
		for _, id := range ids {
			sameObjects(t, src, dst, id)
			signsAsSource(t, src, dst, id)
		}
	})
}

// TestFlagsWithoutAttributes: a key that never was on a PKCS#11 token gets
// exactly what its flags grant: keyencipherment unwraps and wraps but does
// not decrypt or encrypt, nothing derives, the private key is sensitive and
// private.
func TestFlagsWithoutAttributes(t *testing.T) {
	src, dst := hsmtest.New(t), newToken(t)
	ke := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048,
		Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagExportable | hsmapi.FlagToken, Label: "ke"})
	ds := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagExportable | hsmapi.FlagToken, Label: "ds"})
	de := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048,
		Flags: hsmapi.FlagDataEncipherment | hsmapi.FlagDigitalSignature | hsmapi.FlagExportable | hsmapi.FlagToken, Label: "de"})
	transfer(t, src, dst)
	want := map[hsmapi.UUID]map[string]map[uint]bool{
		ke.UUID: {
			"private": {pkcs11.CKA_UNWRAP: true, pkcs11.CKA_DECRYPT: false, pkcs11.CKA_SIGN: false, pkcs11.CKA_SIGN_RECOVER: false,
				pkcs11.CKA_DERIVE: false, pkcs11.CKA_SENSITIVE: true, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_EXTRACTABLE: true},
			"public": {pkcs11.CKA_WRAP: true, pkcs11.CKA_ENCRYPT: false, pkcs11.CKA_VERIFY: false, pkcs11.CKA_VERIFY_RECOVER: false, pkcs11.CKA_DERIVE: false},
		},
		ds.UUID: {
			"private": {pkcs11.CKA_SIGN: true, pkcs11.CKA_DERIVE: false, pkcs11.CKA_DECRYPT: false, pkcs11.CKA_UNWRAP: false, pkcs11.CKA_SENSITIVE: true},
			"public":  {pkcs11.CKA_VERIFY: true, pkcs11.CKA_DERIVE: false, pkcs11.CKA_WRAP: false, pkcs11.CKA_ENCRYPT: false},
		},
		de.UUID: {
			"private": {pkcs11.CKA_SIGN: true, pkcs11.CKA_DECRYPT: true, pkcs11.CKA_UNWRAP: false},
			"public":  {pkcs11.CKA_VERIFY: true, pkcs11.CKA_ENCRYPT: true, pkcs11.CKA_WRAP: false},
		},
	}
	dst.mu.Lock()
	defer dst.mu.Unlock()
	for id, objs := range want {
		o, err := dst.object(id)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(o.id, id[:]) {
			t.Errorf("%s arrived with CKA_ID %x, want its UUID", id, o.id)
		}
		for what, attrs := range objs {
			h := o.priv
			if what == "public" {
				h = o.pub
			}
			for ty, v := range attrs {
				a, err := dst.attrs(h, ty)
				if err != nil || len(a[ty]) != 1 || boolAttr(a[ty]) != v {
					t.Errorf("%s %s object: attribute 0x%x is %x, want %v", id, what, ty, a[ty], v)
				}
			}
		}
	}
}

// pkcs11Tool runs OpenSC's pkcs11-tool on tok, logged in as its user.
func pkcs11Tool(t *testing.T, tok *Token, args ...string) []byte {
	t.Helper()
	tool := testtool.Require(t, "pkcs11-tool", "opensc")
	cmd := exec.Command(tool, append([]string{"--module", env.Module(), "--token-label", tok.cfg.TokenLabel, "--login", "--pin", userPIN}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool %v: %v\n%s", args, err, out)
	}
	return out
}

// TestApplicationFindsKeyByCKAID: a key made with pkcs11-tool --id 0a01 on
// one token is found by pkcs11-tool --id 0a01 on the other after the
// transfer, and what it signs there verifies under the source's public key.
func TestApplicationFindsKeyByCKAID(t *testing.T) {
	src, dst := newToken(t), newToken(t)
	pkcs11Tool(t, src, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "0a01", "--label", "app", "--usage-sign", "--extractable")
	srcKeys, err := src.Keys(ctx, hsmapi.Filter{})
	if err != nil || len(srcKeys) != 1 {
		t.Fatalf("source keys %v, %v", srcKeys, err)
	}
	if srcKeys[0].Flags&hsmapi.FlagExportable == 0 {
		t.Fatalf("pkcs11-tool made a key that is not extractable: %v", srcKeys[0].Flags)
	}
	transfer(t, src, dst)

	dir := t.TempDir()
	digest := sha256.Sum256([]byte("an application signs with the key it knows by CKA_ID"))
	in, sigFile := filepath.Join(dir, "digest"), filepath.Join(dir, "sig")
	if err := os.WriteFile(in, digest[:], 0o600); err != nil {
		t.Fatal(err)
	}
	pkcs11Tool(t, dst, "--sign", "--id", "0a01", "-m", "ECDSA", "--signature-format", "openssl", "--input-file", in, "--output-file", sigFile)
	sig, err := os.ReadFile(sigFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(srcKeys[0].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
		t.Error("the signature pkcs11-tool made on the destination with --id 0a01 does not verify under the source's key")
	}
	// The key keeps its name: the same UUID on both tokens.
	if _, err := dst.Key(ctx, srcKeys[0].UUID); err != nil {
		t.Errorf("the key is not named %s on the destination: %v", srcKeys[0].UUID, err)
	}
}

// TestSharedCKAID: ten keys, three pairs of which share a CKA_ID (one a
// 16-byte CKA_ID, shared by an EC and an RSA key), are listed as ten keys
// with distinct UUIDs, all exported, imported on
// another token, and each signs there under its source's public key.
func TestSharedCKAID(t *testing.T) {
	src, dst := newToken(t), newToken(t)
	shared := func(id string, rsa bool, curve hsmapi.Curve, n int) made {
		label := fmt.Sprintf("%s-%d", id, n)
		return made{name: label, rsa: rsa, curve: curve,
			priv: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte(id)), attr(pkcs11.CKA_LABEL, label), attr(pkcs11.CKA_SIGN, true), attr(pkcs11.CKA_EXTRACTABLE, true)},
			pub:  []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte(id)), attr(pkcs11.CKA_LABEL, label), attr(pkcs11.CKA_VERIFY, true)}}
	}
	keys := []made{
		shared("ec pair", false, hsmapi.CurveP256, 1), shared("ec pair", false, hsmapi.CurveP256, 2),
		shared("rsa pair", true, 0, 1), shared("rsa pair", true, 0, 2),
		shared("alone 1", false, hsmapi.CurveP384, 1), shared("alone 2", true, 0, 1),
		shared("0123456789abcdef", false, hsmapi.CurveP256, 1), shared("alone 3", false, hsmapi.CurveP521, 1),
		// A 16-byte CKA_ID, which names a key alone, shared: neither key is
		// named by it, and the destination takes both.
		shared("fedcba9876543210", false, hsmapi.CurveP256, 1), shared("fedcba9876543210", true, 0, 2),
	}
	// Named once all are made: a key alone with a 16-byte CKA_ID is named
	// by it until a second key shares it.
	var pubs []pkcs11.ObjectHandle
	for _, m := range keys {
		pubs = append(pubs, makePair(t, src, m))
	}
	ids := map[hsmapi.UUID]bool{}
	for _, ph := range pubs {
		ids[keyOfPublic(t, src, ph)] = true
	}
	if len(ids) != len(keys) {
		t.Fatalf("%d keys have %d distinct UUIDs", len(keys), len(ids))
	}
	listed, err := src.Keys(ctx, hsmapi.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != len(keys) {
		t.Fatalf("list shows %d keys of %d", len(listed), len(keys))
	}
	// Names are stable: looked up again, each key is the same key.
	for _, k := range listed {
		if !ids[k.UUID] {
			t.Errorf("listed %s, not one of the keys made", k.UUID)
		}
		got, err := src.Key(ctx, k.UUID)
		if err != nil || !hsmapi.SamePublicKey(got.PublicKey, k.PublicKey) {
			t.Errorf("%s looked up: %v", k.UUID, err)
		}
	}
	res := transfer(t, src, dst)
	if len(res) != len(keys) {
		t.Fatalf("%d keys moved of %d", len(res), len(keys))
	}
	for id := range ids {
		signsAsSource(t, src, dst, id)
	}
	// The second key of each pair arrives where the first has its CKA_ID
	// already, and the import says so; the first key of the 16-byte
	// CKA_ID, named by it until then, is renamed, and the import says that
	// too.
	var warned []string
	for _, r := range res {
		warned = append(warned, r.Warnings...)
	}
	if len(warned) != 3 {
		t.Errorf("%d warnings, want one per pair of keys sharing a CKA_ID: %q", len(warned), warned)
	}
	for _, w := range warned {
		if !strings.Contains(w, "may use either") {
			t.Errorf("warning %q", w)
		}
		if strings.Contains(w, "CKA_ID "+hex.EncodeToString([]byte("fedcba9876543210"))) {
			u := hsmapi.UUID([]byte("fedcba9876543210"))
			if !strings.Contains(w, "; key "+u.String()+", named by that CKA_ID until now, is named ") {
				t.Errorf("warning %q does not tell that key %s was renamed", w, u)
			}
		}
	}
	// Again: every key is recognised as present, none duplicated, and
	// nothing is worth a warning.
	res = transfer(t, src, dst)
	for _, r := range res {
		if !r.Present || len(r.Warnings) != 0 {
			t.Errorf("second import: %s present %v, warnings %q", r.UUID, r.Present, r.Warnings)
		}
	}
	if n, err := dst.Keys(ctx, hsmapi.Filter{Mask: hsmapi.FlagExportable, Flags: hsmapi.FlagExportable}); err != nil || len(n) != len(keys) {
		t.Errorf("destination has %d exportable keys, want %d (%v)", len(n), len(keys), err)
	}
}

// TestPrivateKeyWithoutPublicObject: a private key whose public object is
// gone is still exported when its object shows its public key (RSA); an EC
// private key that does not fails the export loudly instead of being left
// out, unless the operator asks to skip what cannot be read.
func TestPrivateKeyWithoutPublicObject(t *testing.T) {
	src, dst := newToken(t), newToken(t)
	orphan := func(m made) hsmapi.UUID {
		id := makeKey(t, src, m)
		src.mu.Lock()
		defer src.mu.Unlock()
		o, err := src.object(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := src.raw.DestroyObject(src.sess, o.pub); err != nil {
			t.Fatal(err)
		}
		return id
	}
	rsaKey := orphan(made{name: "rsa alone", rsa: true,
		priv: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte{1}), attr(pkcs11.CKA_SIGN, true), attr(pkcs11.CKA_EXTRACTABLE, true)},
		pub:  []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte{1})}})
	kekek, err := backup.Setup(ctx, dst, backup.SetupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.Export(ctx, src, kekek, backup.ExportOptions{})
	if err != nil || len(b.Keys) != 1 {
		t.Fatalf("export of an RSA private key alone: %v", err)
	}
	if _, err := backup.Import(ctx, dst, b, backup.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	signsAsSource(t, src, dst, rsaKey)

	orphan(made{name: "ec alone", curve: hsmapi.CurveP256,
		priv: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte{2}), attr(pkcs11.CKA_SIGN, true), attr(pkcs11.CKA_EXTRACTABLE, true)},
		pub:  []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte{2})}})
	if _, err := backup.Export(ctx, src, kekek, backup.ExportOptions{}); !errors.Is(err, hsmapi.ErrDamaged) || !bytes.Contains([]byte(err.Error()), []byte("CKA_ID 02")) {
		t.Errorf("export with an EC private key it cannot pair: %v", err)
	}
	b, err = backup.Export(ctx, src, kekek, backup.ExportOptions{SkipDamaged: true})
	if err != nil || len(b.Keys) != 1 {
		t.Errorf("export skipping what cannot be read: %d keys, %v", len(b.Keys), err)
	}
}

// TestRawLabelsArriveOnToken: keys whose labels a libhal client set to any
// bytes on an emulated HSM arrive on a PKCS#11 token with exactly those
// bytes as CKA_LABEL, on both objects, and come back from it unchanged.
func TestRawLabelsArriveOnToken(t *testing.T) {
	src, dst := hsmtest.New(t), newToken(t)
	labels := map[hsmapi.UUID]string{}
	for _, label := range []string{"a\x00b\xffc\u202e", strings.Repeat("\xfe", hsmapi.MaxRawLabelLength), "clean"} {
		k := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable})
		if err := src.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte(label)}}); err != nil {
			t.Fatal(err)
		}
		labels[k.UUID] = label
	}
	transfer(t, src, dst)
	for id, label := range labels {
		for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
			dst.mu.Lock()
			objs, err := dst.find(pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_ID, id[:]))
			if err != nil || len(objs) != 1 {
				dst.mu.Unlock()
				t.Fatalf("%s: %d objects of class %d (%v)", id, len(objs), class, err)
			}
			a, err := dst.attrs(objs[0], pkcs11.CKA_LABEL)
			dst.mu.Unlock()
			if err != nil || string(a[pkcs11.CKA_LABEL]) != label {
				t.Errorf("%s: object of class %d has CKA_LABEL %q (%v), want %q", id, class, a[pkcs11.CKA_LABEL], err, label)
			}
		}
		signsAsSource(t, src, dst, id)
	}
	back := hsmtest.New(t)
	transfer(t, dst, back)
	for id, label := range labels {
		if k, err := back.Key(ctx, id); err != nil || k.Label != label {
			t.Errorf("%s came back from the token with label %q (%v), want %q", id, k.Label, err, label)
		}
	}
}

// TestECPairingBySignature: two EC keys of one curve share a CKA_ID, and
// their private objects do not show their points (SoftHSM2's do not), so
// only a test signature tells which public object is whose. The first
// key's public object is made again, so that the token lists the public
// objects in the other order than the private ones: pairing by order would
// give each private key the other's public key. Each key signs so that its
// listed public key verifies, and keeps its name.
func TestECPairingBySignature(t *testing.T) {
	tok := newToken(t)
	twin := func(n int) made {
		label := fmt.Sprintf("twin %d", n)
		return made{name: label, curve: hsmapi.CurveP256,
			priv: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte("twins")), attr(pkcs11.CKA_LABEL, label), attr(pkcs11.CKA_SIGN, true)},
			pub:  []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte("twins")), attr(pkcs11.CKA_LABEL, label), attr(pkcs11.CKA_VERIFY, true)}}
	}
	first, second := makePair(t, tok, twin(1)), makePair(t, tok, twin(2))
	names := map[hsmapi.UUID]bool{keyOfPublic(t, tok, first): true, keyOfPublic(t, tok, second): true}

	func() {
		tok.mu.Lock()
		defer tok.mu.Unlock()
		types := []uint{pkcs11.CKA_CLASS, pkcs11.CKA_KEY_TYPE, pkcs11.CKA_TOKEN, pkcs11.CKA_ID, pkcs11.CKA_LABEL,
			pkcs11.CKA_VERIFY, pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT}
		tmpl := make([]*pkcs11.Attribute, len(types))
		for i, ty := range types {
			tmpl[i] = attr(ty, nil)
		}
		got, err := tok.raw.GetAttributeValue(tok.sess, first, tmpl)
		if err != nil {
			t.Fatal(err)
		}
		if err := tok.raw.DestroyObject(tok.sess, first); err != nil {
			t.Fatal(err)
		}
		if first, err = tok.raw.CreateObject(tok.sess, got); err != nil {
			t.Fatal(err)
		}
		privs, err := tok.find(attr(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), attr(pkcs11.CKA_ID, []byte("twins")))
		if err != nil {
			t.Fatal(err)
		}
		pubs, err := tok.find(attr(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), attr(pkcs11.CKA_ID, []byte("twins")))
		if err != nil || len(privs) != 2 || len(pubs) != 2 {
			t.Fatalf("%d private and %d public objects (%v)", len(privs), len(pubs), err)
		}
		if pubs[0] == first {
			t.Fatal("the token lists the first key's public object first again: the order cannot mislead, so this test shows nothing")
		}
		for _, h := range privs {
			if a, _ := tok.attrs(h, pkcs11.CKA_EC_POINT); len(a[pkcs11.CKA_EC_POINT]) != 0 {
				t.Fatal("the private objects show their points: no test signature is needed, so this test shows nothing")
			}
		}
	}()

	keys, err := tok.Keys(ctx, hsmapi.Filter{})
	if err != nil || len(keys) != 2 {
		t.Fatalf("listed %d keys (%v), want 2", len(keys), err)
	}
	for _, k := range keys {
		if !names[k.UUID] {
			t.Errorf("listed %s, not the name the key had", k.UUID)
		}
		digest := sha256.Sum256([]byte(k.Label))
		sig, err := tok.Sign(ctx, k.UUID, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("%s: %v", k.Label, err)
		}
		if err := hsmapi.VerifySignature(k.PublicKey, digest[:], sig, crypto.SHA256); err != nil {
			t.Errorf("%s signs with the other key's private half: %v", k.Label, err)
		}
	}
}

// TestEmulatedKeyNamedByCKAID: a key made on an emulated HSM, to which a
// client gave a CKA_ID attribute that is not 16 bytes (as a PKCS#11
// library over libhal keeps CKA_ID), arrives on a token with that CKA_ID and
// is named there by the UUID derived from it, not by the UUID it had: the
// README says so.
func TestEmulatedKeyNamedByCKAID(t *testing.T) {
	src, dst := hsmtest.New(t), newToken(t)
	k := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable, Label: "emulated"})
	if err := src.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: []byte{0x0a, 0x01}}}); err != nil {
		t.Fatal(err)
	}
	res := transfer(t, src, dst)
	derived := derivedUUID([]byte{0x0a, 0x01}, k.PublicKey)
	if len(res) != 1 || res[0].UUID != derived {
		t.Fatalf("imported as %+v, want the derived UUID %s", res, derived)
	}
	if _, err := dst.Key(ctx, k.UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("the old UUID on the token: %v", err)
	}
	byLabel, err := dst.Keys(ctx, hsmapi.Filter{Attributes: []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte("emulated")}}})
	if err != nil || len(byLabel) != 1 || byLabel[0].UUID != derived {
		t.Errorf("by label: %v, %v", byLabel, err)
	}
	digest := sha256.Sum256([]byte("named anew"))
	sig, err := dst.Sign(ctx, derived, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := hsmapi.VerifySignature(k.PublicKey, digest[:], sig, crypto.SHA256); err != nil {
		t.Error(err)
	}
}
