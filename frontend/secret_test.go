package frontend_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// TestSecretKeysThroughHandles: a client makes an AES key, wraps a key
// under it and unwraps it again by handle; the unwrapped key signs under
// the original's public key; OAEP encrypts and decrypts; a token without
// the operations is refused.
func TestSecretKeysThroughHandles(t *testing.T) {
	f := frontend.New(newHSM(t))
	c := login(t, f, hsmapi.UserNormal)
	aes, info, err := c.GenerateSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 256, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken})
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != hsmapi.KeyTypeAES {
		t.Fatalf("%+v", info)
	}
	target, tinfo := generateP256(t, c, hsmapi.FlagDigitalSignature|hsmapi.FlagExportable)
	kwp := hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrapKWP}
	blob, err := c.WrapKey(ctx, aes, target, kwp)
	if err != nil {
		t.Fatal(err)
	}
	u, _, err := c.UnwrapKey(ctx, aes, kwp, blob, hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeECPrivate, Flags: hsmapi.FlagDigitalSignature})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("m"))
	sig, _, err := c.Sign(ctx, u, 0, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	pub, err := hsmapi.ParsePublicKey(tinfo.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := hsmapi.VerifyDigest(pub, digest[:], sig, crypto.SHA256); err != nil {
		t.Error(err)
	}

	rsaKey, _, err := c.Create(func(tok hsmapi.Token) (hsmapi.KeyInfo, error) {
		return tok.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagDataEncipherment})
	})
	if err != nil {
		t.Fatal(err)
	}
	p := hsmapi.OAEPParams{Hash: crypto.SHA256, MGFHash: crypto.SHA256}
	ct, err := c.Encrypt(ctx, rsaKey, p, []byte("data"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := c.Decrypt(ctx, rsaKey, p, ct); err != nil || !bytes.Equal(pt, []byte("data")) {
		t.Errorf("decrypt: %q, %v", pt, err)
	}

	// A loaded AES key is the value given: the same key wrapped under it
	// and under a second load of the value is the same blob (KWP is
	// deterministic).
	value := bytes.Repeat([]byte{0x5A}, 32)
	var blobs [][]byte
	for range 2 {
		h, info, err := c.LoadSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 256, Flags: hsmapi.FlagKeyEncipherment}, value)
		if err != nil {
			t.Fatal(err)
		}
		if info.Type != hsmapi.KeyTypeAES || info.Bits != 256 {
			t.Fatalf("loaded %+v", info)
		}
		blob, err := c.WrapKey(ctx, h, target, kwp)
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, blob)
	}
	if !bytes.Equal(blobs[0], blobs[1]) {
		t.Error("two AES keys loaded with one value wrap a key differently")
	}

	plain := login(t, frontend.New(&counting{h: newHSM(t)}), hsmapi.UserNormal)
	if _, _, err := plain.GenerateSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 128}); !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Errorf("a token without secret keys: %v", err)
	}
	if _, _, err := plain.LoadSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 128}, make([]byte, 16)); !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Errorf("a token that loads no secret keys: %v", err)
	}
}
