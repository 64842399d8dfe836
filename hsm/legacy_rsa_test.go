package hsm

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/testkeys"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// fullPKCS11Attributes is what a key pair made by a PKCS#11 application
// carries: the private object's attributes and the public object's, as
// p11 stores them. It makes a key record as large as one gets.
func fullPKCS11Attributes() []hsmapi.Attribute {
	var attrs []hsmapi.Attribute
	for _, t := range []uint32{hsmapi.CKAToken, hsmapi.CKAPrivate, hsmapi.CKASensitive, hsmapi.CKADecrypt, hsmapi.CKAUnwrap, hsmapi.CKASign, hsmapi.CKASignRecover,
		hsmapi.CKADerive, hsmapi.CKAExtractable, hsmapi.CKALocal, hsmapi.CKANeverExtractable, hsmapi.CKAAlwaysSensitive, hsmapi.CKAModifiable, hsmapi.CKACopyable,
		hsmapi.CKADestroyable, hsmapi.CKAAlwaysAuthenticate, hsmapi.CKAWrapWithTrusted} {
		attrs = append(attrs, hsmapi.Attribute{Type: t, Value: []byte{1}})
	}
	attrs = append(attrs,
		hsmapi.Attribute{Type: hsmapi.CKAID, Value: bytes.Repeat([]byte{0x0a}, 20)},
		hsmapi.Attribute{Type: hsmapi.CKASubject, Value: bytes.Repeat([]byte{0x30}, 200)},
		hsmapi.Attribute{Type: hsmapi.CKAStartDate, Value: []byte("20250101")},
		hsmapi.Attribute{Type: hsmapi.CKAEndDate, Value: []byte("20351231")},
		hsmapi.Attribute{Type: hsmapi.AttributePublicObject, Value: hsmapi.EncodeAttributes([]hsmapi.Attribute{
			{Type: hsmapi.CKAToken, Value: []byte{1}}, {Type: hsmapi.CKAPrivate, Value: []byte{0}}, {Type: hsmapi.CKAEncrypt, Value: []byte{1}},
			{Type: hsmapi.CKAWrap, Value: []byte{1}}, {Type: hsmapi.CKAVerify, Value: []byte{1}}, {Type: hsmapi.CKAVerifyRecover, Value: []byte{1}},
			{Type: hsmapi.CKATrusted, Value: []byte{0}}, {Type: hsmapi.CKAModifiable, Value: []byte{1}},
			{Type: hsmapi.CKAID, Value: bytes.Repeat([]byte{0x0a}, 20)}, {Type: hsmapi.CKASubject, Value: bytes.Repeat([]byte{0x30}, 200)},
		})})
	return attrs
}

// TestLegacyRSASizes: RSA keys of 1024 to 8192 bits, and with e = 3, load,
// sign, export, import and sign on the destination, as libhal takes them;
// the destination's signature verifies under the source's public key.
func TestLegacyRSASizes(t *testing.T) {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p := newPair(t)
	// The keys carry CKA_WRAP_WITH_TRUSTED, as every attribute is set to
	// make the record as large as one gets: the source's SO trusts the
	// destination's KEKEK, as an operator must for such keys to leave.
	trustKEKEK(t, p.src.h, p.src, p.kekek.PublicKey)
	label := strings.Repeat("L", hsmapi.MaxLabelLength)
	for name, key := range map[string]*rsa.PrivateKey{"1024": rsa1024, "1024-e3": testkeys.RSA1024E3(t), "8192": testkeys.RSA8192(t)} {
		t.Run(name, func(t *testing.T) {
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			k, err := p.src.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: signFlags | hsmapi.FlagExportable, Label: label, Attributes: fullPKCS11Attributes()})
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			// The longest label a key keeps, as a libhal client may set it.
			k.Label = strings.Repeat("\xff", hsmapi.MaxRawLabelLength)
			if err := p.src.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte(k.Label)}}); err != nil {
				t.Fatal(err)
			}
			if k.Bits != key.N.BitLen() || k.Type != hsmapi.KeyTypeRSAPrivate {
				t.Fatalf("loaded %v of %d bits", k.Type, k.Bits)
			}
			for _, enc := range []hsmapi.KEKEncryption{hsmapi.KEKOAEPSHA256, hsmapi.KEKPKCS1v15} {
				w := p.export(t, k, enc, []byte("binding"))
				req := p.importReq(k, w, enc, []byte("binding"))
				req.Attributes = fullPKCS11Attributes()
				res, err := p.dst.Import(ctx, req)
				if err != nil {
					t.Fatalf("import (%s): %v", enc, err)
				}
				if res.Key.Bits != key.N.BitLen() {
					t.Fatalf("imported %d bits", res.Key.Bits)
				}
			}
			digest := sha256.Sum256([]byte("signed with a legacy key"))
			sig, err := p.dst.Sign(ctx, k.UUID, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
				t.Fatalf("the destination's signature does not verify under the original key: %v", err)
			}
			if err := p.dst.Verify(ctx, k.UUID, digest[:], sig, crypto.SHA256); err != nil {
				t.Fatal(err)
			}
			sig[0] ^= 1
			if err := p.dst.Verify(ctx, k.UUID, digest[:], sig, crypto.SHA256); !errors.Is(err, hsmapi.ErrInvalidSignature) {
				t.Fatalf("a flipped signature: %v", err)
			}
			rec, err := p.dstHSM.ks.Get(keystore.ID(k.UUID))
			if err != nil {
				t.Fatal(err)
			}
			// The figure docs/rpc.md gives: the largest record, an RSA-8192
			// key with a full PKCS#11 attribute set and the longest label.
			t.Logf("RSA-%s key record with a full PKCS#11 attribute set: %d bytes of %d", name, len(rec.Data), keystore.MaxDataSize)
		})
	}
}

// TestLegacyRSARefusals: what stays refused. Keys under 2048 bits are not
// made here, nor used as a KEKEK; keys outside 1024 to 8192 bits, or with
// an even exponent, are not held at all.
func TestLegacyRSARefusals(t *testing.T) {
	p := newPair(t)
	if _, err := p.src.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 1024, Flags: signFlags}); !errors.Is(err, hsmapi.ErrBadArguments) ||
		!strings.Contains(err.Error(), "RSA keys under 2048 bits can be moved and used but not generated") {
		t.Errorf("generate RSA-1024: %v", err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&small.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hsmapi.ParseKEKEK(spki); !errors.Is(err, hsmapi.ErrUnsupportedKey) {
		t.Errorf("a 1024-bit public KEKEK: %v", err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(small)
	kekek, err := p.dst.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: kekekFlags})
	if err != nil {
		t.Fatal(err)
	}
	k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
	// Wrapped for the 1024-bit key by hand: export refuses to.
	w := p.export(t, k, hsmapi.KEKOAEPSHA256, nil)
	req := p.importReq(k, w, hsmapi.KEKOAEPSHA256, nil)
	req.KEKEKUUID = kekek.UUID
	if _, err := p.dst.Import(ctx, req); !errors.Is(err, hsmapi.ErrUnsupportedKey) || !strings.Contains(err.Error(), "at least 2048") {
		t.Errorf("import through a 1024-bit KEKEK: %v", err)
	}

	odd := func(bits int) *big.Int {
		n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits)))
		return n.SetBit(n, bits-1, 1).SetBit(n, 0, 1)
	}
	for name, pub := range map[string]*rsa.PublicKey{
		"1016 bits": {N: odd(1016), E: 65537},
		"8200 bits": {N: odd(8200), E: 65537},
		"e = 4":     {N: odd(2048), E: 4},
	} {
		spki, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.dst.Import(ctx, hsmapi.ImportRequest{PublicKey: spki, Flags: signFlags}); !errors.Is(err, hsmapi.ErrUnsupportedKey) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
