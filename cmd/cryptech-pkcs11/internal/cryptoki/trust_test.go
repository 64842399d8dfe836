package cryptoki

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"slices"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
)

// TestSOTrustsAWrappingKey: the user imports an RSA public key
// (C_CreateObject) and cannot wrap a CKA_WRAP_WITH_TRUSTED key under it,
// nor mark it trusted; the SO sees it (and the secret key, never a private
// key object), changes nothing of it but CKA_TRUSTED, and trusts it; then
// the user's C_WrapKey works, and the blob opens with the RSA private key
// to the wrapped key's value. The SO takes the trust back, and the wrap is
// refused again.
func TestSOTrustsAWrappingKey(t *testing.T) {
	m, h := loggedIn(t)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, rv := m.CreateObject(h, []Attribute{ul(attrClass, ClassPublicKey), ul(attrKeyType, KeyTypeRSA),
		by(attrModulus, rk.N.Bytes()), by(attrPublicExponent, []byte{1, 0, 1}), bl(attrWrap, true), bl(attrToken, true), str(attrLabel, "kekek")})
	if rv != OK {
		t.Fatalf("CreateObject: %#x", rv)
	}
	value := make([]byte, 32)
	rand.Read(value)
	guarded, rv := m.CreateObject(h, []Attribute{ul(attrClass, ClassSecretKey), ul(attrKeyType, KeyTypeAES), by(attrValue, value),
		bl(attrToken, true), bl(attrExtractable, true), bl(attrWrapWithTrusted, true)})
	if rv != OK {
		t.Fatalf("CreateObject AES: %#x", rv)
	}
	signer := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256})
	signerPriv, signerPub := objectsOf(t, m, h, signer.UUID)
	rsaAES := Mechanism{Type: MechRSAAESKeyWrap, OAEP: oaepSHA256, AESKeyBits: 256}
	if _, _, rv := m.WrapKey(h, rsaAES, pub, guarded, Output{Query: true}); rv != KeyFunctionNotPermitted {
		t.Fatalf("wrap under an untrusted key: %#x", rv)
	}
	if rv := m.SetAttributeValue(h, pub, []Attribute{bl(attrTrusted, true)}); rv != AttributeReadOnly {
		t.Fatalf("the user trusts: %#x", rv)
	}

	if rv := m.Logout(h); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.Login(h, UserSO, hsmtest.PIN); rv != OK {
		t.Fatal(rv)
	}
	hs, objs, rv := m.listObjects(h)
	if rv != OK {
		t.Fatal(rv)
	}
	want := []uint{pub, guarded, signerPub}
	slices.Sort(want)
	if !slices.Equal(hs, want) {
		t.Fatalf("the SO sees %v (%v), want %v: the public and secret key objects", hs, objs, want)
	}
	if rv := m.FindObjectsInit(h, []Attribute{str(attrLabel, "kekek")}); rv != OK {
		t.Fatal(rv)
	}
	found, _ := m.FindObjects(h, 10)
	m.FindObjectsFinal(h)
	if !slices.Equal(found, []uint{pub}) {
		t.Errorf("the SO finds %v by label, want %d", found, pub)
	}
	if _, rv := m.keyObject(h, signerPriv); rv != ObjectHandleInvalid {
		t.Errorf("the SO reads a private key object: %#x", rv)
	}
	for _, c := range []struct {
		name string
		obj  uint
		tmpl []Attribute
		want RV
	}{
		{"label", pub, []Attribute{str(attrLabel, "mine")}, AttributeReadOnly},
		{"trusted with a label", pub, []Attribute{bl(attrTrusted, true), str(attrLabel, "mine")}, AttributeReadOnly},
		{"usage", pub, []Attribute{bl(attrEncrypt, true)}, AttributeReadOnly},
		{"private key object", signerPriv, []Attribute{bl(attrTrusted, true)}, ObjectHandleInvalid},
		{"unknown attribute", pub, []Attribute{{0x7fff0000, []byte{1}}}, AttributeTypeInvalid},
		{"bad value", pub, []Attribute{{attrTrusted, []byte{1, 2}}}, AttributeValueInvalid},
	} {
		if rv := m.SetAttributeValue(h, c.obj, c.tmpl); rv != c.want {
			t.Errorf("SO sets %s: %#x, want %#x", c.name, rv, c.want)
		}
	}
	if rv := m.DestroyObject(h, pub); rv != ActionProhibited {
		t.Errorf("the SO destroys: %#x", rv)
	}
	if _, rv := m.CopyObject(h, pub, nil); rv != UserNotLoggedIn {
		t.Errorf("the SO copies: %#x", rv)
	}
	if got := getAll(t, m, h, pub, attrTrusted, attrLabel); got[attrTrusted][0] != 0 || string(got[attrLabel]) != "kekek" {
		t.Fatalf("after the refused changes: %v", got)
	}
	// Repeating a value is no change.
	if rv := m.SetAttributeValue(h, pub, []Attribute{bl(attrTrusted, true), str(attrLabel, "kekek")}); rv != OK {
		t.Fatalf("the SO trusts: %#x", rv)
	}
	if got := getAll(t, m, h, pub, attrTrusted); got[attrTrusted][0] != 1 {
		t.Fatalf("CKA_TRUSTED after the SO set it: %v", got)
	}

	if rv := m.Logout(h); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.Login(h, UserUser, hsmtest.PIN); rv != OK {
		t.Fatal(rv)
	}
	blob := wrap(t, m, h, rsaAES, pub, guarded)
	// The form of CKM_RSA_AES_KEY_WRAP: OAEP of a fresh AES key, then RFC 5649.
	kek, err := rsa.DecryptOAEP(sha256.New(), nil, rk, blob[:256], nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := keywrap.UnwrapPad(kek, blob[256:])
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("the wrapped key: %x %v", got, err)
	}

	// Taken back, the wrap is refused again.
	if rv := m.Logout(h); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.Login(h, UserSO, hsmtest.PIN); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.SetAttributeValue(h, pub, []Attribute{bl(attrTrusted, false)}); rv != OK {
		t.Fatalf("the SO takes the trust back: %#x", rv)
	}
	m.Logout(h)
	if rv := m.Login(h, UserUser, hsmtest.PIN); rv != OK {
		t.Fatal(rv)
	}
	if _, _, rv := m.WrapKey(h, rsaAES, pub, guarded, Output{Query: true}); rv != KeyFunctionNotPermitted {
		t.Fatalf("wrap once the trust is taken back: %#x", rv)
	}
}
