package cryptoki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"math/big"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// The key attributes C_CreateObject takes, by class and key type. An HSS
// private key is never loaded: a copy of its state would sign twice with
// one one-time key.
var createAttrs = map[[2]uint64][]uint{
	{ClassPublicKey, KeyTypeRSA}: {attrModulus, attrPublicExponent},
	{ClassPublicKey, KeyTypeEC}:  {attrECParams, attrECPoint},
	{ClassPublicKey, KeyTypeHSS}: {attrValue},
	{ClassPrivateKey, KeyTypeRSA}: {
		attrModulus, attrPublicExponent, attrPrivateExponent, attrPrime1, attrPrime2,
		attrExponent1, attrExponent2, attrCoefficient,
	},
	{ClassPrivateKey, KeyTypeEC}: {attrECParams, attrValue},
	{ClassSecretKey, KeyTypeAES}: {attrValue, attrValueLen},
}

// notLocal marks a key not made in the HSM (CKA_LOCAL false).
var notLocal = hsmapi.Attribute{Type: hsmapi.CKALocal, Value: []byte{0}}

// CreateObject is C_CreateObject for key objects: a public key (RSA, EC,
// HSS) is stored as the HSM's public key alone; a private key (RSA, EC)
// is loaded into the HSM (hsmapi.PrivateKeyLoader) and appears as a key
// pair, both marked not local. A template with CKA_TOKEN false makes a
// session object: a volatile key of the HSM. Private key values in tmpl
// are the caller's to clear.
func (m *Module) CreateObject(sh uint, tmpl []Attribute) (uint, RV) {
	if rv := m.sessionValid(sh); rv != OK {
		return 0, rv
	}
	var class, keyType uint64
	var hasClass, hasType bool
	for _, a := range tmpl {
		switch a.Type {
		case attrClass:
			c, ok := ulongOf(a.Value)
			if !ok {
				return 0, AttributeValueInvalid
			}
			class, hasClass = c, true
		case attrKeyType:
			t, ok := ulongOf(a.Value)
			if !ok {
				return 0, AttributeValueInvalid
			}
			keyType, hasType = t, true
		}
	}
	if !hasClass || !hasType {
		return 0, TemplateIncomplete
	}
	keyAttrs, ok := createAttrs[[2]uint64{class, keyType}]
	if !ok {
		// Data objects and certificates have no place in the HSM.
		return 0, AttributeValueInvalid
	}
	n, rv := parseNew(uint(class), tmpl, keyAttrs...)
	if rv != OK {
		return 0, rv
	}
	if class == ClassSecretKey {
		return m.createSecret(sh, n)
	}
	priv, pub := &n, (*newObject)(nil)
	if class == ClassPublicKey {
		priv, pub = nil, &n
	}
	flags, rv := keyFlags(priv, pub)
	if rv != OK {
		return 0, rv
	}
	if rv := m.writable(sh, flags); rv != OK {
		return 0, rv
	}
	tok, rv := m.sessionToken(sh)
	if rv != OK {
		return 0, rv
	}
	if class == ClassPublicKey {
		return m.createPublic(sh, tok, n, keyType, flags)
	}
	return m.createPrivate(sh, tok, n, keyType, flags)
}

func (m *Module) createPublic(sh uint, tok hsmapi.Token, n newObject, keyType uint64, flags hsmapi.Flags) (uint, RV) {
	spki, rv := n.publicKey(keyType)
	if rv != OK {
		return 0, rv
	}
	label, _ := n.label()
	if hsmapi.CheckRawLabel(label) != nil {
		return 0, AttributeValueInvalid
	}
	res, err := tok.Import(context.Background(), hsmapi.ImportRequest{
		PublicKey: spki, Flags: flags, Label: label, Attributes: append(n.stored(), notLocal),
	})
	if err != nil {
		return 0, createRV(err)
	}
	h, rv := m.adopt(sh, res.Key)
	return h.pub, rv
}

// publicKey is the SubjectPublicKeyInfo a public key template gives.
func (n newObject) publicKey(keyType uint64) ([]byte, RV) {
	var pub any
	switch keyType {
	case KeyTypeRSA:
		mod, ok1 := n.given[attrModulus]
		exp, ok2 := n.given[attrPublicExponent]
		if !ok1 || !ok2 {
			return nil, TemplateIncomplete
		}
		e := new(big.Int).SetBytes(exp)
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			return nil, AttributeValueInvalid
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(mod), E: int(e.Int64())}
	case KeyTypeEC:
		params, ok1 := n.given[attrECParams]
		point, ok2 := n.given[attrECPoint]
		if !ok1 || !ok2 {
			return nil, TemplateIncomplete
		}
		c, err := hsmapi.ParseECParams(params)
		if err != nil {
			return nil, CurveNotSupported
		}
		// CKA_EC_POINT is a DER OCTET STRING; some applications give the
		// bare point. A bare point can read as an OCTET STRING too (it
		// starts 0x04; a P-256 point whose X starts 0x3F reads as one of
		// 63 bytes), so the OCTET STRING is taken only when what it holds
		// is a point of the curve.
		p, ok := ecPoint(c.Elliptic(), point)
		if !ok {
			return nil, AttributeValueInvalid
		}
		pub = p
	case KeyTypeHSS:
		v, ok := n.given[attrValue]
		if !ok {
			return nil, TemplateIncomplete
		}
		p, err := hashsig.ParsePublicKey(v)
		if err != nil {
			return nil, AttributeValueInvalid
		}
		return hashsig.MarshalPKIXPublicKey(p), OK
	}
	if _, _, _, err := hsmapi.DescribeKey(pub, false); err != nil {
		return nil, AttributeValueInvalid
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, AttributeValueInvalid
	}
	return spki, OK
}

func (m *Module) createPrivate(sh uint, tok hsmapi.Token, n newObject, keyType uint64, flags hsmapi.Flags) (uint, RV) {
	label, _ := n.label()
	if hsmapi.CheckLabel(label) != nil {
		// What a key loaded in the clear may be called (LoadRequest).
		return 0, AttributeValueInvalid
	}
	loader, ok := tok.(hsmapi.PrivateKeyLoader)
	if !ok {
		return 0, FunctionFailed
	}
	der, rv := n.pkcs8(keyType)
	if rv != OK {
		return 0, rv
	}
	defer clear(der)
	k, err := loader.LoadPrivateKey(context.Background(), hsmapi.LoadRequest{
		PKCS8: der, Flags: flags, Label: label, Attributes: append(n.stored(), notLocal),
	})
	if err != nil {
		return 0, createRV(err)
	}
	h, rv := m.adopt(sh, k)
	return h.priv, rv
}

// createSecret loads an AES key given in the clear
// (hsmapi.SecretKeyLoader), with the usages secretKeyFlags gives, as
// C_GenerateKey would make it; never CKA_LOCAL.
func (m *Module) createSecret(sh uint, n newObject) (uint, RV) {
	value := n.given[attrValue]
	if size, ok := n.ulong(attrValueLen); ok && size != uint64(len(value)) {
		return 0, TemplateInconsistent
	}
	if hsmapi.CheckAESBits(len(value)*8) != nil {
		return 0, AttributeValueInvalid
	}
	req, rv := m.secretRequest(sh, n, len(value)*8)
	if rv != OK {
		return 0, rv
	}
	tok, rv := m.sessionToken(sh)
	if rv != OK {
		return 0, rv
	}
	loader, ok := tok.(hsmapi.SecretKeyLoader)
	if !ok {
		return 0, FunctionFailed
	}
	k, err := loader.LoadSecretKey(context.Background(), req, value)
	if err != nil {
		return 0, createRV(err)
	}
	h, rv := m.adopt(sh, k)
	return h.pub, rv
}

// pkcs8 is the PrivateKeyInfo a private key template gives; the caller
// clears it.
func (n newObject) pkcs8(keyType uint64) ([]byte, RV) {
	var key any
	switch keyType {
	case KeyTypeRSA:
		var v [5][]byte
		for i, t := range []uint{attrModulus, attrPublicExponent, attrPrivateExponent, attrPrime1, attrPrime2} {
			var ok bool
			if v[i], ok = n.given[t]; !ok {
				return nil, TemplateIncomplete
			}
		}
		e := new(big.Int).SetBytes(v[1])
		if !e.IsInt64() || e.Int64() > 1<<31-1 {
			return nil, AttributeValueInvalid
		}
		k := &rsa.PrivateKey{
			PublicKey: rsa.PublicKey{N: new(big.Int).SetBytes(v[0]), E: int(e.Int64())},
			D:         new(big.Int).SetBytes(v[2]),
			Primes:    []*big.Int{new(big.Int).SetBytes(v[3]), new(big.Int).SetBytes(v[4])},
		}
		// The CRT values are computed again, and the key checked whole:
		// a template's own could disagree with the primes.
		if err := k.Validate(); err != nil {
			return nil, AttributeValueInvalid
		}
		k.Precompute()
		key = k
	case KeyTypeEC:
		params, ok1 := n.given[attrECParams]
		d, ok2 := n.given[attrValue]
		if !ok1 || !ok2 {
			return nil, TemplateIncomplete
		}
		c, err := hsmapi.ParseECParams(params)
		if err != nil {
			return nil, CurveNotSupported
		}
		// CKA_VALUE may come without its leading zeros.
		size := (c.Elliptic().Params().BitSize + 7) / 8
		if len(d) > size {
			return nil, AttributeValueInvalid
		}
		padded := make([]byte, size)
		copy(padded[size-len(d):], d)
		defer clear(padded)
		k, err := ecdsa.ParseRawPrivateKey(c.Elliptic(), padded)
		if err != nil {
			return nil, AttributeValueInvalid
		}
		key = k
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, AttributeValueInvalid
	}
	return der, OK
}

// ecPoint reads CKA_EC_POINT on curve: a DER OCTET STRING holding the
// uncompressed point, else the bare point.
func ecPoint(curve elliptic.Curve, v []byte) (*ecdsa.PublicKey, bool) {
	var raw []byte
	if rest, err := asn1.Unmarshal(v, &raw); err == nil && len(rest) == 0 {
		if p, err := ecdsa.ParseUncompressedPublicKey(curve, raw); err == nil {
			return p, true
		}
	}
	p, err := ecdsa.ParseUncompressedPublicKey(curve, v)
	return p, err == nil
}
