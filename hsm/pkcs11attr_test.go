package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"slices"
	"testing"
)

func TestAttributesEncodeRoundTrip(t *testing.T) {
	attrs := []Attribute{
		{Type: CKAVerify, Value: []byte{1}},
		{Type: CKAID, Value: []byte{0x0a, 0x01}},
		{Type: CKAEncrypt, Value: []byte{0}},
		{Type: 0xFFFFFFFF, Value: nil},
	}
	enc := EncodeAttributes(attrs)
	got, err := DecodeAttributes(enc)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(attrs)
	slices.SortFunc(want, func(a, b Attribute) int { return cmpUint32(a.Type, b.Type) })
	if len(got) != len(want) {
		t.Fatalf("got %d attributes, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Type != want[i].Type || !bytes.Equal(got[i].Value, want[i].Value) {
			t.Errorf("attribute %d: got %x=%x, want %x=%x", i, got[i].Type, got[i].Value, want[i].Type, want[i].Value)
		}
	}
	// Every truncation and every extension is refused.
	for n := range len(enc) {
		if _, err := DecodeAttributes(enc[:n]); !errors.Is(err, ErrBadAttributes) {
			t.Errorf("truncated to %d bytes: %v", n, err)
		}
	}
	if _, err := DecodeAttributes(append(enc, 0)); !errors.Is(err, ErrBadAttributes) {
		t.Errorf("extended: %v", err)
	}
	// Unsorted or repeated types are not what EncodeAttributes writes.
	twice := EncodeAttributes([]Attribute{{Type: 5, Value: []byte{1}}})
	twice = append(twice, twice[4:]...)
	twice[3] = 2
	if _, err := DecodeAttributes(twice); !errors.Is(err, ErrBadAttributes) {
		t.Errorf("repeated type: %v", err)
	}
}

func TestImportKeepsAttributes(t *testing.T) {
	p := newPair(t)
	k := generate(t, p.src, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: FlagDigitalSignature | FlagExportable | FlagToken})
	w := p.export(t, k, KEKOAEPSHA256, nil)
	req := p.importReq(k, w, KEKOAEPSHA256, nil)
	req.Attributes = []Attribute{{Type: CKAID, Value: []byte{0x0a, 0x01}}, {Type: CKADerive, Value: []byte{1}}}
	if _, err := p.dst.Import(ctx, req); err != nil {
		t.Fatal(err)
	}
	got, err := p.dst.KeyAttributes(ctx, k.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Type != CKAID || !bytes.Equal(got[0].Value, []byte{0x0a, 0x01}) || got[1].Type != CKADerive {
		t.Fatalf("attributes after import: %+v", got)
	}

	// The label is not an attribute; a value too long is refused.
	for _, bad := range [][]Attribute{
		{{Type: AttributeLabel, Value: []byte("x")}},
		{{Type: CKAID, Value: make([]byte, MaxAttributeSize+1)}},
		{{Type: CKAID, Value: []byte{1}}, {Type: CKAID, Value: []byte{2}}},
	} {
		k2 := generate(t, p.src, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: FlagDigitalSignature | FlagExportable | FlagToken})
		req := p.importReq(k2, p.export(t, k2, KEKOAEPSHA256, nil), KEKOAEPSHA256, nil)
		req.Attributes = bad
		if _, err := p.dst.Import(ctx, req); !errors.Is(err, ErrBadArguments) {
			t.Errorf("attributes %+v: %v, want ErrBadArguments", bad, err)
		}
	}
}

func TestLoadPrivateKey(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.LoadPrivateKey(ctx, LoadRequest{PKCS8: der, Flags: FlagDigitalSignature, Label: "loaded"})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("loaded key signs"))
	sig, err := s.Sign(ctx, k.UUID, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], sig) {
		t.Fatal("the loaded key's signature does not verify under its public key")
	}
	attrs, err := s.KeyAttributes(ctx, k.UUID)
	if err != nil || len(attrs) != 1 || attrs[0].Type != CKALocal || !bytes.Equal(attrs[0].Value, []byte{0}) {
		t.Fatalf("a loaded key is not local: %+v, %v", attrs, err)
	}
	if _, err := s.LoadPrivateKey(ctx, LoadRequest{PKCS8: der[:len(der)-1], Flags: FlagDigitalSignature}); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("truncated PKCS#8: %v", err)
	}
	// Volatile: gone when the session logs out.
	if err := s.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	s = login(t, h)
	if _, err := s.Key(ctx, k.UUID); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("volatile loaded key after logout: %v", err)
	}
}
