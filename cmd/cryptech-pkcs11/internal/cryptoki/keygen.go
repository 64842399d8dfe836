package cryptoki

import (
	"context"
	"errors"
	"math/big"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// Key pair generation mechanisms (CKM_).
const (
	MechRSAKeyPairGen = 0x0000
	MechECKeyPairGen  = 0x1040
	// MechHSSKeyPairGen is CKM_HSS_KEY_PAIR_GEN of PKCS#11 3.1.
	MechHSSKeyPairGen = 0x4032
)

// CK_MECHANISM_INFO flags of key pair generation.
const (
	mechFlagGenerateKeyPair = 0x10000
	mechFlagECFp            = 0x100000
	mechFlagECNamedCurve    = 0x800000
	mechFlagECUncompress    = 0x1000000
)

// A keyGenMechanism is one key pair generation mechanism, as
// C_GetMechanismInfo describes it.
type keyGenMechanism struct {
	Mech, MinKeySize, MaxKeySize, Flags uint
}

// keyGenMechanisms are the key pair generation mechanisms the module
// offers, for the mechanism list (C_GetMechanismList, C_GetMechanismInfo):
// RSA of the sizes the HSM makes, the three NIST curves, and HSS (whose
// key sizes PKCS#11 3.1 leaves 0).
func keyGenMechanisms() []keyGenMechanism {
	return []keyGenMechanism{
		{MechRSAKeyPairGen, hsmapi.MinGeneratedRSABits, 4096, mechFlagGenerateKeyPair},
		{MechECKeyPairGen, 256, 521, mechFlagGenerateKeyPair | mechFlagECFp | mechFlagECNamedCurve | mechFlagECUncompress},
		{MechHSSKeyPairGen, 0, 0, mechFlagGenerateKeyPair},
	}
}

// GenerateKeyPair is C_GenerateKeyPair: the HSM makes the key and stores
// both templates' attributes and the label with it, in one keystore write
// on the emulated HSM (over RPC, where libhal's generate takes no
// attributes, the client sets them right after and deletes the key should
// that fail), so that no key is left half made. It returns the public and
// the private key object's handles.
func (m *Module) GenerateKeyPair(sh, mech uint, param []byte, pubTmpl, privTmpl []Attribute) (pub, priv uint, rv RV) {
	if rv := m.sessionValid(sh); rv != OK {
		return 0, 0, rv
	}
	req, rv := generateRequest(mech, param, pubTmpl, privTmpl)
	if rv != OK {
		return 0, 0, rv
	}
	if rv := m.writable(sh, req.Flags); rv != OK {
		return 0, 0, rv
	}
	tok, rv := m.sessionToken(sh)
	if rv != OK {
		return 0, 0, rv
	}
	k, err := tok.GenerateKey(context.Background(), req)
	if err != nil {
		return 0, 0, generateRV(err)
	}
	h, rv := m.adopt(sh, k)
	return h.pub, h.priv, rv
}

// writable checks that session sh may make a key with flags: someone who
// may use keys is logged in (the normal user; the HSM would refuse anyone
// else), and a token key needs a read/write session.
func (m *Module) writable(sh uint, flags hsmapi.Flags) RV {
	return m.withSession(sh, func(s *slot, ss *session) RV {
		if s.user != hsmapi.UserNormal {
			return UserNotLoggedIn
		}
		if flags&hsmapi.FlagToken != 0 && !ss.rw {
			return SessionReadOnly
		}
		return OK
	})
}

// adopt gives a new key its handles, and remembers a session object's
// session, which takes it along when it closes.
func (m *Module) adopt(sh uint, k hsmapi.KeyInfo) (keyHandles, RV) {
	var h keyHandles
	rv := m.withSession(sh, func(s *slot, _ *session) RV {
		h = m.handlesFor(s, k)
		if k.Flags&hsmapi.FlagToken == 0 {
			s.objects.own(sh, k.UUID)
		}
		return OK
	})
	return h, rv
}

// generateRequest turns C_GenerateKeyPair's arguments into the HSM's
// request, with the key's label and attributes, checking all of it before
// anything is made.
func generateRequest(mech uint, param []byte, pubTmpl, privTmpl []Attribute) (hsmapi.GenerateRequest, RV) {
	var req hsmapi.GenerateRequest
	if len(param) != 0 {
		// None of the three takes a parameter; PKCS#11 3.1 gives HSS's in
		// the private key's template.
		return req, MechanismParamInvalid
	}
	var pubKey, privKey []uint
	var keyType uint64
	switch mech {
	case MechRSAKeyPairGen:
		req.Type, keyType = hsmapi.KeyTypeRSAPrivate, KeyTypeRSA
		pubKey = []uint{attrModulusBits, attrPublicExponent}
	case MechECKeyPairGen:
		req.Type, keyType = hsmapi.KeyTypeECPrivate, KeyTypeEC
		pubKey = []uint{attrECParams}
		privKey = []uint{attrECParams}
	case MechHSSKeyPairGen:
		req.Type, keyType = hsmapi.KeyTypeHashsigPrivate, KeyTypeHSS
		privKey = []uint{attrHSSLevels, attrHSSLMSTypes, attrHSSLMOTSTypes}
	default:
		return req, MechanismInvalid
	}
	pub, rv := parseNew(ClassPublicKey, pubTmpl, pubKey...)
	if rv != OK {
		return req, rv
	}
	priv, rv := parseNew(ClassPrivateKey, privTmpl, privKey...)
	if rv != OK {
		return req, rv
	}
	if rv := pub.keyType(keyType); rv != OK {
		return req, rv
	}
	if rv := priv.keyType(keyType); rv != OK {
		return req, rv
	}
	if req.Flags, rv = keyFlags(&priv, &pub); rv != OK {
		return req, rv
	}
	switch req.Type {
	case hsmapi.KeyTypeRSAPrivate:
		rv = rsaRequest(&req, pub)
	case hsmapi.KeyTypeECPrivate:
		rv = ecRequest(&req, pub, priv)
	case hsmapi.KeyTypeHashsigPrivate:
		rv = hssRequest(&req, priv)
	}
	if rv != OK {
		return req, rv
	}
	// The key's label is the HSM's, under the rules of a label given to
	// a new key (as C_GenerateKey's); the public object's own is an
	// attribute.
	label, _ := priv.label()
	if err := hsmapi.CheckLabel(label); err != nil {
		return req, AttributeValueInvalid
	}
	if l, _ := pub.label(); hsmapi.CheckRawLabel(l) != nil {
		return req, AttributeValueInvalid
	}
	req.Label, req.Attributes = label, pairAttributes(priv, pub)
	return req, OK
}

var exponent65537 = big.NewInt(65537)

func rsaRequest(req *hsmapi.GenerateRequest, pub newObject) RV {
	bits, ok := pub.ulong(attrModulusBits)
	if !ok {
		return TemplateIncomplete
	}
	if hsmapi.CheckGeneratedRSABits(int(min(bits, 1<<20))) != nil {
		return KeySizeRange
	}
	req.Bits = int(bits)
	if e, ok := pub.given[attrPublicExponent]; ok && new(big.Int).SetBytes(e).Cmp(exponent65537) != 0 {
		// The HSM makes keys with 65537 alone.
		return AttributeValueInvalid
	}
	return OK
}

func ecRequest(req *hsmapi.GenerateRequest, pub, priv newObject) RV {
	params, ok := pub.given[attrECParams]
	if p, inPriv := priv.given[attrECParams]; inPriv {
		if ok && string(p) != string(params) {
			return TemplateInconsistent
		}
		params, ok = p, true
	}
	if !ok {
		return TemplateIncomplete
	}
	c, err := hsmapi.ParseECParams(params)
	if err != nil {
		return CurveNotSupported
	}
	req.Curve = c
	return OK
}

// hssRequest takes the HSS parameters from the private key's template, as
// PKCS#11 3.1 has it: CKA_HSS_LEVELS, and CKA_HSS_LMS_TYPES and
// CKA_HSS_LMOTS_TYPES with that many entries, top level first.
func hssRequest(req *hsmapi.GenerateRequest, priv newObject) RV {
	levels, ok1 := priv.ulong(attrHSSLevels)
	lms, ok2 := ulongsOf(priv.given[attrHSSLMSTypes])
	ots, ok3 := ulongsOf(priv.given[attrHSSLMOTSTypes])
	_, has2 := priv.given[attrHSSLMSTypes]
	_, has3 := priv.given[attrHSSLMOTSTypes]
	if !ok1 || !ok2 || !ok3 || !has2 || !has3 {
		return TemplateIncomplete
	}
	if uint64(len(lms)) != levels || uint64(len(ots)) != levels {
		return TemplateInconsistent
	}
	for i := range lms {
		if lms[i] > 1<<32-1 || ots[i] > 1<<32-1 {
			return AttributeValueInvalid
		}
		req.Levels = append(req.Levels, hashsig.Level{LMS: hashsig.LMSType(lms[i]), LMOTS: hashsig.LMOTSType(ots[i])})
	}
	if hashsig.CheckLevels(req.Levels) != nil {
		return AttributeValueInvalid
	}
	if v, ok := priv.bool(attrCopyable); ok && v {
		// PKCS#11 3.1: an HSS private key is never copyable; a copy
		// of its state would sign twice with one one-time key.
		return AttributeValueInvalid
	}
	return OK
}

// generateRV is the answer to the HSM's refusal to make a key.
func generateRV(err error) RV {
	switch {
	case errors.Is(err, hsmapi.ErrBadArguments):
		return TemplateInconsistent
	case errors.Is(err, hsmapi.ErrForbidden):
		return UserNotLoggedIn
	}
	return tokenRV(err)
}
