package cryptoki

import (
	"bytes"
	"context"
	"errors"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// Secret (AES) keys, C_WrapKey and C_UnwrapKey, and RSA-OAEP encryption,
// served by the token's optional interfaces (hsmapi.SecretKeyGenerator,
// KeyWrapper, Encrypter, Decrypter). What each key may do is the HSM's
// policy (docs/key-policy.md): the module checks what it can tell from
// the objects so as to answer with the right CKR_, and the HSM decides.

// secretMechFlags keeps of a secret-key mechanism's flags those the token
// serves.
func secretMechFlags(tok hsmapi.Token, flags uint) uint {
	var has uint
	if _, ok := tok.(hsmapi.SecretKeyGenerator); ok {
		has |= MechFlagGenerate
	}
	if _, ok := tok.(hsmapi.KeyWrapper); ok {
		has |= MechFlagWrap | MechFlagUnwrap
	}
	if _, ok := tok.(hsmapi.Encrypter); ok {
		has |= MechFlagEncrypt
	}
	if _, ok := tok.(hsmapi.Decrypter); ok {
		has |= MechFlagDecrypt
	}
	if flags&has == 0 {
		return 0
	}
	// The HSM performs what it serves (CKF_HW).
	return flags & (has | MechFlagHW)
}

// The CKR_ of wrapping and encryption.
const (
	encryptedDataInvalid          RV = 0x040
	encryptedDataLenRange         RV = 0x041
	keyNotWrappable               RV = 0x069
	keyUnextractable              RV = 0x06A
	unwrappingKeyHandleInvalid    RV = 0x0F0
	unwrappingKeyTypeInconsistent RV = 0x0F2
	wrappedKeyInvalid             RV = 0x110
	wrappingKeyHandleInvalid      RV = 0x113
	wrappingKeyTypeInconsistent   RV = 0x115
	ckzDataSpecified                 = 1
	maxTemplateSecretKeyBytes        = 32
)

// oaepOf reads CK_RSA_PKCS_OAEP_PARAMS.
func oaepOf(p *OAEPParams) (hsmapi.OAEPParams, RV) {
	if p == nil || p.Source != 0 && p.Source != ckzDataSpecified || p.Source == 0 && len(p.Label) != 0 {
		return hsmapi.OAEPParams{}, MechanismParamInvalid
	}
	o, err := hsmapi.OAEPFromPKCS11(uint32(p.Hash), uint32(p.MGF), p.Label)
	if err != nil || uint(uint32(p.Hash)) != p.Hash || uint(uint32(p.MGF)) != p.MGF {
		return hsmapi.OAEPParams{}, MechanismParamInvalid
	}
	return o, OK
}

// wrapMechanism is the HSM's form of a wrapping mechanism, and whether its
// key is an AES key (else RSA).
func wrapMechanism(mech Mechanism) (hsmapi.WrapMechanism, bool, RV) {
	w := hsmapi.WrapMechanism{Mechanism: hsmapi.Mechanism(mech.Type)}
	switch mech.Type {
	case MechAESKeyWrap, MechAESKeyWrapPad, MechAESKeyWrapKWP:
		// CKM_AES_KEY_WRAP's optional IV is not taken: the default one.
		if len(mech.Param) != 0 || mech.OAEP != nil {
			return w, true, MechanismParamInvalid
		}
		return w, true, OK
	case MechRSAPKCSOAEP, MechRSAAESKeyWrap:
		var rv RV
		if w.OAEP, rv = oaepOf(mech.OAEP); rv != OK {
			return w, false, rv
		}
		if mech.Type == MechRSAAESKeyWrap {
			if hsmapi.CheckAESBits(int(min(mech.AESKeyBits, 1024))) != nil {
				return w, false, MechanismParamInvalid
			}
			w.AESKeyBits = int(mech.AESKeyBits)
		}
		return w, false, OK
	}
	return w, false, MechanismInvalid
}

// secretKeyFlags are the HSM flags a secret key's template asks for. An
// AES key here wraps and unwraps (one flag, both usages: CKA_WRAP and
// CKA_UNWRAP are given alike, true unless the template says false) and
// does nothing else.
func secretKeyFlags(n newObject) (hsmapi.Flags, RV) {
	wrap, wg := n.bool(attrWrap)
	unwrap, ug := n.bool(attrUnwrap)
	if wg && ug && wrap != unwrap {
		return 0, TemplateInconsistent
	}
	for _, t := range []uint{attrEncrypt, attrDecrypt, attrSign, attrVerify} {
		if v, _ := n.bool(t); v {
			return 0, AttributeValueInvalid
		}
	}
	var f hsmapi.Flags
	if !(wg && !wrap) && !(ug && !unwrap) {
		f |= hsmapi.FlagKeyEncipherment
	}
	if v, _ := n.bool(attrToken); v {
		f |= hsmapi.FlagToken
	}
	if v, _ := n.bool(attrExtractable); v {
		f |= hsmapi.FlagExportable
	}
	return f, OK
}

// privateKeyFlags are the HSM flags of an unwrapped private key's
// template: each usage the template grants, none it does not.
func privateKeyFlags(n newObject) hsmapi.Flags {
	var f hsmapi.Flags
	for _, m := range hsmapi.PrivateObjectFlags {
		if v, _ := n.bool(uint(m.Attribute)); v {
			f |= m.Flag
		}
	}
	if v, _ := n.bool(attrToken); v {
		f |= hsmapi.FlagToken
	}
	return f
}

// newKeyRV is the answer to the HSM's refusal to make, unwrap or wrap a
// key.
func newKeyRV(err error) RV {
	switch {
	case errors.Is(err, hsmapi.ErrDecryption):
		return wrappedKeyInvalid
	case errors.Is(err, hsmapi.ErrNotExportable):
		return keyUnextractable
	case errors.Is(err, hsmapi.ErrForbidden):
		return KeyFunctionNotPermitted
	case errors.Is(err, hsmapi.ErrBadArguments):
		return TemplateInconsistent
	case errors.Is(err, hsmapi.ErrHashsigRangeUsed):
		// An HSS part the HSM may not store: it holds a part of that
		// key, or received some of these signatures before.
		return ActionProhibited
	case errors.Is(err, hsmapi.ErrKeyExhausted):
		// An HSS key with too few signatures left to split.
		return KeyExhausted
	}
	return tokenRV(err)
}

// mechanismFor checks that the slot of session sh serves mechanism typ for
// want, and that the normal user is logged in.
func (m *Module) mechanismFor(sh, typ, want uint) (hsmapi.Token, RV) {
	var tok hsmapi.Token
	rv := m.withSession(sh, func(s *slot, _ *session) RV {
		if _, rv := slotMechanism(s, typ, want); rv != OK {
			return rv
		}
		if s.user != hsmapi.UserNormal {
			return UserNotLoggedIn
		}
		tok = s.client.Token()
		return OK
	})
	return tok, rv
}

// GenerateKey is C_GenerateKey: CKM_AES_KEY_GEN, the key from the HSM's
// TRNG, stored with its template's attributes in one step.
func (m *Module) GenerateKey(sh uint, mech Mechanism, tmpl []Attribute) (uint, RV) {
	if rv := m.sessionValid(sh); rv != OK {
		return 0, rv
	}
	if mech.Type != MechAESKeyGen {
		return 0, MechanismInvalid
	}
	if len(mech.Param) != 0 || mech.OAEP != nil {
		return 0, MechanismParamInvalid
	}
	tok, rv := m.mechanismFor(sh, MechAESKeyGen, MechFlagGenerate)
	if rv != OK {
		return 0, rv
	}
	n, rv := parseNew(ClassSecretKey, tmpl, attrValueLen)
	if rv != OK {
		return 0, rv
	}
	if rv := n.keyType(KeyTypeAES); rv != OK {
		return 0, rv
	}
	size, ok := n.ulong(attrValueLen)
	if !ok {
		return 0, TemplateIncomplete
	}
	if size > maxTemplateSecretKeyBytes || hsmapi.CheckAESBits(int(size)*8) != nil {
		return 0, KeySizeRange
	}
	req, rv := m.secretRequest(sh, n, int(size)*8)
	if rv != OK {
		return 0, rv
	}
	k, err := tok.(hsmapi.SecretKeyGenerator).GenerateSecretKey(context.Background(), req)
	if err != nil {
		return 0, newKeyRV(err)
	}
	h, rv := m.adopt(sh, k)
	return h.pub, rv
}

// secretRequest is the request for a new AES key of bits that template n
// describes (its usages as secretKeyFlags gives them, its label and
// attributes), which session sh may make.
func (m *Module) secretRequest(sh uint, n newObject, bits int) (hsmapi.SecretKeyRequest, RV) {
	flags, rv := secretKeyFlags(n)
	if rv != OK {
		return hsmapi.SecretKeyRequest{}, rv
	}
	label, _ := n.label()
	if hsmapi.CheckLabel(label) != nil {
		return hsmapi.SecretKeyRequest{}, AttributeValueInvalid
	}
	if rv := m.writable(sh, flags); rv != OK {
		return hsmapi.SecretKeyRequest{}, rv
	}
	return hsmapi.SecretKeyRequest{Bits: bits, Flags: flags, Label: label, Attributes: n.stored()}, OK
}

// WrapKey is C_WrapKey: the HSM wraps key (a private key object, as
// PKCS#8, or a secret key) under wrapping (an AES key, or an RSA public key
// object). The result is made first and then delivered by the length
// protocol: wrapping an RSA, EC or AES key changes nothing, so asking the
// length costs no more than a wrap. Wrapping an HSS key splits it (the
// source keeps half its signatures, for good), so its length is computed
// from its parameters and the key is wrapped only into a buffer that
// holds it.
func (m *Module) WrapKey(sh uint, mech Mechanism, wrapping, key uint, o Output) ([]byte, int, RV) {
	if rv := m.sessionValid(sh); rv != OK {
		return nil, 0, rv
	}
	w, aes, rv := wrapMechanism(mech)
	if rv != OK {
		return nil, 0, rv
	}
	tok, rv := m.mechanismFor(sh, mech.Type, MechFlagWrap)
	if rv != OK {
		return nil, 0, rv
	}
	wo, rv := m.keyHandle(sh, wrapping, wrappingKeyHandleInvalid)
	if rv != OK {
		return nil, 0, rv
	}
	if !wrapperFits(wo, aes, ClassPublicKey) {
		return nil, 0, wrappingKeyTypeInconsistent
	}
	ko, rv := m.keyHandle(sh, key, KeyHandleInvalid)
	if rv != OK {
		return nil, 0, rv
	}
	if ko.Class == ClassPublicKey {
		return nil, 0, keyNotWrappable
	}
	// CKA_WRAP_TEMPLATE: the wrapping key wraps only keys that match it.
	wrapTmpl, rv := nestedTemplate(tok, wo, attrWrapTemplate)
	if rv != OK {
		return nil, 0, rv
	}
	if len(wrapTmpl) > 0 {
		stored, err := storedAttributes(tok, ko.UUID)
		if err != nil {
			return nil, 0, tokenRV(err)
		}
		if !newView(ko, stored).matches(wrapTmpl) {
			return nil, 0, keyNotWrappable
		}
	}
	if ko.Info.Type == hsmapi.KeyTypeHashsigPrivate {
		n, rv := hssWrappedSize(ko.Info.Hashsig, w)
		switch {
		case rv != OK:
			return nil, 0, rv
		case o.Query:
			return nil, n, OK
		case o.Room < n:
			return nil, n, BufferTooSmall
		}
	}
	out, err := tok.(hsmapi.KeyWrapper).WrapKey(context.Background(), wo.UUID, ko.UUID, w)
	switch {
	case errors.Is(err, hsmapi.ErrUnsupportedKey):
		return nil, 0, keyNotWrappable
	case errors.Is(err, hsmapi.ErrBadArguments):
		return nil, 0, KeySizeRange
	case err != nil:
		return nil, 0, newKeyRV(err)
	}
	switch {
	case o.Query:
		return nil, len(out), OK
	case o.Room < len(out):
		return nil, len(out), BufferTooSmall
	}
	return out, len(out), OK
}

// hssWrappedSize is the length of an HSS key wrapped with w: its PKCS#8
// (hashsig.PKCS8Size), padded to 8 bytes, and RFC 5649's 8-byte integrity
// block. Only AES key wrap with padding wraps an HSS key (the HSM refuses
// the others: hsm.hssWrapMechanism).
func hssWrappedSize(hi *hsmapi.HashsigInfo, w hsmapi.WrapMechanism) (int, RV) {
	if w.Mechanism != hsmapi.MechAESKeyWrapPad && w.Mechanism != hsmapi.MechAESKeyWrapKWP {
		return 0, keyNotWrappable
	}
	if hi == nil || len(hi.Levels) == 0 {
		return 0, GeneralError
	}
	n, err := hashsig.PKCS8Size(hi.L, hi.Levels[0].LMS)
	if err != nil {
		return 0, GeneralError
	}
	return (n+7)/8*8 + 8, OK
}

// keyHandle is keyObject for a key handle argument: an unknown handle is
// invalid, the CKR_ the argument's own.
func (m *Module) keyHandle(sh, object uint, invalid RV) (KeyObject, RV) {
	o, rv := m.keyObject(sh, object)
	if rv == ObjectHandleInvalid {
		rv = invalid
	}
	return o, rv
}

// nestedTemplate reads a key object's CKA_WRAP_TEMPLATE or
// CKA_UNWRAP_TEMPLATE (empty for none).
func nestedTemplate(tok hsmapi.Token, o KeyObject, t uint) ([]Attribute, RV) {
	stored, err := storedAttributes(tok, o.UUID)
	if err != nil {
		return nil, tokenRV(err)
	}
	v, rv := newView(o, stored).attribute(t)
	if rv != OK {
		return nil, OK // the object has none
	}
	list, err := hsmapi.DecodeAttributes(v)
	if err != nil {
		return nil, GeneralError
	}
	out := make([]Attribute, len(list))
	for i, a := range list {
		out[i] = Attribute{Type: uint(a.Type), Value: a.Value}
	}
	return out, OK
}

// wrapperFits reports whether key object o is of the kind a mechanism
// wraps or unwraps with: an AES secret key, or an RSA key object of class
// rsaClass (public to wrap, private to unwrap).
func wrapperFits(o KeyObject, aes bool, rsaClass uint) bool {
	if aes {
		return o.Class == ClassSecretKey && o.Info.Type == hsmapi.KeyTypeAES
	}
	return o.Class == rsaClass && (o.Info.Type == hsmapi.KeyTypeRSAPrivate || o.Info.Type == hsmapi.KeyTypeRSAPublic)
}

// UnwrapKey is C_UnwrapKey: the HSM unwraps wrapped under unwrapping (an
// AES key, or an RSA private key object) into a new key of the template's
// class and type (CKO_SECRET_KEY CKK_AES, CKO_PRIVATE_KEY CKK_RSA, CKK_EC
// or CKK_HSS), with the template's usages, stored with its attributes in
// one step: a private key's with those of its public key object, when the
// template gives them (attrPublicObject). The new key is never CKA_LOCAL.
// An HSS key is stored as the transfer imports one: refused if the HSM
// holds a part of that key or ever received any of its signatures.
func (m *Module) UnwrapKey(sh uint, mech Mechanism, unwrapping uint, wrapped []byte, tmpl []Attribute) (uint, RV) {
	if rv := m.sessionValid(sh); rv != OK {
		return 0, rv
	}
	w, aes, rv := wrapMechanism(mech)
	if rv != OK {
		return 0, rv
	}
	tok, rv := m.mechanismFor(sh, mech.Type, MechFlagUnwrap)
	if rv != OK {
		return 0, rv
	}
	uo, rv := m.keyHandle(sh, unwrapping, unwrappingKeyHandleInvalid)
	if rv != OK {
		return 0, rv
	}
	if !wrapperFits(uo, aes, ClassPrivateKey) {
		return 0, unwrappingKeyTypeInconsistent
	}
	// CKA_UNWRAP_TEMPLATE: what the unwrapping key gives every key it
	// unwraps, which the application's template may repeat but not
	// contradict.
	unwrapTmpl, rv := nestedTemplate(tok, uo, attrUnwrapTemplate)
	if rv != OK {
		return 0, rv
	}
	for _, a := range unwrapTmpl {
		for _, b := range tmpl {
			if b.Type == a.Type && !sameValue(a.Type, a.Value, b.Value) {
				return 0, TemplateInconsistent
			}
		}
	}
	req, rv := unwrapRequest(append(tmpl[:len(tmpl):len(tmpl)], unwrapTmpl...))
	if rv != OK {
		return 0, rv
	}
	if rv := m.writable(sh, req.Flags); rv != OK {
		return 0, rv
	}
	k, err := tok.(hsmapi.KeyWrapper).UnwrapKey(context.Background(), uo.UUID, w, wrapped, req)
	switch {
	case errors.Is(err, hsmapi.ErrUnsupportedKey):
		return 0, wrappedKeyInvalid
	case errors.Is(err, hsmapi.ErrKeyNameInUse):
		// Over libhal's RPC an HSS part the HSM may not store reads as
		// KEY_NAME_IN_USE (ErrHashsigRangeUsed has no status of its own);
		// an unwrapped key gets a new UUID, so it means nothing else here.
		return 0, ActionProhibited
	}
	if err != nil {
		return 0, newKeyRV(err)
	}
	h, rv := m.adopt(sh, k)
	if k.Type == hsmapi.KeyTypeAES {
		return h.pub, rv
	}
	return h.priv, rv
}

// unwrapRequest reads C_UnwrapKey's template: CKA_CLASS and CKA_KEY_TYPE
// say what the blob holds, the rest is the new key's, and a private key's
// may give its public key object's attributes (attrPublicObject).
func unwrapRequest(tmpl []Attribute) (hsmapi.UnwrapRequest, RV) {
	var req hsmapi.UnwrapRequest
	var class, keyType uint64
	var hasClass, hasType bool
	var pubTmpl []byte
	own := make([]Attribute, 0, len(tmpl))
	for _, a := range tmpl {
		switch a.Type {
		case attrClass:
			class, hasClass = ulongOf(a.Value)
		case attrKeyType:
			keyType, hasType = ulongOf(a.Value)
		case attrPublicObject:
			if pubTmpl != nil && !bytes.Equal(pubTmpl, a.Value) {
				return req, TemplateInconsistent
			}
			pubTmpl = a.Value
			continue
		}
		own = append(own, a)
	}
	tmpl = own
	if !hasClass || !hasType {
		return req, TemplateIncomplete
	}
	var n newObject
	var rv RV
	switch {
	case class == ClassSecretKey && keyType == KeyTypeAES:
		if n, rv = parseNew(ClassSecretKey, tmpl, attrValueLen); rv != OK {
			return req, rv
		}
		if size, ok := n.ulong(attrValueLen); ok {
			if size > maxTemplateSecretKeyBytes || hsmapi.CheckAESBits(int(size)*8) != nil {
				return req, KeySizeRange
			}
			req.Bits = int(size) * 8
		}
		req.Type = hsmapi.KeyTypeAES
		if req.Flags, rv = secretKeyFlags(n); rv != OK {
			return req, rv
		}
	case class == ClassPrivateKey && (keyType == KeyTypeRSA || keyType == KeyTypeEC || keyType == KeyTypeHSS):
		if n, rv = parseNew(ClassPrivateKey, tmpl); rv != OK {
			return req, rv
		}
		req.Type = map[uint64]hsmapi.KeyType{KeyTypeRSA: hsmapi.KeyTypeRSAPrivate, KeyTypeEC: hsmapi.KeyTypeECPrivate, KeyTypeHSS: hsmapi.KeyTypeHashsigPrivate}[keyType]
		req.Flags = privateKeyFlags(n)
	default:
		return req, TemplateInconsistent
	}
	label, _ := n.label()
	if hsmapi.CheckLabel(label) != nil {
		return req, AttributeValueInvalid
	}
	req.Label, req.Attributes = label, n.stored()
	if pubTmpl != nil {
		if req.Type == hsmapi.KeyTypeAES {
			return req, TemplateInconsistent
		}
		pub, rv := unwrapPublic(pubTmpl, keyType, n, req.Flags)
		if rv != OK {
			return req, rv
		}
		req.Attributes = pairAttributes(n, pub)
	}
	return req, OK
}

// unwrapPublic reads the template of an unwrapped private key's public key
// object (attrPublicObject), so that the HSM stores its attributes with
// the key in the same write, as C_GenerateKeyPair does: a key pair from
// another token arrives whole, CKA_PRIVATE and CKA_MODIFIABLE false
// included, which PKCS#11 lets no one set on an object already made. It
// is checked as C_GenerateKeyPair's public template is, and never grants
// more than the private key's template: each usage it gives, and
// CKA_TOKEN, must be what the key has (flags), as the HSM keeps one flag
// for both objects.
func unwrapPublic(v []byte, keyType uint64, priv newObject, flags hsmapi.Flags) (newObject, RV) {
	list, err := hsmapi.DecodeAttributes(v)
	if err != nil {
		return newObject{}, AttributeValueInvalid
	}
	tmpl := make([]Attribute, len(list))
	for i, a := range list {
		tmpl[i] = Attribute{Type: uint(a.Type), Value: a.Value}
	}
	pub, rv := parseNew(ClassPublicKey, tmpl)
	if rv != OK {
		return pub, rv
	}
	if rv := pub.keyType(keyType); rv != OK {
		return pub, rv
	}
	for _, u := range usages() {
		if b, ok := pub.bool(u.pub); u.pub != 0 && ok && b != (flags&u.flag != 0) {
			return pub, TemplateInconsistent
		}
	}
	token, _ := priv.bool(attrToken)
	if b, ok := pub.bool(attrToken); ok && b != token {
		return pub, TemplateInconsistent
	}
	if l, _ := pub.label(); hsmapi.CheckRawLabel(l) != nil {
		return pub, AttributeValueInvalid
	}
	return pub, OK
}
