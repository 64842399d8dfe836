//go:build cgo

package p11

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
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

// kekekProfile is what the private object of a KEKEK made by GenerateKEKEK
// has, and why: each other value lets whoever has the token's user PIN
// read the KEK of a bundle made for it, and with the KEK the bundle's keys
// (openssl enc -d -id-aes256-wrap-pad). Besides, its CKA_UNWRAP_TEMPLATE
// forces kekPolicy.
var kekekProfile = []struct {
	attr uint
	want bool
	why  string
}{
	{pkcs11.CKA_UNWRAP, true, "lacks CKA_UNWRAP"},
	{pkcs11.CKA_DECRYPT, false, "has CKA_DECRYPT (C_Decrypt of a bundle's kek gives the KEK)"},
	{pkcs11.CKA_SIGN, false, "has CKA_SIGN (C_Sign with CKM_RSA_X_509 is raw RSA decryption of a bundle's kek)"},
	{pkcs11.CKA_SIGN_RECOVER, false, "has CKA_SIGN_RECOVER (C_SignRecover with CKM_RSA_X_509 is raw RSA decryption of a bundle's kek)"},
	{pkcs11.CKA_DERIVE, false, "has CKA_DERIVE, a usage no KEKEK needs"},
	{pkcs11.CKA_MODIFIABLE, false, "is modifiable (C_SetAttributeValue can give it CKA_DECRYPT)"},
	{pkcs11.CKA_SENSITIVE, true, "is not sensitive (its private exponent can be read)"},
	{pkcs11.CKA_EXTRACTABLE, false, "is extractable (it can be wrapped out under a key of one's own and read)"},
	// Tokens of PKCS#11 before v2.40 lack it: absent, it is not asked for.
	{pkcs11.CKA_COPYABLE, false, "is copyable (C_CopyObject may give the copy other attributes on some tokens)"},
}

// attributeNames names the attributes a KEKEK's flaws are told in.
var attributeNames = map[uint]string{
	pkcs11.CKA_CLASS: "CKA_CLASS", pkcs11.CKA_KEY_TYPE: "CKA_KEY_TYPE", pkcs11.CKA_TOKEN: "CKA_TOKEN",
	pkcs11.CKA_SENSITIVE: "CKA_SENSITIVE", pkcs11.CKA_EXTRACTABLE: "CKA_EXTRACTABLE", pkcs11.CKA_ENCRYPT: "CKA_ENCRYPT",
	pkcs11.CKA_DECRYPT: "CKA_DECRYPT", pkcs11.CKA_SIGN: "CKA_SIGN", pkcs11.CKA_VERIFY: "CKA_VERIFY",
	pkcs11.CKA_DERIVE: "CKA_DERIVE", pkcs11.CKA_MODIFIABLE: "CKA_MODIFIABLE", pkcs11.CKA_UNWRAP: "CKA_UNWRAP",
	pkcs11.CKA_SIGN_RECOVER: "CKA_SIGN_RECOVER", pkcs11.CKA_COPYABLE: "CKA_COPYABLE",
}

var (
	_ hsmapi.KEKEKGenerator = (*Token)(nil)
	_ hsmapi.KEKEKVetter    = (*Token)(nil)
)

// GenerateKEKEK makes a KEKEK that unwraps and does nothing else: an RSA
// key pair whose private object has kekekProfile (CKA_UNWRAP and no other
// usage, sensitive, not extractable, neither modifiable nor copyable) and
// forces kekPolicy on what it unwraps; its public object has CKA_WRAP only.
// A token that does not know CKA_COPYABLE (before PKCS#11 v2.40) makes it
// without.
func (t *Token) GenerateKEKEK(_ context.Context, bits int, label string) (hsmapi.KeyInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	policy, free := attributeArray(kekPolicy())
	defer free()
	gen := func(copyable bool) (hsmapi.KeyInfo, error) {
		return t.generate(hsmapi.GenerateRequest{
			Type: hsmapi.KeyTypeRSAPrivate, Bits: bits, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken, Label: label,
		}, func(priv, _ *template) {
			priv.set(pkcs11.CKA_MODIFIABLE, false)
			if !copyable {
				priv.set(pkcs11.CKA_COPYABLE, false)
			}
			priv.set(pkcs11.CKA_UNWRAP_TEMPLATE, policy)
		})
	}
	k, err := gen(false)
	if isCode(err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID) {
		k, err = gen(true)
	}
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("KEKEK: %w", err)
	}
	return k, nil
}

// KEKEKFlaws says what the key does, that a KEKEK made by GenerateKEKEK
// does not, by which whoever has the token's user PIN could read the KEK of
// a bundle made for it: a usage that decrypts (CKA_DECRYPT, or CKA_SIGN
// with raw RSA), a policy that lets it be read or changed, an unwrap
// template that does not keep the KEK secret. None for a KEKEK of that
// profile. Its flags cannot tell: keyencipherment is CKA_UNWRAP alone.
func (t *Token) KEKEKFlaws(_ context.Context, id hsmapi.UUID) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	flaws, err := t.kekekFlaws(id)
	if err != nil {
		return nil, fmt.Errorf("check KEKEK %s: %w", id, err)
	}
	return flaws, nil
}

// kekekFlaws is KEKEKFlaws. Called with t.mu held.
func (t *Token) kekekFlaws(id hsmapi.UUID) ([]string, error) {
	lockassert.Held(&t.mu)
	o, err := t.sessionObject(id)
	if err != nil {
		return nil, err
	}
	if !o.hasPriv {
		return []string{"is a public key alone"}, nil
	}
	var flaws []string
	for _, p := range kekekProfile {
		a, err := t.raw.GetAttributeValue(t.sess, o.priv, []*pkcs11.Attribute{pkcs11.NewAttribute(p.attr, nil)})
		switch {
		case p.attr == pkcs11.CKA_COPYABLE && isCode(err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID):
		case err != nil || len(a) != 1 || len(a[0].Value) != 1:
			flaws = append(flaws, fmt.Sprintf("does not show %s (%v)", attributeNames[p.attr], err))
		case boolAttr(a[0].Value) != p.want:
			flaws = append(flaws, p.why)
		}
	}
	// What cannot be read cannot be checked: a flaw, so that setup passes
	// over an application's key rather than fail on it.
	forced, err := t.templateAttribute(o.priv, pkcs11.CKA_UNWRAP_TEMPLATE)
	switch {
	case err != nil:
		return append(flaws, fmt.Sprintf("has a CKA_UNWRAP_TEMPLATE that cannot be read back, so cannot be checked (%v)", err)), nil
	case len(forced) == 0:
		return append(flaws, "has no CKA_UNWRAP_TEMPLATE (C_UnwrapKey of a bundle's kek makes the KEK a key that is not sensitive, and CKA_VALUE shows it)"), nil
	}
	var free []string
	for _, want := range kekPolicy() {
		i := slices.IndexFunc(forced, func(a *pkcs11.Attribute) bool { return a.Type == want.Type })
		if i < 0 || !bytes.Equal(forced[i].Value, want.Value) {
			free = append(free, attributeNames[want.Type])
		}
	}
	if len(free) > 0 {
		flaws = append(flaws, fmt.Sprintf("has a CKA_UNWRAP_TEMPLATE that does not force %s as a KEKEK's does (C_UnwrapKey of a bundle's kek may make the KEK a key that can be read, or changed, or that decrypts)", strings.Join(free, ", ")))
	}
	return flaws, nil
}
