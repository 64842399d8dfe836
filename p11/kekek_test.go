//go:build cgo

package p11

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
	"github.com/hsmkit/cryptech-backup/internal/transfertest"
)

// firstKey is what the bundle's first key arrives as: its KEK encrypted
// to the KEKEK, and the key wrapped under the KEK.
func firstKey(t *testing.T, b *backup.Bundle) (ct, wrapped []byte) {
	t.Helper()
	ct, err := hsmapi.ParseEncryptedKEK(b.Keys[0].KEK, b.KEKEncryption)
	if err != nil {
		t.Fatal(err)
	}
	if wrapped, err = hsmapi.ParseEncryptedKey(b.Keys[0].PKCS8); err != nil {
		t.Fatal(err)
	}
	return ct, wrapped
}

// TestKEKEKOnlyUnwraps: the KEKEK setup makes on a token unwraps and does
// nothing else, and someone who has the token's user PIN and a bundle
// cannot read the bundle's KEK with it: not with C_Decrypt, not by
// unwrapping it as a readable secret, not by changing the KEKEK.
func TestKEKEKOnlyUnwraps(t *testing.T) {
	dst, src := newToken(t), hsmtest.New(t)
	k := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable, Label: "secret"})
	kekek, b := transfertest.ExportFor(t, src, dst)
	id, _ := hsmapi.ParseUUID(kekek.KEKEKUUID)
	ct, wrapped := firstKey(t, b)
	oaep, _, _ := kekMechanism(b.KEKEncryption)

	func() {
		dst.mu.Lock()
		defer dst.mu.Unlock()
		o, err := dst.object(id)
		if err != nil {
			t.Fatal(err)
		}
		for h, want := range map[pkcs11.ObjectHandle]map[uint]bool{
			o.priv: {pkcs11.CKA_UNWRAP: true, pkcs11.CKA_DECRYPT: false, pkcs11.CKA_SIGN: false, pkcs11.CKA_SIGN_RECOVER: false,
				pkcs11.CKA_DERIVE: false, pkcs11.CKA_MODIFIABLE: false, pkcs11.CKA_COPYABLE: false, pkcs11.CKA_EXTRACTABLE: false,
				pkcs11.CKA_SENSITIVE: true},
			o.pub: {pkcs11.CKA_WRAP: true, pkcs11.CKA_ENCRYPT: false, pkcs11.CKA_VERIFY: false, pkcs11.CKA_VERIFY_RECOVER: false},
		} {
			for ty, v := range want {
				a, err := dst.attrs(h, ty)
				if err != nil || len(a[ty]) != 1 || boolAttr(a[ty]) != v {
					t.Errorf("KEKEK object %d: attribute 0x%x is %x, want %v", h, ty, a[ty], v)
				}
			}
		}
		r, s := dst.raw, dst.sess
		// C_Decrypt of the KEK, the attack of issue 9.
		if err := r.DecryptInit(s, []*pkcs11.Mechanism{oaep}, o.priv); err == nil {
			kek, err := r.Decrypt(s, ct)
			t.Errorf("the KEKEK decrypts a bundle's KEK: %d bytes, %v", len(kek), err)
		}
		// Giving it CKA_DECRYPT, or a copy of it.
		if err := r.SetAttributeValue(s, o.priv, []*pkcs11.Attribute{attr(pkcs11.CKA_DECRYPT, true)}); err == nil {
			t.Error("the KEKEK could be given CKA_DECRYPT")
		}
		if h, err := r.CopyObject(s, o.priv, []*pkcs11.Attribute{attr(pkcs11.CKA_TOKEN, false)}); err == nil {
			t.Error("the KEKEK could be copied")
			r.DestroyObject(s, h)
		}
		// Unwrapping the KEK as a secret that can be read (without the
		// KEKEK's template, the first reads 32 bytes), wrapped out, or that
		// decrypts.
		for name, tm := range map[string][]*pkcs11.Attribute{
			"not sensitive":  {attr(pkcs11.CKA_SENSITIVE, false), attr(pkcs11.CKA_EXTRACTABLE, true)},
			"token defaults": {},
			"extractable":    {attr(pkcs11.CKA_SENSITIVE, true), attr(pkcs11.CKA_EXTRACTABLE, true)},
			"decrypts":       {attr(pkcs11.CKA_SENSITIVE, true), attr(pkcs11.CKA_EXTRACTABLE, false), attr(pkcs11.CKA_DECRYPT, true)},
		} {
			for _, kt := range []uint{pkcs11.CKK_GENERIC_SECRET, pkcs11.CKK_AES} {
				tm := append([]*pkcs11.Attribute{attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), attr(pkcs11.CKA_KEY_TYPE, kt),
					attr(pkcs11.CKA_TOKEN, false)}, tm...)
				if h, err := r.UnwrapKey(s, []*pkcs11.Mechanism{oaep}, o.priv, ct, tm); err == nil {
					v, err := dst.attrs(h, pkcs11.CKA_VALUE)
					t.Errorf("the KEK unwraps as a key of type %d that is %s (value %d bytes, %v)", kt, name, len(v[pkcs11.CKA_VALUE]), err)
					r.DestroyObject(s, h)
				}
			}
		}
		// What remains (README, "What a KEKEK cannot prevent"): the KEK,
		// sensitive, may unwrap; unwrapping the bundle's private key under it
		// as a key that is not sensitive shows the key to whoever has the
		// user PIN. PKCS#11 has no way for the KEKEK to impose an unwrap
		// template on what the KEK unwraps, and SoftHSM2 refuses nested
		// templates. Should this ever fail, the token closed the gap: say so
		// in the README.
		kekT := template(kekPolicy())
		kekT.set(pkcs11.CKA_UNWRAP, true)
		kek, err := r.UnwrapKey(s, []*pkcs11.Mechanism{oaep}, o.priv, ct, kekT.final())
		if err != nil {
			t.Fatalf("the KEK does not unwrap as our import asks: %v", err)
		}
		defer r.DestroyObject(s, kek)
		h, err := r.UnwrapKey(s, kwp, kek, wrapped, []*pkcs11.Attribute{attr(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC), attr(pkcs11.CKA_TOKEN, false), attr(pkcs11.CKA_SENSITIVE, false), attr(pkcs11.CKA_EXTRACTABLE, true)})
		if err != nil {
			t.Fatalf("the residue the README describes is gone: %v", err)
		}
		defer r.DestroyObject(s, h)
		if v, err := dst.attrs(h, pkcs11.CKA_VALUE); err != nil || len(v[pkcs11.CKA_VALUE]) == 0 {
			t.Fatalf("the residue the README describes is gone: %v", err)
		}
	}()
	// And the bundle imports.
	if _, err := backup.Import(ctx, dst, b, backup.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	signsAsSource(t, src, dst, k.UUID)
}

// TestSetupRefusesKEKEKThatDecrypts: a KEKEK with CKA_DECRYPT (what setup
// made before: CKA_UNWRAP and CKA_DECRYPT, not CKA_SIGN) is refused by setup with the reason and the remedy; setup
// --new makes a proper one; bundles made for the old one still import.
func TestSetupRefusesKEKEKThatDecrypts(t *testing.T) {
	dst := newToken(t)
	old := makeKey(t, dst, made{name: "old KEKEK", rsa: true,
		priv: []*pkcs11.Attribute{attr(pkcs11.CKA_LABEL, "KEKEK"), attr(pkcs11.CKA_ID, []byte("old kekek")),
			attr(pkcs11.CKA_UNWRAP, true), attr(pkcs11.CKA_DECRYPT, true), attr(pkcs11.CKA_SIGN, false),
			attr(pkcs11.CKA_SENSITIVE, true), attr(pkcs11.CKA_EXTRACTABLE, false)},
		pub: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, []byte("old kekek")), attr(pkcs11.CKA_WRAP, true), attr(pkcs11.CKA_ENCRYPT, true)}})
	for _, opts := range []backup.SetupOptions{{}, {UUID: old}} {
		_, err := backup.Setup(ctx, dst, opts)
		if !errors.Is(err, hsmapi.ErrForbidden) || !strings.Contains(err.Error(), "CKA_DECRYPT") || !strings.Contains(err.Error(), "--new") ||
			!strings.Contains(err.Error(), "delete this one") {
			t.Errorf("setup %+v with a KEKEK that decrypts: %v", opts, err)
		}
	}
	f, err := backup.Setup(ctx, dst, backup.SetupOptions{New: true})
	if err != nil {
		t.Fatal(err)
	}
	if f.KEKEKUUID == old.String() {
		t.Fatal("setup --new kept the old KEKEK")
	}
	if again, err := backup.Setup(ctx, dst, backup.SetupOptions{}); err != nil || again.KEKEKUUID != f.KEKEKUUID {
		t.Errorf("setup after --new: %v (want the new KEKEK %s)", err, f.KEKEKUUID)
	}
	// A bundle made for the old KEKEK before still imports.
	oldKey, err := dst.Key(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	encs, _ := dst.KEKEncryptions(ctx)
	oldFile := &backup.KEKEKFile{Comment: "KEKEK public key", KEKEncryptions: encs[:1], KEKEKPubkey: oldKey.PublicKey, KEKEKUUID: old.String(), Version: backup.Version}
	src := hsmtest.New(t)
	k := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable})
	b, err := backup.Export(ctx, src, oldFile, backup.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Import(ctx, dst, b, backup.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	signsAsSource(t, src, dst, k.UUID)
}

// kekekLike is a key made on the token as a KEKEK, with the profile
// GenerateKEKEK gives but for what change alters.
func kekekLike(t *testing.T, tok *Token, label string, change func(priv *template)) hsmapi.UUID {
	t.Helper()
	policy, free := attributeArray(kekPolicy())
	defer free()
	id := []byte("kekek " + label)
	priv := template{attr(pkcs11.CKA_LABEL, label), attr(pkcs11.CKA_ID, id),
		attr(pkcs11.CKA_UNWRAP, true), attr(pkcs11.CKA_DECRYPT, false), attr(pkcs11.CKA_SIGN, false),
		attr(pkcs11.CKA_SIGN_RECOVER, false), attr(pkcs11.CKA_DERIVE, false), attr(pkcs11.CKA_SENSITIVE, true),
		attr(pkcs11.CKA_EXTRACTABLE, false), attr(pkcs11.CKA_MODIFIABLE, false), attr(pkcs11.CKA_COPYABLE, false),
		attr(pkcs11.CKA_UNWRAP_TEMPLATE, policy)}
	if change != nil {
		change(&priv)
	}
	return makeKey(t, tok, made{name: label, rsa: true, priv: priv,
		pub: []*pkcs11.Attribute{attr(pkcs11.CKA_ID, id), attr(pkcs11.CKA_WRAP, true), attr(pkcs11.CKA_ENCRYPT, false), attr(pkcs11.CKA_VERIFY, false)}})
}

// without is the template less one attribute.
func without(tm *template, typ uint) {
	*tm = slices.DeleteFunc(*tm, func(a *pkcs11.Attribute) bool { return a.Type == typ })
}

// kekekFileFor describes a key of tok as a KEKEK file, as setup would if it
// took the key: what a source exports to.
func kekekFileFor(t *testing.T, tok *Token, id hsmapi.UUID) *backup.KEKEKFile {
	t.Helper()
	k, err := tok.Key(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	encs, err := tok.KEKEncryptions(ctx)
	if err != nil || len(encs) == 0 {
		t.Fatalf("KEK encryptions %v, %v", encs, err)
	}
	return &backup.KEKEKFile{Comment: "KEKEK public key", KEKEncryptions: encs[:1], KEKEKPubkey: k.PublicKey, KEKEKUUID: id.String(), Version: backup.Version}
}

// oaepDecode undoes the OAEP padding (RFC 8017, 7.1.2) of a message the
// token decrypted with raw RSA.
func oaepDecode(h hash.Hash, em []byte) ([]byte, error) {
	hLen := h.Size()
	if len(em) < 2*hLen+2 || em[0] != 0 {
		return nil, errors.New("not OAEP")
	}
	mgf := func(seed []byte, n int) []byte {
		var out []byte
		for c := uint32(0); len(out) < n; c++ {
			h.Reset()
			h.Write(seed)
			h.Write(binary.BigEndian.AppendUint32(nil, c))
			out = h.Sum(out)
		}
		return out[:n]
	}
	seed, db := slices.Clone(em[1:1+hLen]), slices.Clone(em[1+hLen:])
	subtle.XORBytes(seed, seed, mgf(db, hLen))
	subtle.XORBytes(db, db, mgf(seed, len(db)))
	h.Reset()
	if !bytes.Equal(db[:hLen], h.Sum(nil)) {
		return nil, errors.New("OAEP label hash differs")
	}
	rest := bytes.TrimLeft(db[hLen:], "\x00")
	if len(rest) == 0 || rest[0] != 1 {
		return nil, errors.New("no OAEP separator")
	}
	return rest[1:], nil
}

// kekekDoor is a way to read a bundle's KEK with the KEKEK's private object,
// for anyone who has the token's user PIN.
type kekekDoor func(tok *Token, kekek pkcs11.ObjectHandle, enc hsmapi.KEKEncryption, ct []byte) ([]byte, error)

var (
	// Raw RSA signing is RSA decryption.
	signDoor kekekDoor = func(tok *Token, kekek pkcs11.ObjectHandle, enc hsmapi.KEKEncryption, ct []byte) ([]byte, error) {
		em, err := tok.signRaw(kekek, pkcs11.CKM_RSA_X_509, ct)
		if err != nil {
			return nil, err
		}
		h := sha1.New()
		if enc == hsmapi.KEKOAEPSHA256 {
			h = sha256.New()
		}
		return oaepDecode(h, em)
	}
	// A KEKEK that may be changed may be given CKA_DECRYPT.
	modifyDoor kekekDoor = func(tok *Token, kekek pkcs11.ObjectHandle, enc hsmapi.KEKEncryption, ct []byte) ([]byte, error) {
		if err := tok.raw.SetAttributeValue(tok.sess, kekek, []*pkcs11.Attribute{attr(pkcs11.CKA_DECRYPT, true)}); err != nil {
			return nil, err
		}
		mech, _, _ := kekMechanism(enc)
		if err := tok.raw.DecryptInit(tok.sess, []*pkcs11.Mechanism{mech}, kekek); err != nil {
			return nil, err
		}
		return tok.raw.Decrypt(tok.sess, ct)
	}
	// Without an unwrap template, the KEK unwraps as a secret that can be
	// read.
	unwrapDoor kekekDoor = func(tok *Token, kekek pkcs11.ObjectHandle, enc hsmapi.KEKEncryption, ct []byte) ([]byte, error) {
		mech, _, _ := kekMechanism(enc)
		h, err := tok.raw.UnwrapKey(tok.sess, []*pkcs11.Mechanism{mech}, kekek, ct, []*pkcs11.Attribute{
			attr(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), attr(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES), attr(pkcs11.CKA_TOKEN, false),
			attr(pkcs11.CKA_SENSITIVE, false), attr(pkcs11.CKA_EXTRACTABLE, true)})
		if err != nil {
			return nil, err
		}
		defer tok.raw.DestroyObject(tok.sess, h)
		a, err := tok.raw.GetAttributeValue(tok.sess, h, []*pkcs11.Attribute{attr(pkcs11.CKA_VALUE, nil)})
		if err != nil {
			return nil, err
		}
		return a[0].Value, nil
	}
)

// breakIn plays the attacker: it opens the bundle's first key with the
// door and the KEKEK's private object, as far as the PKCS#8 private key, and
// checks that it is the source's key.
func breakIn(t *testing.T, tok *Token, b *backup.Bundle, src hsmapi.KeyInfo, door kekekDoor) error {
	t.Helper()
	id, _ := hsmapi.ParseUUID(b.KEKEKUUID)
	ct, wrapped := firstKey(t, b)
	tok.mu.Lock()
	defer tok.mu.Unlock()
	o, err := tok.object(id)
	if err != nil {
		t.Fatal(err)
	}
	kek, err := door(tok, o.priv, b.KEKEncryption, ct)
	if err != nil {
		return err
	}
	der, err := keywrap.UnwrapPad(kek, wrapped)
	if err != nil {
		return fmt.Errorf("what the door gave does not unwrap the key: %w", err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public())
	if err != nil || !hsmapi.SamePublicKey(spki, src.PublicKey) {
		t.Fatalf("the key read is not the source's: %v", err)
	}
	return nil
}

// TestSetupRefusesKEKEKDoors: a KEKEK that unwraps and has no CKA_DECRYPT
// still gives a bundle's KEK away (and with it the bundle's keys) when it
// signs with raw RSA, can be changed, or lets the KEK be unwrapped as a
// secret that can be read. Setup refuses such a key when named, saying why
// and what to do, and passes it over or refuses it when not; the door is
// then opened on it, to show it is real, and found shut on the KEKEK setup
// --new makes.
func TestSetupRefusesKEKEKDoors(t *testing.T) {
	for _, d := range []struct {
		name   string
		change func(*template)
		door   kekekDoor
		flaw   string
	}{
		{"raw RSA signature", func(tm *template) { tm.set(pkcs11.CKA_SIGN, true) }, signDoor, "CKA_SIGN"},
		{"modifiable", func(tm *template) { tm.set(pkcs11.CKA_MODIFIABLE, true) }, modifyDoor, "modifiable"},
		{"no unwrap template", func(tm *template) { without(tm, pkcs11.CKA_UNWRAP_TEMPLATE) }, unwrapDoor, "no CKA_UNWRAP_TEMPLATE"},
	} {
		t.Run(d.name, func(t *testing.T) {
			dst, src := newToken(t), hsmtest.New(t)
			k := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable, Label: "secret"})
			flawed := kekekLike(t, dst, "KEKEK", d.change)
			b, err := backup.Export(ctx, src, kekekFileFor(t, dst, flawed), backup.ExportOptions{})
			if err != nil {
				t.Fatal(err)
			}

			_, err = backup.Setup(ctx, dst, backup.SetupOptions{UUID: flawed})
			if !errors.Is(err, hsmapi.ErrForbidden) || !strings.Contains(err.Error(), d.flaw) || !strings.Contains(err.Error(), "--new") ||
				!strings.Contains(err.Error(), `label "KEKEK"`) {
				t.Errorf("setup --uuid of a KEKEK that %s: %v", d.flaw, err)
			}
			f, err := backup.Setup(ctx, dst, backup.SetupOptions{})
			if err == nil && f.KEKEKUUID == flawed.String() {
				t.Errorf("setup without --uuid took the KEKEK that %s", d.flaw)
			} else if err != nil && (!errors.Is(err, hsmapi.ErrForbidden) || !strings.Contains(err.Error(), d.flaw)) {
				t.Errorf("setup without --uuid: %v", err)
			}
			// After setup looked (opening the door may change the key).
			if err := breakIn(t, dst, b, k, d.door); err != nil {
				t.Fatalf("the door is shut on the flawed KEKEK already, so this test shows nothing: %v", err)
			}

			f, err = backup.Setup(ctx, dst, backup.SetupOptions{New: true})
			if err != nil {
				t.Fatal(err)
			}
			b, err = backup.Export(ctx, src, f, backup.ExportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := breakIn(t, dst, b, k, d.door); err == nil {
				t.Error("the door is open on the KEKEK setup --new made")
			}
			if _, err := backup.Import(ctx, dst, b, backup.ImportOptions{}); err != nil {
				t.Fatal(err)
			}
			signsAsSource(t, src, dst, k.UUID)
		})
	}
}

// TestSetupChecksUnwrapTemplate: setup reads a KEKEK's CKA_UNWRAP_TEMPLATE
// back and checks what it forces: the profile GenerateKEKEK gives is taken,
// a template that forces CKA_SENSITIVE but leaves CKA_EXTRACTABLE free is
// refused, by name.
func TestSetupChecksUnwrapTemplate(t *testing.T) {
	dst := newToken(t)
	good := kekekLike(t, dst, "KEKEK", nil)
	if f, err := backup.Setup(ctx, dst, backup.SetupOptions{UUID: good}); err != nil || f.KEKEKUUID != good.String() {
		t.Fatalf("setup --uuid of a KEKEK with GenerateKEKEK's profile: %v", err)
	}
	loose, free := attributeArray([]*pkcs11.Attribute{attr(pkcs11.CKA_SENSITIVE, true)})
	defer free()
	partial := kekekLike(t, dst, "KEKEK", func(tm *template) { tm.set(pkcs11.CKA_UNWRAP_TEMPLATE, loose) })
	_, err := backup.Setup(ctx, dst, backup.SetupOptions{UUID: partial})
	if !errors.Is(err, hsmapi.ErrForbidden) || !strings.Contains(err.Error(), "CKA_EXTRACTABLE") || strings.Contains(err.Error(), "CKA_SENSITIVE,") {
		t.Errorf("setup --uuid of a KEKEK whose unwrap template leaves CKA_EXTRACTABLE free: %v", err)
	}
}

// TestSetupPassesOverApplicationKeys: on a token holding an application's
// RSA key as pkcs11-tool makes it by default (it unwraps, and decrypts and
// signs), setup without --uuid leaves the key alone and makes a KEKEK of
// its own; named by --uuid, the key is refused by its label, with no advice
// to delete it.
func TestSetupPassesOverApplicationKeys(t *testing.T) {
	dst := newToken(t)
	pkcs11Tool(t, dst, "--keypairgen", "--key-type", "rsa:2048", "--id", "0b01", "--label", "app")
	keys, err := dst.Keys(ctx, hsmapi.Filter{})
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	app := keys[0]
	if want := hsmapi.FlagKeyEncipherment | hsmapi.FlagToken; app.Flags&want != want {
		t.Fatalf("pkcs11-tool made a key with flags %v, which setup would not look at: the test shows nothing", app.Flags)
	}
	f, err := backup.Setup(ctx, dst, backup.SetupOptions{})
	if err != nil {
		t.Fatalf("setup with an application's key on the token: %v", err)
	}
	if f.KEKEKUUID == app.UUID.String() {
		t.Fatal("setup took the application's key as its KEKEK")
	}
	if again, err := backup.Setup(ctx, dst, backup.SetupOptions{}); err != nil || again.KEKEKUUID != f.KEKEKUUID {
		t.Errorf("setup again: %v (want the KEKEK it made, %s)", err, f.KEKEKUUID)
	}
	_, err = backup.Setup(ctx, dst, backup.SetupOptions{UUID: app.UUID})
	if !errors.Is(err, hsmapi.ErrForbidden) || !strings.Contains(err.Error(), `label "app"`) || !strings.Contains(err.Error(), "--new") ||
		strings.Contains(err.Error(), "delete") {
		t.Errorf("setup --uuid of the application's key: %v", err)
	}
	if _, err := dst.Key(ctx, app.UUID); err != nil {
		t.Errorf("the application's key: %v", err)
	}
}
