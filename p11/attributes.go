//go:build cgo

package p11

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

var _ hsmapi.AttributeReader = (*Token)(nil)

// The attributes a key carries from one token to the next (see
// hsmapi.AttributeReader): every usage and policy attribute of each object
// that a destination can set. Not carried: what identifies the object
// (class, key type, key material), CKA_TOKEN (imported keys are token
// keys), CKA_LABEL (the label, but for a public object's own label), and
// what the destination computes (CKA_LOCAL, CKA_ALWAYS_SENSITIVE,
// CKA_NEVER_EXTRACTABLE, CKA_KEY_GEN_MECHANISM). Templates
// (CKA_UNWRAP_TEMPLATE, ...) hold pointers and cannot travel.
var (
	privateCarried = []uint{
		pkcs11.CKA_PRIVATE, pkcs11.CKA_SUBJECT, pkcs11.CKA_ID, pkcs11.CKA_SENSITIVE,
		pkcs11.CKA_DECRYPT, pkcs11.CKA_UNWRAP, pkcs11.CKA_SIGN, pkcs11.CKA_SIGN_RECOVER,
		pkcs11.CKA_DERIVE, pkcs11.CKA_START_DATE, pkcs11.CKA_END_DATE, pkcs11.CKA_EXTRACTABLE,
		pkcs11.CKA_MODIFIABLE, pkcs11.CKA_COPYABLE, pkcs11.CKA_DESTROYABLE,
		pkcs11.CKA_ALWAYS_AUTHENTICATE, pkcs11.CKA_WRAP_WITH_TRUSTED, pkcs11.CKA_ALLOWED_MECHANISMS,
	}
	publicCarried = []uint{
		pkcs11.CKA_PRIVATE, pkcs11.CKA_TRUSTED, pkcs11.CKA_SUBJECT, pkcs11.CKA_ID,
		pkcs11.CKA_ENCRYPT, pkcs11.CKA_WRAP, pkcs11.CKA_VERIFY, pkcs11.CKA_VERIFY_RECOVER,
		pkcs11.CKA_DERIVE, pkcs11.CKA_START_DATE, pkcs11.CKA_END_DATE,
		pkcs11.CKA_MODIFIABLE, pkcs11.CKA_COPYABLE, pkcs11.CKA_DESTROYABLE, pkcs11.CKA_ALLOWED_MECHANISMS,
	}
)

// KeyAttributes returns the attributes a key carries: its private key
// object's, and its public key object's in hsmapi.AttributePublicObject (with
// CKA_LABEL when it differs from the private object's); a public key
// alone's are its object's.
func (t *Token) KeyAttributes(_ context.Context, id hsmapi.UUID) ([]hsmapi.Attribute, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	attrs, err := t.keyAttributes(id)
	if err != nil {
		return nil, fmt.Errorf("attributes of %s: %w", id, err)
	}
	return attrs, nil
}

func (t *Token) keyAttributes(id hsmapi.UUID) ([]hsmapi.Attribute, error) {
	o, err := t.sessionObject(id)
	if err != nil {
		return nil, err
	}
	if !o.hasPriv {
		return t.carried(o.pub, publicCarried)
	}
	out, err := t.carried(o.priv, privateCarried)
	if err != nil || !o.hasPub {
		return out, err
	}
	pub, err := t.carried(o.pub, publicCarried)
	if err != nil {
		return nil, err
	}
	if label, err := t.attrs(o.pub, pkcs11.CKA_LABEL); err != nil {
		return nil, err
	} else if string(label[pkcs11.CKA_LABEL]) != o.info.Label {
		pub = append(pub, hsmapi.Attribute{Type: hsmapi.CKALabel, Value: label[pkcs11.CKA_LABEL]})
	}
	out = append(out, hsmapi.Attribute{Type: hsmapi.AttributePublicObject, Value: hsmapi.EncodeAttributes(pub)})
	slices.SortFunc(out, func(a, b hsmapi.Attribute) int { return cmp.Compare(a.Type, b.Type) })
	return out, nil
}

// carried reads the attributes of one object that travel, in order of
// type. One the token does not have is left out; one it has but cannot
// read fails: a key must not lose an attribute on the way.
// Called with t.mu held.
func (t *Token) carried(h pkcs11.ObjectHandle, types []uint) ([]hsmapi.Attribute, error) {
	lockassert.Held(&t.mu)
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, ty := range types {
		tmpl[i] = pkcs11.NewAttribute(ty, nil)
	}
	got, err := t.raw.GetAttributeValue(t.sess, h, tmpl)
	if err != nil {
		got = nil
		for _, ty := range types {
			one, err := t.raw.GetAttributeValue(t.sess, h, []*pkcs11.Attribute{pkcs11.NewAttribute(ty, nil)})
			switch {
			case isCode(err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID):
				continue
			case err != nil:
				return nil, fmt.Errorf("attribute 0x%x cannot be read, so it cannot travel with the key: %w", ty, err)
			}
			got = append(got, one...)
		}
	}
	out := make([]hsmapi.Attribute, 0, len(got))
	for _, a := range got {
		if !unrestricted(uint(a.Type), a.Value) {
			out = append(out, hsmapi.Attribute{Type: uint32(a.Type), Value: a.Value})
		}
	}
	slices.SortFunc(out, func(a, b hsmapi.Attribute) int { return cmp.Compare(a.Type, b.Type) })
	return out, nil
}

// unrestricted reports an empty CKA_ALLOWED_MECHANISMS: no restriction,
// which is what an object without it has, and a value SoftHSM2 refuses to
// set.
func unrestricted(typ uint, v []byte) bool {
	return typ == pkcs11.CKA_ALLOWED_MECHANISMS && len(v) == 0
}

// template is an object template being built: each attribute once, the
// last value set winning.
type template []*pkcs11.Attribute

func (tm *template) set(typ uint, v any) {
	a := pkcs11.NewAttribute(typ, v)
	if i := slices.IndexFunc(*tm, func(b *pkcs11.Attribute) bool { return b.Type == typ }); i >= 0 {
		(*tm)[i] = a
		return
	}
	*tm = append(*tm, a)
}

// attributeIn returns the value a template gives an attribute.
func attributeIn(tm template, typ uint) ([]byte, bool) {
	i := slices.IndexFunc(tm, func(a *pkcs11.Attribute) bool { return a.Type == typ })
	if i < 0 {
		return nil, false
	}
	return tm[i].Value, true
}

// final returns the template with the attributes that lock an object
// last, CKA_MODIFIABLE the very last: SoftHSM2 applies a template in order,
// and once CKA_MODIFIABLE is false refuses to set anything after it.
func (tm template) final() []*pkcs11.Attribute {
	rank := func(a *pkcs11.Attribute) int {
		return slices.Index([]uint{pkcs11.CKA_DESTROYABLE, pkcs11.CKA_COPYABLE, pkcs11.CKA_MODIFIABLE}, a.Type)
	}
	out := slices.Clone([]*pkcs11.Attribute(tm))
	slices.SortStableFunc(out, func(a, b *pkcs11.Attribute) int { return cmp.Compare(rank(a), rank(b)) })
	return out
}

// flagTemplates are the usage and policy attributes of a key pair's
// objects that its flags give: exactly what the flags grant and nothing
// else (no CKA_DERIVE, no recovery), private and sensitive.
func flagTemplates(flags hsmapi.Flags) (priv, pub template) {
	for _, m := range hsmapi.PrivateObjectFlags {
		priv.set(uint(m.Attribute), flags&m.Flag != 0)
	}
	priv.set(pkcs11.CKA_PRIVATE, true)
	priv.set(pkcs11.CKA_SENSITIVE, true)
	priv.set(pkcs11.CKA_SIGN_RECOVER, false)
	priv.set(pkcs11.CKA_DERIVE, false)
	for _, m := range hsmapi.PublicObjectFlags {
		pub.set(uint(m.Attribute), flags&m.Flag != 0)
	}
	pub.set(pkcs11.CKA_VERIFY_RECOVER, false)
	pub.set(pkcs11.CKA_DERIVE, false)
	return priv, pub
}

// keyTemplates are the templates of a new key's objects, made on the token
// or loaded into it: what its flags give (flagTemplates), the CKA_ID, the
// label, and CKA_TOKEN when the flags say token.
func keyTemplates(flags hsmapi.Flags, id []byte, label string) (priv, pub template) {
	priv, pub = flagTemplates(flags)
	for _, tm := range []*template{&priv, &pub} {
		tm.set(pkcs11.CKA_ID, id)
		tm.set(pkcs11.CKA_LABEL, label)
		tm.set(pkcs11.CKA_TOKEN, flags&hsmapi.FlagToken != 0)
	}
	return priv, pub
}

// applyCarried sets on a template the carried attributes of its object;
// others (a libhal client's, kept by an emulated HSM) have no place on a
// PKCS#11 object and are left out.
func (tm *template) applyCarried(attrs []hsmapi.Attribute, types []uint) {
	for _, a := range attrs {
		if slices.Contains(types, uint(a.Type)) && !unrestricted(uint(a.Type), a.Value) {
			tm.set(uint(a.Type), a.Value)
		}
	}
}
