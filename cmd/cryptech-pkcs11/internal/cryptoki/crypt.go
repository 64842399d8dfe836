package cryptoki

import (
	"context"
	"errors"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// C_Encrypt and C_Decrypt with CKM_RSA_PKCS_OAEP, in one part: the token
// encrypts under an RSA key's public half and decrypts with its private
// half, for a key with the HSM's dataencipherment flag (CKA_ENCRYPT on the
// public key object, CKA_DECRYPT on the private one) and never one that
// wraps keys (docs/key-policy.md).

// A cryptKey is an encryption or decryption's key.
type cryptKey struct {
	tok  hsmapi.Token
	uuid hsmapi.UUID
	oaep hsmapi.OAEPParams
	// size is the modulus's size in bytes, max the longest plaintext.
	size, max int
}

// EncryptInit is C_EncryptInit.
func (m *Module) EncryptInit(h uint, mech Mechanism, key uint) RV {
	return m.cryptInit(h, opEncrypt, mech, key)
}

// DecryptInit is C_DecryptInit.
func (m *Module) DecryptInit(h uint, mech Mechanism, key uint) RV {
	return m.cryptInit(h, opDecrypt, mech, key)
}

func (m *Module) cryptInit(h uint, k opKind, mech Mechanism, key uint) RV {
	if rv := m.sessionValid(h); rv != OK {
		return rv
	}
	want, class := uint(MechFlagEncrypt), uint(ClassPublicKey)
	if k == opDecrypt {
		want, class = MechFlagDecrypt, ClassPrivateKey
	}
	if mech.Type != MechRSAPKCSOAEP {
		return MechanismInvalid
	}
	oaep, rv := oaepOf(mech.OAEP)
	if rv != OK {
		return rv
	}
	tok, rv := m.mechanismFor(h, mech.Type, want)
	if rv != OK {
		return rv
	}
	ko, rv := m.keyHandle(h, key, KeyHandleInvalid)
	if rv != OK {
		return rv
	}
	info := ko.Info
	switch {
	case info.Type != hsmapi.KeyTypeRSAPrivate && info.Type != hsmapi.KeyTypeRSAPublic || ko.Class != class:
		return KeyTypeInconsistent
	case info.Flags&hsmapi.FlagDataEncipherment == 0, info.Flags&hsmapi.FlagKeyEncipherment != 0:
		return KeyFunctionNotPermitted
	}
	size := (info.Bits + 7) / 8
	max := size - 2*oaep.Hash.Size() - 2
	if max < 0 {
		return KeySizeRange
	}
	return m.beginOp(h, k, &operation{crypt: &cryptKey{tok: tok, uuid: ko.UUID, oaep: oaep, size: size, max: max}})
}

// Encrypt is C_Encrypt: the ciphertext is the modulus's size.
func (m *Module) Encrypt(h uint, data []byte, o Output) ([]byte, int, RV) {
	op, rv := m.activeOp(h, opEncrypt)
	if rv != OK {
		return nil, 0, rv
	}
	defer op.mu.Unlock()
	c := op.crypt
	if len(data) > c.max {
		return nil, 0, m.fail(h, opEncrypt, op, DataLenRange)
	}
	return m.deliver(h, opEncrypt, op, o, c.size, func() ([]byte, RV) {
		out, err := c.tok.(hsmapi.Encrypter).Encrypt(context.Background(), c.uuid, c.oaep, data)
		return out, cryptRV(err)
	})
}

// Decrypt is C_Decrypt: the plaintext is at most the longest that fits.
// The ciphertext must be the modulus's size.
func (m *Module) Decrypt(h uint, ciphertext []byte, o Output) ([]byte, int, RV) {
	op, rv := m.activeOp(h, opDecrypt)
	if rv != OK {
		return nil, 0, rv
	}
	defer op.mu.Unlock()
	c := op.crypt
	if len(ciphertext) != c.size {
		return nil, 0, m.fail(h, opDecrypt, op, encryptedDataLenRange)
	}
	return m.deliver(h, opDecrypt, op, o, c.max, func() ([]byte, RV) {
		out, err := c.tok.(hsmapi.Decrypter).Decrypt(context.Background(), c.uuid, c.oaep, ciphertext)
		return out, cryptRV(err)
	})
}

func cryptRV(err error) RV {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, hsmapi.ErrDecryption):
		return encryptedDataInvalid
	case errors.Is(err, hsmapi.ErrForbidden):
		return KeyFunctionNotPermitted
	case errors.Is(err, hsmapi.ErrBadArguments):
		return DataLenRange
	}
	return tokenRV(err)
}
