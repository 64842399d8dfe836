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
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

func TestImportKeepsAttributes(t *testing.T) {
	p := newPair(t)
	k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagExportable | hsmapi.FlagToken})
	w := p.export(t, k, hsmapi.KEKOAEPSHA256, nil)
	req := p.importReq(k, w, hsmapi.KEKOAEPSHA256, nil)
	req.Attributes = []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: []byte{0x0a, 0x01}}, {Type: hsmapi.CKADerive, Value: []byte{1}}}
	if _, err := p.dst.Import(ctx, req); err != nil {
		t.Fatal(err)
	}
	got, err := p.dst.KeyAttributes(ctx, k.UUID)
	if err != nil {
		t.Fatal(err)
	}
	// Kept as they came, and CKA_LOCAL false: the key was made elsewhere.
	if len(got) != 3 || got[0].Type != hsmapi.CKAID || !bytes.Equal(got[0].Value, []byte{0x0a, 0x01}) || got[1].Type != hsmapi.CKADerive ||
		got[2].Type != hsmapi.CKALocal || !bytes.Equal(got[2].Value, []byte{0}) {
		t.Fatalf("attributes after import: %+v", got)
	}
	// Whatever the source said.
	k3 := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagExportable | hsmapi.FlagToken})
	req = p.importReq(k3, p.export(t, k3, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)
	req.Attributes = []hsmapi.Attribute{{Type: hsmapi.CKALocal, Value: []byte{1}}}
	if _, err := p.dst.Import(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got, err := p.dst.Attributes(ctx, k3.UUID, []uint32{hsmapi.CKALocal}); err != nil || len(got) != 1 || !bytes.Equal(got[0].Value, []byte{0}) {
		t.Errorf("a key that said CKA_LOCAL true arrived with %+v (%v)", got, err)
	}

	// The label is not an attribute; a value too long is refused.
	for _, bad := range [][]hsmapi.Attribute{
		{{Type: hsmapi.AttributeLabel, Value: []byte("x")}},
		{{Type: hsmapi.CKAID, Value: make([]byte, hsmapi.MaxAttributeSize+1)}},
		{{Type: hsmapi.CKAID, Value: []byte{1}}, {Type: hsmapi.CKAID, Value: []byte{2}}},
	} {
		k2 := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagExportable | hsmapi.FlagToken})
		req := p.importReq(k2, p.export(t, k2, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)
		req.Attributes = bad
		if _, err := p.dst.Import(ctx, req); !errors.Is(err, hsmapi.ErrBadArguments) {
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
	k, err := s.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: hsmapi.FlagDigitalSignature, Label: "loaded"})
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
	if err != nil || len(attrs) != 1 || attrs[0].Type != hsmapi.CKALocal || !bytes.Equal(attrs[0].Value, []byte{0}) {
		t.Fatalf("a loaded key is not local: %+v, %v", attrs, err)
	}
	if _, err := s.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der[:len(der)-1], Flags: hsmapi.FlagDigitalSignature}); !errors.Is(err, hsmapi.ErrUnsupportedKey) {
		t.Errorf("truncated PKCS#8: %v", err)
	}
	// Volatile: gone when the session logs out.
	if err := s.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	s = login(t, h)
	if _, err := s.Key(ctx, k.UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("volatile loaded key after logout: %v", err)
	}
}
