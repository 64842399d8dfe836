package hsmapi

import (
	"crypto"
	"fmt"
)

// SecretKeyRequest asks for a new AES key.
type SecretKeyRequest struct {
	// Bits is 128, 192 or 256.
	Bits int
	// Flags: FlagKeyEncipherment (wrap and unwrap), FlagToken and
	// FlagExportable; nothing else means anything to an AES key here.
	Flags      Flags
	Label      string
	Attributes []Attribute
}

// UnwrapRequest describes the key an unwrapped blob becomes.
type UnwrapRequest struct {
	// Type is KeyTypeAES for a secret key, or the private key type the
	// PKCS#8 PrivateKeyInfo must hold (KeyTypeRSAPrivate,
	// KeyTypeECPrivate).
	Type KeyType
	// Bits is an AES key's size; zero takes what the blob holds.
	Bits       int
	Flags      Flags
	Label      string
	Attributes []Attribute
}

// Mechanism is a PKCS#11 mechanism number, for the wrappings and
// encryptions tokens perform.
type Mechanism uint32

const (
	// MechRSAOAEP is CKM_RSA_PKCS_OAEP: encryption, and wrapping of a
	// secret key's value.
	MechRSAOAEP Mechanism = 0x0009
	// MechRSAAESKeyWrap is CKM_RSA_AES_KEY_WRAP: a fresh AES key of
	// AESKeyBits, encrypted with RSA-OAEP, followed by the key wrapped
	// under it with RFC 5649 (the transfer's form).
	MechRSAAESKeyWrap Mechanism = 0x1054
	// MechAESKeyWrap is CKM_AES_KEY_WRAP, RFC 3394.
	MechAESKeyWrap Mechanism = 0x2109
	// MechAESKeyWrapPad is CKM_AES_KEY_WRAP_PAD as SoftHSM2 implements it:
	// RFC 5649, the same as MechAESKeyWrapKWP.
	MechAESKeyWrapPad Mechanism = 0x210A
	// MechAESKeyWrapKWP is CKM_AES_KEY_WRAP_KWP of PKCS#11 3.0, RFC 5649.
	MechAESKeyWrapKWP Mechanism = 0x210B
)

// WrapMechanism is how a key is wrapped.
type WrapMechanism struct {
	Mechanism Mechanism
	// OAEP are the parameters of MechRSAOAEP and MechRSAAESKeyWrap.
	OAEP OAEPParams
	// AESKeyBits is MechRSAAESKeyWrap's fresh AES key size: 128, 192 or
	// 256.
	AESKeyBits int
}

// OAEPParams are RSA-OAEP's parameters (CK_RSA_PKCS_OAEP_PARAMS).
type OAEPParams struct {
	// Hash and MGFHash are SHA-1 or SHA-2 hashes.
	Hash, MGFHash crypto.Hash
	// Label is the OAEP label (CKZ_DATA_SPECIFIED); empty for none.
	Label []byte
}

// Check refuses hashes RSA-OAEP is not used with here.
func (p OAEPParams) Check() error {
	for _, h := range []crypto.Hash{p.Hash, p.MGFHash} {
		switch h {
		case crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512:
		default:
			return fmt.Errorf("%w: RSA-OAEP with hash %v", ErrBadArguments, h)
		}
	}
	return nil
}

// CheckAESBits refuses AES key sizes other than 128, 192 and 256 bits.
func CheckAESBits(bits int) error {
	if bits != 128 && bits != 192 && bits != 256 {
		return fmt.Errorf("%w: AES keys are 128, 192 or 256 bits, not %d", ErrBadArguments, bits)
	}
	return nil
}

// oaepHashes are the hashes of RSA-OAEP with their PKCS#11 numbers: the
// CKM_ of the hash, the CKG_MGF1_ of the mask generation function.
var oaepHashes = []struct {
	hash     crypto.Hash
	ckm, ckg uint32
}{
	{crypto.SHA1, 0x220, 1},
	{crypto.SHA224, 0x255, 5},
	{crypto.SHA256, 0x250, 2},
	{crypto.SHA384, 0x260, 3},
	{crypto.SHA512, 0x270, 4},
}

// OAEPFromPKCS11 reads CK_RSA_PKCS_OAEP_PARAMS: hashAlg a CKM_SHA*
// number, mgf a CKG_MGF1_* number, the label (source CKZ_DATA_SPECIFIED).
func OAEPFromPKCS11(hashAlg, mgf uint32, label []byte) (OAEPParams, error) {
	var p OAEPParams
	for _, h := range oaepHashes {
		if h.ckm == hashAlg {
			p.Hash = h.hash
		}
		if h.ckg == mgf {
			p.MGFHash = h.hash
		}
	}
	if p.Hash == 0 || p.MGFHash == 0 {
		return OAEPParams{}, fmt.Errorf("%w: RSA-OAEP with hash 0x%x and MGF 0x%x", ErrBadArguments, hashAlg, mgf)
	}
	p.Label = label
	return p, nil
}

// PKCS11 is OAEPFromPKCS11 reversed; zeros for the zero OAEPParams (a
// mechanism without them).
func (p OAEPParams) PKCS11() (hashAlg, mgf uint32) {
	for _, h := range oaepHashes {
		if h.hash == p.Hash {
			hashAlg = h.ckm
		}
		if h.hash == p.MGFHash {
			mgf = h.ckg
		}
	}
	return hashAlg, mgf
}
