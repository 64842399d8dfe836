//go:build cgo

package p11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// A key of this package is one private key object and the public key
// object that is its half, or either alone. PKCS#11 lets any number of
// objects share a CKA_ID, so objects are paired by CKA_ID and public key:
// an RSA object's modulus and exponent, an EC object's point. A private EC
// object rarely shows its point (SoftHSM2's does not): it is paired with
// the one public object of its CKA_ID and curve, or, among several, with
// the one under which a test signature it makes verifies.
//
// Keys are named by UUID: a key whose CKA_ID is 16 bytes, and no other key
// shares, has that UUID; every other key has a UUID derived from its CKA_ID
// and its public key, the same on every token (see derivedUUID).

// object is one key's objects on the token.
type object struct {
	id        []byte
	priv, pub pkcs11.ObjectHandle
	hasPriv   bool
	hasPub    bool
	// public is the key's public half.
	public crypto.PublicKey
	// shared: another key on the token has the same CKA_ID.
	shared bool
	// unusable says why this package cannot use the key: a type it does
	// not handle, or a private key whose public half it cannot find.
	unusable error
	info     hsmapi.KeyInfo
}

// keyObject is one private or public key object, as found.
type keyObject struct {
	h       pkcs11.ObjectHandle
	private bool
	kt      uint
	params  []byte           // an EC key's CKA_EC_PARAMS
	public  crypto.PublicKey // nil when the object does not show it
	err     error            // a key type this package does not handle
}

// find returns the handles of the objects a template matches. Called with
// t.mu held.
func (t *Token) find(tmpl ...*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	lockassert.Held(&t.mu)
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
// secret, reads as nil. Called with t.mu held.
func (t *Token) attrs(h pkcs11.ObjectHandle, types ...uint) (map[uint][]byte, error) {
	lockassert.Held(&t.mu)
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

// ulongAttr reads a CK_ULONG, which a module gives in host (little-endian)
// order.
func ulongAttr(v []byte) uint {
	var k uint
	for i := len(v) - 1; i >= 0; i-- {
		k = k<<8 | uint(v[i])
	}
	return k
}

// keyObjects finds the key objects a template matches and pairs them into
// keys. One search for all classes: on SoftHSM2 each search costs a walk of
// the object store, and a transfer looks keys up several times per key.
// Keys this package cannot use are returned too, with unusable set. Called
// with t.mu held.
func (t *Token) keyObjects(tmpl ...*pkcs11.Attribute) ([]*object, error) {
	lockassert.Held(&t.mu)
	hs, err := t.find(tmpl...)
	if err != nil {
		return nil, err
	}
	type group struct {
		id          []byte
		privs, pubs []*keyObject
	}
	byID := map[string]*group{}
	var groups []*group
	for _, h := range hs {
		a, err := t.attrs(h, pkcs11.CKA_CLASS, pkcs11.CKA_ID, pkcs11.CKA_KEY_TYPE)
		if err != nil {
			return nil, err
		}
		class := ulongAttr(a[pkcs11.CKA_CLASS])
		if class != pkcs11.CKO_PRIVATE_KEY && class != pkcs11.CKO_PUBLIC_KEY {
			continue
		}
		ko, err := t.readKeyObject(h, class == pkcs11.CKO_PRIVATE_KEY, ulongAttr(a[pkcs11.CKA_KEY_TYPE]))
		if err != nil {
			return nil, err
		}
		g := byID[string(a[pkcs11.CKA_ID])]
		if g == nil {
			g = &group{id: a[pkcs11.CKA_ID]}
			byID[string(g.id)] = g
			groups = append(groups, g)
		}
		if ko.private {
			g.privs = append(g.privs, ko)
		} else {
			g.pubs = append(g.pubs, ko)
		}
	}
	var out []*object
	for _, g := range groups {
		objs := t.pair(g.id, g.privs, g.pubs)
		usable := 0
		for _, o := range objs {
			if o.unusable == nil {
				usable++
			}
		}
		for _, o := range objs {
			o.shared = usable > 1
		}
		out = append(out, objs...)
	}
	return out, nil
}

// readKeyObject reads what pairing needs of a key object: its type, curve
// and, where the object shows it, its public key.
func (t *Token) readKeyObject(h pkcs11.ObjectHandle, private bool, kt uint) (*keyObject, error) {
	ko := &keyObject{h: h, private: private, kt: kt}
	switch kt {
	case pkcs11.CKK_RSA:
		a, err := t.attrs(h, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT)
		if err != nil {
			return nil, err
		}
		n, e := new(big.Int).SetBytes(a[pkcs11.CKA_MODULUS]), new(big.Int).SetBytes(a[pkcs11.CKA_PUBLIC_EXPONENT])
		if n.Sign() > 0 && e.IsInt64() && e.Int64() > 1 && e.Int64() < 1<<31 {
			ko.public = &rsa.PublicKey{N: n, E: int(e.Int64())}
		} else if !private {
			ko.err = fmt.Errorf("%w: RSA public key object without modulus", hsmapi.ErrUnsupportedKey)
		}
	case pkcs11.CKK_EC:
		a, err := t.attrs(h, pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT)
		if err != nil {
			return nil, err
		}
		ko.params = a[pkcs11.CKA_EC_PARAMS]
		curve, err := curveOf(ko.params)
		if err != nil {
			ko.err = err
			break
		}
		var point []byte
		if _, err := asn1.Unmarshal(a[pkcs11.CKA_EC_POINT], &point); err == nil {
			if pk, err := ecdsa.ParseUncompressedPublicKey(curve, point); err == nil {
				ko.public = pk
			}
		}
		if ko.public == nil && !private {
			ko.err = fmt.Errorf("%w: EC public key object without a valid CKA_EC_POINT", hsmapi.ErrUnsupportedKey)
		}
	case ckkHSS:
		if err := t.hssPublic(ko); err != nil {
			return nil, err
		}
	default:
		ko.err = fmt.Errorf("%w: key type 0x%x", hsmapi.ErrUnsupportedKey, kt)
	}
	return ko, nil
}

type publicKey interface{ Equal(crypto.PublicKey) bool }

func samePublic(a, b crypto.PublicKey) bool {
	pa, ok := a.(publicKey)
	return ok && b != nil && pa.Equal(b)
}

// pair makes keys of the private and public key objects that share one
// CKA_ID. A private key whose public half cannot be found is a key all the
// same when its object shows its public key; otherwise it is unusable, never
// dropped.
func (t *Token) pair(id []byte, privs, pubs []*keyObject) []*object {
	var out []*object
	used := make([]bool, len(pubs))
	take := func(ko *keyObject, j int) {
		o := &object{id: id, priv: ko.h, hasPriv: true, public: ko.public}
		if j >= 0 {
			used[j] = true
			o.pub, o.hasPub, o.public = pubs[j].h, true, pubs[j].public
		}
		out = append(out, o)
	}
	var pending []*keyObject
	for _, ko := range privs {
		switch {
		case ko.err != nil:
			// With its public object, if one of its kind is there: one key
			// this package cannot use, named once.
			o := &object{id: id, priv: ko.h, hasPriv: true, unusable: ko.err}
			if j := slices.IndexFunc(pubs, func(p *keyObject) bool {
				return p.err != nil && p.kt == ko.kt && bytes.Equal(p.params, ko.params)
			}); j >= 0 && !used[j] {
				used[j] = true
				o.pub, o.hasPub = pubs[j].h, true
			}
			out = append(out, o)
		case ko.public != nil:
			j := slices.IndexFunc(pubs, func(p *keyObject) bool { return p.err == nil && samePublic(ko.public, p.public) })
			if j >= 0 && used[j] {
				j = -1 // two private objects of one key: the second stands alone
			}
			take(ko, j)
		default:
			pending = append(pending, ko)
		}
	}
	// Private EC objects that do not show their point.
	for _, ko := range pending {
		var cands []int
		for j, p := range pubs {
			if !used[j] && p.err == nil && p.kt == ko.kt && bytes.Equal(p.params, ko.params) {
				cands = append(cands, j)
			}
		}
		rivals := 0
		for _, other := range pending {
			if bytes.Equal(other.params, ko.params) {
				rivals++
			}
		}
		switch {
		case len(cands) == 1 && rivals == 1:
			take(ko, cands[0])
		case len(cands) > 0:
			if j := t.proveHalf(ko, pubs, cands); j >= 0 {
				take(ko, j)
				continue
			}
			out = append(out, &object{id: id, priv: ko.h, hasPriv: true, unusable: fmt.Errorf(
				"%w: %d public key objects share its CKA_ID and it cannot sign to show which is its half", hsmapi.ErrUnsupportedKey, len(cands))})
		default:
			out = append(out, &object{id: id, priv: ko.h, hasPriv: true, unusable: fmt.Errorf(
				"%w: EC private key without a public key object, and the token does not show its public point (CKA_EC_POINT)", hsmapi.ErrUnsupportedKey)})
		}
	}
	for j, p := range pubs {
		if used[j] {
			continue
		}
		out = append(out, &object{id: id, pub: p.h, hasPub: true, public: p.public, unusable: p.err})
	}
	return out
}

// proveHalf finds which of the candidate public objects is a private EC
// object's half: the one under which a signature it makes verifies; -1
// when none does or it cannot sign.
func (t *Token) proveHalf(ko *keyObject, pubs []*keyObject, cands []int) int {
	digest, r, s, err := t.probeSignature(ko.h)
	if err != nil {
		return -1
	}
	for _, j := range cands {
		if pk, ok := pubs[j].public.(*ecdsa.PublicKey); ok && ecdsa.Verify(pk, digest, r, s) {
			return j
		}
	}
	return -1
}

// probeSignature is an ECDSA signature that a private EC object makes of a
// fixed digest: under which public key it verifies tells the key's half.
func (t *Token) probeSignature(h pkcs11.ObjectHandle) (digest []byte, r, s *big.Int, err error) {
	sum := sha256.Sum256([]byte("cryptech-backup: which public key is this private key's half"))
	sig, err := t.signRaw(h, pkcs11.CKM_ECDSA, sum[:])
	if err != nil {
		return nil, nil, nil, err
	}
	if len(sig) == 0 || len(sig)%2 != 0 {
		return nil, nil, nil, fmt.Errorf("%w: ECDSA signature of %d bytes from the token", hsmapi.ErrInvalidSignature, len(sig))
	}
	n := len(sig) / 2
	return sum[:], new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:]), nil
}

// signRaw signs data with a private key object and a mechanism without
// parameters.
func (t *Token) signRaw(h pkcs11.ObjectHandle, mech uint, data []byte) ([]byte, error) {
	return t.sign(h, pkcs11.NewMechanism(mech, nil), data)
}

// sign signs data with the key object h under mech. Called with t.mu held.
func (t *Token) sign(h pkcs11.ObjectHandle, mech *pkcs11.Mechanism, data []byte) ([]byte, error) {
	lockassert.Held(&t.mu)
	if err := t.raw.SignInit(t.sess, []*pkcs11.Mechanism{mech}, h); err != nil {
		return nil, err
	}
	return t.raw.Sign(t.sess, data)
}

// objects lists every key on the token, by UUID, and the keys it cannot
// use. Called with t.mu held.
func (t *Token) objects() (usable, unusable []*object, err error) {
	lockassert.Held(&t.mu)
	objs, err := t.keyObjects()
	if err != nil {
		return nil, nil, err
	}
	for _, o := range objs {
		if err := t.describe(o); err != nil {
			if o.unusable == nil {
				o.unusable = err
			}
			unusable = append(unusable, o)
			continue
		}
		usable = append(usable, o)
	}
	slices.SortFunc(usable, func(a, b *object) int { return bytes.Compare(a.info.UUID[:], b.info.UUID[:]) })
	return usable, unusable, nil
}

// object finds one key by UUID: among the keys of the CKA_ID it names, else,
// for a derived UUID, among all keys. Called with t.mu held.
func (t *Token) object(id hsmapi.UUID) (*object, error) {
	lockassert.Held(&t.mu)
	objs, err := t.keyObjects(pkcs11.NewAttribute(pkcs11.CKA_ID, id[:]))
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		if t.describe(o) == nil && o.info.UUID == id {
			return o, nil
		}
	}
	if id[6]>>4 == 8 { // a derived UUID: look among all keys
		objs, _, err := t.objects()
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if o.info.UUID == id {
				return o, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: %s", hsmapi.ErrKeyNotFound, id)
}

// sessionObject finds one key by UUID, once logged in. Called with t.mu
// held.
func (t *Token) sessionObject(id hsmapi.UUID) (*object, error) {
	lockassert.Held(&t.mu)
	if _, err := t.session(); err != nil {
		return nil, err
	}
	return t.object(id)
}

// describe fills an object's KeyInfo. The flags are those of the private
// key object of a key pair (what the key may do is what its private half
// may do), or of the public key object alone.
func (t *Token) describe(o *object) error {
	if o.unusable != nil {
		return o.unusable
	}
	spki, err := marshalPublic(o.public)
	if err != nil {
		return err
	}
	info, err := hsmapi.DescribePublicKey(spki, o.hasPriv)
	if err != nil {
		return err
	}
	if info.Hashsig != nil && o.hasPriv {
		if err := t.describeHSS(o, &info); err != nil {
			return err
		}
	}
	h, m := o.pub, hsmapi.PublicObjectFlags
	if o.hasPriv {
		h, m = o.priv, hsmapi.PrivateObjectFlags
	}
	types := []uint{pkcs11.CKA_LABEL, pkcs11.CKA_TOKEN}
	for _, e := range m {
		types = append(types, uint(e.Attribute))
	}
	a, err := t.attrs(h, types...)
	if err != nil {
		return err
	}
	if boolAttr(a[pkcs11.CKA_TOKEN]) {
		info.Flags |= hsmapi.FlagToken
	}
	for _, e := range m {
		if boolAttr(a[uint(e.Attribute)]) {
			info.Flags |= e.Flag
		}
	}
	info.UUID, info.Label = o.uuid(spki), string(a[pkcs11.CKA_LABEL])
	o.info = info
	return nil
}

// marshalPublic is a public key's SubjectPublicKeyInfo, as the emulated
// HSM gives it (for an HSS key, RFC 9708's).
func marshalPublic(pub crypto.PublicKey) ([]byte, error) {
	if hp, ok := pub.(*hashsig.PublicKey); ok {
		return hashsig.MarshalPKIXPublicKey(hp), nil
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", hsmapi.ErrUnsupportedKey, err)
	}
	return spki, nil
}

// uuid names a key by its CKA_ID.
func (o *object) uuid(spki []byte) hsmapi.UUID {
	if len(o.id) == len(hsmapi.UUID{}) && !o.shared {
		return hsmapi.UUID(o.id)
	}
	return derivedUUID(o.id, spki)
}

// derivedUUID names a key whose CKA_ID is not a UUID of its own: from the
// CKA_ID and the public key, so that two keys sharing a CKA_ID have two
// names, and a key keeps its name on every token it reaches with its CKA_ID.
// The version is 8 (RFC 9562, custom), never that of a random name.
func derivedUUID(id, spki []byte) hsmapi.UUID {
	h := sha256.New()
	h.Write([]byte("cryptech-backup CKA_ID v2\x00"))
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(id))))
	h.Write(id)
	h.Write(spki)
	var u hsmapi.UUID
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	return u
}

// UnusableKeys names every key that Keys leaves out because this package
// cannot use it (a key type it does not handle, a private key whose public
// half it cannot find), so that a list can say so.
func (t *Token) UnusableKeys(context.Context) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.unusableKeys(false)
}

var (
	_ hsmapi.UnusableLister     = (*Token)(nil)
	_ hsmapi.UnreadableReporter = (*Token)(nil)
)

// UnreadableKeys names those of the keys UnusableKeys names that are
// extractable private keys, so that an export does not silently lack them.
func (t *Token) UnreadableKeys(context.Context) ([]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.unusableKeys(true)
}

// unusableKeys names the keys this package cannot use, only the
// extractable private ones if exportable. Called with t.mu held.
func (t *Token) unusableKeys(exportable bool) ([]string, error) {
	lockassert.Held(&t.mu)
	if _, err := t.session(); err != nil {
		return nil, err
	}
	_, bad, err := t.objects()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range bad {
		h, what := o.pub, "public key"
		switch {
		case o.hasPriv && o.hasPub:
			h, what = o.priv, "key pair"
		case o.hasPriv:
			h, what = o.priv, "private key"
		case exportable:
			continue
		}
		a, err := t.attrs(h, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_LABEL)
		if err != nil {
			return nil, err
		}
		if !exportable || boolAttr(a[pkcs11.CKA_EXTRACTABLE]) {
			out = append(out, fmt.Sprintf("%s with CKA_ID %x, label %q: %v", what, o.id, a[pkcs11.CKA_LABEL], o.unusable))
		}
	}
	return out, nil
}
