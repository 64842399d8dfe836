package cryptoki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
	"github.com/hsmkit/cryptech-backup/internal/sigder"
)

var oaepSHA256 = &OAEPParams{Hash: MechSHA256, MGF: 2}

// genAES runs C_GenerateKey for an AES key of size bytes.
func genAES(t *testing.T, m *Module, h uint, size uint64, extra ...Attribute) uint {
	t.Helper()
	tmpl := append([]Attribute{ul(attrClass, ClassSecretKey), ul(attrKeyType, KeyTypeAES), ul(attrValueLen, size)}, extra...)
	k, rv := m.GenerateKey(h, Mechanism{Type: MechAESKeyGen}, tmpl)
	if rv != OK {
		t.Fatalf("GenerateKey: %#x", rv)
	}
	return k
}

// wrap runs C_WrapKey, asking the length first.
func wrap(t *testing.T, m *Module, h uint, mech Mechanism, wrapping, key uint) []byte {
	t.Helper()
	_, n, rv := m.WrapKey(h, mech, wrapping, key, Output{Query: true})
	if rv != OK {
		t.Fatalf("WrapKey (length) %#x: %#x", mech.Type, rv)
	}
	if _, _, rv := m.WrapKey(h, mech, wrapping, key, Output{Room: n - 1}); rv != BufferTooSmall {
		t.Fatalf("WrapKey with too little room: %#x", rv)
	}
	out, got, rv := m.WrapKey(h, mech, wrapping, key, Output{Room: n})
	if rv != OK || got != n || len(out) != n {
		t.Fatalf("WrapKey %#x: %#x, %d bytes (said %d)", mech.Type, rv, got, n)
	}
	return out
}

// TestSecretKeysThroughTheModule: an AES key made with C_GenerateKey is a
// secret key object whose value is sensitive; C_WrapKey and C_UnwrapKey
// move an EC key through each AES wrap and CKM_RSA_AES_KEY_WRAP, and the
// unwrapped key signs under the original's public key; RSA-OAEP encrypts
// and decrypts.
func TestSecretKeysThroughTheModule(t *testing.T) {
	m, h := loggedIn(t)
	aes := genAES(t, m, h, 32, bl(attrToken, true), str(attrLabel, "kek"), by(attrID, []byte{7}))
	got := getAll(t, m, h, aes, attrClass, attrKeyType, attrValueLen, attrWrap, attrUnwrap, attrEncrypt, attrSensitive, attrExtractable,
		attrLocal, attrAlwaysSensitive, attrNeverExtractable, attrKeyGenMechanism, attrID, attrLabel, attrPrivate)
	for a, want := range map[uint][]byte{
		attrClass: ulongValue(ClassSecretKey), attrKeyType: ulongValue(KeyTypeAES), attrValueLen: ulongValue(32),
		attrWrap: {1}, attrUnwrap: {1}, attrEncrypt: {0}, attrSensitive: {1}, attrExtractable: {0}, attrLocal: {1},
		attrAlwaysSensitive: {1}, attrNeverExtractable: {1}, attrKeyGenMechanism: ulongValue(MechAESKeyGen),
		attrID: {7}, attrLabel: []byte("kek"), attrPrivate: {1},
	} {
		if !bytes.Equal(got[a], want) {
			t.Errorf("attribute %#x = %x, want %x", a, got[a], want)
		}
	}
	buf := []AttributeBuffer{{Type: attrValue, Buf: make([]byte, 64)}}
	if rv := m.GetAttributeValue(h, aes, buf); rv != AttributeSensitive {
		t.Errorf("CKA_VALUE of an AES key: %#x", rv)
	}
	if found := find(t, m, h, ul(attrClass, ClassSecretKey)); len(found) != 1 || found[0] != aes {
		t.Errorf("find secret keys: %v", found)
	}

	ec := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagExportable})
	ecPriv, _ := objectsOf(t, m, h, ec.UUID)
	rsaKey := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagKeyEncipherment})
	rsaPriv, rsaPub := objectsOf(t, m, h, rsaKey.UUID)
	ecTmpl := []Attribute{ul(attrClass, ClassPrivateKey), ul(attrKeyType, KeyTypeEC), bl(attrSign, true)}
	digest := sha256.Sum256([]byte("m"))
	for _, c := range []struct {
		mech      Mechanism
		wrap, unw uint
	}{
		{Mechanism{Type: MechAESKeyWrapKWP}, aes, aes},
		{Mechanism{Type: MechAESKeyWrapPad}, aes, aes},
		{Mechanism{Type: MechRSAAESKeyWrap, OAEP: oaepSHA256, AESKeyBits: 256}, rsaPub, rsaPriv},
	} {
		blob := wrap(t, m, h, c.mech, c.wrap, ecPriv)
		u, rv := m.UnwrapKey(h, c.mech, c.unw, blob, ecTmpl)
		if rv != OK {
			t.Fatalf("UnwrapKey %#x: %#x", c.mech.Type, rv)
		}
		if got := getAll(t, m, h, u, attrLocal, attrClass); !bytes.Equal(got[attrLocal], []byte{0}) || !bytes.Equal(got[attrClass], ulongValue(ClassPrivateKey)) {
			t.Errorf("%#x: unwrapped key %v", c.mech.Type, got)
		}
		sig := sign(t, m, h, Mechanism{Type: MechECDSA}, u, digest[:])
		pub, err := hsmapi.ParsePublicKey(ec.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		der, err := sigder.ECDSARawToDER(sig, 32)
		if err != nil {
			t.Fatal(err)
		}
		if err := hsmapi.VerifyDigest(pub, digest[:], der, crypto.SHA256); err != nil {
			t.Errorf("%#x: the unwrapped key's signature: %v", c.mech.Type, err)
		}
		blob[len(blob)/2] ^= 1
		if _, rv := m.UnwrapKey(h, c.mech, c.unw, blob, ecTmpl); rv != wrappedKeyInvalid {
			t.Errorf("%#x: a flipped blob: %#x", c.mech.Type, rv)
		}
	}

	dec := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagDataEncipherment})
	decPriv, decPub := objectsOf(t, m, h, dec.UUID)
	oaep := Mechanism{Type: MechRSAPKCSOAEP, OAEP: oaepSHA256}
	if rv := m.EncryptInit(h, oaep, decPub); rv != OK {
		t.Fatal(rv)
	}
	ct, _, rv := m.Encrypt(h, []byte("data"), Output{Room: 256})
	if rv != OK || len(ct) != 256 {
		t.Fatalf("Encrypt: %#x, %d bytes", rv, len(ct))
	}
	if rv := m.DecryptInit(h, oaep, decPriv); rv != OK {
		t.Fatal(rv)
	}
	pt, _, rv := m.Decrypt(h, ct, Output{Room: 256})
	if rv != OK || !bytes.Equal(pt, []byte("data")) {
		t.Errorf("Decrypt: %q, %#x", pt, rv)
	}
}

// TestModuleAttacks: the attacks of docs/key-policy.md through the module
// are refused with the specification's return values, and leave no key.
func TestModuleAttacks(t *testing.T) {
	m, h := loggedIn(t)
	secret := genAES(t, m, h, 32, bl(attrExtractable, true))
	both := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagDataEncipherment})
	bothPriv, bothPub := objectsOf(t, m, h, both.UUID)
	rsaAES := Mechanism{Type: MechRSAAESKeyWrap, OAEP: oaepSHA256, AESKeyBits: 128}
	oaep := Mechanism{Type: MechRSAPKCSOAEP, OAEP: oaepSHA256}
	n := allKeys(t, m)
	// Wrap then decrypt.
	if _, _, rv := m.WrapKey(h, rsaAES, bothPub, secret, Output{Query: true}); rv != KeyFunctionNotPermitted {
		t.Errorf("wrap under a key that also decrypts: %#x", rv)
	}
	if rv := m.DecryptInit(h, oaep, bothPriv); rv != KeyFunctionNotPermitted {
		t.Errorf("decrypt with a key that also unwraps: %#x", rv)
	}
	// Unwrap then encrypt.
	if rv := m.EncryptInit(h, oaep, bothPub); rv != KeyFunctionNotPermitted {
		t.Errorf("encrypt with a key that also wraps: %#x", rv)
	}
	if _, rv := m.UnwrapKey(h, oaep, bothPriv, make([]byte, 256), []Attribute{ul(attrClass, ClassSecretKey), ul(attrKeyType, KeyTypeAES)}); rv != KeyFunctionNotPermitted {
		t.Errorf("unwrap with a key that also decrypts: %#x", rv)
	}
	// CKA_SENSITIVE off, CKA_EXTRACTABLE on, CKA_TRUSTED by the user.
	fixed := genAES(t, m, h, 16)
	for _, a := range []Attribute{bl(attrSensitive, false), bl(attrExtractable, true), bl(attrTrusted, true)} {
		if rv := m.SetAttributeValue(h, fixed, []Attribute{a}); rv == OK {
			t.Errorf("C_SetAttributeValue %#x on an AES key: OK", a.Type)
		}
	}
	if _, _, rv := m.WrapKey(h, Mechanism{Type: MechAESKeyWrapKWP}, secret, fixed, Output{Query: true}); rv != keyUnextractable {
		t.Errorf("wrap of a key not extractable: %#x", rv)
	}
	// Wrap with trusted.
	guarded := genAES(t, m, h, 32, bl(attrExtractable, true), bl(attrWrapWithTrusted, true))
	if _, _, rv := m.WrapKey(h, Mechanism{Type: MechAESKeyWrapKWP}, fixed, guarded, Output{Query: true}); rv != KeyFunctionNotPermitted {
		t.Errorf("wrap a CKA_WRAP_WITH_TRUSTED key under an untrusted key: %#x", rv)
	}
	if rv := m.SetAttributeValue(h, guarded, []Attribute{bl(attrWrapWithTrusted, false)}); rv == OK {
		t.Error("CKA_WRAP_WITH_TRUSTED turned off")
	}
	if got := allKeys(t, m); got != n+2 {
		t.Errorf("%d keys, want the %d before and the two generated", got, n)
	}
	ck := getAll(t, m, h, fixed, attrSensitive, attrExtractable, attrTrusted)
	if !bytes.Equal(ck[attrSensitive], []byte{1}) || !bytes.Equal(ck[attrExtractable], []byte{0}) || !bytes.Equal(ck[attrTrusted], []byte{0}) {
		t.Errorf("the refused changes show: %v", ck)
	}
}

// allKeys counts the key pairs and the secret keys of the module's HSM.
func allKeys(t *testing.T, m *Module) int {
	t.Helper()
	n := 0
	for _, f := range []hsmapi.Filter{{}, {Type: hsmapi.KeyTypeAES}} {
		keys, err := tokenOf(m).Keys(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		n += len(keys)
	}
	return n
}

// TestWrapAndUnwrapTemplates: a wrapping key's CKA_WRAP_TEMPLATE limits
// what it wraps, an unwrapping key's CKA_UNWRAP_TEMPLATE is given to what
// it unwraps, and an application's template may not contradict it.
func TestWrapAndUnwrapTemplates(t *testing.T) {
	m, h := loggedIn(t)
	nested := func(attrs ...Attribute) []byte {
		var list []hsmapi.Attribute
		for _, a := range attrs {
			list = append(list, hsmapi.Attribute{Type: uint32(a.Type), Value: a.Value})
		}
		return hsmapi.EncodeAttributes(list)
	}
	w := genAES(t, m, h, 32, by(attrWrapTemplate, nested(ul(attrKeyType, KeyTypeAES))),
		by(attrUnwrapTemplate, nested(bl(attrExtractable, false))))
	ec := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagExportable})
	ecPriv, _ := objectsOf(t, m, h, ec.UUID)
	kwp := Mechanism{Type: MechAESKeyWrapKWP}
	if _, _, rv := m.WrapKey(h, kwp, w, ecPriv, Output{Query: true}); rv != keyNotWrappable {
		t.Errorf("wrap a key its CKA_WRAP_TEMPLATE does not match: %#x", rv)
	}
	target := genAES(t, m, h, 16, bl(attrExtractable, true))
	blob := wrap(t, m, h, kwp, w, target)
	aesTmpl := []Attribute{ul(attrClass, ClassSecretKey), ul(attrKeyType, KeyTypeAES)}
	if _, rv := m.UnwrapKey(h, kwp, w, blob, append(aesTmpl, bl(attrExtractable, true))); rv != TemplateInconsistent {
		t.Errorf("unwrap against CKA_UNWRAP_TEMPLATE: %#x", rv)
	}
	u, rv := m.UnwrapKey(h, kwp, w, blob, aesTmpl)
	if rv != OK {
		t.Fatalf("unwrap: %#x", rv)
	}
	if got := getAll(t, m, h, u, attrExtractable); !bytes.Equal(got[attrExtractable], []byte{0}) {
		t.Errorf("the unwrapped key did not get CKA_UNWRAP_TEMPLATE's CKA_EXTRACTABLE: %x", got[attrExtractable])
	}
}

// TestCreateSecretKey: C_CreateObject loads an AES key given in the clear
// (what p11 does to make a transfer's binding tag): not local, its value
// sensitive, and it is the value given (what it wraps is RFC 5649 under
// it); C_DestroyObject destroys it, and a generated one, whole. Templates
// that contradict themselves make nothing.
func TestCreateSecretKey(t *testing.T) {
	m, h := loggedIn(t)
	value := bytes.Repeat([]byte{0x3c}, 32)
	before := allKeys(t, m)
	for name, tmpl := range map[string][]Attribute{
		"value and length disagree": {ul(attrValueLen, 16)},
		"not an AES size":           {by(attrValue, value[:20])},
		"encrypts":                  {bl(attrEncrypt, true)},
		"says it is local":          {bl(attrLocal, true)},
	} {
		full := append([]Attribute{ul(attrClass, ClassSecretKey), ul(attrKeyType, KeyTypeAES), by(attrValue, value)}, tmpl...)
		if _, rv := m.CreateObject(h, full); rv == OK {
			t.Errorf("%s: created", name)
		}
	}
	if n := allKeys(t, m); n != before {
		t.Fatalf("refused templates made %d keys", n-before)
	}
	k, rv := m.CreateObject(h, []Attribute{ul(attrClass, ClassSecretKey), ul(attrKeyType, KeyTypeAES), by(attrValue, value),
		bl(attrExtractable, true), bl(attrToken, false)})
	if rv != OK {
		t.Fatalf("CreateObject: %#x", rv)
	}
	got := getAll(t, m, h, k, attrLocal, attrAlwaysSensitive, attrSensitive, attrValueLen)
	for a, want := range map[uint][]byte{attrLocal: {0}, attrAlwaysSensitive: {0}, attrSensitive: {1}, attrValueLen: ulongValue(32)} {
		if !bytes.Equal(got[a], want) {
			t.Errorf("attribute %#x: %x, want %x", a, got[a], want)
		}
	}
	other := genAES(t, m, h, 16, bl(attrExtractable, true))
	kwp := Mechanism{Type: MechAESKeyWrapKWP}
	wrapped := wrap(t, m, h, kwp, k, other)
	if inner, err := keywrap.UnwrapPad(value, wrapped); err != nil || len(inner) != 16 {
		t.Fatalf("what the loaded key wrapped does not unwrap under the value given: %v", err)
	}
	self := wrap(t, m, h, kwp, other, k)
	if len(self) != 40 {
		t.Fatalf("the loaded key wrapped in %d bytes", len(self))
	}
	for _, o := range []uint{k, other} {
		if rv := m.DestroyObject(h, o); rv != OK {
			t.Fatalf("DestroyObject of a secret key: %#x", rv)
		}
	}
	if n := allKeys(t, m); n != before {
		t.Errorf("%d keys left behind", n-before)
	}
}
