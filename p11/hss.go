//go:build cgo

package p11

import (
	"crypto"
	"crypto/rsa"
	"fmt"
	"math"
	"strconv"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// HSS keys (RFC 8554) as PKCS#11 3.1 has them, which miekg/pkcs11 predates.
// A token that does not offer CKM_HSS (SoftHSM2) never shows such a key,
// and this package asks it for none; the emulated HSM's module does.
//
// An HSS key is stateful: two parts of one key must never sign with one
// index. Its token splits it when it wraps it (C_WrapKey under the transit
// KEK, as for any private key: the source keeps the lower half of its
// remaining signatures, stored before the blob leaves) and, when it
// unwraps a part, records the range it received and refuses it ever again.
// So an import unwraps an HSS key once only, straight into the token
// object (importKey), and a length query never wraps (the module sizes the
// blob from the key's parameters).
const (
	ckkHSS              = 0x46
	ckmHSSKeyPairGen    = 0x4032
	ckmHSS              = 0x4033
	ckaHSSLevels        = 0x617
	ckaHSSLMSTypes      = 0x61A
	ckaHSSLMOTSTypes    = 0x61B
	ckaHSSKeysRemaining = 0x61C
)

// hssPublic reads an HSS key object's public key: a public object's
// CKA_VALUE (the RFC 8554 public key), else the CKA_PUBLIC_KEY_INFO that
// the emulated HSM's module gives its private objects too. Called with
// t.mu held.
func (t *Token) hssPublic(ko *keyObject) error {
	lockassert.Held(&t.mu)
	types := []uint{pkcs11.CKA_PUBLIC_KEY_INFO}
	if !ko.private {
		types = append(types, pkcs11.CKA_VALUE)
	}
	a, err := t.attrs(ko.h, types...)
	if err != nil {
		return err
	}
	if pk, err := hashsig.ParsePublicKey(a[pkcs11.CKA_VALUE]); err == nil && !ko.private {
		ko.public = pk
		return nil
	}
	if p, err := hsmapi.ParsePublicKey(a[pkcs11.CKA_PUBLIC_KEY_INFO]); err == nil {
		if pk, ok := p.(*hashsig.PublicKey); ok {
			ko.public = pk
			return nil
		}
	}
	// Never paired by a test signature, as an EC object is: it would
	// spend a one-time key.
	ko.err = fmt.Errorf("%w: HSS key object that shows no public key", hsmapi.ErrUnsupportedKey)
	return nil
}

// describeHSS completes an HSS private key's description from its object:
// every level's types and the signatures it has left. Called with t.mu
// held.
func (t *Token) describeHSS(o *object, info *hsmapi.KeyInfo) error {
	lockassert.Held(&t.mu)
	a, err := t.attrs(o.priv, ckaHSSLMSTypes, ckaHSSLMOTSTypes, ckaHSSKeysRemaining)
	if err != nil {
		return err
	}
	lms, lmots := ulongArray(a[ckaHSSLMSTypes]), ulongArray(a[ckaHSSLMOTSTypes])
	if len(lms) == info.Hashsig.L && len(lmots) == len(lms) {
		var levels []hashsig.Level
		for i := range lms {
			levels = append(levels, hashsig.Level{LMS: hashsig.LMSType(lms[i]), LMOTS: hashsig.LMOTSType(lmots[i])})
		}
		if hashsig.CheckLevels(levels) == nil && levels[0] == info.Hashsig.Levels[0] {
			info.Hashsig.Levels = levels
		}
	}
	if v, ok := a[ckaHSSKeysRemaining]; ok && len(v) == ulongSize {
		info.Hashsig.Remaining = uint64(ulongAttr(v))
		// The module caps what it shows at 2^32-1.
		info.Hashsig.RemainingUnknown = info.Hashsig.Remaining == math.MaxUint32
	} else {
		info.Hashsig.RemainingUnknown = true
	}
	return nil
}

// ulongSize is the size of a CK_ULONG, a C unsigned long: Go's uint on the
// LP64 systems this package runs on.
const ulongSize = strconv.IntSize / 8

// ulongArray reads an array of CK_ULONG (host order).
func ulongArray(v []byte) []uint {
	if len(v)%ulongSize != 0 {
		return nil
	}
	out := make([]uint, 0, len(v)/ulongSize)
	for i := 0; i < len(v); i += ulongSize {
		out = append(out, ulongAttr(v[i:i+ulongSize]))
	}
	return out
}

// ulongArrayValue encodes an array of CK_ULONG, in the order ulongAttr
// reads.
func ulongArrayValue(vs []uint) []byte {
	var out []byte
	for _, v := range vs {
		for i := range ulongSize {
			out = append(out, byte(v>>(8*i)))
		}
	}
	return out
}

// hssGenerate sets what CKM_HSS_KEY_PAIR_GEN takes in the private key's
// template (PKCS#11 3.1: no mechanism parameter).
func hssGenerate(levels []hashsig.Level, priv *template) error {
	if err := hashsig.CheckLevels(levels); err != nil {
		return fmt.Errorf("%w: %v", hsmapi.ErrBadArguments, err)
	}
	var lms, lmots []uint
	for _, l := range levels {
		lms, lmots = append(lms, uint(l.LMS)), append(lmots, uint(l.LMOTS))
	}
	priv.set(ckaHSSLevels, len(levels))
	priv.set(ckaHSSLMSTypes, ulongArrayValue(lms))
	priv.set(ckaHSSLMOTSTypes, ulongArrayValue(lmots))
	return nil
}

// keyTypeOf is the CKA_KEY_TYPE of a public key's objects.
func keyTypeOf(pub crypto.PublicKey) uint {
	switch pub.(type) {
	case *rsa.PublicKey:
		return pkcs11.CKK_RSA
	case *hashsig.PublicKey:
		return ckkHSS
	}
	return pkcs11.CKK_EC
}

// hssUnwrapError names why a token refused to unwrap an HSS part. The KEK
// and the tag were checked already, so a wrapped key that does not open
// was changed on the way (hsmapi.ErrDecryption, as for any key); a token
// that keeps HSS keys refuses by policy (CKR_ACTION_PROHIBITED: the
// emulated HSM's module) a part of a key it holds a part of, or whose
// signatures it received before.
func hssUnwrapError(err error) error {
	switch {
	case isCode(err, pkcs11.CKR_WRAPPED_KEY_INVALID), isCode(err, pkcs11.CKR_WRAPPED_KEY_LEN_RANGE), isCode(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID):
		return hsmapi.ErrDecryption
	case isCode(err, pkcs11.CKR_ACTION_PROHIBITED):
		return fmt.Errorf("%w: the token holds a part of this HSS key, or received some of its signatures before (%v)", hsmapi.ErrHashsigRangeUsed, err)
	}
	return err
}
