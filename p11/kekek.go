//go:build cgo

package p11

import (
	"context"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsm"
)

// kekPolicy is what a KEKEK made by GenerateKEKEK forces, as its
// CKA_UNWRAP_TEMPLATE, on every key it unwraps: an AES session key that is
// sensitive, cannot be extracted or changed, and neither encrypts,
// decrypts, signs nor derives. So a bundle's KEK, unwrapped by anyone who
// has the token's user PIN, cannot be read, nor decrypt a bundle's key with
// C_Decrypt; it can only unwrap and wrap. Our own import asks for exactly
// this (SoftHSM2 refuses an unwrap whose template lacks any of it).
func kekPolicy() []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, false),
	}
}

// GenerateKEKEK makes a KEKEK that unwraps and does nothing else: an RSA
// key pair whose private object has CKA_UNWRAP and no other usage, is
// sensitive, not extractable, cannot be changed (CKA_MODIFIABLE false) and
// forces kekPolicy on what it unwraps; its public object has CKA_WRAP only.
func (t *Token) GenerateKEKEK(_ context.Context, bits int, label string) (hsm.KeyInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	policy, free := attributeArray(kekPolicy())
	defer free()
	k, err := t.generate(hsm.GenerateRequest{
		Type: hsm.KeyTypeRSAPrivate, Bits: bits, Flags: hsm.FlagKeyEncipherment | hsm.FlagToken, Label: label,
	}, func(priv, _ *template) {
		priv.set(pkcs11.CKA_MODIFIABLE, false)
		priv.set(pkcs11.CKA_UNWRAP_TEMPLATE, policy)
	})
	if err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("KEKEK: %w", err)
	}
	return k, nil
}
