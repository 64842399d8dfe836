package rpc

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// TestSecretKeysOverRPC: AES keys, wraps, unwraps, RSA-OAEP and trust go
// over the extensions as in-process: an unwrapped key signs under the
// original's public key, the key policy's refusals arrive as such, and a
// client of a plain libhal server is told the server cannot.
func TestSecretKeysOverRPC(t *testing.T) {
	addr, _ := served(t)
	c := dialLogin(t, addr)
	aes, err := c.GenerateSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 192, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken, Label: "kek",
		Attributes: []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: []byte{1}}}})
	if err != nil {
		t.Fatal(err)
	}
	if aes.Type != hsmapi.KeyTypeAES || aes.Bits != 192 || aes.Label != "kek" || aes.Flags != hsmapi.FlagKeyEncipherment|hsmapi.FlagToken {
		t.Errorf("over RPC the AES key is %+v", aes)
	}
	if got, err := c.Key(ctx, aes.UUID); err != nil || got.Bits != 192 || got.Type != hsmapi.KeyTypeAES {
		t.Errorf("Key of the AES key: %+v, %v", got, err)
	}
	target, err := c.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagExportable})
	if err != nil {
		t.Fatal(err)
	}
	rsaW, err := c.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagKeyEncipherment})
	if err != nil {
		t.Fatal(err)
	}
	oaep := hsmapi.OAEPParams{Hash: crypto.SHA256, MGFHash: crypto.SHA1, Label: []byte("l")}
	digest := sha256.Sum256([]byte("over RPC"))
	pub, err := hsmapi.ParsePublicKey(target.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		key  hsmapi.UUID
		mech hsmapi.WrapMechanism
	}{
		{aes.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrapKWP}},
		{rsaW.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAAESKeyWrap, OAEP: oaep, AESKeyBits: 128}},
	} {
		blob, err := c.WrapKey(ctx, w.key, target.UUID, w.mech)
		if err != nil {
			t.Fatalf("wrap with 0x%x: %v", w.mech.Mechanism, err)
		}
		u, err := c.UnwrapKey(ctx, w.key, w.mech, blob, hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeECPrivate, Flags: hsmapi.FlagDigitalSignature, Label: "copy"})
		if err != nil {
			t.Fatalf("unwrap with 0x%x: %v", w.mech.Mechanism, err)
		}
		sig, err := c.Sign(ctx, u.UUID, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if err := hsmapi.VerifyDigest(pub, digest[:], sig, crypto.SHA256); err != nil {
			t.Errorf("0x%x: the unwrapped key's signature under the original's public key: %v", w.mech.Mechanism, err)
		}
		blob[len(blob)-1] ^= 1
		if _, err := c.UnwrapKey(ctx, w.key, w.mech, blob, hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeECPrivate, Flags: hsmapi.FlagDigitalSignature}); !errors.Is(err, hsmapi.ErrDecryption) {
			t.Errorf("0x%x: a flipped blob: %v", w.mech.Mechanism, err)
		}
	}

	// The wrapping key never decrypts what it wrapped.
	blob, err := c.WrapKey(ctx, rsaW.UUID, aes.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAOAEP, OAEP: oaep})
	if !errors.Is(err, wire.StatusForbidden) || blob != nil {
		t.Errorf("wrap of a key not exportable: %v", err)
	}
	if pt, err := c.Decrypt(ctx, rsaW.UUID, oaep, make([]byte, 256)); !errors.Is(err, wire.StatusForbidden) || pt != nil {
		t.Errorf("decrypt with a wrapping key: %v", err)
	}
	dec, err := c.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagDataEncipherment})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := c.Encrypt(ctx, dec.UUID, oaep, []byte("data"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := c.Decrypt(ctx, dec.UUID, oaep, ct); err != nil || !bytes.Equal(pt, []byte("data")) {
		t.Errorf("decrypt: %q, %v", pt, err)
	}

	// Trust is the SO's.
	if err := c.SetTrusted(ctx, aes.UUID, true); err != nil {
		t.Errorf("wheel trusts: %v", err)
	}
	user := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	if err := user.SetTrusted(ctx, aes.UUID, false); !errors.Is(err, wire.StatusForbidden) {
		t.Errorf("the user calls SetTrusted: %v", err)
	}
	so := dialAs(t, addr, hsmapi.UserSO, []byte("so-pin"))
	if err := so.SetTrusted(ctx, aes.UUID, false); err != nil {
		t.Errorf("the SO calls SetTrusted: %v", err)
	}
	attrs, err := c.KeyAttributes(ctx, aes.UUID)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range attrs {
		if a.Type == hsmapi.CKATrusted && !bytes.Equal(a.Value, []byte{0}) {
			t.Errorf("CKA_TRUSTED after the SO cleared it: %x", a.Value)
		}
	}

	c.ext = nil // as a client of a Cryptech HSM
	if _, err := c.GenerateSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 128}); !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Errorf("over plain libhal: %v", err)
	}
}
