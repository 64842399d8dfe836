//go:build cgo

package p11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"

	"github.com/ThalesIgnite/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsm"
)

// object is a key's objects on the token: a private key, a public key, or
// both, sharing a CKA_ID.
type object struct {
	id        []byte
	priv, pub pkcs11.ObjectHandle
	hasPriv   bool
	hasPub    bool
	info      hsm.KeyInfo
}

// find returns the handles of the objects a template matches. Called with
// t.mu held.
func (t *Token) find(tmpl ...*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := t.raw.FindObjectsInit(t.sess, tmpl); err != nil {
		return nil, err
	}
	defer t.raw.FindObjectsFinal(t.sess)
	var out []pkcs11.ObjectHandle
	for {
		hs, _, err := t.raw.FindObjects(t.sess, 64)
		if err != nil {
			return nil, err
		}
		if len(hs) == 0 {
			return out, nil
		}
		out = append(out, hs...)
	}
}

// attrs reads attributes of an object; one the object lacks, or keeps
// secret, reads as nil.
func (t *Token) attrs(h pkcs11.ObjectHandle, types ...uint) (map[uint][]byte, error) {
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, ty := range types {
		tmpl[i] = pkcs11.NewAttribute(ty, nil)
	}
	out := map[uint][]byte{}
	got, err := t.raw.GetAttributeValue(t.sess, h, tmpl)
	switch {
	case err == nil:
		for _, a := range got {
			out[a.Type] = a.Value
		}
	case isCode(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE) || isCode(err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID):
		// The whole call fails for one bad attribute: ask one at a time.
		for _, ty := range types {
			if one, err := t.raw.GetAttributeValue(t.sess, h, []*pkcs11.Attribute{pkcs11.NewAttribute(ty, nil)}); err == nil && len(one) == 1 {
				out[ty] = one[0].Value
			}
		}
	default:
		return nil, err
	}
	return out, nil
}

func boolAttr(v []byte) bool { return len(v) == 1 && v[0] != 0 }

// keyObjects finds the private and public key objects a template matches
// and groups them by CKA_ID, in the order the token returns them. One search
// for all classes: on SoftHSM2 each search costs a walk of the object
// store, and a transfer looks keys up several times per key. Called with
// t.mu held.
func (t *Token) keyObjects(tmpl ...*pkcs11.Attribute) ([]*object, error) {
	hs, err := t.find(tmpl...)
	if err != nil {
		return nil, err
	}
	privateClass := pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY).Value
	publicClass := pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY).Value
	byID := map[string]*object{}
	var out []*object
	for _, h := range hs {
		a, err := t.attrs(h, pkcs11.CKA_CLASS, pkcs11.CKA_ID)
		if err != nil {
			return nil, err
		}
		class := a[pkcs11.CKA_CLASS]
		if !bytes.Equal(class, privateClass) && !bytes.Equal(class, publicClass) {
			continue
		}
		o, ok := byID[string(a[pkcs11.CKA_ID])]
		if !ok {
			o = &object{id: a[pkcs11.CKA_ID]}
			byID[string(o.id)] = o
			out = append(out, o)
		}
		switch {
		case bytes.Equal(class, privateClass) && !o.hasPriv:
			o.priv, o.hasPriv = h, true
		case bytes.Equal(class, publicClass) && !o.hasPub:
			o.pub, o.hasPub = h, true
		}
	}
	return out, nil
}

// objects lists every key on the token, by UUID. Called with t.mu held.
func (t *Token) objects() ([]*object, error) {
	objs, err := t.keyObjects()
	if err != nil {
		return nil, err
	}
	var out []*object
	for _, o := range objs {
		if err := t.describe(o); err != nil {
			continue // a key this package cannot use (DSA, Ed25519, ...)
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b *object) int { return bytes.Compare(a.info.UUID[:], b.info.UUID[:]) })
	return out, nil
}

// object finds one key by UUID: by its CKA_ID when the UUID is one, else
// among the keys whose CKA_ID it was derived from. Called with t.mu held.
func (t *Token) object(id hsm.UUID) (*object, error) {
	objs, err := t.keyObjects(pkcs11.NewAttribute(pkcs11.CKA_ID, id[:]))
	if err != nil {
		return nil, err
	}
	if len(objs) > 0 && t.describe(objs[0]) == nil {
		return objs[0], nil
	}
	if id[6]>>4 == 8 { // a derived UUID: look for its CKA_ID
		objs, err := t.objects()
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if o.info.UUID == id {
				return o, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: %s", hsm.ErrKeyNotFound, id)
}

// describe fills an object's KeyInfo from its attributes.
func (t *Token) describe(o *object) error {
	h := o.pub
	if o.hasPriv {
		h = o.priv
	}
	a, err := t.attrs(h, pkcs11.CKA_KEY_TYPE, pkcs11.CKA_LABEL, pkcs11.CKA_TOKEN, pkcs11.CKA_EXTRACTABLE,
		pkcs11.CKA_SIGN, pkcs11.CKA_UNWRAP, pkcs11.CKA_DECRYPT, pkcs11.CKA_VERIFY, pkcs11.CKA_WRAP)
	if err != nil {
		return err
	}
	pub, err := t.publicKey(o)
	if err != nil {
		return err
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	info, err := hsm.DescribePublicKey(spki, o.hasPriv)
	if err != nil {
		return err
	}
	info.UUID, info.Label = uuidOf(o.id), string(a[pkcs11.CKA_LABEL])
	flags := hsm.Flags(0)
	for _, m := range []struct {
		attr uint
		flag hsm.Flags
	}{
		{pkcs11.CKA_TOKEN, hsm.FlagToken},
		{pkcs11.CKA_EXTRACTABLE, hsm.FlagExportable},
		{pkcs11.CKA_SIGN, hsm.FlagDigitalSignature},
		{pkcs11.CKA_VERIFY, hsm.FlagDigitalSignature},
		{pkcs11.CKA_UNWRAP, hsm.FlagKeyEncipherment},
		{pkcs11.CKA_WRAP, hsm.FlagKeyEncipherment},
		{pkcs11.CKA_DECRYPT, hsm.FlagDataEncipherment},
	} {
		if boolAttr(a[m.attr]) {
			flags |= m.flag
		}
	}
	info.Flags = flags
	o.info = info
	return nil
}

// publicKey reads a key's public half: from its public key object, or an
// RSA private key's modulus and exponent.
func (t *Token) publicKey(o *object) (crypto.PublicKey, error) {
	h := o.pub
	if !o.hasPub {
		h = o.priv
	}
	a, err := t.attrs(h, pkcs11.CKA_KEY_TYPE, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT, pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT)
	if err != nil {
		return nil, err
	}
	switch keyType(a[pkcs11.CKA_KEY_TYPE]) {
	case pkcs11.CKK_RSA:
		n, e := new(big.Int).SetBytes(a[pkcs11.CKA_MODULUS]), new(big.Int).SetBytes(a[pkcs11.CKA_PUBLIC_EXPONENT])
		if n.Sign() == 0 || !e.IsInt64() {
			return nil, fmt.Errorf("%w: RSA key without modulus", hsm.ErrUnsupportedKey)
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case pkcs11.CKK_EC:
		curve, err := curveOf(a[pkcs11.CKA_EC_PARAMS])
		if err != nil {
			return nil, err
		}
		var point []byte
		if _, err := asn1.Unmarshal(a[pkcs11.CKA_EC_POINT], &point); err != nil {
			return nil, fmt.Errorf("%w: EC key without a public point", hsm.ErrUnsupportedKey)
		}
		pk, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return nil, fmt.Errorf("%w: EC point: %v", hsm.ErrUnsupportedKey, err)
		}
		return pk, nil
	}
	return nil, fmt.Errorf("%w: key type %x", hsm.ErrUnsupportedKey, a[pkcs11.CKA_KEY_TYPE])
}

func keyType(v []byte) uint {
	var k uint
	for i := len(v) - 1; i >= 0; i-- {
		k = k<<8 | uint(v[i]) // CK_ULONG in host (little-endian) order
	}
	return k
}

var curveOIDs = []struct {
	oid   asn1.ObjectIdentifier
	curve elliptic.Curve
	hc    hsm.Curve
}{
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}, elliptic.P256(), hsm.CurveP256},
	{asn1.ObjectIdentifier{1, 3, 132, 0, 34}, elliptic.P384(), hsm.CurveP384},
	{asn1.ObjectIdentifier{1, 3, 132, 0, 35}, elliptic.P521(), hsm.CurveP521},
}

func curveOf(params []byte) (elliptic.Curve, error) {
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(params, &oid); err == nil {
		for _, c := range curveOIDs {
			if c.oid.Equal(oid) {
				return c.curve, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: EC parameters %x", hsm.ErrUnsupportedKey, params)
}

func curveParams(c hsm.Curve) ([]byte, elliptic.Curve, error) {
	for _, e := range curveOIDs {
		if e.hc == c {
			der, err := asn1.Marshal(e.oid)
			return der, e.curve, err
		}
	}
	return nil, nil, fmt.Errorf("%w: unknown curve %v", hsm.ErrBadArguments, c)
}

// keyTemplates are the attributes of a new key pair's objects, from its
// flags.
func keyTemplates(id hsm.UUID, label string, flags hsm.Flags) (pub, priv crypto11.AttributeSet, err error) {
	if pub, err = crypto11.NewAttributeSetWithIDAndLabel(id[:], []byte(label)); err != nil {
		return nil, nil, err
	}
	if priv, err = crypto11.NewAttributeSetWithIDAndLabel(id[:], []byte(label)); err != nil {
		return nil, nil, err
	}
	token := flags&hsm.FlagToken != 0
	ke := flags&hsm.FlagKeyEncipherment != 0
	ds := flags&hsm.FlagDigitalSignature != 0
	for _, s := range []struct {
		set   crypto11.AttributeSet
		attr  uint
		value bool
	}{
		{pub, pkcs11.CKA_TOKEN, token}, {pub, pkcs11.CKA_VERIFY, ds}, {pub, pkcs11.CKA_WRAP, ke},
		{pub, pkcs11.CKA_ENCRYPT, ke || flags&hsm.FlagDataEncipherment != 0},
		{priv, pkcs11.CKA_TOKEN, token}, {priv, pkcs11.CKA_PRIVATE, true}, {priv, pkcs11.CKA_SENSITIVE, true},
		{priv, pkcs11.CKA_EXTRACTABLE, flags&hsm.FlagExportable != 0}, {priv, pkcs11.CKA_SIGN, ds},
		{priv, pkcs11.CKA_UNWRAP, ke}, {priv, pkcs11.CKA_DECRYPT, ke || flags&hsm.FlagDataEncipherment != 0},
	} {
		if err := s.set.Set(s.attr, s.value); err != nil {
			return nil, nil, err
		}
	}
	return pub, priv, nil
}

func (t *Token) GenerateKey(_ context.Context, req hsm.GenerateRequest) (hsm.KeyInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.session(); err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	if err := hsm.CheckLabel(req.Label); err != nil || !req.Flags.Valid() {
		return hsm.KeyInfo{}, fmt.Errorf("generate: %w: bad label or flags", hsm.ErrBadArguments)
	}
	id, err := hsm.NewUUID(nil)
	if err != nil {
		return hsm.KeyInfo{}, err
	}
	pub, priv, err := keyTemplates(id, req.Label, req.Flags)
	if err != nil {
		return hsm.KeyInfo{}, err
	}
	switch req.Type {
	case hsm.KeyTypeRSAPrivate:
		if req.Bits != 2048 && req.Bits != 3072 && req.Bits != 4096 {
			return hsm.KeyInfo{}, fmt.Errorf("generate: %w: RSA keys have 2048, 3072 or 4096 bits", hsm.ErrBadArguments)
		}
		if err := t.require(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN); err != nil {
			return hsm.KeyInfo{}, fmt.Errorf("generate: %w", err)
		}
		_, err = t.c11.GenerateRSAKeyPairWithAttributes(pub, priv, req.Bits)
	case hsm.KeyTypeECPrivate:
		_, curve, cerr := curveParams(req.Curve)
		if cerr != nil {
			return hsm.KeyInfo{}, fmt.Errorf("generate: %w", cerr)
		}
		if err := t.require(pkcs11.CKM_EC_KEY_PAIR_GEN); err != nil {
			return hsm.KeyInfo{}, fmt.Errorf("generate: %w", err)
		}
		_, err = t.c11.GenerateECDSAKeyPairWithAttributes(pub, priv, curve)
	case hsm.KeyTypeHashsigPrivate:
		return hsm.KeyInfo{}, fmt.Errorf("generate: %w: hash-based keys on a PKCS#11 token", hsm.ErrUnsupported)
	default:
		return hsm.KeyInfo{}, fmt.Errorf("generate: %w: cannot generate %v", hsm.ErrBadArguments, req.Type)
	}
	if err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	o, err := t.object(id)
	if err != nil {
		return hsm.KeyInfo{}, err
	}
	return o.info, nil
}

func (t *Token) Key(_ context.Context, id hsm.UUID) (hsm.KeyInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.session(); err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("open key: %w", err)
	}
	o, err := t.object(id)
	if err != nil {
		return hsm.KeyInfo{}, fmt.Errorf("open key: %w", err)
	}
	return o.info, nil
}

func (t *Token) Keys(_ context.Context, f hsm.Filter) ([]hsm.KeyInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.session(); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	objs, err := t.objects()
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var out []hsm.KeyInfo
	for _, o := range objs {
		if !f.Matches(o.info) {
			continue
		}
		ok := true
		for _, a := range f.Attributes {
			if a.Type != hsm.AttributeLabel || string(a.Value) != o.info.Label {
				ok = false
			}
		}
		if ok {
			out = append(out, o.info)
		}
	}
	return out, nil
}

func (t *Token) DeleteKey(_ context.Context, id hsm.UUID) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.session(); err != nil {
		return fmt.Errorf("delete key: %w", err)
	}
	o, err := t.object(id)
	if err != nil {
		return fmt.Errorf("delete key: %w", err)
	}
	return t.destroy(o)
}

// destroy removes a key's objects. Called with t.mu held.
func (t *Token) destroy(o *object) error {
	var errs []error
	if o.hasPriv {
		errs = append(errs, t.raw.DestroyObject(t.sess, o.priv))
	}
	if o.hasPub {
		errs = append(errs, t.raw.DestroyObject(t.sess, o.pub))
	}
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("delete key %s: %w", o.info.UUID, err)
		}
	}
	return nil
}

// Sign signs through crypto11, which returns what Token.Sign promises
// (PKCS#1 v1.5 or PSS for RSA, ASN.1 for ECDSA).
func (t *Token) Sign(_ context.Context, id hsm.UUID, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.session(); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	o, err := t.object(id)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if !o.hasPriv {
		return nil, fmt.Errorf("sign with %s: %w: a public key cannot sign", id, hsm.ErrUnsupportedKey)
	}
	if o.info.Flags&hsm.FlagDigitalSignature == 0 {
		return nil, fmt.Errorf("sign with %s: %w: key lacks CKA_SIGN", id, hsm.ErrForbidden)
	}
	mech := uint(pkcs11.CKM_ECDSA)
	if o.info.Type == hsm.KeyTypeRSAPrivate {
		mech = pkcs11.CKM_RSA_PKCS
	}
	if err := t.require(mech); err != nil {
		return nil, fmt.Errorf("sign with %s: %w", id, err)
	}
	signer, err := t.c11.FindKeyPair(o.id, nil)
	if err != nil || signer == nil {
		return nil, fmt.Errorf("sign with %s: %w: no key pair with this CKA_ID", id, hsm.ErrKeyNotFound)
	}
	if opts == nil || opts.HashFunc() != 0 && len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("sign with %s: %w: digest and hash disagree", id, hsm.ErrBadArguments)
	}
	sig, err := signer.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("sign with %s: %w", id, err)
	}
	return sig, nil
}

// Verify checks a signature with the key's public half, in software.
func (t *Token) Verify(ctx context.Context, id hsm.UUID, digest, sig []byte, opts crypto.SignerOpts) error {
	k, err := t.Key(ctx, id)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if err := hsm.VerifySignature(k.PublicKey, digest, sig, opts); err != nil {
		return fmt.Errorf("verify with %s: %w", id, err)
	}
	return nil
}
