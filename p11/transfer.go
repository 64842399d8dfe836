//go:build cgo

package p11

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsm"
)

// kekMechanism is the mechanism that carries a KEK with enc.
func kekMechanism(enc hsm.KEKEncryption) (*pkcs11.Mechanism, uint, error) {
	switch enc {
	case hsm.KEKOAEPSHA256:
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pkcs11.CKZ_DATA_SPECIFIED, nil)), pkcs11.CKM_RSA_PKCS_OAEP, nil
	case hsm.KEKOAEPSHA1:
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, pkcs11.CKZ_DATA_SPECIFIED, nil)), pkcs11.CKM_RSA_PKCS_OAEP, nil
	case hsm.KEKPKCS1v15:
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), pkcs11.CKM_RSA_PKCS, nil
	}
	return nil, 0, fmt.Errorf("%w: unknown KEK encryption %q", hsm.ErrBadArguments, enc)
}

var kwp = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP_PAD, nil)}

// probeKey is an RSA public key used only to ask the token which OAEP
// parameters it takes.
var probeKey = sync.OnceValues(func() (*rsa.PublicKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &k.PublicKey, nil
})

// KEKEncryptions negotiates rather than assumes: SoftHSM2 2.6 does OAEP
// only with SHA-1, so each encryption is tried on a throwaway session
// public key (C_EncryptInit and C_Encrypt of a KEK-sized message).
func (t *Token) KEKEncryptions(context.Context) ([]hsm.KEKEncryption, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.session(); err != nil {
		return nil, err
	}
	if t.kekEncs != nil {
		return t.kekEncs, nil
	}
	t.kekEncs = []hsm.KEKEncryption{}
	if t.require(pkcs11.CKM_AES_KEY_GEN, pkcs11.CKM_AES_KEY_WRAP_PAD) != nil {
		return t.kekEncs, nil
	}
	pub, err := probeKey()
	if err != nil {
		return nil, err
	}
	h, err := t.createRSAPublic(pub, false)
	if err != nil {
		return nil, err
	}
	defer t.raw.DestroyObject(t.sess, h)
	for _, enc := range hsm.KEKEncryptions {
		mech, m, _ := kekMechanism(enc)
		if t.require(m) != nil {
			continue
		}
		if err := t.raw.EncryptInit(t.sess, []*pkcs11.Mechanism{mech}, h); err != nil {
			continue
		}
		if _, err := t.raw.Encrypt(t.sess, make([]byte, hsm.KEKSize)); err != nil {
			continue
		}
		t.kekEncs = append(t.kekEncs, enc)
	}
	return t.kekEncs, nil
}

// createRSAPublic makes a session (or token) public key object that wraps.
func (t *Token) createRSAPublic(pub *rsa.PublicKey, token bool, extra ...*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	tmpl := append([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, token),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, pub.N.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(pub.E)).Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
	}, extra...)
	return t.raw.CreateObject(t.sess, tmpl)
}

// Export wraps an extractable private key for the holder of the KEKEK.
func (t *Token) Export(_ context.Context, req hsm.ExportRequest) (hsm.WrappedKey, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, err := t.export(req)
	if err != nil {
		return hsm.WrappedKey{}, fmt.Errorf("export %s: %w", req.Key, err)
	}
	return w, nil
}

func (t *Token) export(req hsm.ExportRequest) (hsm.WrappedKey, error) {
	if _, err := t.session(); err != nil {
		return hsm.WrappedKey{}, err
	}
	mech, m, err := kekMechanism(req.Encryption)
	if err != nil {
		return hsm.WrappedKey{}, err
	}
	if err := t.require(pkcs11.CKM_AES_KEY_GEN, pkcs11.CKM_AES_KEY_WRAP_PAD, m); err != nil {
		return hsm.WrappedKey{}, err
	}
	kekek, err := hsm.ParseKEKEK(req.KEKEK)
	if err != nil {
		return hsm.WrappedKey{}, err
	}
	o, err := t.object(req.Key)
	if err != nil {
		return hsm.WrappedKey{}, err
	}
	if !o.hasPriv {
		return hsm.WrappedKey{}, fmt.Errorf("%w: only private keys are exported wrapped", hsm.ErrUnsupportedKey)
	}
	if o.info.Flags&hsm.FlagExportable == 0 {
		return hsm.WrappedKey{}, hsm.ErrNotExportable
	}
	// Session objects, destroyed whatever happens.
	var temp []pkcs11.ObjectHandle
	defer func() {
		for _, h := range temp {
			t.raw.DestroyObject(t.sess, h)
		}
	}()
	kekekObj, err := t.createRSAPublic(kekek, false)
	if err != nil {
		return hsm.WrappedKey{}, fmt.Errorf("load KEKEK: %w", err)
	}
	temp = append(temp, kekekObj)
	kek, err := t.raw.GenerateKey(t.sess, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, hsm.KEKSize),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	})
	if err != nil {
		return hsm.WrappedKey{}, fmt.Errorf("transit KEK: %w", err)
	}
	temp = append(temp, kek)
	wrapped, err := t.raw.WrapKey(t.sess, kwp, kek, o.priv)
	if err != nil {
		if isCode(err, pkcs11.CKR_KEY_UNEXTRACTABLE) || isCode(err, pkcs11.CKR_KEY_NOT_WRAPPABLE) {
			return hsm.WrappedKey{}, hsm.ErrNotExportable
		}
		return hsm.WrappedKey{}, fmt.Errorf("wrap key: %w", err)
	}
	ct, err := t.raw.WrapKey(t.sess, []*pkcs11.Mechanism{mech}, kekekObj, kek)
	if err != nil {
		return hsm.WrappedKey{}, fmt.Errorf("wrap KEK with %s: %w", req.Encryption, err)
	}
	w := hsm.WrappedKey{PKCS8: hsm.EncryptedPKCS8(wrapped)}
	if w.KEK, err = hsm.EncryptedKEK(req.Encryption, ct); err != nil {
		return hsm.WrappedKey{}, err
	}
	if req.Binding != nil {
		// The tag: the binding's digest as a secret object, wrapped under
		// the KEK, exactly as the emulated HSM makes it.
		digest := hsm.BindingDigest(req.Binding)
		secret, err := t.raw.CreateObject(t.sess, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, digest),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		})
		if err != nil {
			return hsm.WrappedKey{}, fmt.Errorf("binding tag: %w", err)
		}
		temp = append(temp, secret)
		if w.Tag, err = t.raw.WrapKey(t.sess, kwp, kek, secret); err != nil {
			return hsm.WrappedKey{}, fmt.Errorf("binding tag: %w", err)
		}
	}
	return w, nil
}

// Import stores a key exported to one of this token's KEKEKs, or a public
// key. The KEK, the key and the tag are unwrapped on the token; every
// failure to do so is hsm.ErrDecryption.
func (t *Token) Import(_ context.Context, req hsm.ImportRequest) (hsm.ImportResult, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	res, err := t.importKey(req)
	if err != nil {
		return hsm.ImportResult{}, fmt.Errorf("import %s: %w", req.UUID, err)
	}
	return res, nil
}

func (t *Token) importKey(req hsm.ImportRequest) (hsm.ImportResult, error) {
	if _, err := t.session(); err != nil {
		return hsm.ImportResult{}, err
	}
	if err := hsm.CheckLabel(req.Label); err != nil {
		return hsm.ImportResult{}, err
	}
	id := req.UUID
	if id.IsZero() {
		var err error
		if id, err = hsm.NewUUID(nil); err != nil {
			return hsm.ImportResult{}, err
		}
	}
	if len(req.PublicKey) == 0 {
		return hsm.ImportResult{}, fmt.Errorf("%w: a PKCS#11 token needs the key's public key (bundles of cryptech_backup lack it)", hsm.ErrUnsupported)
	}
	info, err := hsm.DescribePublicKey(req.PublicKey, len(req.Wrapped.PKCS8) > 0)
	if err != nil {
		return hsm.ImportResult{}, err
	}
	if info.Hashsig != nil {
		return hsm.ImportResult{}, fmt.Errorf("%w: hash-based keys on a PKCS#11 token", hsm.ErrUnsupported)
	}
	pub, err := hsm.ParsePublicKey(req.PublicKey)
	if err != nil {
		return hsm.ImportResult{}, err
	}
	// Session objects, destroyed whatever happens.
	var temp []pkcs11.ObjectHandle
	defer func() {
		for _, h := range temp {
			t.raw.DestroyObject(t.sess, h)
		}
	}()
	private := len(req.Wrapped.PKCS8) > 0
	token := req.Flags&hsm.FlagToken != 0
	ke := req.Flags&hsm.FlagKeyEncipherment != 0
	common := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_ID, id[:]),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, req.Label),
	}
	// The private key is unwrapped first as a session object: that checks
	// the whole of what arrived (KEK, tag, wrapping, the public key given)
	// before anything is stored, also for a key already present.
	var sessPriv pkcs11.ObjectHandle
	if private {
		kek, err := t.unwrapKEK(req)
		if err != nil {
			return hsm.ImportResult{}, err
		}
		temp = append(temp, kek)
		// No CKA_ID yet: the session object must not pass for a stored key.
		if sessPriv, err = t.unwrapPrivate(req, kek, info.Type, append([]*pkcs11.Attribute{},
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, req.Flags&hsm.FlagExportable != 0),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, ke),
			pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, ke || req.Flags&hsm.FlagDataEncipherment != 0))); err != nil {
			return hsm.ImportResult{}, err
		}
		temp = append(temp, sessPriv)
		if err := t.matchesPublic(sessPriv, pub); err != nil {
			return hsm.ImportResult{}, err
		}
	}
	if old, err := t.object(id); err == nil {
		if old.hasPriv != private || !hsm.SamePublicKey(old.info.PublicKey, req.PublicKey) {
			return hsm.ImportResult{}, hsm.ErrKeyNameInUse
		}
		return hsm.ImportResult{Key: old.info, Present: true}, nil
	}

	var created []pkcs11.ObjectHandle
	ok := false
	defer func() {
		if !ok {
			for _, h := range created {
				t.raw.DestroyObject(t.sess, h)
			}
		}
	}()
	pubObj, err := t.createPublic(pub, append(common,
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, token),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, req.Flags&hsm.FlagDigitalSignature != 0),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, ke),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, ke)))
	if err != nil {
		return hsm.ImportResult{}, fmt.Errorf("create public key: %w", err)
	}
	created = append(created, pubObj)
	o := &object{id: id[:], pub: pubObj, hasPub: true}
	if private {
		priv, err := t.raw.CopyObject(t.sess, sessPriv, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_ID, id[:]),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, req.Label),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, token),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, req.Flags&hsm.FlagDigitalSignature != 0),
		})
		if err != nil {
			return hsm.ImportResult{}, fmt.Errorf("store private key: %w", err)
		}
		created = append(created, priv)
		o.priv, o.hasPriv = priv, true
	}
	if err := t.describe(o); err != nil {
		return hsm.ImportResult{}, err
	}
	ok = true
	return hsm.ImportResult{Key: o.info}, nil
}

// unwrapKEK recovers the transit KEK as a session AES key, and checks the
// tag under it.
func (t *Token) unwrapKEK(req hsm.ImportRequest) (pkcs11.ObjectHandle, error) {
	mech, m, err := kekMechanism(req.Encryption)
	if err != nil {
		return 0, err
	}
	if err := t.require(pkcs11.CKM_AES_KEY_WRAP_PAD, m); err != nil {
		return 0, err
	}
	kekek, err := t.object(req.KEKEK)
	if err != nil {
		return 0, fmt.Errorf("KEKEK: %w", err)
	}
	if !kekek.hasPriv || kekek.info.Type != hsm.KeyTypeRSAPrivate {
		return 0, fmt.Errorf("%w: KEKEK %s is not an RSA private key", hsm.ErrUnsupportedKey, req.KEKEK)
	}
	if kekek.info.Flags&hsm.FlagKeyEncipherment == 0 {
		return 0, fmt.Errorf("%w: KEKEK %s lacks CKA_UNWRAP", hsm.ErrForbidden, req.KEKEK)
	}
	ct, err := hsm.ParseEncryptedKEK(req.Wrapped.KEK, req.Encryption)
	if err != nil {
		return 0, err
	}
	kek, err := t.raw.UnwrapKey(t.sess, []*pkcs11.Mechanism{mech}, kekek.priv, ct, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
	})
	if err != nil {
		return 0, hsm.ErrDecryption
	}
	// A KEK of another size cannot unwrap what a 32-byte KEK wrapped; where
	// the token tells the size (SoftHSM2 does not, for unwrapped keys), a
	// wrong one fails here already.
	if a, err := t.attrs(kek, pkcs11.CKA_VALUE_LEN); err == nil {
		if n := keyType(a[pkcs11.CKA_VALUE_LEN]); n != 0 && n != hsm.KEKSize {
			t.raw.DestroyObject(t.sess, kek)
			return 0, hsm.ErrDecryption
		}
	}
	if req.Binding != nil {
		if err := t.checkTag(kek, req); err != nil {
			t.raw.DestroyObject(t.sess, kek)
			return 0, err
		}
	}
	return kek, nil
}

// checkTag unwraps the tag as a readable session secret and compares it, in
// constant time, with the binding's digest.
func (t *Token) checkTag(kek pkcs11.ObjectHandle, req hsm.ImportRequest) error {
	if len(req.Wrapped.Tag) == 0 {
		return hsm.ErrDecryption
	}
	secret, err := t.raw.UnwrapKey(t.sess, kwp, kek, req.Wrapped.Tag, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	})
	if err != nil {
		return hsm.ErrDecryption
	}
	defer t.raw.DestroyObject(t.sess, secret)
	a, err := t.attrs(secret, pkcs11.CKA_VALUE)
	if err != nil {
		return hsm.ErrDecryption
	}
	defer clear(a[pkcs11.CKA_VALUE])
	if subtle.ConstantTimeCompare(a[pkcs11.CKA_VALUE], hsm.BindingDigest(req.Binding)) != 1 {
		return hsm.ErrDecryption
	}
	return nil
}

// unwrapPrivate unwraps the PKCS#8 key under the KEK into a token object.
func (t *Token) unwrapPrivate(req hsm.ImportRequest, kek pkcs11.ObjectHandle, typ hsm.KeyType, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	wrapped, err := hsm.ParseEncryptedPKCS8(req.Wrapped.PKCS8)
	if err != nil {
		return 0, err
	}
	kt := uint(pkcs11.CKK_EC)
	if typ == hsm.KeyTypeRSAPrivate {
		kt = pkcs11.CKK_RSA
	}
	h, err := t.raw.UnwrapKey(t.sess, kwp, kek, wrapped, append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, kt)))
	if err != nil {
		return 0, hsm.ErrDecryption
	}
	return h, nil
}

// createPublic makes the public key object beside an imported key.
func (t *Token) createPublic(pub any, tmpl []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return t.raw.CreateObject(t.sess, append(tmpl,
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, p.N.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(p.E)).Bytes())))
	case *ecdsa.PublicKey:
		var c hsm.Curve
		switch p.Curve.Params().BitSize {
		case 256:
			c = hsm.CurveP256
		case 384:
			c = hsm.CurveP384
		case 521:
			c = hsm.CurveP521
		}
		params, _, err := curveParams(c)
		if err != nil {
			return 0, err
		}
		raw, err := p.Bytes()
		if err != nil {
			return 0, err
		}
		point, err := asn1.Marshal(raw)
		if err != nil {
			return 0, err
		}
		return t.raw.CreateObject(t.sess, append(tmpl,
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
			pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, point)))
	}
	return 0, fmt.Errorf("%w: %T", hsm.ErrUnsupportedKey, pub)
}

// matchesPublic checks that an unwrapped private key is the half of pub:
// an RSA key by its modulus and exponent, an EC key by signing with it.
func (t *Token) matchesPublic(priv pkcs11.ObjectHandle, pub any) error {
	mismatch := fmt.Errorf("%w: the unwrapped key does not match the public key given with it", hsm.ErrBadArguments)
	switch p := pub.(type) {
	case *rsa.PublicKey:
		a, err := t.attrs(priv, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT)
		if err != nil {
			return err
		}
		if new(big.Int).SetBytes(a[pkcs11.CKA_MODULUS]).Cmp(p.N) != 0 || new(big.Int).SetBytes(a[pkcs11.CKA_PUBLIC_EXPONENT]).Cmp(big.NewInt(int64(p.E))) != 0 {
			return mismatch
		}
		return nil
	case *ecdsa.PublicKey:
		digest := sha256.Sum256([]byte("cryptech-backup import check"))
		if err := t.raw.SignInit(t.sess, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, priv); err != nil {
			return fmt.Errorf("check imported key: %w", err)
		}
		sig, err := t.raw.Sign(t.sess, digest[:])
		if err != nil {
			return fmt.Errorf("check imported key: %w", err)
		}
		if len(sig)%2 != 0 {
			return mismatch
		}
		n := len(sig) / 2
		if !ecdsa.Verify(p, digest[:], new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])) {
			return mismatch
		}
		return nil
	}
	return errors.New("p11: unreachable")
}
