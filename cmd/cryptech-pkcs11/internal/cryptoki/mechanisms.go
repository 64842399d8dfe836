package cryptoki

import (
	"crypto"
	_ "crypto/sha1" // the hashes of the digest and signature mechanisms
	_ "crypto/sha256"
	_ "crypto/sha512"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// Mechanism types (CK_MECHANISM_TYPE), as the specification numbers them.
const (
	MechRSAPKCS          = 0x0001
	MechSHA1RSAPKCS      = 0x0006
	MechRSAPKCSPSS       = 0x000D
	MechSHA1RSAPKCSPSS   = 0x000E
	MechSHA256RSAPKCS    = 0x0040
	MechSHA384RSAPKCS    = 0x0041
	MechSHA512RSAPKCS    = 0x0042
	MechSHA256RSAPKCSPSS = 0x0043
	MechSHA384RSAPKCSPSS = 0x0044
	MechSHA512RSAPKCSPSS = 0x0045
	MechSHA224RSAPKCS    = 0x0046
	MechSHA224RSAPKCSPSS = 0x0047
	MechSHA1             = 0x0220
	MechSHA256           = 0x0250
	MechSHA224           = 0x0255
	MechSHA384           = 0x0260
	MechSHA512           = 0x0270
	MechECDSA            = 0x1041
	MechECDSASHA1        = 0x1042
	MechECDSASHA224      = 0x1043
	MechECDSASHA256      = 0x1044
	MechECDSASHA384      = 0x1045
	MechECDSASHA512      = 0x1046
	// MechHSS is PKCS#11 3.1's CKM_HSS.
	MechHSS = 0x4033

	// Secret keys, wrapping and RSA-OAEP (secret.go).
	MechRSAPKCSOAEP   = 0x0009
	MechRSAAESKeyWrap = 0x1054
	MechAESKeyGen     = 0x1080
	MechAESKeyWrap    = 0x2109
	MechAESKeyWrapPad = 0x210A
	MechAESKeyWrapKWP = 0x210B
)

// The flags of CK_MECHANISM_INFO.
const (
	// MechFlagHW: the token performs the mechanism, not the module. It is
	// set on the signature mechanisms the token signs with (the private
	// key never leaves the HSM, emulated or not), never on what the module
	// does itself (digests; verification alone).
	MechFlagHW              = 0x1
	MechFlagEncrypt         = 0x100
	MechFlagDecrypt         = 0x200
	MechFlagDigest          = 0x400
	MechFlagSign            = 0x800
	MechFlagVerify          = 0x2000
	MechFlagGenerate        = 0x8000
	MechFlagGenerateKeyPair = 0x10000
	MechFlagWrap            = 0x20000
	MechFlagUnwrap          = 0x40000
	MechFlagECFp            = 0x100000
	MechFlagECNamedCurve    = 0x800000
	MechFlagECUncompress    = 0x1000000
)

// MechanismInfo is CK_MECHANISM_INFO.
type MechanismInfo struct {
	// MinKeySize and MaxKeySize are in bits for RSA and EC keys; zero
	// where the specification gives none (digests, HSS).
	MinKeySize, MaxKeySize uint
	Flags                  uint
}

// A Mechanism is a CK_MECHANISM as the module reads it (export_mech.go
// converts it): the type, and the parameter in the form the type takes.
type Mechanism struct {
	Type uint
	// Param is the parameter's bytes: a byte-string parameter, or one that
	// is not the structure the type takes (which the mechanism then
	// refuses). nil when there is none.
	Param []byte
	// PSS is the CK_RSA_PKCS_PSS_PARAMS of an RSA-PSS mechanism.
	PSS *PSSParams
	// OAEP is the CK_RSA_PKCS_OAEP_PARAMS of CKM_RSA_PKCS_OAEP, or those
	// within CKM_RSA_AES_KEY_WRAP's CK_RSA_AES_KEY_WRAP_PARAMS, whose
	// ulAESKeyBits is AESKeyBits.
	OAEP       *OAEPParams
	AESKeyBits uint
}

// OAEPParams are CK_RSA_PKCS_OAEP_PARAMS.
type OAEPParams struct {
	// Hash is a digest mechanism, MGF a CKG_MGF1_*, Source CKZ_DATA_SPECIFIED
	// (1) or 0, with Label its data.
	Hash, MGF, Source uint
	Label             []byte
}

// PSSParams are CK_RSA_PKCS_PSS_PARAMS.
type PSSParams struct {
	// Hash is a digest mechanism (MechSHA256...), MGF a CKG_MGF1_*.
	Hash, MGF uint
	// SaltLen is sLen, in bytes.
	SaltLen uint
}

// ParamKind says which structure a mechanism's parameter is, for the C
// side to read it.
type ParamKind int

const (
	// ParamBytes: a byte string, or no parameter at all.
	ParamBytes ParamKind = iota
	// ParamPSS: CK_RSA_PKCS_PSS_PARAMS.
	ParamPSS
	// ParamOAEP: CK_RSA_PKCS_OAEP_PARAMS.
	ParamOAEP
	// ParamRSAAESKeyWrap: CK_RSA_AES_KEY_WRAP_PARAMS.
	ParamRSAAESKeyWrap
)

// ParamKindOf is the structure mechanism typ's parameter is; ParamBytes
// for a mechanism the module does not know.
func ParamKindOf(typ uint) ParamKind {
	if m, ok := byType[typ]; ok {
		return m.param
	}
	return ParamBytes
}

// A mechanism is one entry of the registry: what CK_MECHANISM_INFO says of
// it, and what serves it.
type mechanism struct {
	typ  uint
	info MechanismInfo
	// param is the structure its parameter is.
	param ParamKind
	// tokenFlags, when set, keeps of the flags those the slot's token can
	// serve; a mechanism left with none is not the slot's to list.
	tokenFlags func(tok hsmapi.Token, flags uint) uint
	// hash is a digest mechanism's hash, or the hash a signature mechanism
	// hashes its input with (0: the input is signed as it is).
	hash crypto.Hash
	// sig is how a signature mechanism signs; nil for others.
	sig *sigScheme
}

// registry is every mechanism of the module, in the order
// C_GetMechanismList gives them: key pair generation (keygen.go's list),
// then these. Adding a mechanism is adding its line.
var registry = append(keyGenRegistry(), []mechanism{
	digestMech(MechSHA1, crypto.SHA1),
	digestMech(MechSHA224, crypto.SHA224),
	digestMech(MechSHA256, crypto.SHA256),
	digestMech(MechSHA384, crypto.SHA384),
	digestMech(MechSHA512, crypto.SHA512),

	rsaPKCSMech(MechRSAPKCS, 0),
	rsaPKCSMech(MechSHA1RSAPKCS, crypto.SHA1),
	rsaPKCSMech(MechSHA224RSAPKCS, crypto.SHA224),
	rsaPKCSMech(MechSHA256RSAPKCS, crypto.SHA256),
	rsaPKCSMech(MechSHA384RSAPKCS, crypto.SHA384),
	rsaPKCSMech(MechSHA512RSAPKCS, crypto.SHA512),
	rsaPSSMech(MechRSAPKCSPSS, 0),
	rsaPSSMech(MechSHA1RSAPKCSPSS, crypto.SHA1),
	rsaPSSMech(MechSHA224RSAPKCSPSS, crypto.SHA224),
	rsaPSSMech(MechSHA256RSAPKCSPSS, crypto.SHA256),
	rsaPSSMech(MechSHA384RSAPKCSPSS, crypto.SHA384),
	rsaPSSMech(MechSHA512RSAPKCSPSS, crypto.SHA512),

	ecdsaMech(MechECDSA, 0),
	ecdsaMech(MechECDSASHA1, crypto.SHA1),
	ecdsaMech(MechECDSASHA224, crypto.SHA224),
	ecdsaMech(MechECDSASHA256, crypto.SHA256),
	ecdsaMech(MechECDSASHA384, crypto.SHA384),
	ecdsaMech(MechECDSASHA512, crypto.SHA512),

	hssMech(MechHSS),

	// Secret keys, wrapping and RSA-OAEP (secret.go): only on a token that
	// has them.
	{typ: MechAESKeyGen, info: MechanismInfo{16, 32, MechFlagHW | MechFlagGenerate}, tokenFlags: secretMechFlags},
	{typ: MechAESKeyWrap, info: MechanismInfo{16, 32, MechFlagHW | MechFlagWrap | MechFlagUnwrap}, tokenFlags: secretMechFlags},
	{typ: MechAESKeyWrapPad, info: MechanismInfo{16, 32, MechFlagHW | MechFlagWrap | MechFlagUnwrap}, tokenFlags: secretMechFlags},
	{typ: MechAESKeyWrapKWP, info: MechanismInfo{16, 32, MechFlagHW | MechFlagWrap | MechFlagUnwrap}, tokenFlags: secretMechFlags},
	{typ: MechRSAPKCSOAEP, info: MechanismInfo{hsmapi.MinRSABits, hsmapi.MaxRSABits, MechFlagHW | MechFlagEncrypt | MechFlagDecrypt | MechFlagWrap | MechFlagUnwrap},
		param: ParamOAEP, tokenFlags: secretMechFlags},
	{typ: MechRSAAESKeyWrap, info: MechanismInfo{hsmapi.MinRSABits, hsmapi.MaxRSABits, MechFlagHW | MechFlagWrap | MechFlagUnwrap},
		param: ParamRSAAESKeyWrap, tokenFlags: secretMechFlags},
}...)

// keyGenRegistry is keygen.go's list of key pair generation mechanisms as
// registry entries; C_GenerateKeyPair serves them.
func keyGenRegistry() []mechanism {
	var r []mechanism
	for _, k := range keyGenMechanisms() {
		r = append(r, mechanism{typ: k.Mech, info: MechanismInfo{k.MinKeySize, k.MaxKeySize, k.Flags}})
	}
	return r
}

// byType finds a registry entry by its type.
var byType = func() map[uint]*mechanism {
	m := make(map[uint]*mechanism, len(registry))
	for i := range registry {
		m[registry[i].typ] = &registry[i]
	}
	return m
}()

func digestMech(typ uint, h crypto.Hash) mechanism {
	return mechanism{typ: typ, info: MechanismInfo{Flags: MechFlagDigest}, hash: h}
}

// The key sizes of the signature mechanisms: what the HSM holds and uses
// (hsmapi's RSA bounds; P-256 to P-521).
var (
	rsaSigInfo   = MechanismInfo{hsmapi.MinRSABits, hsmapi.MaxRSABits, MechFlagHW | MechFlagSign | MechFlagVerify}
	ecdsaSigInfo = MechanismInfo{256, 521, MechFlagHW | MechFlagSign | MechFlagVerify | MechFlagECFp | MechFlagECNamedCurve | MechFlagECUncompress}
	// PKCS#11 3.1 gives HSS no key size.
	hssSigInfo = MechanismInfo{Flags: MechFlagHW | MechFlagSign | MechFlagVerify}
)

func rsaPKCSMech(typ uint, h crypto.Hash) mechanism {
	return mechanism{typ: typ, info: rsaSigInfo, hash: h, sig: &sigScheme{key: hsmapi.KeyTypeRSAPrivate}}
}

func rsaPSSMech(typ uint, h crypto.Hash) mechanism {
	return mechanism{typ: typ, info: rsaSigInfo, param: ParamPSS, tokenFlags: pssFlags, hash: h,
		sig: &sigScheme{key: hsmapi.KeyTypeRSAPrivate, pss: true}}
}

func ecdsaMech(typ uint, h crypto.Hash) mechanism {
	return mechanism{typ: typ, info: ecdsaSigInfo, hash: h, sig: &sigScheme{key: hsmapi.KeyTypeECPrivate}}
}

func hssMech(typ uint) mechanism {
	return mechanism{typ: typ, info: hssSigInfo, sig: &sigScheme{key: hsmapi.KeyTypeHashsigPrivate}}
}

// pssFlags: the module verifies every signature itself, under the key's
// public half, but only a token that signs RSA-PSS (hsmapi.PSSSigner) can
// sign one; libhal over its RPC cannot, so over RPC the PSS mechanisms
// verify only, in the module (not CKF_HW).
func pssFlags(tok hsmapi.Token, flags uint) uint {
	if p, ok := tok.(hsmapi.PSSSigner); ok && p.SignsPSS() {
		return flags
	}
	return flags &^ (MechFlagSign | MechFlagHW)
}

// flagsOn is what mechanism m can do on token tok.
func (m *mechanism) flagsOn(tok hsmapi.Token) uint {
	if m.tokenFlags == nil {
		return m.info.Flags
	}
	return m.tokenFlags(tok, m.info.Flags)
}

// slotMechanism finds mechanism typ for use with the flag want (one of
// MechFlag*) on slot s: MechanismInvalid when the module or the slot's
// token lacks it. For use inside withSlot or withSession.
func slotMechanism(s *slot, typ, want uint) (*mechanism, RV) {
	mech, ok := byType[typ]
	if !ok || mech.flagsOn(s.client.Token())&want == 0 {
		return nil, MechanismInvalid
	}
	return mech, OK
}

// Mechanisms is C_GetMechanismList: the registry's mechanisms the slot's
// token can serve.
func (m *Module) Mechanisms(id uint) ([]uint, RV) {
	var types []uint
	rv := m.withSlot(id, func(s *slot) RV {
		tok := s.client.Token()
		for i := range registry {
			if registry[i].flagsOn(tok) != 0 {
				types = append(types, registry[i].typ)
			}
		}
		return OK
	})
	return types, rv
}

// MechanismInfo is C_GetMechanismInfo, with the flags the slot's token
// can serve.
func (m *Module) MechanismInfo(id, typ uint) (MechanismInfo, RV) {
	var info MechanismInfo
	rv := m.withSlot(id, func(s *slot) RV {
		mech, ok := byType[typ]
		if !ok {
			return MechanismInvalid
		}
		info = mech.info
		info.Flags = mech.flagsOn(s.client.Token())
		if info.Flags == 0 {
			return MechanismInvalid
		}
		return OK
	})
	return info, rv
}
