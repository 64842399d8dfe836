package cryptoki

import (
	"cmp"
	"slices"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// A newObject is the template of an object to be made (C_GenerateKeyPair,
// C_CreateObject, C_CopyObject), checked: each attribute known, once, with
// a well-formed value.
type newObject struct {
	class uint
	given map[uint][]byte
}

// commonNew are the attributes an application may give any new key
// object; privateNew and publicNew those of one class. The key's own
// (modulus, curve, HSS parameters) each operation takes itself.
var (
	commonNew = []uint{
		attrClass, attrKeyType, attrToken, attrPrivate, attrLabel, attrID, attrSubject,
		attrStartDate, attrEndDate, attrDerive, attrModifiable, attrCopyable, attrDestroyable,
		attrAllowedMechanisms,
	}
	privateNew = []uint{
		attrSensitive, attrDecrypt, attrSign, attrSignRecover, attrUnwrap, attrExtractable,
		attrWrapWithTrusted, attrAlwaysAuthenticate, attrUnwrapTemplate,
	}
	publicNew = []uint{attrEncrypt, attrVerify, attrVerifyRecover, attrWrap, attrTrusted, attrWrapTemplate}
	// secretNew are a secret key's (secret.go decides which usages the
	// HSM can grant).
	secretNew = []uint{
		attrSensitive, attrEncrypt, attrDecrypt, attrWrap, attrUnwrap, attrSign, attrVerify,
		attrExtractable, attrWrapWithTrusted, attrTrusted, attrWrapTemplate, attrUnwrapTemplate,
	}
	// computedAttrs are what the HSM alone says of a key.
	computedAttrs = []uint{
		attrLocal, attrAlwaysSensitive, attrNeverExtractable, attrKeyGenMechanism,
		attrHSSKeysRemaining, attrPublicKeyInfo,
	}
)

// parseNew checks a template for a new object of class: every attribute
// known (CKR_ATTRIBUTE_TYPE_INVALID), well formed (VALUE_INVALID), not
// given twice with two values and of the class it names
// (TEMPLATE_INCONSISTENT), and none the HSM alone sets (READ_ONLY). keyAttrs
// are the key attributes the caller takes besides the common ones.
func parseNew(class uint, tmpl []Attribute, keyAttrs ...uint) (newObject, RV) {
	n := newObject{class: class, given: map[uint][]byte{}}
	allowed := slices.Concat(commonNew, keyAttrs)
	switch class {
	case ClassPrivateKey:
		allowed = append(allowed, privateNew...)
	case ClassSecretKey:
		allowed = append(allowed, secretNew...)
	default:
		allowed = append(allowed, publicNew...)
	}
	for _, a := range tmpl {
		if _, known := attrKinds[a.Type]; !known {
			return n, AttributeTypeInvalid
		}
		if !validValue(a.Type, a.Value) {
			return n, AttributeValueInvalid
		}
		if prev, ok := n.given[a.Type]; ok && !sameValue(a.Type, prev, a.Value) {
			return n, TemplateInconsistent
		}
		switch {
		case slices.Contains(computedAttrs, a.Type):
			return n, AttributeReadOnly
		case !slices.Contains(allowed, a.Type):
			return n, TemplateInconsistent
		}
		n.given[a.Type] = a.Value
	}
	if c, ok := n.ulong(attrClass); ok && c != uint64(class) {
		return n, TemplateInconsistent
	}
	return n, n.policy()
}

// policy refuses what would make a key seem other than it is: a private
// key not sensitive (the HSM never gives one away in the clear), a
// restriction the module does not enforce (CKA_ALWAYS_AUTHENTICATE,
// CKA_ALLOWED_MECHANISMS), CKA_TRUSTED set by anyone but the SO, and the
// SO is no user of keys here.
func (n newObject) policy() RV {
	if v, ok := n.bool(attrSensitive); ok && !v {
		return AttributeValueInvalid
	}
	if v, ok := n.bool(attrAlwaysAuthenticate); ok && v {
		return AttributeValueInvalid
	}
	if v, ok := n.given[attrAllowedMechanisms]; ok && len(v) > 0 {
		return AttributeValueInvalid
	}
	if v, ok := n.bool(attrTrusted); ok && v {
		return AttributeReadOnly
	}
	return OK
}

func (n newObject) bool(t uint) (value, given bool) {
	v, ok := n.given[t]
	if !ok {
		return false, false
	}
	b, _ := boolOf(v)
	return b, true
}

func (n newObject) ulong(t uint) (uint64, bool) {
	v, ok := n.given[t]
	if !ok {
		return 0, false
	}
	return ulongOf(v)
}

// keyType checks CKA_KEY_TYPE against the key type an operation makes.
func (n newObject) keyType(want uint64) RV {
	if t, ok := n.ulong(attrKeyType); ok && t != want {
		return TemplateInconsistent
	}
	return OK
}

// label is the object's CKA_LABEL, and whether the template gave one.
func (n newObject) label() (string, bool) {
	v, ok := n.given[attrLabel]
	return string(v), ok
}

// stored are the attributes the HSM keeps for the object as given: those
// of storedAttrs and CKA_ID; never the label, which is the key's own.
func (n newObject) stored() []hsmapi.Attribute {
	var out []hsmapi.Attribute
	for t, v := range n.given {
		if _, ok := storedAttrs[t]; ok || t == attrID {
			out = append(out, hsmapi.Attribute{Type: uint32(t), Value: append([]byte(nil), v...)})
		}
	}
	slices.SortFunc(out, func(a, b hsmapi.Attribute) int { return cmp.Compare(a.Type, b.Type) })
	return out
}

// usage is one flag of the HSM and the attribute that grants it on each
// object of a key pair (hsmapi.PrivateObjectFlags, PublicObjectFlags).
type usage struct {
	flag      hsmapi.Flags
	priv, pub uint // 0: none on that object
}

// usages pairs the two objects' attributes of each flag.
func usages() []usage {
	var out []usage
	for _, p := range hsmapi.PrivateObjectFlags {
		u := usage{flag: p.Flag, priv: uint(p.Attribute)}
		for _, q := range hsmapi.PublicObjectFlags {
			if q.Flag == p.Flag {
				u.pub = uint(q.Attribute)
			}
		}
		out = append(out, u)
	}
	return out
}

// keyFlags are the HSM flags of a new key from its objects' templates
// (either may be nil): each usage as the templates give it, the two
// objects agreeing (else TEMPLATE_INCONSISTENT); a usage neither gives
// is off but signing, which is on, as a key pair is for signing unless
// told otherwise. CKA_TOKEN likewise, off by default. No key both
// (un)wraps and en/decrypts: a key that could would let a wrapped key be
// decrypted into the clear (issue 11's "safer than SoftHSM2").
func keyFlags(priv, pub *newObject) (hsmapi.Flags, RV) {
	var f hsmapi.Flags
	pick := func(flag hsmapi.Flags, def bool, pa, qa uint) RV {
		v, given := def, false
		for _, o := range []struct {
			n *newObject
			a uint
		}{{priv, pa}, {pub, qa}} {
			if o.n == nil || o.a == 0 {
				continue
			}
			b, ok := o.n.bool(o.a)
			if !ok {
				continue
			}
			if given && b != v {
				return TemplateInconsistent
			}
			v, given = b, true
		}
		if v {
			f |= flag
		}
		return OK
	}
	for _, u := range usages() {
		if rv := pick(u.flag, u.flag == hsmapi.FlagDigitalSignature, u.priv, u.pub); rv != OK {
			return 0, rv
		}
	}
	if rv := pick(hsmapi.FlagToken, false, attrToken, attrToken); rv != OK {
		return 0, rv
	}
	if f&hsmapi.FlagKeyEncipherment != 0 && f&hsmapi.FlagDataEncipherment != 0 {
		return 0, TemplateInconsistent
	}
	return f, OK
}

// pairAttributes are the key attributes of a new key pair: the private
// object's stored attributes at their CKA_ numbers, and the public
// object's in hsmapi.AttributePublicObject, with its label when it
// differs from the private object's (which is the key's own label).
func pairAttributes(priv, pub newObject) []hsmapi.Attribute {
	out := priv.stored()
	publ := pub.stored()
	privLabel, _ := priv.label()
	if l, ok := pub.label(); ok && l != privLabel {
		publ = append(publ, hsmapi.Attribute{Type: hsmapi.CKALabel, Value: []byte(l)})
	}
	if len(publ) > 0 {
		out = append(out, hsmapi.Attribute{Type: hsmapi.AttributePublicObject, Value: hsmapi.EncodeAttributes(publ)})
	}
	return out
}
