package cryptoki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/asn1"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// Template entries, as C would give them.
func ul(t uint, v uint64) Attribute  { return Attribute{t, ulongValue(v)} }
func bl(t uint, v bool) Attribute    { return Attribute{t, boolValue(v)} }
func by(t uint, v []byte) Attribute  { return Attribute{t, v} }
func str(t uint, v string) Attribute { return Attribute{t, []byte(v)} }
func uls(t uint, vs ...uint64) Attribute {
	var b []byte
	for _, v := range vs {
		b = append(b, ulongValue(v)...)
	}
	return Attribute{t, b}
}

var p256Params, _ = hsmapi.ECParams(hsmapi.CurveP256)

// hssSmall is the quickest HSS key to make: one level of 32 signatures.
var hssSmall = []Attribute{
	ul(attrHSSLevels, 1),
	uls(attrHSSLMSTypes, uint64(hashsig.LMS_SHA256_M32_H5)),
	uls(attrHSSLMOTSTypes, uint64(hashsig.LMOTS_SHA256_N32_W8)),
}

// keyCount is how many keys the slot's HSM holds.
func keyCount(t *testing.T, m *Module) int {
	t.Helper()
	keys, err := tokenOf(m).Keys(context.Background(), hsmapi.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

func TestGenerateKeyPair(t *testing.T) {
	m, h := loggedIn(t)
	tokenTrue := bl(attrToken, true)
	for _, c := range []struct {
		name      string
		mech      uint
		param     []byte
		pub, priv []Attribute
		want      RV
		check     func(t *testing.T, k hsmapi.KeyInfo)
	}{
		{"RSA 2048", MechRSAKeyPairGen, nil,
			[]Attribute{tokenTrue, ul(attrModulusBits, 2048), by(attrPublicExponent, []byte{1, 0, 1}), str(attrLabel, "rsa"), by(attrID, []byte{1})},
			[]Attribute{tokenTrue, str(attrLabel, "rsa"), by(attrID, []byte{1}), bl(attrSign, true), bl(attrExtractable, true)},
			OK, func(t *testing.T, k hsmapi.KeyInfo) {
				if k.Type != hsmapi.KeyTypeRSAPrivate || k.Bits != 2048 || k.Flags != hsmapi.FlagToken|hsmapi.FlagDigitalSignature|hsmapi.FlagExportable || k.Label != "rsa" {
					t.Errorf("made %+v", k)
				}
			}},
		{"EC P-256 session key", MechECKeyPairGen, nil,
			[]Attribute{by(attrECParams, p256Params), ul(attrClass, ClassPublicKey), ul(attrKeyType, KeyTypeEC)},
			[]Attribute{ul(attrClass, ClassPrivateKey), bl(attrSensitive, true)},
			OK, func(t *testing.T, k hsmapi.KeyInfo) {
				if k.Type != hsmapi.KeyTypeECPrivate || k.Curve != hsmapi.CurveP256 || k.Flags != hsmapi.FlagDigitalSignature {
					t.Errorf("made %+v", k)
				}
			}},
		{"EC P-521, token said once", MechECKeyPairGen, nil,
			[]Attribute{by(attrECParams, mustParams(hsmapi.CurveP521))}, []Attribute{tokenTrue},
			OK, func(t *testing.T, k hsmapi.KeyInfo) {
				if k.Curve != hsmapi.CurveP521 || k.Flags != hsmapi.FlagToken|hsmapi.FlagDigitalSignature {
					t.Errorf("made %+v", k)
				}
			}},
		{"EC P-384 keyencipherment", MechECKeyPairGen, nil,
			[]Attribute{tokenTrue, by(attrECParams, mustParams(hsmapi.CurveP384)), bl(attrWrap, true), bl(attrVerify, false)},
			[]Attribute{tokenTrue, bl(attrUnwrap, true), bl(attrSign, false)},
			OK, func(t *testing.T, k hsmapi.KeyInfo) {
				if k.Curve != hsmapi.CurveP384 || k.Flags != hsmapi.FlagToken|hsmapi.FlagKeyEncipherment {
					t.Errorf("made %+v", k)
				}
			}},
		{"HSS", MechHSSKeyPairGen, nil, []Attribute{tokenTrue}, append([]Attribute{tokenTrue, str(attrLabel, "hss")}, hssSmall...),
			OK, func(t *testing.T, k hsmapi.KeyInfo) {
				if k.Type != hsmapi.KeyTypeHashsigPrivate || k.Hashsig == nil || k.Hashsig.Remaining != 32 {
					t.Errorf("made %+v", k)
				}
			}},

		{"RSA 1024", MechRSAKeyPairGen, nil, []Attribute{ul(attrModulusBits, 1024)}, nil, KeySizeRange, nil},
		{"RSA 2047", MechRSAKeyPairGen, nil, []Attribute{ul(attrModulusBits, 2047)}, nil, KeySizeRange, nil},
		{"RSA 8192", MechRSAKeyPairGen, nil, []Attribute{ul(attrModulusBits, 8192)}, nil, KeySizeRange, nil},
		{"RSA huge", MechRSAKeyPairGen, nil, []Attribute{ul(attrModulusBits, 1<<62)}, nil, KeySizeRange, nil},
		{"RSA no size", MechRSAKeyPairGen, nil, nil, nil, TemplateIncomplete, nil},
		{"RSA exponent 3", MechRSAKeyPairGen, nil, []Attribute{ul(attrModulusBits, 2048), by(attrPublicExponent, []byte{3})}, nil, AttributeValueInvalid, nil},
		{"RSA with a parameter", MechRSAKeyPairGen, []byte{1}, []Attribute{ul(attrModulusBits, 2048)}, nil, MechanismParamInvalid, nil},
		{"EC no curve", MechECKeyPairGen, nil, nil, nil, TemplateIncomplete, nil},
		{"EC secp256k1", MechECKeyPairGen, nil, []Attribute{by(attrECParams, []byte{6, 5, 0x2b, 0x81, 4, 0, 0x0a})}, nil, CurveNotSupported, nil},
		{"EC curves disagree", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params)}, []Attribute{by(attrECParams, mustParams(hsmapi.CurveP384))}, TemplateInconsistent, nil},
		{"unknown mechanism", 0x1234, nil, nil, nil, MechanismInvalid, nil},
		{"class wrong", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params), ul(attrClass, ClassPrivateKey)}, nil, TemplateInconsistent, nil},
		{"key type wrong", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params)}, []Attribute{ul(attrKeyType, KeyTypeRSA)}, TemplateInconsistent, nil},
		{"sign but no verify", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params), bl(attrVerify, false)}, []Attribute{bl(attrSign, true)}, TemplateInconsistent, nil},
		{"token and session", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params), bl(attrToken, false)}, []Attribute{tokenTrue}, TemplateInconsistent, nil},
		{"unwrap and decrypt", MechRSAKeyPairGen, nil, []Attribute{ul(attrModulusBits, 2048)}, []Attribute{bl(attrUnwrap, true), bl(attrDecrypt, true)}, TemplateInconsistent, nil},
		{"wrap and encrypt", MechRSAKeyPairGen, nil, []Attribute{ul(attrModulusBits, 2048), bl(attrWrap, true), bl(attrEncrypt, true)}, nil, TemplateInconsistent, nil},
		{"unknown attribute", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params), bl(0x7777, true)}, nil, AttributeTypeInvalid, nil},
		{"bool of two bytes", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params)}, []Attribute{{attrSign, []byte{1, 0}}}, AttributeValueInvalid, nil},
		{"ulong of four bytes", MechRSAKeyPairGen, nil, []Attribute{{attrModulusBits, []byte{0, 8, 0, 0}}}, nil, AttributeValueInvalid, nil},
		{"bad date", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params), str(attrStartDate, "2026")}, nil, AttributeValueInvalid, nil},
		{"CKA_LOCAL given", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params)}, []Attribute{bl(attrLocal, false)}, AttributeReadOnly, nil},
		{"modulus given", MechRSAKeyPairGen, nil, []Attribute{ul(attrModulusBits, 2048), by(attrModulus, []byte{1})}, nil, TemplateInconsistent, nil},
		{"sign on the public key", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params), bl(attrSign, true)}, nil, TemplateInconsistent, nil},
		{"not sensitive", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params)}, []Attribute{bl(attrSensitive, false)}, AttributeValueInvalid, nil},
		{"trusted by the user", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params), bl(attrTrusted, true)}, nil, AttributeReadOnly, nil},
		{"always authenticate", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params)}, []Attribute{bl(attrAlwaysAuthenticate, true)}, AttributeValueInvalid, nil},
		{"same attribute twice, two values", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params), str(attrLabel, "a"), str(attrLabel, "b")}, nil, TemplateInconsistent, nil},
		{"label too long", MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params)}, []Attribute{by(attrLabel, make([]byte, 5000))}, AttributeValueInvalid, nil},
		{"HSS without levels", MechHSSKeyPairGen, nil, nil, hssSmall[1:], TemplateIncomplete, nil},
		{"HSS levels disagree", MechHSSKeyPairGen, nil, nil, []Attribute{ul(attrHSSLevels, 2), hssSmall[1], hssSmall[2]}, TemplateInconsistent, nil},
		{"HSS unknown type", MechHSSKeyPairGen, nil, nil, []Attribute{hssSmall[0], uls(attrHSSLMSTypes, 0x99), hssSmall[2]}, AttributeValueInvalid, nil},
		{"HSS mixed hashes", MechHSSKeyPairGen, nil, nil, []Attribute{hssSmall[0], hssSmall[1], uls(attrHSSLMOTSTypes, uint64(hashsig.LMOTS_SHA256_N24_W8))}, AttributeValueInvalid, nil},
		{"HSS with a parameter", MechHSSKeyPairGen, make([]byte, 68), nil, hssSmall, MechanismParamInvalid, nil},
		{"HSS copyable", MechHSSKeyPairGen, nil, nil, append([]Attribute{bl(attrCopyable, true)}, hssSmall...), AttributeValueInvalid, nil},
		{"HSS params on the public key", MechHSSKeyPairGen, nil, hssSmall[:1], hssSmall, TemplateInconsistent, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := keyCount(t, m)
			pub, priv, rv := m.GenerateKeyPair(h, c.mech, c.param, c.pub, c.priv)
			if rv != c.want {
				t.Fatalf("GenerateKeyPair: %#x, want %#x", rv, c.want)
			}
			if rv != OK {
				if n := keyCount(t, m); n != before {
					t.Fatalf("%d keys after a refused generation, %d before", n, before)
				}
				return
			}
			po, rv1 := m.keyObject(h, pub)
			so, rv2 := m.keyObject(h, priv)
			if rv1 != OK || rv2 != OK || po.UUID != so.UUID || po.Class != ClassPublicKey || so.Class != ClassPrivateKey {
				t.Fatalf("objects %+v %#x, %+v %#x", po, rv1, so, rv2)
			}
			c.check(t, so.Info)
		})
	}
}

func mustParams(c hsmapi.Curve) []byte {
	p, err := hsmapi.ECParams(c)
	if err != nil {
		panic(err)
	}
	return p
}

func TestGenerateKeyPairState(t *testing.T) {
	m, _ := newModule(t)
	if rv := m.Initialize(nil); rv != OK {
		t.Fatal(rv)
	}
	defer m.Finalize(false)
	ro, _ := m.OpenSession(slotID, FlagSerialSession)
	pubT := []Attribute{by(attrECParams, p256Params), bl(attrToken, true)}
	if _, _, rv := m.GenerateKeyPair(ro, MechECKeyPairGen, nil, pubT, nil); rv != UserNotLoggedIn {
		t.Errorf("not logged in: %#x", rv)
	}
	if rv := m.Login(ro, UserUser, []byte("test-pin")); rv != OK {
		t.Fatal(rv)
	}
	if _, _, rv := m.GenerateKeyPair(ro, MechECKeyPairGen, nil, pubT, nil); rv != SessionReadOnly {
		t.Errorf("token key in a read-only session: %#x", rv)
	}
	if _, _, rv := m.GenerateKeyPair(ro, MechECKeyPairGen, nil, pubT[:1], nil); rv != OK {
		t.Errorf("session key in a read-only session: %#x", rv)
	}
	if _, _, rv := m.GenerateKeyPair(ro+100, MechECKeyPairGen, nil, pubT[:1], nil); rv != SessionHandleInvalid {
		t.Errorf("no such session: %#x", rv)
	}
}

// getAll reads attributes of an object that must all be there.
func getAll(t *testing.T, m *Module, h, obj uint, types ...uint) map[uint][]byte {
	t.Helper()
	tmpl := make([]AttributeBuffer, len(types))
	for i, ty := range types {
		tmpl[i] = AttributeBuffer{Type: ty, Buf: make([]byte, 4096)}
	}
	if rv := m.GetAttributeValue(h, obj, tmpl); rv != OK {
		t.Fatalf("GetAttributeValue(%x): %#x", types, rv)
	}
	out := map[uint][]byte{}
	for _, e := range tmpl {
		out[e.Type] = e.Buf[:e.Len]
	}
	return out
}

func TestGeneratedAttributes(t *testing.T) {
	m, h := loggedIn(t)
	pub, priv, rv := m.GenerateKeyPair(h, MechECKeyPairGen, nil,
		[]Attribute{bl(attrToken, true), by(attrECParams, p256Params), str(attrLabel, "pub label"), by(attrID, []byte("id")), str(attrSubject, "subj")},
		[]Attribute{bl(attrToken, true), str(attrLabel, "key"), by(attrID, []byte("id")), bl(attrWrapWithTrusted, true)})
	if rv != OK {
		t.Fatal(rv)
	}
	o, _ := m.keyObject(h, priv)
	a := getAll(t, m, h, pub, attrClass, attrKeyType, attrLabel, attrID, attrSubject, attrECParams, attrECPoint, attrVerify, attrWrap, attrToken, attrPrivate, attrLocal, attrKeyGenMechanism, attrTrusted)
	want := map[uint][]byte{
		attrClass: ulongValue(ClassPublicKey), attrKeyType: ulongValue(KeyTypeEC), attrLabel: []byte("pub label"),
		attrID: []byte("id"), attrSubject: []byte("subj"), attrECParams: p256Params, attrVerify: {1}, attrWrap: {0},
		attrToken: {1}, attrPrivate: {0}, attrLocal: {1}, attrKeyGenMechanism: ulongValue(MechECKeyPairGen), attrTrusted: {0},
	}
	for ty, w := range want {
		if string(a[ty]) != string(w) {
			t.Errorf("public object's 0x%x = %x, want %x", ty, a[ty], w)
		}
	}
	var point []byte
	if rest, err := asn1.Unmarshal(a[attrECPoint], &point); err != nil || len(rest) != 0 {
		t.Fatalf("CKA_EC_POINT %x is no DER OCTET STRING", a[attrECPoint])
	}
	k, _ := hsmapi.ParsePublicKey(o.Info.PublicKey)
	if got, err := ecdsa.ParseUncompressedPublicKey(k.(*ecdsa.PublicKey).Curve, point); err != nil || !got.Equal(k) {
		t.Errorf("CKA_EC_POINT is not the key's point")
	}
	b := getAll(t, m, h, priv, attrClass, attrLabel, attrID, attrSign, attrSensitive, attrExtractable, attrAlwaysSensitive, attrNeverExtractable, attrPrivate, attrWrapWithTrusted, attrECParams, attrCopyable, attrPublicKeyInfo)
	wantPriv := map[uint][]byte{
		attrClass: ulongValue(ClassPrivateKey), attrLabel: []byte("key"), attrID: []byte("id"), attrSign: {1},
		attrSensitive: {1}, attrExtractable: {0}, attrAlwaysSensitive: {1}, attrNeverExtractable: {1},
		attrPrivate: {1}, attrWrapWithTrusted: {1}, attrECParams: p256Params, attrCopyable: {1}, attrPublicKeyInfo: o.Info.PublicKey,
	}
	for ty, w := range wantPriv {
		if string(b[ty]) != string(w) {
			t.Errorf("private object's 0x%x = %x, want %x", ty, b[ty], w)
		}
	}

	// They survive a restart of the module: they are the HSM's.
	if rv := m.Finalize(false); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.Initialize(nil); rv != OK {
		t.Fatal(rv)
	}
	h2, _ := m.OpenSession(slotID, FlagSerialSession)
	m.Login(h2, UserUser, []byte("test-pin"))
	if rv := m.FindObjectsInit(h2, []Attribute{str(attrLabel, "pub label")}); rv != OK {
		t.Fatal(rv)
	}
	found, _ := m.FindObjects(h2, 10)
	if len(found) != 1 {
		t.Fatalf("after a restart, found %v", found)
	}
	if got := getAll(t, m, h2, found[0], attrID, attrSubject); string(got[attrID]) != "id" || string(got[attrSubject]) != "subj" {
		t.Errorf("after a restart: ID %q, subject %q", got[attrID], got[attrSubject])
	}
}

func TestGetAttributeValueProtocol(t *testing.T) {
	m, h := loggedIn(t)
	pub, priv, rv := m.GenerateKeyPair(h, MechRSAKeyPairGen, nil, []Attribute{ul(attrModulusBits, 2048)}, nil)
	if rv != OK {
		t.Fatal(rv)
	}
	o, _ := m.keyObject(h, pub)
	k, _ := hsmapi.ParsePublicKey(o.Info.PublicKey)
	rk := k.(*rsa.PublicKey)

	// Every entry is answered, whatever the others do.
	tmpl := []AttributeBuffer{
		{Type: attrModulus}, // length only
		{Type: attrPublicExponent, Buf: make([]byte, 3)},    // fits
		{Type: attrPrivateExponent, Buf: make([]byte, 512)}, // sensitive
		{Type: 0x7777, Buf: make([]byte, 8)},                // unknown
		{Type: attrLabel, Buf: []byte{}},                    // empty fits empty
		{Type: attrModulus, Buf: make([]byte, 10)},          // too short
		{Type: attrVerify, Buf: make([]byte, 1)},            // a private key's? no: type invalid
	}
	if rv := m.GetAttributeValue(h, priv, tmpl); rv != AttributeSensitive {
		t.Errorf("mixed template: %#x, want CKR_ATTRIBUTE_SENSITIVE", rv)
	}
	want := []uint{256, 3, Unavailable, Unavailable, 0, Unavailable, Unavailable}
	for i, e := range tmpl {
		if e.Len != want[i] {
			t.Errorf("entry %d (0x%x): length %d, want %d", i, e.Type, e.Len, want[i])
		}
	}
	if string(tmpl[1].Buf) != "\x01\x00\x01" {
		t.Errorf("exponent %x", tmpl[1].Buf)
	}
	for _, c := range []struct {
		name string
		tmpl []AttributeBuffer
		want RV
	}{
		{"type invalid and too small", []AttributeBuffer{{Type: 0x7777}, {Type: attrModulus, Buf: make([]byte, 1)}}, AttributeTypeInvalid},
		{"too small", []AttributeBuffer{{Type: attrModulus, Buf: make([]byte, 255)}}, BufferTooSmall},
		{"fits", []AttributeBuffer{{Type: attrModulus, Buf: make([]byte, 300)}, {Type: attrModulusBits, Buf: make([]byte, 8)}}, OK},
		{"empty template", nil, OK},
	} {
		if rv := m.GetAttributeValue(h, pub, c.tmpl); rv != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, rv, c.want)
		}
		if c.want == OK && len(c.tmpl) == 2 {
			if string(c.tmpl[0].Buf[:c.tmpl[0].Len]) != string(rk.N.Bytes()) {
				t.Error("modulus is not the key's")
			}
			if n, _ := ulongOf(c.tmpl[1].Buf); n != 2048 {
				t.Errorf("modulus bits %d", n)
			}
		}
	}
	if rv := m.GetAttributeValue(h, 99999, nil); rv != ObjectHandleInvalid {
		t.Errorf("no such object: %#x", rv)
	}
	if rv := m.GetAttributeValue(h+1, pub, nil); rv != SessionHandleInvalid {
		t.Errorf("no such session: %#x", rv)
	}
}

func TestHSSAttributes(t *testing.T) {
	m, h := loggedIn(t)
	pub, priv, rv := m.GenerateKeyPair(h, MechHSSKeyPairGen, nil, nil, hssSmall)
	if rv != OK {
		t.Fatal(rv)
	}
	a := getAll(t, m, h, priv, attrKeyType, attrHSSLevels, attrHSSLMSTypes, attrHSSLMOTSTypes, attrHSSKeysRemaining, attrCopyable)
	for ty, w := range map[uint][]byte{
		attrKeyType: ulongValue(KeyTypeHSS), attrHSSLevels: ulongValue(1), attrHSSLMSTypes: hssSmall[1].Value,
		attrHSSLMOTSTypes: hssSmall[2].Value, attrHSSKeysRemaining: ulongValue(32), attrCopyable: {0},
	} {
		if string(a[ty]) != string(w) {
			t.Errorf("private 0x%x = %x, want %x", ty, a[ty], w)
		}
	}
	b := getAll(t, m, h, pub, attrHSSLevels, attrHSSLMSType, attrHSSLMOTSType, attrValue)
	if n, _ := ulongOf(b[attrHSSLMSType]); n != uint64(hashsig.LMS_SHA256_M32_H5) {
		t.Errorf("public LMS type %d", n)
	}
	pk, err := hashsig.ParsePublicKey(b[attrValue])
	if err != nil || pk.Levels() != 1 {
		t.Fatalf("CKA_VALUE is no HSS public key: %v", err)
	}
	o, _ := m.keyObject(h, pub)
	if want, _ := hsmapi.ParsePublicKey(o.Info.PublicKey); !pk.Equal(want) {
		t.Error("CKA_VALUE is not the key's public key")
	}
	// One signature: one key less.
	if _, err := tokenOf(m).Sign(context.Background(), o.UUID, []byte("message"), crypto.Hash(0)); err != nil {
		t.Fatal(err)
	}
	if n, _ := ulongOf(getAll(t, m, h, priv, attrHSSKeysRemaining)[attrHSSKeysRemaining]); n != 31 {
		t.Errorf("keys remaining after a signature: %d", n)
	}
	tmpl := []AttributeBuffer{{Type: attrValue, Buf: make([]byte, 10000)}}
	if rv := m.GetAttributeValue(h, priv, tmpl); rv != AttributeSensitive || tmpl[0].Len != Unavailable {
		t.Errorf("private CKA_VALUE: %#x, length %d", rv, tmpl[0].Len)
	}
	// The public key outlives the private one, an HSS public key alone.
	if rv := m.DestroyObject(h, priv); rv != OK {
		t.Fatal(rv)
	}
	left := getAll(t, m, h, pub, attrKeyType, attrValue, attrHSSLevels)
	if string(left[attrValue]) != string(b[attrValue]) || string(left[attrKeyType]) != string(ulongValue(KeyTypeHSS)) {
		t.Errorf("the HSS public key after its private key went: %x", left)
	}
}

// Templates (CKA_UNWRAP_TEMPLATE, CKA_WRAP_TEMPLATE) are kept as given,
// on the object they belong to, and never changed.
func TestTemplateAttributes(t *testing.T) {
	m, h := loggedIn(t)
	unwrapT := hsmapi.EncodeAttributes([]hsmapi.Attribute{
		{Type: attrSensitive, Value: []byte{1}}, {Type: attrExtractable, Value: []byte{0}}, {Type: attrKeyType, Value: ulongValue(0x1F)},
	})
	wrapT := hsmapi.EncodeAttributes([]hsmapi.Attribute{{Type: attrToken, Value: []byte{0}}})
	rsaPub := []Attribute{ul(attrModulusBits, 2048), bl(attrWrap, true), bl(attrVerify, false)}
	rsaPriv := []Attribute{bl(attrUnwrap, true), bl(attrSign, false)}
	pub, priv, rv := m.GenerateKeyPair(h, MechRSAKeyPairGen, nil, append(rsaPub, by(attrWrapTemplate, wrapT)), append(rsaPriv, by(attrUnwrapTemplate, unwrapT)))
	if rv != OK {
		t.Fatal(rv)
	}
	if got := getAll(t, m, h, priv, attrUnwrapTemplate)[attrUnwrapTemplate]; string(got) != string(unwrapT) {
		t.Errorf("CKA_UNWRAP_TEMPLATE %x, want %x", got, unwrapT)
	}
	if got := getAll(t, m, h, pub, attrWrapTemplate)[attrWrapTemplate]; string(got) != string(wrapT) {
		t.Errorf("CKA_WRAP_TEMPLATE %x, want %x", got, wrapT)
	}
	if got := find(t, m, h, by(attrUnwrapTemplate, unwrapT)); len(got) != 1 || got[0] != priv {
		t.Errorf("found by its template: %v", got)
	}
	if rv := m.SetAttributeValue(h, priv, []Attribute{by(attrUnwrapTemplate, wrapT)}); rv != AttributeReadOnly {
		t.Errorf("changing CKA_UNWRAP_TEMPLATE: %#x", rv)
	}
	// A key given none has an empty one.
	_, other := ecPair(t, m, h, nil, nil)
	if got := getAll(t, m, h, other, attrUnwrapTemplate)[attrUnwrapTemplate]; string(got) != string(hsmapi.EncodeAttributes(nil)) {
		t.Errorf("no CKA_UNWRAP_TEMPLATE: %x", got)
	}
	for _, c := range []struct {
		name      string
		pub, priv []Attribute
		want      RV
	}{
		{"unknown attribute inside", rsaPub, append(rsaPriv, by(attrUnwrapTemplate, hsmapi.EncodeAttributes([]hsmapi.Attribute{{Type: 0x7777, Value: []byte{1}}}))), AttributeValueInvalid},
		{"a bool of two bytes inside", rsaPub, append(rsaPriv, by(attrUnwrapTemplate, hsmapi.EncodeAttributes([]hsmapi.Attribute{{Type: attrSensitive, Value: []byte{1, 1}}}))), AttributeValueInvalid},
		{"a template inside", rsaPub, append(rsaPriv, by(attrUnwrapTemplate, hsmapi.EncodeAttributes([]hsmapi.Attribute{{Type: attrWrapTemplate, Value: wrapT}}))), AttributeValueInvalid},
		{"not encoded", rsaPub, append(rsaPriv, by(attrUnwrapTemplate, []byte{1, 2, 3})), AttributeValueInvalid},
		{"unwrap template on the public key", append(rsaPub, by(attrUnwrapTemplate, unwrapT)), rsaPriv, TemplateInconsistent},
	} {
		if _, _, rv := m.GenerateKeyPair(h, MechRSAKeyPairGen, nil, c.pub, c.priv); rv != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, rv, c.want)
		}
	}
}
