package hsm

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
)

func oaepHash(enc hsmapi.KEKEncryption) crypto.Hash {
	if enc == hsmapi.KEKOAEPSHA1 {
		return crypto.SHA1
	}
	return crypto.SHA256
}

// encryptKEK encrypts a transit KEK to a KEKEK and encodes it as libhal
// does, an EncryptedPrivateKeyInfo.
func encryptKEK(rand io.Reader, kekek *rsa.PublicKey, enc hsmapi.KEKEncryption, kek []byte) ([]byte, error) {
	if _, err := hsmapi.ParseKEKEncryption(string(enc)); err != nil {
		return nil, err
	}
	var ct []byte
	var err error
	switch enc {
	case hsmapi.KEKPKCS1v15:
		ct, err = rsa.EncryptPKCS1v15(rand, kekek, kek)
	case hsmapi.KEKOAEPSHA1:
		ct, err = rsa.EncryptOAEP(sha1.New(), rand, kekek, kek, nil)
	default:
		ct, err = rsa.EncryptOAEP(sha256.New(), rand, kekek, kek, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("encrypt KEK: %w", err)
	}
	return hsmapi.MarshalEncryptedKEK(enc, ct)
}

// decryptKEK recovers a transit KEK. Every failure that depends on the
// ciphertext returns ErrDecryption. For PKCS#1 v1.5 a bad padding does not
// fail here at all: a random KEK takes the real one's place (RFC 5246's
// defence), so the failure shows later, at unwrap, as the same error.
func decryptKEK(rand io.Reader, kekek *rsa.PrivateKey, want hsmapi.KEKEncryption, der []byte) ([]byte, error) {
	ct, err := hsmapi.ParseEncryptedKEK(der, want)
	if err != nil {
		return nil, err
	}
	if len(ct) != kekek.Size() {
		return nil, hsmapi.ErrDecryption
	}
	if want == hsmapi.KEKPKCS1v15 {
		kek := make([]byte, hsmapi.KEKSize)
		if _, err := io.ReadFull(rand, kek); err != nil {
			return nil, fmt.Errorf("random KEK: %w", err)
		}
		if err := rsa.DecryptPKCS1v15SessionKey(nil, kekek, ct, kek); err != nil {
			clear(kek)
			return nil, hsmapi.ErrDecryption
		}
		return kek, nil
	}
	kek, err := decryptOAEP(kekek, oaepHash(want), ct, nil)
	if err != nil {
		return nil, err
	}
	// The length is checked in constant time too: a short plaintext is as
	// secret as a bad padding.
	if subtle.ConstantTimeEq(int32(len(kek)), hsmapi.KEKSize) != 1 {
		clear(kek)
		return nil, hsmapi.ErrDecryption
	}
	return kek, nil
}

// decryptOAEP is the one RSA-OAEP decryption of the HSM (tested against
// Wycheproof). It hides why decryption failed.
func decryptOAEP(priv *rsa.PrivateKey, hash crypto.Hash, ct, label []byte) ([]byte, error) {
	return decryptOAEPWith(priv, &rsa.OAEPOptions{Hash: hash, MGFHash: hash, Label: label}, ct)
}

// decryptOAEPWith is decryptOAEP with a mask generation hash of its own, as
// PKCS#11's CK_RSA_PKCS_OAEP_PARAMS may name.
func decryptOAEPWith(priv *rsa.PrivateKey, opts *rsa.OAEPOptions, ct []byte) ([]byte, error) {
	pt, err := priv.Decrypt(nil, ct, opts)
	if err != nil {
		return nil, hsmapi.ErrDecryption
	}
	return pt, nil
}

// wrapPKCS8 wraps a PrivateKeyInfo under a transit KEK.
func wrapPKCS8(kek, der []byte) ([]byte, error) {
	wrapped, err := keywrap.WrapPad(kek, der)
	if err != nil {
		return nil, fmt.Errorf("wrap key: %w", err)
	}
	return hsmapi.MarshalEncryptedKey(wrapped), nil
}

// unwrapPKCS8 reverses wrapPKCS8; an integrity failure is ErrDecryption.
func unwrapPKCS8(kek, der []byte) ([]byte, error) {
	wrapped, err := hsmapi.ParseEncryptedKey(der)
	if err != nil {
		return nil, err
	}
	pt, err := keywrap.UnwrapPad(kek, wrapped)
	if err != nil {
		return nil, hsmapi.ErrDecryption
	}
	return pt, nil
}

func makeTag(kek, binding []byte) ([]byte, error) {
	tag, err := keywrap.WrapPad(kek, hsmapi.BindingDigest(binding))
	if err != nil {
		return nil, fmt.Errorf("binding tag: %w", err)
	}
	return tag, nil
}

// checkTag verifies a tag in constant time; any mismatch is ErrDecryption,
// like every other failure to open a wrapped key.
func checkTag(kek, binding, tag []byte) error {
	got, err := keywrap.UnwrapPad(kek, tag)
	if err != nil {
		return hsmapi.ErrDecryption
	}
	defer clear(got)
	if subtle.ConstantTimeCompare(got, hsmapi.BindingDigest(binding)) != 1 {
		return hsmapi.ErrDecryption
	}
	return nil
}
