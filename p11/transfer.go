//go:build cgo

package p11

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// kekMechanism is the mechanism that carries a KEK with enc.
func kekMechanism(enc hsmapi.KEKEncryption) (*pkcs11.Mechanism, uint, error) {
	switch enc {
	case hsmapi.KEKOAEPSHA256:
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pkcs11.CKZ_DATA_SPECIFIED, nil)), pkcs11.CKM_RSA_PKCS_OAEP, nil
	case hsmapi.KEKOAEPSHA1:
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, pkcs11.NewOAEPParams(pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1, pkcs11.CKZ_DATA_SPECIFIED, nil)), pkcs11.CKM_RSA_PKCS_OAEP, nil
	case hsmapi.KEKPKCS1v15:
		return pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil), pkcs11.CKM_RSA_PKCS, nil
	}
	return nil, 0, fmt.Errorf("%w: unknown KEK encryption %q", hsmapi.ErrBadArguments, enc)
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
func (t *Token) KEKEncryptions(context.Context) ([]hsmapi.KEKEncryption, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.session(); err != nil {
		return nil, err
	}
	if t.kekEncs != nil {
		return t.kekEncs, nil
	}
	t.kekEncs = []hsmapi.KEKEncryption{}
	if t.require(pkcs11.CKM_AES_KEY_GEN, pkcs11.CKM_AES_KEY_WRAP_PAD) != nil {
		return t.kekEncs, nil
	}
	pub, err := probeKey()
	if err != nil {
		return nil, err
	}
	h, err := t.createRSAPublic(pub, pkcs11.CKA_ENCRYPT)
	if err != nil {
		return nil, err
	}
	defer t.raw.DestroyObject(t.sess, h)
	for _, enc := range hsmapi.KEKEncryptions {
		mech, m, _ := kekMechanism(enc)
		if t.require(m) != nil {
			continue
		}
		if err := t.raw.EncryptInit(t.sess, []*pkcs11.Mechanism{mech}, h); err != nil {
			continue
		}
		if _, err := t.raw.Encrypt(t.sess, make([]byte, hsmapi.KEKSize)); err != nil {
			continue
		}
		t.kekEncs = append(t.kekEncs, enc)
	}
	return t.kekEncs, nil
}

// createRSAPublic makes a session public key object with one usage
// (CKA_WRAP, or CKA_ENCRYPT to probe the token's mechanisms): a token may
// refuse a key that both wraps and encrypts, as the emulated HSM's module
// does. Called with t.mu held.
func (t *Token) createRSAPublic(pub *rsa.PublicKey, usage uint) (pkcs11.ObjectHandle, error) {
	lockassert.Held(&t.mu)
	return t.raw.CreateObject(t.sess, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, pub.N.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(pub.E)).Bytes()),
		pkcs11.NewAttribute(usage, true),
	})
}

// Export wraps an extractable private key for the holder of the KEKEK.
func (t *Token) Export(_ context.Context, req hsmapi.ExportRequest) (hsmapi.WrappedKey, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, err := t.export(req)
	if err != nil {
		return hsmapi.WrappedKey{}, fmt.Errorf("export %s: %w", req.Key, err)
	}
	return w, nil
}

// export is Export. Called with t.mu held.
func (t *Token) export(req hsmapi.ExportRequest) (hsmapi.WrappedKey, error) {
	lockassert.Held(&t.mu)
	if _, err := t.session(); err != nil {
		return hsmapi.WrappedKey{}, err
	}
	mech, m, err := kekMechanism(req.Encryption)
	if err != nil {
		return hsmapi.WrappedKey{}, err
	}
	if err := t.require(pkcs11.CKM_AES_KEY_GEN, pkcs11.CKM_AES_KEY_WRAP_PAD, m); err != nil {
		return hsmapi.WrappedKey{}, err
	}
	kekek, err := req.KEKEK()
	if err != nil {
		return hsmapi.WrappedKey{}, err
	}
	o, err := t.object(req.Key)
	if err != nil {
		return hsmapi.WrappedKey{}, err
	}
	if !o.hasPriv {
		return hsmapi.WrappedKey{}, fmt.Errorf("%w: only private keys are exported wrapped", hsmapi.ErrUnsupportedKey)
	}
	if o.info.Flags&hsmapi.FlagExportable == 0 {
		return hsmapi.WrappedKey{}, hsmapi.ErrNotExportable
	}
	// Session objects, destroyed whatever happens.
	var temp []pkcs11.ObjectHandle
	defer func() {
		for _, h := range temp {
			t.raw.DestroyObject(t.sess, h)
		}
	}()
	kekekObj, err := t.createRSAPublic(kekek.Key(), pkcs11.CKA_WRAP)
	if err != nil {
		return hsmapi.WrappedKey{}, fmt.Errorf("load KEKEK: %w", err)
	}
	temp = append(temp, kekekObj)
	kek, err := t.raw.GenerateKey(t.sess, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, hsmapi.KEKSize),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	})
	if err != nil {
		return hsmapi.WrappedKey{}, fmt.Errorf("transit KEK: %w", err)
	}
	temp = append(temp, kek)
	wrapped, err := t.wrapPrivate(kek, o.priv)
	if err != nil {
		return hsmapi.WrappedKey{}, err
	}
	ct, err := t.raw.WrapKey(t.sess, []*pkcs11.Mechanism{mech}, kekekObj, kek)
	if err != nil {
		return hsmapi.WrappedKey{}, fmt.Errorf("wrap KEK with %s: %w", req.Encryption, err)
	}
	w := hsmapi.WrappedKey{EncryptedKey: hsmapi.MarshalEncryptedKey(wrapped)}
	if w.EncryptedKEK, err = hsmapi.MarshalEncryptedKEK(req.Encryption, ct); err != nil {
		return hsmapi.WrappedKey{}, err
	}
	if req.Binding != nil {
		if w.Tag, err = t.tag(kek, req.Binding); err != nil {
			return hsmapi.WrappedKey{}, fmt.Errorf("binding tag: %w", err)
		}
	}
	return w, nil
}

// wrapPrivate wraps a private key under an AES key with RFC 5649; a key
// the token will not let out is hsmapi.ErrNotExportable. Called with t.mu
// held.
func (t *Token) wrapPrivate(kek, priv pkcs11.ObjectHandle) ([]byte, error) {
	lockassert.Held(&t.mu)
	wrapped, err := t.raw.WrapKey(t.sess, kwp, kek, priv)
	if err != nil {
		if isCode(err, pkcs11.CKR_KEY_UNEXTRACTABLE) || isCode(err, pkcs11.CKR_KEY_NOT_WRAPPABLE) {
			return nil, hsmapi.ErrNotExportable
		}
		return nil, fmt.Errorf("wrap key: %w", err)
	}
	return wrapped, nil
}

// Import stores a key exported to one of this token's KEKEKs, or a public
// key. The KEK, the key and the tag are unwrapped on the token; every
// failure to do so is hsmapi.ErrDecryption.
func (t *Token) Import(_ context.Context, req hsmapi.ImportRequest) (hsmapi.ImportResult, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	res, err := t.importKey(req)
	if err != nil {
		return hsmapi.ImportResult{}, fmt.Errorf("import %s: %w", req.UUID, err)
	}
	return res, nil
}

// importKey is Import. Called with t.mu held.
func (t *Token) importKey(req hsmapi.ImportRequest) (hsmapi.ImportResult, error) {
	lockassert.Held(&t.mu)
	return t.importUnder(req, 0)
}

// importUnder is Import, with the private key wrapped under the KEK of the
// bundle, or, when storage is not 0, under that key of the token (a
// restore: RestoreKeys). Called with t.mu held.
func (t *Token) importUnder(req hsmapi.ImportRequest, storage pkcs11.ObjectHandle) (hsmapi.ImportResult, error) {
	lockassert.Held(&t.mu)
	if _, err := t.session(); err != nil {
		return hsmapi.ImportResult{}, err
	}
	// Any label an HSM keeps: CKA_LABEL is bytes, and the key arrives with
	// the one it left with.
	if err := hsmapi.CheckRawLabel(req.Label); err != nil {
		return hsmapi.ImportResult{}, err
	}
	if len(req.PublicKey) == 0 {
		return hsmapi.ImportResult{}, fmt.Errorf("%w: a PKCS#11 token needs the key's public key (bundles of cryptech_backup lack it)", hsmapi.ErrUnsupported)
	}
	private := len(req.Wrapped.EncryptedKey) > 0
	info, err := hsmapi.DescribePublicKey(req.PublicKey, private)
	if err != nil {
		return hsmapi.ImportResult{}, err
	}
	hss := info.Hashsig != nil
	if hss && t.require(ckmHSS) != nil {
		return hsmapi.ImportResult{}, fmt.Errorf("%w: hash-based keys on a PKCS#11 token without CKM_HSS", hsmapi.ErrUnsupported)
	}
	pub, err := hsmapi.ParsePublicKey(req.PublicKey)
	if err != nil {
		return hsmapi.ImportResult{}, err
	}
	id, privT, pubT, err := importTemplates(req, private)
	if err != nil {
		return hsmapi.ImportResult{}, err
	}
	// Session objects, destroyed whatever happens.
	var temp []pkcs11.ObjectHandle
	defer func() {
		for _, h := range temp {
			t.destroyTemp(h)
		}
	}()
	// Everything that arrived is checked before anything is stored, also
	// for a key already present: the KEK and the tag, then the key itself,
	// unwrapped as a session object that can sign (and has no CKA_ID, so
	// that it never passes for a stored key) and matched with its public
	// key. An HSS key is unwrapped once only, as the token object (a token
	// that keeps HSS keys refuses a part it received before): the token
	// checks RFC 5649's integrity as it unwraps, and the public key is
	// matched once it is stored (hss.go).
	kek := storage
	if private && kek == 0 {
		if kek, err = t.unwrapKEK(req); err != nil {
			return hsmapi.ImportResult{}, err
		}
		temp = append(temp, kek)
	}
	if private && !hss {
		if err := t.unwrapCheck(req, kek, info.Type, pub); err != nil {
			return hsmapi.ImportResult{}, err
		}
	}
	// An HSS key whose CKA_ID and public key are here already is reported
	// present unopened: it may be another part of the key, and then the
	// bundle's part is never used, lost but never used twice.
	res, found, others, err := t.present(id, req.UUID, req.PublicKey, private)
	if found || err != nil {
		return res, err
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
	var privObj pkcs11.ObjectHandle
	switch {
	case private && hss:
		if privObj, err = t.unwrapPrivate(req, kek, info.Type, privT); err != nil {
			return hsmapi.ImportResult{}, fmt.Errorf("store private key: %w", hssUnwrapError(err))
		}
		created = append(created, privObj)
		if err := t.matchesPublic(privObj, pub); err != nil {
			// The public object the token made with it goes too.
			if ko, e := t.readKeyObject(privObj, true, ckkHSS); e == nil && ko.public != nil {
				if h, made, _ := t.madeHalf(privObj, id, ko.public, nil); made {
					created = append(created, h)
				}
			}
			return hsmapi.ImportResult{}, err
		}
	case private:
		if t.unwrapsPairs() {
			privObj, err = t.unwrapPair(req, kek, info.Type, privT, pubT)
		} else {
			privObj, err = t.makeObject(privT, func(tm template) (pkcs11.ObjectHandle, error) {
				return t.unwrapPrivate(req, kek, info.Type, tm)
			})
		}
		if err != nil {
			return hsmapi.ImportResult{}, fmt.Errorf("store private key: %w", err)
		}
		created = append(created, privObj)
	}
	// The public object after the private one: a token that keeps a key
	// pair as one key (the emulated HSM) keeps the public object when the
	// private one goes.
	pubObj, made, err := t.madeHalf(privObj, id, pub, pubT)
	if made {
		created = append(created, pubObj)
	}
	if err != nil {
		return hsmapi.ImportResult{}, fmt.Errorf("store public key: %w", err)
	}
	if !made {
		if pubObj, err = t.makeObject(pubT, func(tm template) (pkcs11.ObjectHandle, error) { return t.createPublic(pub, tm) }); err != nil {
			return hsmapi.ImportResult{}, fmt.Errorf("store public key: %w", err)
		}
		created = append(created, pubObj)
	}
	o := &object{id: id, pub: pubObj, hasPub: true, priv: privObj, hasPriv: private, public: pub, shared: len(others) > 0}
	if err := t.describe(o); err != nil {
		return hsmapi.ImportResult{}, err
	}
	ok = true
	res = hsmapi.ImportResult{Key: o.info}
	if len(others) > 0 {
		res.Warnings = []string{sharedIDWarning(o, others)}
	}
	return res, nil
}

// unwrapCheck unwraps the private key under the KEK as a session object
// that can sign (and has no CKA_ID, so that it never passes for a stored
// key), matches it with its public key, and destroys it: nothing is
// stored. Called with t.mu held.
func (t *Token) unwrapCheck(req hsmapi.ImportRequest, kek pkcs11.ObjectHandle, typ hsmapi.KeyType, pub any) error {
	lockassert.Held(&t.mu)
	var check template
	check.set(pkcs11.CKA_TOKEN, false)
	check.set(pkcs11.CKA_PRIVATE, true)
	check.set(pkcs11.CKA_SENSITIVE, true)
	check.set(pkcs11.CKA_EXTRACTABLE, false)
	check.set(pkcs11.CKA_SIGN, true)
	sess, err := t.unwrapPrivate(req, kek, typ, check)
	if err != nil {
		return hsmapi.ErrDecryption
	}
	defer t.destroyTemp(sess)
	return t.matchesPublic(sess, pub)
}

// sharedIDWarning tells that an imported key shares its CKA_ID with keys
// that were on the token before it. PKCS#11 allows it, and the key keeps
// the CKA_ID it left with; but an application that finds its key by
// CKA_ID (a PKCS#11 URI's id=) may now find another. A key that was named
// by the CKA_ID, a UUID, is named from now on by one derived from it.
func sharedIDWarning(o *object, others []*object) string {
	var names []string
	renamed := ""
	for _, other := range others {
		names = append(names, fmt.Sprintf("%s (label %q)", other.info.UUID, other.info.Label))
		if len(others) == 1 && len(o.id) == len(hsmapi.UUID{}) && other.info.UUID == hsmapi.UUID(o.id) {
			renamed = fmt.Sprintf("; key %s, named by that CKA_ID until now, is named %s from now on", other.info.UUID, derivedUUID(o.id, other.info.PublicKey))
		}
	}
	return fmt.Sprintf("key %s has CKA_ID %x, as key %s on the token already has: an application that finds keys by CKA_ID may use either%s",
		o.info.UUID, o.id, strings.Join(names, ", key "), renamed)
}

// makeObject makes an object with every attribute of its template, which
// PKCS#11 sets some of (CKA_EXTRACTABLE, CKA_PRIVATE, CKA_COPYABLE, ...)
// only at creation: first as a session object, so that a token that
// refuses the template refuses before anything is stored, then stored by
// C_CopyObject with CKA_TOKEN, which SoftHSM2 writes in one go (making a
// token object directly costs it several times as much), or, for an object
// that may not be copied or a token that copies no such object, made again
// as a token object.
// Called with t.mu held.
func (t *Token) makeObject(tm template, make func(template) (pkcs11.ObjectHandle, error)) (pkcs11.ObjectHandle, error) {
	lockassert.Held(&t.mu)
	token, _ := attributeIn(tm, pkcs11.CKA_TOKEN)
	sess := slices.Clone(tm)
	sess.set(pkcs11.CKA_TOKEN, false)
	copyTmpl := template{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)}
	// An object that may not be changed may not be copied to the token
	// either: the copy is what becomes unchangeable.
	if v, ok := attributeIn(tm, pkcs11.CKA_MODIFIABLE); ok && !boolAttr(v) {
		sess.set(pkcs11.CKA_MODIFIABLE, true)
		copyTmpl.set(pkcs11.CKA_MODIFIABLE, false)
	}
	h, err := make(sess)
	if err != nil || !boolAttr(token) {
		return h, err
	}
	defer t.destroyTemp(h)
	if v, ok := attributeIn(tm, pkcs11.CKA_COPYABLE); ok && !boolAttr(v) {
		return make(tm)
	}
	c, err := t.raw.CopyObject(t.sess, h, copyTmpl)
	if isCode(err, pkcs11.CKR_ACTION_PROHIBITED) {
		// A token that copies no private key (the emulated HSM's module
		// cannot without holding it in the clear) makes it on the token
		// directly, as it made the session object.
		return make(tm)
	}
	return c, err
}

// moduleManufacturer is the manufacturer the emulated HSM's own module
// (cmd/cryptech-pkcs11, export.go) names in C_GetInfo; should the two
// differ, TestAttributesArriveExactly fails through the module.
const moduleManufacturer = "Cryptech Project (emulated)"

// unwrapsPairs reports whether the token is the emulated HSM's module,
// which makes a key pair's public key object with the private key it
// unwraps, and takes that object's attributes in the same C_UnwrapKey
// (unwrapPair). Called with t.mu held.
func (t *Token) unwrapsPairs() bool {
	lockassert.Held(&t.mu)
	info, err := t.raw.GetInfo()
	return err == nil && strings.TrimRight(info.ManufacturerID, " ") == moduleManufacturer
}

// unwrapPair unwraps the private key on the module with the attributes of
// both its objects: the public object's in the module's attribute
// hsmapi.AttributePublicObject, an array of CK_ATTRIBUTE, so that the HSM
// stores them with the key in one write. PKCS#11 sets some of them only
// when an object is made (the public object's CKA_PRIVATE, CKA_MODIFIABLE
// false): given later, the module would refuse them, and the key could not
// arrive as it left. The module checks both templates before it stores
// anything, so no session object goes first (makeObject).
// Called with t.mu held.
func (t *Token) unwrapPair(req hsmapi.ImportRequest, kek pkcs11.ObjectHandle, typ hsmapi.KeyType, privT, pubT template) (pkcs11.ObjectHandle, error) {
	lockassert.Held(&t.mu)
	pubObject, free := attributeArray(pubT.final())
	defer free()
	tm := slices.Clone(privT)
	tm.set(uint(hsmapi.AttributePublicObject), pubObject)
	return t.unwrapPrivate(req, kek, typ, tm)
}

// madeHalf finds the public key object that a token which keeps a key pair
// as one key (the emulated HSM through its module) made with the private
// key just unwrapped, and gives it the attributes of tm that it does not
// have yet (none, when unwrapPair gave them all); made is false on a token
// that made none (SoftHSM2), where the caller makes it. Should the token
// refuse them, the import fails, and the caller destroys the key (h is
// returned, made true, with the error).
// Called with t.mu held.
func (t *Token) madeHalf(priv pkcs11.ObjectHandle, id []byte, pub any, tm template) (h pkcs11.ObjectHandle, made bool, err error) {
	lockassert.Held(&t.mu)
	// Known by now (destroyTemp, when the private object was made): a
	// token that does not pair (SoftHSM2) is spared the search.
	if priv == 0 || (t.keepsPairs != nil && !*t.keepsPairs) {
		return 0, false, nil
	}
	hs, err := t.find(pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	if err != nil {
		return 0, false, err
	}
	kt := keyTypeOf(pub)
	for _, h := range hs {
		// A key with this public key and CKA_ID was not there before
		// (present): this one is the new key's.
		ko, err := t.readKeyObject(h, false, kt)
		if err != nil || ko.err != nil || !samePublic(ko.public, pub) {
			continue
		}
		var change template
		for _, a := range tm {
			if a.Type == pkcs11.CKA_TOKEN {
				continue
			}
			cur, err := t.attrs(h, a.Type)
			if err != nil || !bytes.Equal(cur[a.Type], a.Value) {
				change = append(change, a)
			}
		}
		if len(change) > 0 {
			if err := t.raw.SetAttributeValue(t.sess, h, change.final()); err != nil {
				return h, true, err
			}
		}
		return h, true, nil
	}
	return 0, false, nil
}

// destroyTemp destroys a temporary session object. A token that keeps a
// key pair as one key (the emulated HSM) made a public key object with a
// private one, and keeps it when the private one goes: that goes too.
// Whether the token does is found once, with the first temporary private
// key that has a CKA_ID; SoftHSM2 is spared the search after that.
// Called with t.mu held.
func (t *Token) destroyTemp(h pkcs11.ObjectHandle) {
	lockassert.Held(&t.mu)
	var halves []pkcs11.ObjectHandle
	if t.keepsPairs == nil || *t.keepsPairs {
		a, err := t.attrs(h, pkcs11.CKA_CLASS, pkcs11.CKA_ID)
		if err == nil && ulongAttr(a[pkcs11.CKA_CLASS]) == pkcs11.CKO_PRIVATE_KEY && len(a[pkcs11.CKA_ID]) > 0 {
			halves, _ = t.find(pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_ID, a[pkcs11.CKA_ID]))
			if t.keepsPairs == nil {
				keeps := len(halves) > 0
				t.keepsPairs = &keeps
			}
		}
	}
	t.raw.DestroyObject(t.sess, h)
	for _, p := range halves {
		t.raw.DestroyObject(t.sess, p)
	}
}

// importTemplates are the templates of an imported key's objects: the
// attributes the key carried, else those its flags give (flagTemplates);
// its CKA_ID, the one it carried or its UUID; its label.
func importTemplates(req hsmapi.ImportRequest, private bool) (id []byte, priv, pub template, err error) {
	var privA, pubA []hsmapi.Attribute
	if private {
		for _, a := range req.Attributes {
			if a.Type != hsmapi.AttributePublicObject {
				privA = append(privA, a)
			} else if pubA, err = hsmapi.DecodeAttributes(a.Value); err != nil {
				return nil, nil, nil, fmt.Errorf("%w: the public key object's attributes: %v", hsmapi.ErrBadArguments, err)
			}
		}
	} else {
		pubA = req.Attributes
	}
	priv, pub = flagTemplates(req.Flags)
	priv.applyCarried(privA, privateCarried)
	pub.applyCarried(pubA, publicCarried)
	uuid := req.UUID
	if uuid.IsZero() {
		if uuid, err = hsmapi.NewUUID(nil); err != nil {
			return nil, nil, nil, err
		}
	}
	id = uuid[:]
	if v, ok := attribute(privA, hsmapi.CKAID); ok {
		id = v
	} else if v, ok := attribute(pubA, hsmapi.CKAID); ok {
		id = v
	}
	pubLabel := req.Label
	if v, ok := attribute(pubA, hsmapi.CKALabel); ok {
		pubLabel = string(v)
	}
	token := req.Flags&hsmapi.FlagToken != 0
	for _, o := range []struct {
		tm    *template
		label string
	}{{&priv, req.Label}, {&pub, pubLabel}} {
		if _, ok := attributeIn(*o.tm, pkcs11.CKA_ID); !ok {
			o.tm.set(pkcs11.CKA_ID, id)
		}
		o.tm.set(pkcs11.CKA_LABEL, o.label)
		o.tm.set(pkcs11.CKA_TOKEN, token)
	}
	return id, priv, pub, nil
}

func attribute(attrs []hsmapi.Attribute, typ uint32) ([]byte, bool) {
	i := slices.IndexFunc(attrs, func(a hsmapi.Attribute) bool { return a.Type == typ })
	if i < 0 {
		return nil, false
	}
	return attrs[i].Value, true
}

// present looks for the key among the keys of its CKA_ID: the same key is
// reported present (found). A different key there is refused only when the
// incoming key claims the CKA_ID as its name (its UUID is the 16-byte
// CKA_ID): a key that was named by a UUID derived from its CKA_ID shared it
// on its source, and may share it here (others are the keys it shares it
// with).
func (t *Token) present(id []byte, name hsmapi.UUID, spki []byte, private bool) (res hsmapi.ImportResult, found bool, others []*object, err error) {
	objs, err := t.keyObjects(pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	if err != nil {
		return hsmapi.ImportResult{}, false, nil, err
	}
	for _, o := range objs {
		if t.describe(o) != nil {
			continue
		}
		if hsmapi.SamePublicKey(o.info.PublicKey, spki) {
			if o.hasPriv != private {
				return hsmapi.ImportResult{}, false, nil, hsmapi.ErrKeyNameInUse
			}
			return hsmapi.ImportResult{Key: o.info, Present: true}, true, nil, nil
		}
		others = append(others, o)
	}
	if len(others) > 0 && bytes.Equal(id, name[:]) {
		return hsmapi.ImportResult{}, false, nil, hsmapi.ErrKeyNameInUse
	}
	return hsmapi.ImportResult{}, false, others, nil
}

// unwrapKEK recovers the transit KEK as a session AES key, and checks the
// tag under it. Called with t.mu held.
func (t *Token) unwrapKEK(req hsmapi.ImportRequest) (pkcs11.ObjectHandle, error) {
	lockassert.Held(&t.mu)
	mech, m, err := kekMechanism(req.Encryption)
	if err != nil {
		return 0, err
	}
	if err := t.require(pkcs11.CKM_AES_KEY_WRAP_PAD, m); err != nil {
		return 0, err
	}
	kekek, err := t.object(req.KEKEKUUID)
	if err != nil {
		return 0, fmt.Errorf("KEKEK: %w", err)
	}
	if !kekek.hasPriv || kekek.info.Type != hsmapi.KeyTypeRSAPrivate {
		return 0, fmt.Errorf("%w: KEKEK %s is not an RSA private key", hsmapi.ErrUnsupportedKey, req.KEKEKUUID)
	}
	if kekek.info.Flags&hsmapi.FlagKeyEncipherment == 0 {
		return 0, fmt.Errorf("%w: KEKEK %s lacks CKA_UNWRAP", hsmapi.ErrForbidden, req.KEKEKUUID)
	}
	ct, err := hsmapi.ParseEncryptedKEK(req.Wrapped.EncryptedKEK, req.Encryption)
	if err != nil {
		return 0, err
	}
	// What a KEKEK made by setup forces on what it unwraps (kekPolicy),
	// and the two uses the KEK has here.
	kekT := template(kekPolicy())
	kekT.set(pkcs11.CKA_UNWRAP, true)
	kekT.set(pkcs11.CKA_WRAP, true)
	kek, err := t.raw.UnwrapKey(t.sess, []*pkcs11.Mechanism{mech}, kekek.priv, ct, kekT.final())
	if err != nil {
		return 0, hsmapi.ErrDecryption
	}
	// A KEK of another size cannot unwrap what a 32-byte KEK wrapped; where
	// the token tells the size (SoftHSM2 does not, for unwrapped keys), a
	// wrong one fails here already.
	if a, err := t.attrs(kek, pkcs11.CKA_VALUE_LEN); err == nil {
		if n := ulongAttr(a[pkcs11.CKA_VALUE_LEN]); n != 0 && n != hsmapi.KEKSize {
			t.raw.DestroyObject(t.sess, kek)
			return 0, hsmapi.ErrDecryption
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

// checkTag makes the tag of the binding under the KEK, as the source made
// it (RFC 5649 key wrap is deterministic), and compares the two in
// constant time: nothing readable is made of the KEK or under it.
func (t *Token) checkTag(kek pkcs11.ObjectHandle, req hsmapi.ImportRequest) error {
	want, err := t.tag(kek, req.Binding)
	if err != nil || subtle.ConstantTimeCompare(want, req.Wrapped.Tag) != 1 {
		return hsmapi.ErrDecryption
	}
	return nil
}

// tag is the binding's digest, as a session secret, wrapped under the KEK:
// exactly the emulated HSM's tag. Called with t.mu held.
func (t *Token) tag(kek pkcs11.ObjectHandle, binding []byte) ([]byte, error) {
	lockassert.Held(&t.mu)
	digest := hsmapi.BindingDigest(binding)
	defer clear(digest)
	return t.wrapValue(kek, digest)
}

// wrapValue wraps a 32-byte value under the key with RFC 5649: the value
// is made a session secret for the length of the call. Called with t.mu
// held.
func (t *Token) wrapValue(kek pkcs11.ObjectHandle, value []byte) ([]byte, error) {
	lockassert.Held(&t.mu)
	secret, err := t.raw.CreateObject(t.sess, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		// An AES-256 key, which every token that wraps under AES keeps
		// (the emulated HSM keeps no other secret), and which does nothing
		// but be wrapped.
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
	})
	if err != nil {
		return nil, err
	}
	defer t.raw.DestroyObject(t.sess, secret)
	return t.raw.WrapKey(t.sess, kwp, kek, secret)
}

// unwrapPrivate unwraps the PKCS#8 key under the KEK into a private key
// object with the template's attributes. A wrapped key that does not parse
// is ErrDecryption; the token's refusal is the caller's to name.
// Called with t.mu held.
func (t *Token) unwrapPrivate(req hsmapi.ImportRequest, kek pkcs11.ObjectHandle, typ hsmapi.KeyType, tm template) (pkcs11.ObjectHandle, error) {
	lockassert.Held(&t.mu)
	wrapped, err := hsmapi.ParseEncryptedKey(req.Wrapped.EncryptedKey)
	if err != nil {
		return 0, err
	}
	kt := map[hsmapi.KeyType]uint{hsmapi.KeyTypeRSAPrivate: pkcs11.CKK_RSA, hsmapi.KeyTypeECPrivate: pkcs11.CKK_EC, hsmapi.KeyTypeHashsigPrivate: ckkHSS}[typ]
	tm = slices.Clone(tm)
	tm.set(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)
	tm.set(pkcs11.CKA_KEY_TYPE, kt)
	return t.raw.UnwrapKey(t.sess, kwp, kek, wrapped, tm.final())
}

// createPublic makes the public key object beside an imported key, with
// the template's attributes. Called with t.mu held.
func (t *Token) createPublic(pub any, tm template) (pkcs11.ObjectHandle, error) {
	lockassert.Held(&t.mu)
	tm = slices.Clone(tm)
	tm.set(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY)
	switch p := pub.(type) {
	case *rsa.PublicKey:
		tm.set(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA)
		tm.set(pkcs11.CKA_MODULUS, p.N.Bytes())
		tm.set(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(p.E)).Bytes())
	case *ecdsa.PublicKey:
		params, err := ecParams(p)
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
		tm.set(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC)
		tm.set(pkcs11.CKA_EC_PARAMS, params)
		tm.set(pkcs11.CKA_EC_POINT, point)
	case *hashsig.PublicKey:
		tm.set(pkcs11.CKA_KEY_TYPE, ckkHSS)
		tm.set(pkcs11.CKA_VALUE, p.Bytes())
	default:
		return 0, fmt.Errorf("%w: %T", hsmapi.ErrUnsupportedKey, pub)
	}
	return t.raw.CreateObject(t.sess, tm.final())
}

// matchesPublic checks that an unwrapped private key is the half of pub:
// an RSA key by its modulus and exponent, an EC key by signing with it.
func (t *Token) matchesPublic(priv pkcs11.ObjectHandle, pub any) error {
	mismatch := fmt.Errorf("%w: the unwrapped key does not match the public key given with it", hsmapi.ErrBadArguments)
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
	case *hashsig.PublicKey:
		// Never by signing: that would spend a one-time key.
		ko, err := t.readKeyObject(priv, true, ckkHSS)
		if err != nil {
			return err
		}
		if ko.err != nil || !samePublic(ko.public, p) {
			return mismatch
		}
		return nil
	case *ecdsa.PublicKey:
		digest, r, s, err := t.probeSignature(priv)
		if err != nil {
			return fmt.Errorf("check imported key: %w", err)
		}
		if !ecdsa.Verify(p, digest, r, s) {
			return mismatch
		}
		return nil
	}
	return errors.New("p11: unreachable")
}
