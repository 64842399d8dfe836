package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"math/big"
	"testing"

	"github.com/miekg/pkcs11"
)

// TestModuleSecretKeys loads the built module with miekg/pkcs11: an AES key
// from C_GenerateKey wraps an EC key (RFC 5649) that C_UnwrapKey brings
// back and that then signs under the original's public key; RSA-OAEP
// encrypts and decrypts; and a key pair that may both unwrap and decrypt
// neither wraps nor decrypts (the wrap-then-decrypt extraction).
func TestModuleSecretKeys(t *testing.T) {
	p, s := loggedInModule(t)
	ms, err := p.GetMechanismList(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []uint{pkcs11.CKM_AES_KEY_GEN, pkcs11.CKM_AES_KEY_WRAP, pkcs11.CKM_AES_KEY_WRAP_PAD, 0x210B, pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.CKM_RSA_AES_KEY_WRAP} {
		if !hasMechanism(ms, m) {
			t.Errorf("mechanism %#x not listed", m)
		}
	}
	aes, err := p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.GetAttributeValue(s, aes, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	wantErr(t, "CKA_VALUE of an AES key", err, pkcs11.CKR_ATTRIBUTE_SENSITIVE)

	ecParams := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	ecPub, ecPriv, err := p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, ecParams), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)})
	if err != nil {
		t.Fatal(err)
	}
	pad := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}
	blob, err := p.WrapKey(s, pad, aes, ecPriv)
	if err != nil {
		t.Fatal(err)
	}
	u, err := p.UnwrapKey(s, pad, aes, blob, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true)})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("signed by an unwrapped key"))
	if err := p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, u); err != nil {
		t.Fatal(err)
	}
	sig, err := p.Sign(s, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	ec := publicKey(t, p, s, ecPub).(*ecdsa.PublicKey)
	if len(sig) != 64 || !ecdsa.Verify(ec, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		t.Error("the unwrapped key's signature does not verify under the original public key")
	}
	blob[3] ^= 1
	_, err = p.UnwrapKey(s, pad, aes, blob, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)})
	wantErr(t, "unwrap a flipped blob", err, pkcs11.CKR_WRAPPED_KEY_INVALID)

	rsaPair := func(priv ...*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle) {
		t.Helper()
		pub, sk, err := p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)},
			[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 2048)},
			append([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)}, priv...))
		if err != nil {
			t.Fatal(err)
		}
		return pub, sk
	}
	oaep := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP,
		pkcs11.NewOAEPParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pkcs11.CKZ_DATA_SPECIFIED, nil))}
	encPub, encPriv := rsaPair(pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true))
	if err := p.EncryptInit(s, oaep, encPub); err != nil {
		t.Fatal(err)
	}
	ct, err := p.Encrypt(s, []byte("data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.DecryptInit(s, oaep, encPriv); err != nil {
		t.Fatal(err)
	}
	if pt, err := p.Decrypt(s, ct); err != nil || !bytes.Equal(pt, []byte("data")) {
		t.Errorf("decrypt: %q, %v", pt, err)
	}

	secret, err := p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 16), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)})
	if err != nil {
		t.Fatal(err)
	}
	// A pair that would both unwrap and decrypt is not made; one that
	// unwraps wraps, and never decrypts what it wrapped.
	_, _, err = p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 2048)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true)})
	wantErr(t, "a key pair that unwraps and decrypts", err, pkcs11.CKR_TEMPLATE_INCONSISTENT)
	wrapPub, wrapPriv := rsaPair(pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true))
	blob, err = p.WrapKey(s, oaep, wrapPub, secret)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "decrypt with the key that unwraps", p.DecryptInit(s, oaep, wrapPriv), pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)
	_, err = p.WrapKey(s, oaep, encPub, secret)
	wantErr(t, "wrap under a key that decrypts", err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)
	k, err := p.UnwrapKey(s, oaep, wrapPriv, blob, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := p.GetAttributeValue(s, k, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LOCAL, nil), pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil)})
	if err != nil || !bytes.Equal(attrs[0].Value, []byte{0}) || len(attrs[1].Value) != 8 || attrs[1].Value[0] != 16 {
		t.Errorf("the unwrapped AES key: %v, %v", attrs, err)
	}
}
