package cryptoki

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"math"
	"math/big"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// ULongSize is the size of a CK_ULONG: Go's uint on the LP64 platforms the
// module builds for. CK_ULONG values (CKA_CLASS, CKA_MODULUS_BITS, ...) are
// native-endian words of this size in attribute values; export_attrs.go
// checks at compile time that C agrees.
const ULongSize = 8

// Unavailable is CK_UNAVAILABLE_INFORMATION, as a length or a value.
const Unavailable = ^uint(0)

// An Attribute is one entry of a template (CK_ATTRIBUTE) as C gives it: the
// type, and the value in C's form (CK_BBOOL one byte, CK_ULONG a
// native-endian word, byte arrays as they are).
type Attribute struct {
	Type  uint
	Value []byte
}

// Attribute types (CKA_) the module knows.
const (
	attrClass              = 0x000
	attrToken              = 0x001
	attrPrivate            = 0x002
	attrLabel              = 0x003
	attrValue              = 0x011
	attrTrusted            = 0x086
	attrKeyType            = 0x100
	attrSubject            = 0x101
	attrID                 = 0x102
	attrSensitive          = 0x103
	attrEncrypt            = 0x104
	attrDecrypt            = 0x105
	attrWrap               = 0x106
	attrUnwrap             = 0x107
	attrSign               = 0x108
	attrSignRecover        = 0x109
	attrVerify             = 0x10A
	attrVerifyRecover      = 0x10B
	attrDerive             = 0x10C
	attrStartDate          = 0x110
	attrEndDate            = 0x111
	attrModulus            = 0x120
	attrModulusBits        = 0x121
	attrPublicExponent     = 0x122
	attrPrivateExponent    = 0x123
	attrPrime1             = 0x124
	attrPrime2             = 0x125
	attrExponent1          = 0x126
	attrExponent2          = 0x127
	attrCoefficient        = 0x128
	attrPublicKeyInfo      = 0x129
	attrValueLen           = 0x161
	attrExtractable        = 0x162
	attrLocal              = 0x163
	attrNeverExtractable   = 0x164
	attrAlwaysSensitive    = 0x165
	attrKeyGenMechanism    = 0x166
	attrModifiable         = 0x170
	attrCopyable           = 0x171
	attrDestroyable        = 0x172
	attrECParams           = 0x180
	attrECPoint            = 0x181
	attrAlwaysAuthenticate = 0x202
	attrWrapWithTrusted    = 0x210
	attrAllowedMechanisms  = 0x40000600
	attrHSSLevels          = 0x617
	attrHSSLMSType         = 0x618
	attrHSSLMOTSType       = 0x619
	attrHSSLMSTypes        = 0x61A
	attrHSSLMOTSTypes      = 0x61B
	attrHSSKeysRemaining   = 0x61C
	attrWrapTemplate       = 0x40000211
	attrUnwrapTemplate     = 0x40000212
	// attrPublicObject is the module's own attribute, in Cryptech's
	// vendor range and an array of CK_ATTRIBUTE as CKA_UNWRAP_TEMPLATE
	// is: in C_UnwrapKey's template of a private key, the attributes of
	// the key's public key object, which the module makes with it
	// (unwrapPublic). It is the number under which the HSM keeps them
	// (hsmapi.AttributePublicObject); no object shows it.
	attrPublicObject = uint(hsmapi.AttributePublicObject)
)

// Key types (CKK_).
const (
	KeyTypeRSA = 0x00
	KeyTypeEC  = 0x03
	// KeyTypeHSS is CKK_HSS of PKCS#11 3.1.
	KeyTypeHSS = 0x46
	KeyTypeAES = 0x1F
)

// The kinds of attribute values, for checking what a template gives.
type attrKind int

const (
	kindBytes attrKind = iota
	kindBool
	kindULong
	kindULongs // an array of CK_ULONG (CKA_HSS_LMS_TYPES, CKA_ALLOWED_MECHANISMS)
	kindDate   // CK_DATE: empty, or 8 digits
	// kindTemplate is an array of CK_ATTRIBUTE (CKA_WRAP_TEMPLATE,
	// CKA_UNWRAP_TEMPLATE), which the C side hands over encoded by
	// hsmapi.EncodeAttributes: see TemplateAttribute.
	kindTemplate
)

// TemplateAttribute reports whether attribute t holds a template, an array
// of CK_ATTRIBUTE. Its Attribute.Value is then the nested attributes
// encoded by hsmapi.EncodeAttributes (types as uint32, values in C's form,
// none twice), in templates given and in C_GetAttributeValue's answers.
func TemplateAttribute(t uint) bool { return attrKinds[t] == kindTemplate || t == attrPublicObject }

// attrKinds lists every attribute the module knows, with the kind of its
// value. An attribute not here is one the module does not know: a template
// that names it matches nothing, and C_GetAttributeValue answers
// CKR_ATTRIBUTE_TYPE_INVALID.
var attrKinds = map[uint]attrKind{
	attrClass: kindULong, attrToken: kindBool, attrPrivate: kindBool, attrLabel: kindBytes,
	attrValue: kindBytes, attrTrusted: kindBool, attrKeyType: kindULong, attrSubject: kindBytes,
	attrID: kindBytes, attrSensitive: kindBool, attrEncrypt: kindBool, attrDecrypt: kindBool,
	attrWrap: kindBool, attrUnwrap: kindBool, attrSign: kindBool, attrSignRecover: kindBool,
	attrVerify: kindBool, attrVerifyRecover: kindBool, attrDerive: kindBool,
	attrStartDate: kindDate, attrEndDate: kindDate,
	attrModulus: kindBytes, attrModulusBits: kindULong, attrPublicExponent: kindBytes,
	attrPrivateExponent: kindBytes, attrPrime1: kindBytes, attrPrime2: kindBytes,
	attrExponent1: kindBytes, attrExponent2: kindBytes, attrCoefficient: kindBytes,
	attrPublicKeyInfo: kindBytes, attrValueLen: kindULong, attrExtractable: kindBool, attrLocal: kindBool,
	attrNeverExtractable: kindBool, attrAlwaysSensitive: kindBool, attrKeyGenMechanism: kindULong,
	attrModifiable: kindBool, attrCopyable: kindBool, attrDestroyable: kindBool,
	attrECParams: kindBytes, attrECPoint: kindBytes, attrAlwaysAuthenticate: kindBool,
	attrWrapWithTrusted: kindBool, attrAllowedMechanisms: kindULongs,
	attrHSSLevels: kindULong, attrHSSLMSType: kindULong, attrHSSLMOTSType: kindULong,
	attrHSSLMSTypes: kindULongs, attrHSSLMOTSTypes: kindULongs, attrHSSKeysRemaining: kindULong,
	attrWrapTemplate: kindTemplate, attrUnwrapTemplate: kindTemplate,
}

// storedAttrs are the attributes an object keeps as the application set
// them, in the HSM's key attributes (hsmapi/pkcs11attr.go), with the value
// an object has that was given none. Every other attribute the module knows
// is computed from the key (its class, type, flags, public key), so that
// what an attribute says is what the HSM does.
var storedAttrs = map[uint]func(class uint) []byte{
	attrPrivate:            func(class uint) []byte { return boolValue(class != ClassPublicKey) },
	attrSubject:            empty,
	attrStartDate:          empty,
	attrEndDate:            empty,
	attrDerive:             falseValue,
	attrSignRecover:        falseValue,
	attrVerifyRecover:      falseValue,
	attrModifiable:         trueValue,
	attrCopyable:           trueValue,
	attrDestroyable:        trueValue,
	attrTrusted:            falseValue,
	attrWrapWithTrusted:    falseValue,
	attrAlwaysAuthenticate: falseValue,
	attrAllowedMechanisms:  empty,
	attrWrapTemplate:       noTemplate,
	attrUnwrapTemplate:     noTemplate,
}

func empty(uint) []byte      { return []byte{} }
func noTemplate(uint) []byte { return hsmapi.EncodeAttributes(nil) }
func falseValue(uint) []byte { return []byte{0} }
func trueValue(uint) []byte  { return []byte{1} }

// Which objects have which of the attributes above beyond every key's.
var (
	privateOnly = map[uint]bool{
		attrSensitive: true, attrDecrypt: true, attrSign: true, attrSignRecover: true, attrUnwrap: true,
		attrExtractable: true, attrAlwaysSensitive: true, attrNeverExtractable: true,
		attrWrapWithTrusted: true, attrAlwaysAuthenticate: true, attrUnwrapTemplate: true,
	}
	publicOnly = map[uint]bool{
		attrEncrypt: true, attrVerify: true, attrVerifyRecover: true, attrWrap: true, attrTrusted: true,
		attrWrapTemplate: true,
	}
)

func boolValue(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

func ulongValue(v uint64) []byte {
	return binary.NativeEndian.AppendUint64(make([]byte, 0, ULongSize), v)
}

// ulongOf reads a CK_ULONG value; ok is false when v is not one.
func ulongOf(v []byte) (uint64, bool) {
	if len(v) != ULongSize {
		return 0, false
	}
	return binary.NativeEndian.Uint64(v), true
}

// ulongsOf reads an array of CK_ULONG.
func ulongsOf(v []byte) ([]uint64, bool) {
	if len(v)%ULongSize != 0 {
		return nil, false
	}
	out := make([]uint64, len(v)/ULongSize)
	for i := range out {
		out[i] = binary.NativeEndian.Uint64(v[i*ULongSize:])
	}
	return out, true
}

// boolOf reads a CK_BBOOL: one byte, any value but 0 true.
func boolOf(v []byte) (value, ok bool) {
	if len(v) != 1 {
		return false, false
	}
	return v[0] != 0, true
}

// validValue reports whether v is a well-formed value for attribute t.
func validValue(t uint, v []byte) bool {
	switch attrKinds[t] {
	case kindBool:
		_, ok := boolOf(v)
		return ok
	case kindULong:
		_, ok := ulongOf(v)
		return ok
	case kindULongs:
		return len(v)%ULongSize == 0
	case kindTemplate:
		// One level deep, of attributes the module knows.
		list, err := hsmapi.DecodeAttributes(v)
		if err != nil {
			return false
		}
		for _, a := range list {
			if k, known := attrKinds[uint(a.Type)]; !known || k == kindTemplate || !validValue(uint(a.Type), a.Value) {
				return false
			}
		}
	case kindDate:
		if len(v) == 0 {
			return true
		}
		if len(v) != 8 {
			return false
		}
		for _, c := range v {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// sameValue compares two values of attribute t; booleans by truth.
func sameValue(t uint, a, b []byte) bool {
	if attrKinds[t] == kindBool {
		x, ok1 := boolOf(a)
		y, ok2 := boolOf(b)
		return ok1 && ok2 && x == y
	}
	return bytes.Equal(a, b)
}

// keyKinds are the CKK_ of the HSM's key types and the mechanism that
// makes such keys (CKA_KEY_GEN_MECHANISM).
var keyKinds = map[hsmapi.KeyType]struct {
	ckk  uint64
	mech uint
}{
	hsmapi.KeyTypeRSAPrivate:     {KeyTypeRSA, MechRSAKeyPairGen},
	hsmapi.KeyTypeRSAPublic:      {KeyTypeRSA, MechRSAKeyPairGen},
	hsmapi.KeyTypeECPrivate:      {KeyTypeEC, MechECKeyPairGen},
	hsmapi.KeyTypeECPublic:       {KeyTypeEC, MechECKeyPairGen},
	hsmapi.KeyTypeHashsigPrivate: {KeyTypeHSS, MechHSSKeyPairGen},
	hsmapi.KeyTypeHashsigPublic:  {KeyTypeHSS, MechHSSKeyPairGen},
	hsmapi.KeyTypeAES:            {KeyTypeAES, MechAESKeyGen},
}

// An objectView is what an object's attributes are read from: the key as
// the token describes it and the attributes it stores.
type objectView struct {
	obj KeyObject
	// own are the object's stored attributes; key those at CKA_ numbers
	// (the private object's, or a public key alone's).
	own, key map[uint32][]byte
	// pair: the object is the public key object of a key pair.
	pair bool
}

// storedAttributes reads a key's stored attributes, when the token keeps
// any (hsmapi.AttributeReader).
func storedAttributes(tok hsmapi.Token, id hsmapi.UUID) ([]hsmapi.Attribute, error) {
	r, ok := tok.(hsmapi.AttributeReader)
	if !ok {
		return nil, nil
	}
	attrs, err := r.KeyAttributes(context.Background(), id)
	if errors.Is(err, hsmapi.ErrForbidden) {
		// The SO, who uses no keys, sees those it may trust.
		c, err := trustCandidate(tok, id)
		return c.Attributes, err
	}
	return attrs, err
}

// newView makes the view of an object from the key's stored attributes. A
// malformed public object's list counts as empty: the object keeps the
// values an object given none has, and the key stays usable.
func newView(o KeyObject, stored []hsmapi.Attribute) *objectView {
	v := &objectView{obj: o, key: map[uint32][]byte{}}
	for _, a := range stored {
		v.key[a.Type] = a.Value
	}
	v.own = v.key
	if o.Class == ClassPublicKey && o.Info.Type.IsPrivate() {
		v.pair = true
		v.own = map[uint32][]byte{}
		if list, err := hsmapi.DecodeAttributes(v.key[hsmapi.AttributePublicObject]); err == nil {
			for _, a := range list {
				v.own[a.Type] = a.Value
			}
		}
	}
	return v
}

// local: the key was made in this HSM. A key loaded in the clear is marked
// otherwise in its attributes (hsmapi.PrivateKeyLoader).
func (v *objectView) local() bool {
	b, ok := boolOf(v.key[hsmapi.CKALocal])
	return !ok || b
}

func (v *objectView) flag(f hsmapi.Flags) []byte { return boolValue(v.obj.Info.Flags&f != 0) }

// applies reports whether the object has attribute t at all.
func (v *objectView) applies(t uint) bool {
	if _, known := attrKinds[t]; !known {
		return false
	}
	// A secret key object has the attributes of both: it may wrap and
	// unwrap, and it is sensitive.
	switch {
	case t == attrValueLen:
		return v.obj.Class == ClassSecretKey
	case privateOnly[t]:
		return v.obj.Class != ClassPublicKey
	case publicOnly[t]:
		return v.obj.Class != ClassPrivateKey
	}
	return true
}

// attribute returns the value of attribute t: OK, AttributeSensitive for
// the secret parts of a private key, AttributeTypeInvalid for an attribute
// the object does not have.
func (v *objectView) attribute(t uint) ([]byte, RV) {
	if !v.applies(t) {
		return nil, AttributeTypeInvalid
	}
	info := v.obj.Info
	priv := v.obj.Class == ClassPrivateKey
	if def, ok := storedAttrs[t]; ok {
		if val, ok := v.own[uint32(t)]; ok && validValue(t, val) {
			return val, OK
		}
		if t == attrCopyable && priv && info.Hashsig != nil {
			// PKCS#11 3.1: an HSS private key is never copyable.
			return falseValue(0), OK
		}
		return def(v.obj.Class), OK
	}
	switch t {
	case attrClass:
		return ulongValue(uint64(v.obj.Class)), OK
	case attrKeyType:
		k, ok := keyKinds[info.Type]
		if !ok {
			return nil, AttributeTypeInvalid
		}
		return ulongValue(k.ckk), OK
	case attrToken:
		return v.flag(hsmapi.FlagToken), OK
	case attrLabel:
		if l, ok := v.own[hsmapi.CKALabel]; ok && v.pair {
			return l, OK
		}
		return []byte(info.Label), OK
	case attrID:
		if id, ok := v.own[hsmapi.CKAID]; ok {
			return id, OK
		}
		if id, ok := v.key[hsmapi.CKAID]; ok {
			return id, OK
		}
		// A key that was never given a CKA_ID (made over libhal's RPC, or
		// by cryptech_backup) is named by its UUID, as bundle-format.md
		// has a PKCS#11 destination name it.
		return v.obj.UUID[:], OK
	case attrSensitive:
		// Always: the HSM never gives a private key away in the clear.
		return trueValue(0), OK
	case attrExtractable:
		return v.flag(hsmapi.FlagExportable), OK
	case attrAlwaysSensitive:
		return boolValue(v.local()), OK
	case attrNeverExtractable:
		return boolValue(v.local() && info.Flags&hsmapi.FlagExportable == 0), OK
	case attrLocal:
		return boolValue(v.local()), OK
	case attrKeyGenMechanism:
		if !v.local() {
			return ulongValue(uint64(Unavailable)), OK
		}
		return ulongValue(uint64(keyKinds[info.Type].mech)), OK
	case attrPublicKeyInfo:
		return info.PublicKey, OK
	case attrValueLen:
		return ulongValue(uint64(info.Bits / 8)), OK
	}
	for _, m := range hsmapi.PrivateObjectFlags {
		if uint(m.Attribute) == t {
			return v.flag(m.Flag), OK
		}
	}
	for _, m := range hsmapi.PublicObjectFlags {
		if uint(m.Attribute) == t {
			return v.flag(m.Flag), OK
		}
	}
	return v.keyMaterial(t)
}

// keyMaterial is the attributes of the key itself: public parts from the
// public key, secret ones sensitive.
func (v *objectView) keyMaterial(t uint) ([]byte, RV) {
	info := v.obj.Info
	priv := v.obj.Class == ClassPrivateKey
	if v.obj.Class == ClassSecretKey {
		if t == attrValue {
			return nil, AttributeSensitive
		}
		return nil, AttributeTypeInvalid
	}
	pub, err := hsmapi.ParsePublicKey(info.PublicKey)
	if err != nil {
		return nil, AttributeTypeInvalid
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		switch t {
		case attrModulus:
			return p.N.Bytes(), OK
		case attrPublicExponent:
			return big.NewInt(int64(p.E)).Bytes(), OK
		case attrModulusBits:
			if !priv {
				return ulongValue(uint64(p.N.BitLen())), OK
			}
		case attrPrivateExponent, attrPrime1, attrPrime2, attrExponent1, attrExponent2, attrCoefficient:
			if priv {
				return nil, AttributeSensitive
			}
		}
	case *ecdsa.PublicKey:
		switch t {
		case attrECParams:
			params, err := hsmapi.ECParams(info.Curve)
			if err != nil {
				return nil, AttributeTypeInvalid
			}
			return params, OK
		case attrECPoint:
			if !priv {
				// An OCTET STRING holding the uncompressed point, as
				// PKCS#11 and every application expect.
				raw, err := p.Bytes()
				if err != nil {
					return nil, AttributeTypeInvalid
				}
				der, _ := asn1.Marshal(raw)
				return der, OK
			}
		case attrValue:
			if priv {
				return nil, AttributeSensitive
			}
		}
	case *hashsig.PublicKey:
		return v.hssAttribute(t, p)
	}
	return nil, AttributeTypeInvalid
}

// hssAttribute is the CKA_HSS_* attributes of PKCS#11 3.1, and CKA_VALUE.
func (v *objectView) hssAttribute(t uint, p *hashsig.PublicKey) ([]byte, RV) {
	hi := v.obj.Info.Hashsig
	priv := v.obj.Class == ClassPrivateKey
	top, _ := p.Top()
	switch {
	case t == attrHSSLevels:
		return ulongValue(uint64(p.Levels())), OK
	case t == attrHSSLMSType && !priv:
		return ulongValue(uint64(top.LMS)), OK
	case t == attrHSSLMOTSType && !priv:
		return ulongValue(uint64(top.LMOTS)), OK
	case t == attrValue && !priv:
		// The RFC 8554 public key.
		return p.Bytes(), OK
	case t == attrValue:
		// The private key and its state: never given.
		return nil, AttributeSensitive
	case (t == attrHSSLMSTypes || t == attrHSSLMOTSTypes) && priv && hi != nil && len(hi.Levels) == p.Levels():
		var out []byte
		for _, l := range hi.Levels {
			n := uint64(l.LMS)
			if t == attrHSSLMOTSTypes {
				n = uint64(l.LMOTS)
			}
			out = append(out, ulongValue(n)...)
		}
		return out, OK
	case t == attrHSSKeysRemaining && priv && hi != nil && !hi.RemainingUnknown:
		return ulongValue(min(hi.Remaining, math.MaxUint32)), OK
	}
	return nil, AttributeTypeInvalid
}

// matches reports whether the object has every attribute of tmpl with that
// value. An attribute the module does not know, or the object lacks, or
// whose value is secret, matches nothing.
func (v *objectView) matches(tmpl []Attribute) bool {
	for _, a := range tmpl {
		val, rv := v.attribute(a.Type)
		if rv != OK || !sameValue(a.Type, val, a.Value) {
			return false
		}
	}
	return true
}
