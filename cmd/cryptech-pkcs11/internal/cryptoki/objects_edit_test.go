package cryptoki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// ecPair makes a token EC key pair with label and ID "k".
func ecPair(t *testing.T, m *Module, h uint, pubExtra, privExtra []Attribute) (pub, priv uint) {
	t.Helper()
	pubT := append([]Attribute{bl(attrToken, true), by(attrECParams, p256Params), str(attrLabel, "k"), by(attrID, []byte("k"))}, pubExtra...)
	privT := append([]Attribute{bl(attrToken, true), str(attrLabel, "k"), by(attrID, []byte("k"))}, privExtra...)
	pub, priv, rv := m.GenerateKeyPair(h, MechECKeyPairGen, nil, pubT, privT)
	if rv != OK {
		t.Fatal(rv)
	}
	return pub, priv
}

func find(t *testing.T, m *Module, h uint, tmpl ...Attribute) []uint {
	t.Helper()
	if rv := m.FindObjectsInit(h, tmpl); rv != OK {
		t.Fatalf("FindObjectsInit: %#x", rv)
	}
	var all []uint
	for {
		got, rv := m.FindObjects(h, 2)
		if rv != OK {
			t.Fatalf("FindObjects: %#x", rv)
		}
		if len(got) == 0 {
			break
		}
		all = append(all, got...)
	}
	if rv := m.FindObjectsFinal(h); rv != OK {
		t.Fatalf("FindObjectsFinal: %#x", rv)
	}
	return all
}

func TestFindObjects(t *testing.T) {
	m, h := loggedIn(t)
	pub, priv := ecPair(t, m, h, nil, nil)
	rpub, rpriv, rv := m.GenerateKeyPair(h, MechRSAKeyPairGen, nil,
		[]Attribute{ul(attrModulusBits, 2048), str(attrLabel, "r")}, []Attribute{str(attrLabel, "r"), bl(attrSign, false), bl(attrDecrypt, true)})
	if rv != OK {
		t.Fatal(rv)
	}
	for _, c := range []struct {
		name string
		tmpl []Attribute
		want []uint
	}{
		{"everything", nil, []uint{pub, priv, rpub, rpriv}},
		{"private keys", []Attribute{ul(attrClass, ClassPrivateKey)}, []uint{priv, rpriv}},
		{"EC keys", []Attribute{ul(attrKeyType, KeyTypeEC)}, []uint{pub, priv}},
		{"by label", []Attribute{str(attrLabel, "r")}, []uint{rpub, rpriv}},
		{"by ID and class", []Attribute{by(attrID, []byte("k")), ul(attrClass, ClassPublicKey)}, []uint{pub}},
		{"signers", []Attribute{bl(attrSign, true)}, []uint{priv}},
		{"decrypters", []Attribute{bl(attrDecrypt, true)}, []uint{rpriv}},
		{"a bool as 2", []Attribute{{attrSign, []byte{2}}}, []uint{priv}},
		{"token objects", []Attribute{bl(attrToken, true)}, []uint{pub, priv}},
		{"session objects", []Attribute{bl(attrToken, false)}, []uint{rpub, rpriv}},
		{"an attribute the module does not know", []Attribute{bl(0x7777, true)}, nil},
		{"a secret value", []Attribute{by(attrValue, []byte{1})}, nil},
		{"an attribute the object lacks", []Attribute{by(attrModulus, []byte{1})}, nil},
		{"label that is none", []Attribute{str(attrLabel, "x")}, nil},
		{"two classes", []Attribute{ul(attrClass, ClassPrivateKey), ul(attrClass, ClassPublicKey)}, nil},
	} {
		got := find(t, m, h, c.tmpl...)
		slices.Sort(c.want) // found in order of handle
		if len(got) != len(c.want) {
			t.Errorf("%s: found %v, want %v", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: found %v, want %v", c.name, got, c.want)
				break
			}
		}
	}

	// One find at a time, in the right order.
	if _, rv := m.FindObjects(h, 1); rv != OperationNotInitialized {
		t.Errorf("FindObjects before Init: %#x", rv)
	}
	if rv := m.FindObjectsFinal(h); rv != OperationNotInitialized {
		t.Errorf("FindObjectsFinal before Init: %#x", rv)
	}
	if rv := m.FindObjectsInit(h, nil); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.FindObjectsInit(h, nil); rv != OperationActive {
		t.Errorf("second FindObjectsInit: %#x", rv)
	}
	other, _ := m.OpenSession(slotID, FlagSerialSession)
	if rv := m.FindObjectsInit(other, nil); rv != OK {
		t.Errorf("a find in another session: %#x", rv)
	}
	if rv := m.FindObjectsInit(h+100, nil); rv != SessionHandleInvalid {
		t.Errorf("no such session: %#x", rv)
	}

	// Logged out: no object shows.
	m.FindObjectsFinal(h)
	m.Logout(h)
	if got := find(t, m, h); len(got) != 0 {
		t.Errorf("logged out, found %v", got)
	}
}

func TestSetAttributeValue(t *testing.T) {
	m, h := loggedIn(t)
	pub, priv := ecPair(t, m, h, nil, nil)
	o, _ := m.keyObject(h, priv)
	for _, c := range []struct {
		name string
		obj  uint
		tmpl []Attribute
		want RV
	}{
		{"label and ID", priv, []Attribute{str(attrLabel, "new"), by(attrID, []byte("new id"))}, OK},
		{"public label", pub, []Attribute{str(attrLabel, "pub")}, OK},
		{"subject and dates", pub, []Attribute{str(attrSubject, "s"), str(attrStartDate, "20260101"), by(attrEndDate, nil)}, OK},
		{"same sign", priv, []Attribute{bl(attrSign, true)}, OK},
		{"sensitive stays", priv, []Attribute{bl(attrSensitive, true)}, OK},
		{"not sensitive", priv, []Attribute{bl(attrSensitive, false)}, AttributeReadOnly},
		{"extractable", priv, []Attribute{bl(attrExtractable, true)}, AttributeReadOnly},
		{"sign off", priv, []Attribute{bl(attrSign, false)}, AttributeReadOnly},
		{"decrypt on", priv, []Attribute{bl(attrDecrypt, true)}, AttributeReadOnly},
		{"verify on a private key", priv, []Attribute{bl(attrVerify, true)}, AttributeTypeInvalid},
		{"class", priv, []Attribute{ul(attrClass, ClassPublicKey)}, AttributeReadOnly},
		{"EC params", pub, []Attribute{by(attrECParams, mustParams(hsmapi.CurveP384))}, AttributeReadOnly},
		{"token", priv, []Attribute{bl(attrToken, false)}, AttributeReadOnly},
		{"private", priv, []Attribute{bl(attrPrivate, false)}, AttributeReadOnly},
		{"local", priv, []Attribute{bl(attrLocal, false)}, AttributeReadOnly},
		{"unknown", priv, []Attribute{bl(0x7777, true)}, AttributeTypeInvalid},
		{"bool too long", priv, []Attribute{{attrDerive, []byte{0, 0}}}, AttributeValueInvalid},
		{"value too long", priv, []Attribute{by(attrSubject, make([]byte, hsmapi.MaxAttributeSize+1))}, AttributeValueInvalid},
		{"trusted by the user", pub, []Attribute{bl(attrTrusted, true)}, AttributeReadOnly},
		{"wrap with trusted on", priv, []Attribute{bl(attrWrapWithTrusted, true)}, OK},
		{"wrap with trusted off again", priv, []Attribute{bl(attrWrapWithTrusted, false)}, AttributeReadOnly},
		{"copyable off", priv, []Attribute{bl(attrCopyable, false)}, OK},
		{"copyable on again", priv, []Attribute{bl(attrCopyable, true)}, AttributeReadOnly},
		{"all or nothing", priv, []Attribute{str(attrLabel, "never"), bl(attrSensitive, false)}, AttributeReadOnly},
		{"no such object", 12345, []Attribute{str(attrLabel, "x")}, ObjectHandleInvalid},
	} {
		if rv := m.SetAttributeValue(h, c.obj, c.tmpl); rv != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, rv, c.want)
		}
	}
	a := getAll(t, m, h, priv, attrLabel, attrID, attrCopyable, attrWrapWithTrusted)
	if string(a[attrLabel]) != "new" || string(a[attrID]) != "new id" || a[attrCopyable][0] != 0 || a[attrWrapWithTrusted][0] != 1 {
		t.Errorf("private object: %x", a)
	}
	b := getAll(t, m, h, pub, attrLabel, attrID, attrSubject, attrStartDate)
	if string(b[attrLabel]) != "pub" || string(b[attrID]) != "k" || string(b[attrSubject]) != "s" || string(b[attrStartDate]) != "20260101" {
		t.Errorf("public object: %x", b)
	}
	// As the HSM keeps them, for the other faces and for transfers.
	k, _ := tokenOf(m).Key(context.Background(), o.UUID)
	if k.Label != "new" {
		t.Errorf("the key's label is %q", k.Label)
	}
	attrs, _ := tokenOf(m).(hsmapi.AttributeReader).KeyAttributes(context.Background(), o.UUID)
	var publ []hsmapi.Attribute
	for _, a := range attrs {
		if a.Type == hsmapi.AttributePublicObject {
			publ, _ = hsmapi.DecodeAttributes(a.Value)
		}
	}
	if v, ok := attrOf(publ, hsmapi.CKALabel); !ok || string(v) != "pub" {
		t.Errorf("the public object's stored attributes: %v", publ)
	}

	// The public label set back to the key's: no label of its own.
	if rv := m.SetAttributeValue(h, pub, []Attribute{str(attrLabel, "new")}); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.SetAttributeValue(h, priv, []Attribute{str(attrLabel, "both")}); rv != OK {
		t.Fatal(rv)
	}
	if got := getAll(t, m, h, pub, attrLabel)[attrLabel]; string(got) != "both" {
		t.Errorf("public label follows the key's: %q", got)
	}

	// Unmodifiable objects stay as they are.
	upub, upriv := ecPair(t, m, h, []Attribute{bl(attrModifiable, false)}, nil)
	if rv := m.SetAttributeValue(h, upub, []Attribute{str(attrLabel, "x")}); rv != ActionProhibited {
		t.Errorf("unmodifiable public object: %#x", rv)
	}
	if rv := m.SetAttributeValue(h, upriv, []Attribute{str(attrLabel, "x")}); rv != OK {
		t.Errorf("its private object: %#x", rv)
	}

	// A read-only session cannot change token objects.
	ro, _ := m.OpenSession(slotID, FlagSerialSession)
	if rv := m.SetAttributeValue(ro, priv, []Attribute{str(attrLabel, "x")}); rv != SessionReadOnly {
		t.Errorf("read-only session: %#x", rv)
	}
}

func attrOf(attrs []hsmapi.Attribute, t uint32) ([]byte, bool) {
	for _, a := range attrs {
		if a.Type == t {
			return a.Value, true
		}
	}
	return nil, false
}

func TestDestroyObject(t *testing.T) {
	m, h := loggedIn(t)
	pub, priv := ecPair(t, m, h, []Attribute{str(attrSubject, "pub subject")}, nil)
	o, _ := m.keyObject(h, pub)
	before := keyCount(t, m)
	if rv := m.DestroyObject(h, pub); rv != ActionProhibited {
		t.Errorf("public object of a pair: %#x", rv)
	}
	if rv := m.DestroyObject(h, priv); rv != OK {
		t.Fatalf("private object: %#x", rv)
	}
	if _, rv := m.keyObject(h, priv); rv != ObjectHandleInvalid {
		t.Errorf("destroyed object: %#x", rv)
	}
	// The public object lives on, same handle, same attributes.
	left, rv := m.keyObject(h, pub)
	if rv != OK || left.Class != ClassPublicKey || left.Info.Type != hsmapi.KeyTypeECPublic || !hsmapi.SamePublicKey(left.Info.PublicKey, o.Info.PublicKey) {
		t.Fatalf("public object after its private key went: %+v %#x", left, rv)
	}
	a := getAll(t, m, h, pub, attrLabel, attrID, attrSubject, attrVerify, attrToken)
	if string(a[attrLabel]) != "k" || string(a[attrID]) != "k" || string(a[attrSubject]) != "pub subject" || a[attrVerify][0] != 1 || a[attrToken][0] != 1 {
		t.Errorf("its attributes: %x", a)
	}
	if got := find(t, m, h); len(got) != 1 || got[0] != pub {
		t.Errorf("objects left: %v", got)
	}
	if n := keyCount(t, m); n != before {
		t.Errorf("%d keys, %d before", n, before)
	}
	if rv := m.DestroyObject(h, pub); rv != OK {
		t.Fatalf("public key alone: %#x", rv)
	}
	if n := keyCount(t, m); n != before-1 {
		t.Errorf("%d keys after destroying the last object, %d before", n, before)
	}
	if rv := m.DestroyObject(h, pub); rv != ObjectHandleInvalid {
		t.Errorf("destroyed twice: %#x", rv)
	}

	_, keep := ecPair(t, m, h, nil, []Attribute{bl(attrDestroyable, false)})
	if rv := m.DestroyObject(h, keep); rv != ActionProhibited {
		t.Errorf("CKA_DESTROYABLE false: %#x", rv)
	}
	ro, _ := m.OpenSession(slotID, FlagSerialSession)
	_, p2 := ecPair(t, m, h, nil, nil)
	if rv := m.DestroyObject(ro, p2); rv != SessionReadOnly {
		t.Errorf("read-only session: %#x", rv)
	}
}

func TestCopyObject(t *testing.T) {
	m, h := loggedIn(t)
	pub, priv := ecPair(t, m, h, nil, nil)
	if _, rv := m.CopyObject(h, priv, nil); rv != ActionProhibited {
		t.Errorf("private key: %#x", rv)
	}
	c, rv := m.CopyObject(h, pub, []Attribute{str(attrLabel, "copy"), bl(attrToken, false), bl(attrVerify, false)})
	if rv != OK {
		t.Fatalf("public key: %#x", rv)
	}
	o, _ := m.keyObject(h, pub)
	co, _ := m.keyObject(h, c)
	if co.UUID == o.UUID || co.Class != ClassPublicKey || !hsmapi.SamePublicKey(co.Info.PublicKey, o.Info.PublicKey) {
		t.Fatalf("copy %+v of %+v", co, o)
	}
	a := getAll(t, m, h, c, attrLabel, attrID, attrToken, attrVerify)
	if string(a[attrLabel]) != "copy" || string(a[attrID]) != "k" || a[attrToken][0] != 0 || a[attrVerify][0] != 0 {
		t.Errorf("copy's attributes: %x", a)
	}
	for _, bad := range []struct {
		name string
		tmpl []Attribute
		want RV
	}{
		{"a usage more", []Attribute{bl(attrWrap, true)}, AttributeReadOnly},
		{"another key", []Attribute{by(attrECParams, mustParams(hsmapi.CurveP384))}, AttributeReadOnly},
		{"unknown", []Attribute{bl(0x7777, true)}, AttributeTypeInvalid},
	} {
		if _, rv := m.CopyObject(h, c, bad.tmpl); rv != bad.want {
			t.Errorf("%s: %#x, want %#x", bad.name, rv, bad.want)
		}
	}
	if rv := m.SetAttributeValue(h, c, []Attribute{bl(attrCopyable, false)}); rv != OK {
		t.Fatal(rv)
	}
	if _, rv := m.CopyObject(h, c, nil); rv != ActionProhibited {
		t.Errorf("CKA_COPYABLE false: %#x", rv)
	}
}

func TestCreateObject(t *testing.T) {
	m, h := loggedIn(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	raw, _ := ec.PublicKey.Bytes()
	point, _ := asn1.Marshal(raw)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	d, _ := ec.Bytes()
	for _, c := range []struct {
		name  string
		tmpl  []Attribute
		want  RV
		class uint
		pub   any
	}{
		{"EC public key", []Attribute{ul(attrClass, ClassPublicKey), ul(attrKeyType, KeyTypeEC), by(attrECParams, p256Params), by(attrECPoint, point), str(attrLabel, "ecpub"), bl(attrToken, true)}, OK, ClassPublicKey, &ec.PublicKey},
		{"EC public key, bare point", []Attribute{ul(attrClass, ClassPublicKey), ul(attrKeyType, KeyTypeEC), by(attrECParams, p256Params), by(attrECPoint, raw)}, OK, ClassPublicKey, &ec.PublicKey},
		{"RSA public key", []Attribute{ul(attrClass, ClassPublicKey), ul(attrKeyType, KeyTypeRSA), by(attrModulus, rk.N.Bytes()), by(attrPublicExponent, []byte{1, 0, 1})}, OK, ClassPublicKey, &rk.PublicKey},
		{"RSA private key", []Attribute{
			ul(attrClass, ClassPrivateKey), ul(attrKeyType, KeyTypeRSA), bl(attrToken, true), str(attrLabel, "loaded"),
			by(attrModulus, rk.N.Bytes()), by(attrPublicExponent, big.NewInt(int64(rk.E)).Bytes()), by(attrPrivateExponent, rk.D.Bytes()),
			by(attrPrime1, rk.Primes[0].Bytes()), by(attrPrime2, rk.Primes[1].Bytes()),
		}, OK, ClassPrivateKey, &rk.PublicKey},
		{"EC private key", []Attribute{ul(attrClass, ClassPrivateKey), ul(attrKeyType, KeyTypeEC), by(attrECParams, p256Params), by(attrValue, d)}, OK, ClassPrivateKey, &ec.PublicKey},

		{"no class", []Attribute{ul(attrKeyType, KeyTypeEC)}, TemplateIncomplete, 0, nil},
		{"no key type", []Attribute{ul(attrClass, ClassPublicKey)}, TemplateIncomplete, 0, nil},
		{"data object", []Attribute{ul(attrClass, ClassData), ul(attrKeyType, KeyTypeEC)}, AttributeValueInvalid, 0, nil},
		{"class of 4 bytes", []Attribute{{attrClass, []byte{2, 0, 0, 0}}, ul(attrKeyType, KeyTypeEC)}, AttributeValueInvalid, 0, nil},
		{"no point", []Attribute{ul(attrClass, ClassPublicKey), ul(attrKeyType, KeyTypeEC), by(attrECParams, p256Params)}, TemplateIncomplete, 0, nil},
		{"point off the curve", []Attribute{ul(attrClass, ClassPublicKey), ul(attrKeyType, KeyTypeEC), by(attrECParams, p256Params), by(attrECPoint, append([]byte{4}, make([]byte, 64)...))}, AttributeValueInvalid, 0, nil},
		{"RSA private key, wrong prime", []Attribute{
			ul(attrClass, ClassPrivateKey), ul(attrKeyType, KeyTypeRSA),
			by(attrModulus, rk.N.Bytes()), by(attrPublicExponent, []byte{1, 0, 1}), by(attrPrivateExponent, rk.D.Bytes()),
			by(attrPrime1, rk.Primes[0].Bytes()), by(attrPrime2, big.NewInt(7).Bytes()),
		}, AttributeValueInvalid, 0, nil},
		{"HSS private key", []Attribute{ul(attrClass, ClassPrivateKey), ul(attrKeyType, KeyTypeHSS), by(attrValue, []byte{1})}, AttributeValueInvalid, 0, nil},
		{"not sensitive", []Attribute{ul(attrClass, ClassPrivateKey), ul(attrKeyType, KeyTypeEC), by(attrECParams, p256Params), by(attrValue, d), bl(attrSensitive, false)}, AttributeValueInvalid, 0, nil},
		{"local", []Attribute{ul(attrClass, ClassPublicKey), ul(attrKeyType, KeyTypeEC), by(attrECParams, p256Params), by(attrECPoint, point), bl(attrLocal, true)}, AttributeReadOnly, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := keyCount(t, m)
			obj, rv := m.CreateObject(h, c.tmpl)
			if rv != c.want {
				t.Fatalf("CreateObject: %#x, want %#x", rv, c.want)
			}
			if rv != OK {
				if n := keyCount(t, m); n != before {
					t.Errorf("%d keys after a refusal, %d before", n, before)
				}
				return
			}
			o, rv := m.keyObject(h, obj)
			if rv != OK || o.Class != c.class {
				t.Fatalf("object %+v %#x", o, rv)
			}
			got, _ := hsmapi.ParsePublicKey(o.Info.PublicKey)
			if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(c.pub) {
				t.Error("the stored key is not the template's")
			}
			if a := getAll(t, m, h, obj, attrLocal, attrClass); a[attrLocal][0] != 0 {
				t.Errorf("a created key is local")
			}
			if c.class == ClassPrivateKey {
				tmpl := []AttributeBuffer{{Type: attrPrivateExponent, Buf: make([]byte, 512)}, {Type: attrValue, Buf: make([]byte, 512)}}
				if rv := m.GetAttributeValue(h, obj, tmpl); rv != AttributeSensitive {
					t.Errorf("the private part of a created key: %#x", rv)
				}
				if a := getAll(t, m, h, obj, attrAlwaysSensitive, attrNeverExtractable); a[attrAlwaysSensitive][0] != 0 || a[attrNeverExtractable][0] != 0 {
					t.Errorf("a key that was in the clear: always sensitive %x, never extractable %x", a[attrAlwaysSensitive], a[attrNeverExtractable])
				}
			}
		})
	}
}

// Session objects are the HSM's volatile keys: every session of the
// application sees them, and they go when the session that made them
// closes.
func TestSessionObjects(t *testing.T) {
	m, h := loggedIn(t)
	other, _ := m.OpenSession(slotID, FlagSerialSession)
	pub, priv, rv := m.GenerateKeyPair(other, MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params)}, nil)
	if rv != OK {
		t.Fatal(rv)
	}
	o, _ := m.keyObject(h, priv)
	if o.Info.Flags&hsmapi.FlagToken != 0 {
		t.Fatal("a session object is a token key")
	}
	if got := find(t, m, h, bl(attrToken, false)); len(got) != 2 || got[0] != min(pub, priv) || got[1] != max(pub, priv) {
		t.Errorf("session objects seen by another session: %v", got)
	}
	if rv := m.CloseSession(other); rv != OK {
		t.Fatal(rv)
	}
	if _, rv := m.keyObject(h, priv); rv != ObjectHandleInvalid {
		t.Errorf("session object after its session closed: %#x", rv)
	}
	if _, err := tokenOf(m).Key(context.Background(), o.UUID); err == nil {
		t.Error("the HSM still has the volatile key")
	}
}

// Sessions of several goroutines make, find, read, change and destroy
// objects at once: under -race, any state touched outside the locks shows,
// and every session sees its own objects whole.
func TestObjectsAcrossGoroutines(t *testing.T) {
	m, h := loggedIn(t)
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			s, rv := m.OpenSession(slotID, FlagSerialSession|FlagRWSession)
			if rv != OK {
				errs <- fmt.Errorf("goroutine %d: OpenSession: %#x", g, rv)
				return
			}
			defer m.CloseSession(s)
			label := fmt.Sprintf("g%d", g)
			for i := range 5 {
				pub, priv, rv := m.GenerateKeyPair(s, MechECKeyPairGen, nil, []Attribute{by(attrECParams, p256Params), str(attrLabel, label)}, []Attribute{str(attrLabel, label)})
				if rv != OK {
					errs <- fmt.Errorf("goroutine %d: GenerateKeyPair: %#x", g, rv)
					return
				}
				if rv := m.FindObjectsInit(s, []Attribute{str(attrLabel, label)}); rv != OK {
					errs <- fmt.Errorf("goroutine %d: FindObjectsInit: %#x", g, rv)
					return
				}
				found, _ := m.FindObjects(s, 100)
				m.FindObjectsFinal(s)
				if len(found) != 2 {
					errs <- fmt.Errorf("goroutine %d, round %d: found %v, want its own pair", g, i, found)
				}
				if rv := m.SetAttributeValue(s, pub, []Attribute{by(attrID, []byte(label))}); rv != OK {
					errs <- fmt.Errorf("goroutine %d: SetAttributeValue: %#x", g, rv)
				}
				tmpl := []AttributeBuffer{{Type: attrID, Buf: make([]byte, 8)}}
				if rv := m.GetAttributeValue(s, pub, tmpl); rv != OK || string(tmpl[0].Buf[:tmpl[0].Len]) != label {
					errs <- fmt.Errorf("goroutine %d: GetAttributeValue: %#x %q", g, rv, tmpl[0].Buf[:min(tmpl[0].Len, 8)])
				}
				if rv := m.DestroyObject(s, priv); rv != OK {
					errs <- fmt.Errorf("goroutine %d: DestroyObject(private): %#x", g, rv)
				}
				if rv := m.DestroyObject(s, pub); rv != OK {
					errs <- fmt.Errorf("goroutine %d: DestroyObject(public): %#x", g, rv)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := find(t, m, h); len(got) != 0 {
		t.Errorf("objects left: %v", got)
	}
}
