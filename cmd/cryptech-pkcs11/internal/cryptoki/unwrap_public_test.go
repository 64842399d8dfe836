package cryptoki

import (
	"bytes"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// publicObject is attrPublicObject's value as the C side hands it over.
func publicObject(attrs ...Attribute) Attribute {
	list := make([]hsmapi.Attribute, len(attrs))
	for i, a := range attrs {
		list[i] = hsmapi.Attribute{Type: uint32(a.Type), Value: a.Value}
	}
	return Attribute{Type: attrPublicObject, Value: hsmapi.EncodeAttributes(list)}
}

// TestUnwrapWithPublicObject: C_UnwrapKey of a private key with its public
// key object's attributes (attrPublicObject) makes the key pair with both
// objects as asked, CKA_PRIVATE true and CKA_MODIFIABLE false on the
// public object included, which no C_SetAttributeValue could give it
// afterwards. A public template that grants more than the private one, or
// that PKCS#11 refuses for a new public key, is refused before anything is
// stored. In process and over RPC (EXT_UNWRAP_KEY carries the
// attributes).
func TestUnwrapWithPublicObject(t *testing.T) {
	t.Run("in process", func(t *testing.T) { unwrapWithPublicObject(t, loggedIn) })
	t.Run("over RPC", func(t *testing.T) { unwrapWithPublicObject(t, loggedInOverRPC) })
}

func unwrapWithPublicObject(t *testing.T, module func(*testing.T) (*Module, uint)) {
	m, h := module(t)
	aes := genAES(t, m, h, 32)
	ec := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagExportable})
	ecPriv, _ := objectsOf(t, m, h, ec.UUID)
	kwp := Mechanism{Type: MechAESKeyWrapKWP}
	blob := wrap(t, m, h, kwp, aes, ecPriv)

	id := []byte("arrived")
	privT := []Attribute{ul(attrClass, ClassPrivateKey), ul(attrKeyType, KeyTypeEC), bl(attrToken, true), bl(attrSign, true),
		bl(attrDecrypt, false), by(attrID, id), str(attrLabel, "pair"), bl(attrModifiable, false)}
	pubAttrs := []Attribute{bl(attrPrivate, true), bl(attrModifiable, false), bl(attrVerify, true), bl(attrEncrypt, false),
		by(attrID, id), str(attrLabel, "pair, public"), bl(attrDestroyable, true), by(attrSubject, []byte{0x30, 0}), bl(attrToken, true)}

	for _, c := range []struct {
		name string
		pub  Attribute
		want RV
	}{
		{"a usage the private key lacks", publicObject(bl(attrVerify, true), bl(attrEncrypt, true)), TemplateInconsistent},
		{"a usage the private key has, turned off", publicObject(bl(attrVerify, false)), TemplateInconsistent},
		{"CKA_TRUSTED", publicObject(bl(attrTrusted, true)), AttributeReadOnly},
		{"the key's own value", publicObject(by(attrECPoint, []byte{4, 1, 2})), TemplateInconsistent},
		{"an attribute only the HSM sets", publicObject(bl(attrLocal, true)), AttributeReadOnly},
		{"another class", publicObject(ul(attrClass, ClassPrivateKey)), TemplateInconsistent},
		{"another key type", publicObject(ul(attrKeyType, KeyTypeRSA)), TemplateInconsistent},
		{"a session object beside a token key", publicObject(bl(attrToken, false)), TemplateInconsistent},
		{"an unknown attribute", publicObject(bl(0x8000_0001, true)), AttributeTypeInvalid},
		{"a malformed list", Attribute{Type: attrPublicObject, Value: []byte{0, 0, 0, 1}}, AttributeValueInvalid},
	} {
		before := allKeys(t, m)
		if _, rv := m.UnwrapKey(h, kwp, aes, blob, append(privT[:len(privT):len(privT)], c.pub)); rv != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, rv, c.want)
		}
		if n := allKeys(t, m); n != before {
			t.Errorf("%s: %d keys after the refusal, %d before", c.name, n, before)
		}
	}
	aesT := []Attribute{ul(attrClass, ClassSecretKey), ul(attrKeyType, KeyTypeAES), publicObject(bl(attrVerify, true))}
	if _, rv := m.UnwrapKey(h, kwp, aes, wrap(t, m, h, kwp, aes, genAES(t, m, h, 16, bl(attrExtractable, true))), aesT); rv != TemplateInconsistent {
		t.Errorf("a secret key with a public object: %#x", rv)
	}

	priv, rv := m.UnwrapKey(h, kwp, aes, blob, append(privT[:len(privT):len(privT)], publicObject(pubAttrs...)))
	if rv != OK {
		t.Fatalf("UnwrapKey with the public object's attributes: %#x", rv)
	}
	pubs := find(t, m, h, ul(attrClass, ClassPublicKey), by(attrID, id))
	if len(pubs) != 1 {
		t.Fatalf("%d public objects with the key's CKA_ID", len(pubs))
	}
	types := []uint{attrPrivate, attrModifiable, attrVerify, attrEncrypt, attrWrap, attrID, attrLabel, attrDestroyable, attrSubject, attrToken, attrECPoint}
	got := getAll(t, m, h, pubs[0], types...)
	for _, a := range pubAttrs {
		if !bytes.Equal(got[a.Type], a.Value) {
			t.Errorf("public object, attribute %#x: %x, want %x", a.Type, got[a.Type], a.Value)
		}
	}
	if !bytes.Equal(got[attrWrap], []byte{0}) || len(got[attrECPoint]) == 0 {
		t.Errorf("public object: CKA_WRAP %x, CKA_EC_POINT %x", got[attrWrap], got[attrECPoint])
	}
	if p := getAll(t, m, h, priv, attrLabel, attrModifiable, attrPrivate); string(p[attrLabel]) != "pair" || !bytes.Equal(p[attrModifiable], []byte{0}) || !bytes.Equal(p[attrPrivate], []byte{1}) {
		t.Errorf("private object: %v", p)
	}
	// Made so, and staying so.
	if rv := m.SetAttributeValue(h, pubs[0], []Attribute{str(attrLabel, "renamed")}); rv != ActionProhibited {
		t.Errorf("C_SetAttributeValue on a public object made unmodifiable: %#x", rv)
	}
	// The public object's attribute is the module's to take, not an
	// attribute of any object.
	buf := []AttributeBuffer{{Type: attrPublicObject, Buf: make([]byte, 64)}}
	if rv := m.GetAttributeValue(h, priv, buf); rv != AttributeTypeInvalid {
		t.Errorf("C_GetAttributeValue of attrPublicObject: %#x", rv)
	}
	if _, _, rv := m.GenerateKeyPair(h, MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params)},
		[]Attribute{publicObject(bl(attrVerify, true))}); rv != AttributeTypeInvalid {
		t.Errorf("C_GenerateKeyPair with attrPublicObject: %#x", rv)
	}
}
