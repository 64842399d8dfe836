package hsm

import (
	"context"
	"crypto/rsa"
	_ "crypto/sha512" // for RSA-OAEP with SHA-384 and SHA-512
	"fmt"
	"io"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
)

// Secret (AES) keys, key wrapping and RSA-OAEP, under the key policy of
// policy.go.

var (
	_ hsmapi.SecretKeyGenerator = (*Session)(nil)
	_ hsmapi.SecretKeyLoader    = (*Session)(nil)
	_ hsmapi.KeyWrapper         = (*Session)(nil)
	_ hsmapi.Encrypter          = (*Session)(nil)
	_ hsmapi.Decrypter          = (*Session)(nil)
	_ hsmapi.TrustSetter        = (*Session)(nil)
	_ hsmapi.TrustLister        = (*Session)(nil)
)

// GenerateSecretKey makes an AES key from the TRNG. Its value never leaves
// the HSM but wrapped, and only when it is exportable.
func (s *Session) GenerateSecretKey(_ context.Context, req hsmapi.SecretKeyRequest) (hsmapi.KeyInfo, error) {
	k, err := s.generateSecretKey(req)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate AES key: %w", err)
	}
	return k.info, nil
}

func (s *Session) generateSecretKey(req hsmapi.SecretKeyRequest) (*key, error) {
	attrs, err := s.checkNewSecret(req, true)
	if err != nil {
		return nil, err
	}
	value := make([]byte, req.Bits/8)
	defer clear(value)
	if _, err := io.ReadFull(s.h.board.TRNG, value); err != nil {
		return nil, fmt.Errorf("TRNG: %w", err)
	}
	return s.h.storeNew(s, value, req.Flags, req.Label, attrs)
}

// LoadSecretKey stores an AES key given in the clear (C_CreateObject),
// under the same policy as one made here, but marked not made here
// (CKA_LOCAL false, and so neither always sensitive nor never
// extractable). value is the caller's to clear.
func (s *Session) LoadSecretKey(_ context.Context, req hsmapi.SecretKeyRequest, value []byte) (hsmapi.KeyInfo, error) {
	if req.Bits != len(value)*8 {
		return hsmapi.KeyInfo{}, fmt.Errorf("load AES key: %w: %d bits of value for a %d-bit key", hsmapi.ErrBadArguments, len(value)*8, req.Bits)
	}
	attrs, err := s.checkNewSecret(req, false)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load AES key: %w", err)
	}
	k, err := s.h.storeNew(s, value, req.Flags, req.Label, attrs)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load AES key: %w", err)
	}
	return k.info, nil
}

// checkNewSecret checks a new AES key's request and returns the attributes
// it is stored with; local says it is made here from the TRNG.
func (s *Session) checkNewSecret(req hsmapi.SecretKeyRequest, local bool) (map[uint32][]byte, error) {
	if err := s.requireKeyUser(); err != nil {
		return nil, err
	}
	if err := hsmapi.CheckAESBits(req.Bits); err != nil {
		return nil, err
	}
	if err := checkNewKey(req.Flags, req.Label); err != nil {
		return nil, err
	}
	if err := checkNewUse(hsmapi.KeyTypeAES, req.Flags); err != nil {
		return nil, err
	}
	attrs, err := newKeyAttributes(s.User(), req.Attributes, req.Flags, local)
	if err != nil {
		return nil, err
	}
	if err := setValueLen(attrs, req.Bits/8); err != nil {
		return nil, err
	}
	return attrs, nil
}

// WrapKey wraps an exportable secret or private key (RSA, EC, HSS; as its
// PKCS#8 PrivateKeyInfo) under a key that may wrap. An HSS key is wrapped
// as the transfer exports it (exportablePKCS8): its remaining signatures
// are split, this HSM keeps the lower half, stored before the upper half is
// wrapped; so wrapping it twice hands out two disjoint parts, and the key
// it came from is smaller each time.
func (s *Session) WrapKey(_ context.Context, wrappingKey, id hsmapi.UUID, mech hsmapi.WrapMechanism) ([]byte, error) {
	out, err := s.wrapKey(wrappingKey, id, mech)
	if err != nil {
		return nil, fmt.Errorf("wrap %s under %s: %w", id, wrappingKey, err)
	}
	return out, nil
}

func (s *Session) wrapKey(wrappingKey, id hsmapi.UUID, mech hsmapi.WrapMechanism) ([]byte, error) {
	w, err := s.key(wrappingKey)
	if err != nil {
		return nil, fmt.Errorf("wrapping key: %w", err)
	}
	k, err := s.key(id)
	if err != nil {
		return nil, err
	}
	if err := checkUse(w, opWrap); err != nil {
		return nil, err
	}
	if err := checkMechanism(w, mech, false); err != nil {
		return nil, err
	}
	switch {
	case k.hss != nil && !hssWrapMechanism(mech):
		return nil, fmt.Errorf("%w: an HSS key is wrapped only with AES key wrap with padding (CKM_AES_KEY_WRAP_KWP or _PAD), as the transfer wraps it", hsmapi.ErrUnsupportedKey)
	case k.secret == nil && k.priv == nil && k.hss == nil:
		return nil, fmt.Errorf("%w: a public key is not wrapped", hsmapi.ErrUnsupportedKey)
	case k.info.Flags&hsmapi.FlagExportable == 0:
		return nil, hsmapi.ErrNotExportable
	case isTrue(k.attrs[hsmapi.CKAWrapWithTrusted]) && !trustedWrapper(w):
		return nil, fmt.Errorf("%w: the key has CKA_WRAP_WITH_TRUSTED and the wrapping key is not trusted", hsmapi.ErrForbidden)
	case k.secret == nil && mech.Mechanism == hsmapi.MechRSAOAEP:
		return nil, fmt.Errorf("%w: RSA-OAEP wraps secret keys only", hsmapi.ErrBadArguments)
	}
	// A private key leaves as the transfer's export makes it: an HSS key
	// as a new part of it, this HSM's shrunken range in flash first.
	var plain []byte
	err = k.use(func() (err error) {
		if k.secret != nil {
			plain = append([]byte(nil), k.secret...)
			return nil
		}
		plain, err = exportablePKCS8(k)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	var out []byte
	err = w.use(func() (err error) {
		out, err = wrapUnder(s.h.board.TRNG, w, mech, plain)
		return err
	})
	return out, err
}

// hssWrapMechanism reports whether an HSS key may be wrapped or unwrapped
// with mech: only RFC 5649 key wrap, the transfer's. Its state must not
// leave under RSA-OAEP (which would let the public key's holder, not an
// HSM that splits and records ranges, hold a part) nor under RFC 3394,
// which a PKCS#8 encoding of any length does not fit.
func hssWrapMechanism(mech hsmapi.WrapMechanism) bool {
	return mech.Mechanism == hsmapi.MechAESKeyWrapPad || mech.Mechanism == hsmapi.MechAESKeyWrapKWP
}

// checkMechanism refuses a mechanism the key cannot perform: AES key wraps
// with an AES key, the RSA ones with an RSA key (for unwrapping, its
// private half).
func checkMechanism(w *key, mech hsmapi.WrapMechanism, unwrap bool) error {
	switch mech.Mechanism {
	case hsmapi.MechAESKeyWrap, hsmapi.MechAESKeyWrapPad, hsmapi.MechAESKeyWrapKWP:
		if w.secret == nil {
			return fmt.Errorf("%w: AES key wrap needs an AES key, not %v", hsmapi.ErrUnsupportedKey, w.info.Type)
		}
		return nil
	case hsmapi.MechRSAOAEP, hsmapi.MechRSAAESKeyWrap:
		_, isPriv := w.priv.(*rsa.PrivateKey)
		_, isPub := w.pub.(*rsa.PublicKey)
		if unwrap && !isPriv || !isPub {
			return fmt.Errorf("%w: mechanism 0x%x needs an RSA key, not %v", hsmapi.ErrUnsupportedKey, uint32(mech.Mechanism), w.info.Type)
		}
		if err := mech.OAEP.Check(); err != nil {
			return err
		}
		if mech.Mechanism == hsmapi.MechRSAAESKeyWrap {
			return hsmapi.CheckAESBits(mech.AESKeyBits)
		}
		return nil
	}
	return fmt.Errorf("%w: no key wrap mechanism 0x%x", hsmapi.ErrBadArguments, uint32(mech.Mechanism))
}

func oaepOptions(p hsmapi.OAEPParams) *rsa.OAEPOptions {
	return &rsa.OAEPOptions{Hash: p.Hash, MGFHash: p.MGFHash, Label: p.Label}
}

// wrapUnder wraps plain under w as mech says (checked by checkMechanism).
func wrapUnder(trng io.Reader, w *key, mech hsmapi.WrapMechanism, plain []byte) ([]byte, error) {
	switch mech.Mechanism {
	case hsmapi.MechAESKeyWrap:
		out, err := keywrap.Wrap(w.secret, plain)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", hsmapi.ErrBadArguments, err)
		}
		return out, nil
	case hsmapi.MechAESKeyWrapPad, hsmapi.MechAESKeyWrapKWP:
		return keywrap.WrapPad(w.secret, plain)
	case hsmapi.MechRSAOAEP:
		out, err := rsa.EncryptOAEPWithOptions(trng, w.pub.(*rsa.PublicKey), plain, oaepOptions(mech.OAEP))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", hsmapi.ErrBadArguments, err)
		}
		return out, nil
	}
	// MechRSAAESKeyWrap: a fresh AES key under RSA-OAEP, then the key
	// under it with RFC 5649 (PKCS#11 2.40 section 2.1.21, the transfer's
	// form too).
	tmp := make([]byte, mech.AESKeyBits/8)
	defer clear(tmp)
	if _, err := io.ReadFull(trng, tmp); err != nil {
		return nil, fmt.Errorf("TRNG: %w", err)
	}
	head, err := rsa.EncryptOAEPWithOptions(trng, w.pub.(*rsa.PublicKey), tmp, oaepOptions(mech.OAEP))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", hsmapi.ErrBadArguments, err)
	}
	tail, err := keywrap.WrapPad(tmp, plain)
	if err != nil {
		return nil, err
	}
	return append(head, tail...), nil
}

// unwrapUnder reverses wrapUnder with w's private half or secret. Every
// failure that depends on the blob is ErrDecryption.
func unwrapUnder(w *key, mech hsmapi.WrapMechanism, blob []byte) ([]byte, error) {
	var plain []byte
	var err error
	switch mech.Mechanism {
	case hsmapi.MechAESKeyWrap:
		plain, err = keywrap.Unwrap(w.secret, blob)
	case hsmapi.MechAESKeyWrapPad, hsmapi.MechAESKeyWrapKWP:
		plain, err = keywrap.UnwrapPad(w.secret, blob)
	case hsmapi.MechRSAOAEP:
		return decryptOAEPWith(w.priv.(*rsa.PrivateKey), oaepOptions(mech.OAEP), blob)
	case hsmapi.MechRSAAESKeyWrap:
		priv := w.priv.(*rsa.PrivateKey)
		if len(blob) <= priv.Size() {
			return nil, hsmapi.ErrDecryption
		}
		var tmp []byte
		if tmp, err = decryptOAEPWith(priv, oaepOptions(mech.OAEP), blob[:priv.Size()]); err != nil {
			return nil, err
		}
		defer clear(tmp)
		if len(tmp)*8 != mech.AESKeyBits {
			return nil, hsmapi.ErrDecryption
		}
		plain, err = keywrap.UnwrapPad(tmp, blob[priv.Size():])
	}
	if err != nil {
		return nil, hsmapi.ErrDecryption
	}
	return plain, nil
}

// UnwrapKey unwraps a blob under a key that may unwrap and stores what it
// holds as a new key: an AES key, or an RSA, EC or HSS private key given as
// its PKCS#8 PrivateKeyInfo. An HSS key is stored as Import stores one
// (commitImport): refused if this HSM holds a part of that key or ever
// received any of its range, its range recorded with it in one keystore
// transaction. The new key says it was not made here: CKA_LOCAL,
// CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE are false, whatever the
// request asks.
func (s *Session) UnwrapKey(_ context.Context, unwrappingKey hsmapi.UUID, mech hsmapi.WrapMechanism, wrapped []byte, req hsmapi.UnwrapRequest) (hsmapi.KeyInfo, error) {
	k, err := s.unwrapKey(unwrappingKey, mech, wrapped, req)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("unwrap under %s: %w", unwrappingKey, err)
	}
	return k.snapshot(), nil
}

func (s *Session) unwrapKey(unwrappingKey hsmapi.UUID, mech hsmapi.WrapMechanism, wrapped []byte, req hsmapi.UnwrapRequest) (*key, error) {
	w, err := s.key(unwrappingKey)
	if err != nil {
		return nil, fmt.Errorf("unwrapping key: %w", err)
	}
	if err := checkUse(w, opUnwrap); err != nil {
		return nil, err
	}
	if err := checkMechanism(w, mech, true); err != nil {
		return nil, err
	}
	switch req.Type {
	case hsmapi.KeyTypeAES:
		if req.Bits != 0 {
			if err := hsmapi.CheckAESBits(req.Bits); err != nil {
				return nil, err
			}
		}
	case hsmapi.KeyTypeHashsigPrivate:
		if !hssWrapMechanism(mech) {
			return nil, fmt.Errorf("%w: an HSS key is unwrapped only with AES key wrap with padding (CKM_AES_KEY_WRAP_KWP or _PAD)", hsmapi.ErrBadArguments)
		}
		if req.Bits != 0 {
			return nil, fmt.Errorf("%w: a private key's size is the blob's", hsmapi.ErrBadArguments)
		}
	case hsmapi.KeyTypeRSAPrivate, hsmapi.KeyTypeECPrivate:
		if req.Bits != 0 {
			return nil, fmt.Errorf("%w: a private key's size is the blob's", hsmapi.ErrBadArguments)
		}
	default:
		return nil, fmt.Errorf("%w: cannot unwrap a key of type %v", hsmapi.ErrBadArguments, req.Type)
	}
	if err := checkNewKey(req.Flags, req.Label); err != nil {
		return nil, err
	}
	if err := checkNewUse(req.Type, req.Flags); err != nil {
		return nil, err
	}
	attrs, err := newKeyAttributes(s.User(), req.Attributes, req.Flags, false)
	if err != nil {
		return nil, err
	}
	var plain []byte
	err = w.use(func() (err error) {
		plain, err = unwrapUnder(w, mech, wrapped)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	var priv any
	if req.Type == hsmapi.KeyTypeAES {
		if hsmapi.CheckAESBits(len(plain)*8) != nil || req.Bits != 0 && req.Bits != len(plain)*8 {
			return nil, fmt.Errorf("%w: the blob holds %d bytes, not an AES key of the size asked", hsmapi.ErrBadArguments, len(plain))
		}
		if err := setValueLen(attrs, len(plain)); err != nil {
			return nil, err
		}
		priv = plain
	} else {
		signer, hss, err := parsePrivateKey(plain)
		if hss != nil {
			if req.Type != hsmapi.KeyTypeHashsigPrivate {
				hss.Wipe()
				return nil, fmt.Errorf("%w: the blob holds an HSS key, not a %v", hsmapi.ErrBadArguments, req.Type)
			}
			return s.storeUnwrappedHSS(hss, req, attrs)
		}
		if err != nil {
			return nil, err
		}
		if typ, _, _, err := hsmapi.DescribeKey(signer.Public(), true); err != nil || typ != req.Type {
			return nil, fmt.Errorf("%w: the blob holds a %s, not a %v", hsmapi.ErrBadArguments, hsmapi.KeyKind(signer), req.Type)
		}
		priv = signer
	}
	return s.h.storeNew(s, priv, req.Flags, req.Label, attrs)
}

// storeUnwrappedHSS stores an unwrapped HSS part as an import does, under
// a new UUID. hss is wiped unless stored.
func (s *Session) storeUnwrappedHSS(hss *hashsig.PrivateKey, req hsmapi.UnwrapRequest, attrs map[uint32][]byte) (*key, error) {
	r, k, err := recordFor(hsmapi.UUID{}, hss, nil, req.Flags, req.Label)
	if err != nil {
		hss.Wipe()
		return nil, err
	}
	defer r.wipe()
	r.attrs, k.attrs = attrs, attrs
	if _, err := s.h.commitImport(s, []*keyRecord{r}, []*key{k}); err != nil {
		k.wipe()
		return nil, err
	}
	return k, nil
}

// Encrypt encrypts with RSA-OAEP under the public half of a key that may
// encrypt data.
func (s *Session) Encrypt(_ context.Context, id hsmapi.UUID, p hsmapi.OAEPParams, plaintext []byte) ([]byte, error) {
	k, err := s.oaepKey(id, opEncrypt, p)
	if err != nil {
		return nil, fmt.Errorf("encrypt with %s: %w", id, err)
	}
	ct, err := rsa.EncryptOAEPWithOptions(s.h.board.TRNG, k.pub.(*rsa.PublicKey), plaintext, oaepOptions(p))
	if err != nil {
		return nil, fmt.Errorf("encrypt with %s: %w: %v", id, hsmapi.ErrBadArguments, err)
	}
	return ct, nil
}

// Decrypt decrypts RSA-OAEP with a private key that may decrypt data.
// Every failure that depends on the ciphertext is ErrDecryption.
func (s *Session) Decrypt(_ context.Context, id hsmapi.UUID, p hsmapi.OAEPParams, ciphertext []byte) ([]byte, error) {
	k, err := s.oaepKey(id, opDecrypt, p)
	if err != nil {
		return nil, fmt.Errorf("decrypt with %s: %w", id, err)
	}
	var pt []byte
	err = k.use(func() (err error) {
		pt, err = decryptOAEPWith(k.priv.(*rsa.PrivateKey), oaepOptions(p), ciphertext)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("decrypt with %s: %w", id, err)
	}
	return pt, nil
}

// oaepKey finds an RSA key (for opDecrypt, a private one) that may do op
// with RSA-OAEP of parameters p.
func (s *Session) oaepKey(id hsmapi.UUID, op keyOp, p hsmapi.OAEPParams) (*key, error) {
	k, err := s.key(id)
	if err != nil {
		return nil, err
	}
	_, isPub := k.pub.(*rsa.PublicKey)
	_, isPriv := k.priv.(*rsa.PrivateKey)
	if !isPub || op == opDecrypt && !isPriv {
		return nil, fmt.Errorf("%w: RSA-OAEP cannot %s with a key of type %v", hsmapi.ErrUnsupportedKey, keyOps[op].name, k.info.Type)
	}
	if err := checkUse(k, op); err != nil {
		return nil, err
	}
	return k, p.Check()
}
