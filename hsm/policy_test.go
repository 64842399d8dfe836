package hsm

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// The attacks of docs/key-policy.md, one test each: every one is refused,
// and nothing is stored or handed out.

// unchanged fails the test if the session's keys or the given key's
// attributes differ from before.
func unchanged(t *testing.T, s *Session, what string, keys int, id hsmapi.UUID, attrs map[uint32]string) {
	t.Helper()
	if n := keyCount(t, s); n != keys {
		t.Errorf("%s: %d keys, %d before", what, n, keys)
	}
	got := attrsOf(t, s, id)
	if len(got) != len(attrs) {
		t.Errorf("%s: attributes changed: %v, were %v", what, got, attrs)
	}
	for a, v := range attrs {
		if got[a] != v {
			t.Errorf("%s: attribute 0x%x is %q, was %q", what, a, got[a], v)
		}
	}
}

// TestAttackWrapThenDecrypt is the key extraction SoftHSM2 allows: a
// sensitive key wrapped under a key that can also decrypt, the blob then
// decrypted. Here a key that may decrypt never wraps, and a key that wraps
// never decrypts.
func TestAttackWrapThenDecrypt(t *testing.T) {
	h, _ := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	secret := genAES(t, s, 256, secretFlags)
	private := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
	both := loadRSA(t, s, hsmapi.FlagKeyEncipherment|hsmapi.FlagDataEncipherment)
	decrypter := loadRSA(t, s, hsmapi.FlagDataEncipherment)
	oaep := hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAOAEP, OAEP: oaepSHA256}
	rsaAES := hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAAESKeyWrap, OAEP: oaepSHA256, AESKeyBits: 256}
	for _, w := range []hsmapi.KeyInfo{both, decrypter} {
		for _, c := range []struct {
			target hsmapi.KeyInfo
			mech   hsmapi.WrapMechanism
		}{{secret, oaep}, {secret, rsaAES}, {private, rsaAES}} {
			blob, err := s.WrapKey(ctx, w.UUID, c.target.UUID, c.mech)
			if !errors.Is(err, hsmapi.ErrForbidden) || blob != nil {
				t.Errorf("wrap %v under a key with %v: %x, %v; want ErrForbidden and nothing", c.target.Type, w.Flags, blob, err)
			}
		}
	}
	// A key that wraps (keyencipherment alone) does, but never decrypts
	// what it wrapped.
	wrapper := loadRSA(t, s, hsmapi.FlagKeyEncipherment)
	blob, err := s.WrapKey(ctx, wrapper.UUID, secret.UUID, oaep)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []hsmapi.KeyInfo{wrapper, both} {
		pt, err := s.Decrypt(ctx, w.UUID, oaepSHA256, blob)
		if !errors.Is(err, hsmapi.ErrForbidden) || pt != nil {
			t.Errorf("decrypt a wrapped key with a key with %v: %x, %v; want ErrForbidden and nothing", w.Flags, pt, err)
		}
	}
	// Nor may an AES key be made that both wraps and decrypts.
	n := keyCount(t, s)
	if _, err := s.GenerateSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 256, Flags: wrapFlags | hsmapi.FlagDataEncipherment}); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("AES key that wraps and decrypts: %v", err)
	}
	if keyCount(t, s) != n {
		t.Error("a refused key was stored")
	}
}

// TestAttackUnwrapThenEncrypt: a key that both unwraps and encrypts would
// let a user make a key of a value they chose (encrypt it, unwrap the
// result) and wrap sensitive keys under it. Here neither step is allowed
// to such a key, and a key that unwraps never encrypts.
func TestAttackUnwrapThenEncrypt(t *testing.T) {
	h, _ := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	both := loadRSA(t, s, hsmapi.FlagKeyEncipherment|hsmapi.FlagDataEncipherment)
	unwrapper := loadRSA(t, s, hsmapi.FlagKeyEncipherment)
	encrypter := loadRSA(t, s, hsmapi.FlagDataEncipherment)
	chosen := bytes.Repeat([]byte{0x42}, 32)
	for _, w := range []hsmapi.KeyInfo{both, unwrapper} {
		ct, err := s.Encrypt(ctx, w.UUID, oaepSHA256, chosen)
		if !errors.Is(err, hsmapi.ErrForbidden) || ct != nil {
			t.Errorf("encrypt with a key with %v: %x, %v; want ErrForbidden", w.Flags, ct, err)
		}
	}
	// The blob as the key that encrypts would make it (RSA-OAEP is public
	// arithmetic: anyone can).
	blob, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &softRSA().PublicKey, chosen, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := keyCount(t, s)
	for _, w := range []hsmapi.KeyInfo{both, encrypter} {
		k, err := s.UnwrapKey(ctx, w.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAOAEP, OAEP: oaepSHA256}, blob,
			hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeAES, Flags: wrapFlags})
		if !errors.Is(err, hsmapi.ErrForbidden) || !k.UUID.IsZero() {
			t.Errorf("unwrap with a key with %v: %v; want ErrForbidden", w.Flags, err)
		}
	}
	if keyCount(t, s) != n {
		t.Error("a refused unwrap stored a key")
	}
	// An unwrapped key never gets both either.
	if _, err := s.UnwrapKey(ctx, unwrapper.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAOAEP, OAEP: oaepSHA256}, blob,
		hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeAES, Flags: wrapFlags | hsmapi.FlagDataEncipherment}); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("unwrap into a key that wraps and encrypts: %v", err)
	}
	if keyCount(t, s) != n {
		t.Error("a refused unwrap stored a key")
	}
}

// TestAttackSensitiveOff: CKA_SENSITIVE is never turned off, on a secret
// key or a private key that has it; nor deleted.
func TestAttackSensitiveOff(t *testing.T) {
	h, _ := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	secret := genAES(t, s, 128, secretFlags|hsmapi.FlagToken)
	private := loadRSA(t, s, signFlags|hsmapi.FlagExportable, hsmapi.Attribute{Type: hsmapi.CKASensitive, Value: []byte{1}})
	for _, k := range []hsmapi.KeyInfo{secret, private} {
		before, n := attrsOf(t, s, k.UUID), keyCount(t, s)
		for name, a := range map[string]hsmapi.Attribute{
			"false":   {Type: hsmapi.CKASensitive, Value: []byte{0}},
			"empty":   {Type: hsmapi.CKASensitive, Value: []byte{}},
			"deleted": {Type: hsmapi.CKASensitive, Delete: true},
		} {
			if err := s.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{a}); !errors.Is(err, hsmapi.ErrForbidden) {
				t.Errorf("%v: CKA_SENSITIVE %s: %v; want ErrForbidden", k.Type, name, err)
			}
			unchanged(t, s, "CKA_SENSITIVE "+name, n, k.UUID, before)
		}
	}
	// The secret key's history attributes are the HSM's, too.
	before, n := attrsOf(t, s, secret.UUID), keyCount(t, s)
	for _, a := range []uint32{hsmapi.CKALocal, hsmapi.CKAAlwaysSensitive, hsmapi.CKANeverExtractable} {
		flipped := []byte{1}
		if before[a] == "01" {
			flipped = []byte{0}
		}
		for _, c := range []hsmapi.Attribute{{Type: a, Value: flipped}, {Type: a, Delete: true}} {
			if err := s.SetAttributes(ctx, secret.UUID, []hsmapi.Attribute{c}); !errors.Is(err, hsmapi.ErrForbidden) {
				t.Errorf("attribute 0x%x of a secret key to %x (delete %v): %v", a, c.Value, c.Delete, err)
			}
		}
		unchanged(t, s, "history", n, secret.UUID, before)
	}
	// What may change does: an ID.
	if err := s.SetAttributes(ctx, secret.UUID, []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: []byte{7}}}); err != nil {
		t.Errorf("CKA_ID of a secret key: %v", err)
	}
}

// TestAttackExtractableOn: CKA_EXTRACTABLE is the exportable flag, which
// never changes: setting it true on a key that is not exportable is
// refused, and the key still does not wrap; so is loading a key that
// claims it.
func TestAttackExtractableOn(t *testing.T) {
	h, _ := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	wrapper := genAES(t, s, 256, wrapFlags)
	for _, k := range []hsmapi.KeyInfo{
		genAES(t, s, 128, wrapFlags|hsmapi.FlagToken),
		generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags}),
	} {
		before, n := attrsOf(t, s, k.UUID), keyCount(t, s)
		if err := s.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: hsmapi.CKAExtractable, Value: []byte{1}}}); !errors.Is(err, hsmapi.ErrForbidden) {
			t.Errorf("%v: CKA_EXTRACTABLE on: %v; want ErrForbidden", k.Type, err)
		}
		unchanged(t, s, "CKA_EXTRACTABLE", n, k.UUID, before)
		blob, err := s.WrapKey(ctx, wrapper.UUID, k.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrapKWP})
		if !errors.Is(err, hsmapi.ErrNotExportable) || blob != nil {
			t.Errorf("%v: wrap of a key not exportable: %x, %v", k.Type, blob, err)
		}
	}
	n := keyCount(t, s)
	der, err := rsaPKCS8(softRSA())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: signFlags,
		Attributes: []hsmapi.Attribute{{Type: hsmapi.CKAExtractable, Value: []byte{1}}}}); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("load a key that claims CKA_EXTRACTABLE without the flag: %v", err)
	}
	if keyCount(t, s) != n {
		t.Error("a refused load stored a key")
	}
}

// TestAttackWrapWithTrustedBypass: a key with CKA_WRAP_WITH_TRUSTED wraps
// only under a key the security officer trusted; the attribute is never
// turned off; once the SO trusts a wrapping key, it wraps.
func TestAttackWrapWithTrustedBypass(t *testing.T) {
	h, _ := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	wwt := hsmapi.Attribute{Type: hsmapi.CKAWrapWithTrusted, Value: []byte{1}}
	targets := []hsmapi.KeyInfo{
		genAES(t, s, 256, secretFlags|hsmapi.FlagToken, wwt),
		loadRSA(t, s, signFlags|hsmapi.FlagExportable|hsmapi.FlagToken, wwt),
	}
	aesW := genAES(t, s, 256, wrapFlags|hsmapi.FlagToken)
	rsaW := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: wrapFlags | hsmapi.FlagToken})
	mechs := map[hsmapi.UUID]hsmapi.WrapMechanism{
		aesW.UUID: {Mechanism: hsmapi.MechAESKeyWrapKWP},
		rsaW.UUID: {Mechanism: hsmapi.MechRSAAESKeyWrap, OAEP: oaepSHA256, AESKeyBits: 128},
	}
	for _, k := range targets {
		for w, m := range mechs {
			blob, err := s.WrapKey(ctx, w, k.UUID, m)
			if !errors.Is(err, hsmapi.ErrForbidden) || blob != nil {
				t.Errorf("%v with CKA_WRAP_WITH_TRUSTED under an untrusted key: %x, %v", k.Type, blob, err)
			}
		}
		before, n := attrsOf(t, s, k.UUID), keyCount(t, s)
		for _, a := range []hsmapi.Attribute{{Type: hsmapi.CKAWrapWithTrusted, Value: []byte{0}}, {Type: hsmapi.CKAWrapWithTrusted, Delete: true}} {
			if err := s.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{a}); !errors.Is(err, hsmapi.ErrForbidden) {
				t.Errorf("%v: CKA_WRAP_WITH_TRUSTED off: %v", k.Type, err)
			}
			unchanged(t, s, "CKA_WRAP_WITH_TRUSTED", n, k.UUID, before)
		}
	}
	so := userSession(t, h, hsmapi.UserSO, soPIN)
	for w, m := range mechs {
		if err := so.SetTrusted(ctx, w, true); err != nil {
			t.Fatal(err)
		}
		for _, k := range targets {
			blob, err := s.WrapKey(ctx, w, k.UUID, m)
			if err != nil {
				t.Fatalf("%v under a trusted key: %v", k.Type, err)
			}
			req := hsmapi.UnwrapRequest{Type: k.Type, Flags: signFlags}
			if k.Type == hsmapi.KeyTypeAES {
				req.Flags = wrapFlags
			}
			if _, err := s.UnwrapKey(ctx, w, m, blob, req); err != nil {
				t.Errorf("unwrap what a trusted key wrapped: %v", err)
			}
		}
	}
	// A key pair's trust is its public key object's, where PKCS#11 keeps
	// it for the key that wraps.
	pub, ok := attrsOf(t, s, rsaW.UUID)[hsmapi.AttributePublicObject]
	if !ok || !bytes.Contains(mustHex(pub), []byte{0, 0, 0, 0x86, 0, 0, 0, 1, 1}) {
		t.Errorf("the trusted RSA key's public object: %s", pub)
	}
}

// trustKEKEK has the security officer of the HSM behind s trust a
// destination's KEKEK: the user stores its public key, the SO marks it
// CKA_TRUSTED. It returns the stored key.
func trustKEKEK(t *testing.T, h *HSM, s *Session, spki []byte) hsmapi.KeyInfo {
	t.Helper()
	res, err := s.Import(ctx, hsmapi.ImportRequest{PublicKey: spki, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken, Label: "trusted KEKEK"})
	if err != nil {
		t.Fatal(err)
	}
	if err := userSession(t, h, hsmapi.UserSO, soPIN).SetTrusted(ctx, res.Key.UUID, true); err != nil {
		t.Fatal(err)
	}
	return res.Key
}

// TestAttackExportWithTrustedBypass: the transfer's Export wraps a key with
// CKA_WRAP_WITH_TRUSTED only to a KEKEK the security officer trusted on
// this HSM. Without the rule the user would export it to a KEKEK of their
// own and read it. A KEKEK stored untrusted, or a trusted key with another
// public key, does not count; the user cannot make one trusted.
func TestAttackExportWithTrustedBypass(t *testing.T) {
	p := newPair(t)
	srcHSM := p.src.h
	s := userSession(t, srcHSM, hsmapi.UserNormal, userPIN)
	wwt := hsmapi.Attribute{Type: hsmapi.CKAWrapWithTrusted, Value: []byte{1}}
	guarded := loadRSA(t, s, signFlags|hsmapi.FlagExportable, wwt)
	plain := loadRSA(t, s, signFlags|hsmapi.FlagExportable)
	kekek := parseKEKEK(t, p.kekek.PublicKey)
	export := func(k hsmapi.KeyInfo) (hsmapi.WrappedKey, error) {
		return s.Export(ctx, hsmapi.ExportRequest{Key: k.UUID, KEKEKPublicKey: kekek, Encryption: hsmapi.KEKOAEPSHA256})
	}
	refused := func(what string) {
		t.Helper()
		w, err := export(guarded)
		if !errors.Is(err, hsmapi.ErrForbidden) || w.EncryptedKey != nil ||
			!strings.Contains(err.Error(), guarded.UUID.String()) || !strings.Contains(err.Error(), "CKA_TRUSTED") {
			t.Errorf("%s: export of a CKA_WRAP_WITH_TRUSTED key: %v", what, err)
		}
	}
	refused("no KEKEK stored")
	if _, err := export(plain); err != nil {
		t.Fatalf("a key without CKA_WRAP_WITH_TRUSTED: %v", err)
	}

	// The user stores the KEKEK's public key, but may not trust it.
	res, err := s.Import(ctx, hsmapi.ImportRequest{PublicKey: p.kekek.PublicKey, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken})
	if err != nil {
		t.Fatal(err)
	}
	refused("KEKEK stored untrusted")
	if err := s.SetTrusted(ctx, res.Key.UUID, true); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("the user trusts the KEKEK: %v", err)
	}
	refused("KEKEK trusted by the user")
	// A trusted key that is not this KEKEK.
	so := userSession(t, srcHSM, hsmapi.UserSO, soPIN)
	other := loadRSA(t, s, hsmapi.FlagKeyEncipherment|hsmapi.FlagToken)
	if err := so.SetTrusted(ctx, other.UUID, true); err != nil {
		t.Fatal(err)
	}
	refused("another key trusted")

	// The SO trusts it: the key leaves, and arrives whole.
	if err := so.SetTrusted(ctx, res.Key.UUID, true); err != nil {
		t.Fatal(err)
	}
	w, err := export(guarded)
	if err != nil {
		t.Fatalf("export to a trusted KEKEK: %v", err)
	}
	got, err := p.dst.Import(ctx, p.importReq(guarded, w, hsmapi.KEKOAEPSHA256, nil))
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("signed on the destination"))
	sig, err := p.dst.Sign(ctx, got.Key.UUID, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := hsmapi.VerifySignature(guarded.PublicKey, digest[:], sig, crypto.SHA256); err != nil {
		t.Errorf("the exported key's signature under the source's public key: %v", err)
	}
	// Trust taken back: refused again.
	if err := s.SetAttributes(ctx, res.Key.UUID, []hsmapi.Attribute{{Type: hsmapi.CKATrusted, Value: []byte{0}}}); err != nil {
		t.Fatal(err)
	}
	refused("trust cleared")
}

// TestAttackTrustedByUser: the normal user never makes a key trusted: not
// by setting CKA_TRUSTED, on the key or its public object, nor by creating,
// loading, importing or unwrapping a key that has it, nor with SetTrusted.
func TestAttackTrustedByUser(t *testing.T) {
	h, _ := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	trusted := hsmapi.Attribute{Type: hsmapi.CKATrusted, Value: []byte{1}}
	trustedPub := hsmapi.Attribute{Type: hsmapi.AttributePublicObject, Value: hsmapi.EncodeAttributes([]hsmapi.Attribute{trusted})}
	aesW := genAES(t, s, 256, wrapFlags|hsmapi.FlagToken)
	rsaW := loadRSA(t, s, wrapFlags|hsmapi.FlagToken)
	for _, k := range []hsmapi.KeyInfo{aesW, rsaW} {
		before, n := attrsOf(t, s, k.UUID), keyCount(t, s)
		for _, a := range []hsmapi.Attribute{trusted, trustedPub} {
			if err := s.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{a}); !errors.Is(err, hsmapi.ErrForbidden) {
				t.Errorf("%v: the user sets attribute 0x%x with CKA_TRUSTED: %v", k.Type, a.Type, err)
			}
		}
		if err := s.SetTrusted(ctx, k.UUID, true); !errors.Is(err, hsmapi.ErrForbidden) {
			t.Errorf("%v: SetTrusted by the user: %v", k.Type, err)
		}
		unchanged(t, s, "CKA_TRUSTED", n, k.UUID, before)
	}
	n := keyCount(t, s)
	der, err := rsaPKCS8(softRSA())
	if err != nil {
		t.Fatal(err)
	}
	blob, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &softRSA().PublicKey, make([]byte, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []hsmapi.Attribute{trusted, trustedPub} {
		if _, err := s.GenerateSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 128, Flags: wrapFlags, Attributes: []hsmapi.Attribute{a}}); !errors.Is(err, hsmapi.ErrForbidden) {
			t.Errorf("generate with 0x%x trusted: %v", a.Type, err)
		}
		if _, err := s.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: wrapFlags, Attributes: []hsmapi.Attribute{a}}); !errors.Is(err, hsmapi.ErrForbidden) {
			t.Errorf("load with 0x%x trusted: %v", a.Type, err)
		}
		if _, err := s.UnwrapKey(ctx, rsaW.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAOAEP, OAEP: oaepSHA256}, blob,
			hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeAES, Flags: wrapFlags, Attributes: []hsmapi.Attribute{a}}); !errors.Is(err, hsmapi.ErrForbidden) {
			t.Errorf("unwrap with 0x%x trusted: %v", a.Type, err)
		}
		spki := mustPublicSPKI(t)
		if _, err := s.Import(ctx, hsmapi.ImportRequest{PublicKey: spki, Flags: wrapFlags, Attributes: []hsmapi.Attribute{a}}); !errors.Is(err, hsmapi.ErrForbidden) {
			t.Errorf("import with 0x%x trusted: %v", a.Type, err)
		}
	}
	if keyCount(t, s) != n {
		t.Error("a refused key was stored")
	}
	// The SO may, and may take it back; the user may take it back too.
	so := userSession(t, h, hsmapi.UserSO, soPIN)
	if err := so.SetTrusted(ctx, aesW.UUID, true); err != nil {
		t.Fatal(err)
	}
	if got := attrsOf(t, s, aesW.UUID)[hsmapi.CKATrusted]; got != "01" {
		t.Errorf("after SetTrusted by the SO: CKA_TRUSTED %q", got)
	}
	if err := s.SetAttributes(ctx, aesW.UUID, []hsmapi.Attribute{{Type: hsmapi.CKATrusted, Value: []byte{0}}}); err != nil {
		t.Errorf("the user clears CKA_TRUSTED: %v", err)
	}
}

// TestAttackUnwrappedClaimsHistory: an unwrapped key says it was not made
// here and was not always kept in, and cannot be made to say otherwise.
func TestAttackUnwrappedClaimsHistory(t *testing.T) {
	h, _ := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	w := genAES(t, s, 256, wrapFlags)
	target := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
	kwp := hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrapKWP}
	blob, err := s.WrapKey(ctx, w.UUID, target.UUID, kwp)
	if err != nil {
		t.Fatal(err)
	}
	n := keyCount(t, s)
	for _, a := range []uint32{hsmapi.CKALocal, hsmapi.CKAAlwaysSensitive, hsmapi.CKANeverExtractable} {
		if _, err := s.UnwrapKey(ctx, w.UUID, kwp, blob, hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeECPrivate, Flags: signFlags,
			Attributes: []hsmapi.Attribute{{Type: a, Value: []byte{1}}}}); !errors.Is(err, hsmapi.ErrBadArguments) {
			t.Errorf("unwrap claiming 0x%x: %v", a, err)
		}
	}
	if keyCount(t, s) != n {
		t.Error("a refused unwrap stored a key")
	}
	u, err := s.UnwrapKey(ctx, w.UUID, kwp, blob, hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeECPrivate, Flags: signFlags})
	if err != nil {
		t.Fatal(err)
	}
	before := attrsOf(t, s, u.UUID)
	for _, a := range []uint32{hsmapi.CKALocal, hsmapi.CKAAlwaysSensitive, hsmapi.CKANeverExtractable} {
		if err := s.SetAttributes(ctx, u.UUID, []hsmapi.Attribute{{Type: a, Value: []byte{1}}}); !errors.Is(err, hsmapi.ErrForbidden) {
			t.Errorf("set 0x%x on an unwrapped key: %v", a, err)
		}
	}
	unchanged(t, s, "history", n+1, u.UUID, before)
}

// TestTrustCandidates: the SO, shown no keys by Keys, is shown by
// TrustCandidates every token key with its attributes (CKA_TRUSTED as it
// set it); the user is refused.
func TestTrustCandidates(t *testing.T) {
	h, _ := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	aesW := genAES(t, s, 256, wrapFlags|hsmapi.FlagToken)
	rsaW := loadRSA(t, s, wrapFlags|hsmapi.FlagToken)
	if _, err := s.TrustCandidates(ctx); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("TrustCandidates for the user: %v", err)
	}
	so := userSession(t, h, hsmapi.UserSO, soPIN)
	if _, err := so.Keys(ctx, hsmapi.Filter{}); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Fatalf("Keys for the SO: %v", err)
	}
	if err := so.SetTrusted(ctx, rsaW.UUID, true); err != nil {
		t.Fatal(err)
	}
	cands, err := so.TrustCandidates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[hsmapi.UUID]hsmapi.TrustCandidate{}
	for _, c := range cands {
		got[c.Key.UUID] = c
	}
	if len(cands) != 2 || got[aesW.UUID].Key.Type != hsmapi.KeyTypeAES || got[rsaW.UUID].Key.Type != rsaW.Type {
		t.Fatalf("candidates %+v, want the AES and the RSA key", cands)
	}
	for id, c := range got {
		have := map[uint32]string{}
		for _, a := range c.Attributes {
			have[a.Type] = hex.EncodeToString(a.Value)
		}
		if want := attrsOf(t, s, id); !maps.Equal(have, want) {
			t.Errorf("attributes of %s: %v, want %v", id, have, want)
		}
	}
	if pub, _ := hsmapi.DecodeAttributes(mustHex(attrsOf(t, s, rsaW.UUID)[hsmapi.AttributePublicObject])); len(pub) != 1 || pub[0].Type != hsmapi.CKATrusted {
		t.Errorf("the RSA key's public object after SetTrusted: %v", pub)
	}
}
