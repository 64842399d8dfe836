//go:build cgo

package p11

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/internal/sigder"
)

func curveOf(params []byte) (elliptic.Curve, error) {
	c, err := hsmapi.ParseECParams(params)
	if err != nil {
		return nil, err
	}
	return c.Elliptic(), nil
}

// ecParams is the CKA_EC_PARAMS of an EC public key's curve.
func ecParams(p *ecdsa.PublicKey) ([]byte, error) {
	_, c, _, err := hsmapi.DescribeKey(p, false)
	if err != nil {
		return nil, err
	}
	return hsmapi.ECParams(c)
}

func curveParams(c hsmapi.Curve) ([]byte, elliptic.Curve, error) {
	der, err := hsmapi.ECParams(c)
	return der, c.Elliptic(), err
}

func (t *Token) GenerateKey(_ context.Context, req hsmapi.GenerateRequest) (hsmapi.KeyInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.generate(req, nil)
}

// generate makes a key pair whose objects have the attributes its flags
// give, and what more may add. Called with t.mu held.
func (t *Token) generate(req hsmapi.GenerateRequest, more func(priv, pub *template)) (hsmapi.KeyInfo, error) {
	lockassert.Held(&t.mu)
	if _, err := t.session(); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	if err := hsmapi.CheckLabel(req.Label); err != nil || !req.Flags.Valid() {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w: bad label or flags", hsmapi.ErrBadArguments)
	}
	if len(req.Attributes) > 0 {
		// A key's objects get what its flags give (keyTemplates); never a
		// key without the attributes asked for.
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w: attributes of a new key on a PKCS#11 token", hsmapi.ErrUnsupported)
	}
	id, err := hsmapi.NewUUID(nil)
	if err != nil {
		return hsmapi.KeyInfo{}, err
	}
	priv, pub := keyTemplates(req.Flags, id[:], req.Label)
	if more != nil {
		more(&priv, &pub)
	}
	var mech uint
	switch req.Type {
	case hsmapi.KeyTypeRSAPrivate:
		if err := hsmapi.CheckGeneratedRSABits(req.Bits); err != nil {
			return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
		}
		mech = pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN
		pub.set(pkcs11.CKA_MODULUS_BITS, req.Bits)
		pub.set(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1})
	case hsmapi.KeyTypeECPrivate:
		params, _, err := curveParams(req.Curve)
		if err != nil {
			return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
		}
		mech = pkcs11.CKM_EC_KEY_PAIR_GEN
		pub.set(pkcs11.CKA_EC_PARAMS, params)
	case hsmapi.KeyTypeHashsigPrivate:
		if t.require(ckmHSSKeyPairGen) != nil {
			return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w: hash-based keys on a PKCS#11 token without CKM_HSS_KEY_PAIR_GEN", hsmapi.ErrUnsupported)
		}
		if err := hssGenerate(req.Levels, &priv); err != nil {
			return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
		}
		mech = ckmHSSKeyPairGen
	default:
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w: cannot generate %v", hsmapi.ErrBadArguments, req.Type)
	}
	if err := t.require(mech); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	if _, _, err := t.raw.GenerateKeyPair(t.sess, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pub.final(), priv.final()); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	o, err := t.object(id)
	if err != nil {
		return hsmapi.KeyInfo{}, err
	}
	return o.info, nil
}

func (t *Token) Key(_ context.Context, id hsmapi.UUID) (hsmapi.KeyInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o, err := t.sessionObject(id)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("open key: %w", err)
	}
	return o.info, nil
}

func (t *Token) Keys(_ context.Context, f hsmapi.Filter) ([]hsmapi.KeyInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.session(); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	objs, _, err := t.objects()
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var out []hsmapi.KeyInfo
	for _, o := range objs {
		if !f.Matches(o.info) {
			continue
		}
		ok := true
		for _, a := range f.Attributes {
			if a.Type != hsmapi.AttributeLabel || string(a.Value) != o.info.Label {
				ok = false
			}
		}
		if ok {
			out = append(out, o.info)
		}
	}
	return out, nil
}

func (t *Token) DeleteKey(_ context.Context, id hsmapi.UUID) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	o, err := t.sessionObject(id)
	if err != nil {
		return fmt.Errorf("delete key: %w", err)
	}
	return t.destroy(o)
}

// destroy removes a key's objects. Called with t.mu held.
func (t *Token) destroy(o *object) error {
	lockassert.Held(&t.mu)
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

// Sign signs with the key's own private object (crypto11 finds key pairs
// by CKA_ID alone, which several keys may share): PKCS#1 v1.5 over the
// DigestInfo, or PSS, for RSA; ECDSA turned into ASN.1; CKM_HSS over the
// message itself (opts crypto.Hash(0)) for an HSS key.
func (t *Token) Sign(_ context.Context, id hsmapi.UUID, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o, err := t.sessionObject(id)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	sig, err := t.signWith(o, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("sign with %s: %w", id, err)
	}
	return sig, nil
}

func (t *Token) signWith(o *object, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if !o.hasPriv {
		return nil, fmt.Errorf("%w: a public key cannot sign", hsmapi.ErrUnsupportedKey)
	}
	if o.info.Flags&hsmapi.FlagDigitalSignature == 0 {
		return nil, fmt.Errorf("%w: key lacks CKA_SIGN", hsmapi.ErrForbidden)
	}
	if opts == nil || opts.HashFunc() != 0 && len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("%w: digest and hash disagree", hsmapi.ErrBadArguments)
	}
	if o.info.Type == hsmapi.KeyTypeHashsigPrivate {
		// The message itself: the token hashes it as RFC 8554 says, and
		// stores its advanced state before the signature returns.
		if opts.HashFunc() != 0 {
			return nil, fmt.Errorf("%w: an HSS key signs the message, not a digest", hsmapi.ErrBadArguments)
		}
		if err := t.require(ckmHSS); err != nil {
			return nil, err
		}
		return t.signRaw(o.priv, ckmHSS, digest)
	}
	if o.info.Type == hsmapi.KeyTypeECPrivate {
		if err := t.require(pkcs11.CKM_ECDSA); err != nil {
			return nil, err
		}
		raw, err := t.signRaw(o.priv, pkcs11.CKM_ECDSA, digest)
		if err != nil {
			return nil, err
		}
		der, err := sigder.ECDSARawToDER(raw, len(raw)/2)
		if err != nil {
			return nil, fmt.Errorf("%w: from the token: %v", hsmapi.ErrInvalidSignature, err)
		}
		return der, nil
	}
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		if err := t.require(pkcs11.CKM_RSA_PKCS_PSS); err != nil {
			return nil, err
		}
		params, err := pssParams(pss, o.public.(*rsa.PublicKey))
		if err != nil {
			return nil, err
		}
		return t.sign(o.priv, pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, params), digest)
	}
	if err := t.require(pkcs11.CKM_RSA_PKCS); err != nil {
		return nil, err
	}
	msg, err := sigder.DigestInfo(opts.HashFunc(), digest)
	if err != nil {
		return nil, fmt.Errorf("%w: RSA signatures: %v", hsmapi.ErrUnsupported, err)
	}
	return t.signRaw(o.priv, pkcs11.CKM_RSA_PKCS, msg)
}

// pssParams are CK_RSA_PKCS_PSS_PARAMS for opts: MGF1 with the message
// hash, and the salt opts asks for (the longest the key allows for
// PSSSaltLengthAuto, as crypto/rsa signs).
func pssParams(opts *rsa.PSSOptions, pub *rsa.PublicKey) ([]byte, error) {
	mechs := map[crypto.Hash][2]uint{
		crypto.SHA1:   {pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1},
		crypto.SHA224: {pkcs11.CKM_SHA224, pkcs11.CKG_MGF1_SHA224},
		crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
		crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
		crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
	}
	m, ok := mechs[opts.Hash]
	if !ok {
		return nil, fmt.Errorf("%w: PSS with %v", hsmapi.ErrUnsupported, opts.Hash)
	}
	salt := opts.SaltLength
	switch salt {
	case rsa.PSSSaltLengthEqualsHash:
		salt = opts.Hash.Size()
	case rsa.PSSSaltLengthAuto:
		salt = (pub.N.BitLen()-1+7)/8 - opts.Hash.Size() - 2
	}
	if salt < 0 {
		return nil, fmt.Errorf("%w: PSS salt length %d", hsmapi.ErrBadArguments, opts.SaltLength)
	}
	return pkcs11.NewPSSParams(m[0], m[1], uint(salt)), nil
}

// Verify checks a signature with the key's public half, in software.
func (t *Token) Verify(ctx context.Context, id hsmapi.UUID, digest, sig []byte, opts crypto.SignerOpts) error {
	k, err := t.Key(ctx, id)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if err := hsmapi.VerifySignature(k.PublicKey, digest, sig, opts); err != nil {
		return fmt.Errorf("verify with %s: %w", id, err)
	}
	return nil
}
