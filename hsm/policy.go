package hsm

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// The HSM's key policy (docs/key-policy.md): what its own checks enforce,
// whichever face a request comes through, so that no client of the PKCS#11
// module, of the RPC face or of the package can talk a key out of it.
//
//   - A key either handles keys or handles data: with keyencipherment it
//     wraps and unwraps and never encrypts or decrypts; with
//     dataencipherment the other way round. A key that has both flags (a
//     key pair imported from a token that allowed it) does neither.
//   - Wrapping needs the wrapped key exportable (CKA_EXTRACTABLE is the
//     exportable flag, never set apart from it) and, when it carries
//     CKA_WRAP_WITH_TRUSTED, a wrapping key that carries CKA_TRUSTED.
//   - CKA_TRUSTED is set true by the security officer (or wheel) only.
//   - Attributes that keep a key in are one-way: CKA_SENSITIVE and
//     CKA_WRAP_WITH_TRUSTED are never turned off, CKA_LOCAL,
//     CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE never turn from false
//     to true. A secret key's are the HSM's alone.

// isTrue reads a CK_BBOOL.
func isTrue(v []byte) bool { return len(v) == 1 && v[0] != 0 }

func ckBool(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

// objectAttribute returns an attribute of the PKCS#11 object of k that
// does what op does: the public key object of a key pair for wrap, encrypt
// (and trust, which is a wrapping key's), the key's own otherwise.
func objectAttribute(attrs map[uint32][]byte, pair, public bool, t uint32) ([]byte, bool) {
	if !pair || !public {
		v, ok := attrs[t]
		return v, ok
	}
	enc, ok := attrs[hsmapi.AttributePublicObject]
	if !ok {
		return nil, false
	}
	list, err := hsmapi.DecodeAttributes(enc)
	if err != nil {
		return nil, false
	}
	for _, a := range list {
		if a.Type == t {
			return a.Value, true
		}
	}
	return nil, false
}

// mayTrust reports whether u may mark keys trusted.
func mayTrust(u hsmapi.User) bool { return u == hsmapi.UserSO || u == hsmapi.UserWheel }

// checkAttributeChange checks a key's attributes as they would be (next)
// against what they were (prev, nil for a new key), for user u. CKA_TRUSTED
// is looked for on the key and in AttributePublicObject alike. flags are
// the key's, which never change; secret is whether it is a secret key.
func checkAttributeChange(u hsmapi.User, flags hsmapi.Flags, secret bool, prev, next map[uint32][]byte) error {
	for _, public := range []bool{false, true} {
		was, _ := objectAttribute(prev, true, public, hsmapi.CKATrusted)
		now, _ := objectAttribute(next, true, public, hsmapi.CKATrusted)
		if isTrue(now) && !isTrue(was) && !mayTrust(u) {
			return fmt.Errorf("%w: only the security officer sets CKA_TRUSTED", hsmapi.ErrForbidden)
		}
	}
	if v, ok := next[hsmapi.CKAExtractable]; ok && isTrue(v) != (flags&hsmapi.FlagExportable != 0) {
		return fmt.Errorf("%w: CKA_EXTRACTABLE is the exportable flag (%v), which does not change", hsmapi.ErrForbidden, flags&hsmapi.FlagExportable != 0)
	}
	if prev == nil {
		return nil
	}
	if isTrue(prev[hsmapi.CKAWrapWithTrusted]) && !isTrue(next[hsmapi.CKAWrapWithTrusted]) {
		return fmt.Errorf("%w: CKA_WRAP_WITH_TRUSTED is never turned off", hsmapi.ErrForbidden)
	}
	if (secret || isTrue(prev[hsmapi.CKASensitive])) && !isTrue(next[hsmapi.CKASensitive]) {
		return fmt.Errorf("%w: CKA_SENSITIVE is never turned off", hsmapi.ErrForbidden)
	}
	for _, t := range []uint32{hsmapi.CKALocal, hsmapi.CKAAlwaysSensitive, hsmapi.CKANeverExtractable, hsmapi.CKAExtractable, hsmapi.CKAValueLen} {
		was, had := prev[t]
		now, has := next[t]
		if secret && (had != has || !bytes.Equal(was, now)) {
			return fmt.Errorf("%w: attribute 0x%x of a secret key is the HSM's", hsmapi.ErrForbidden, t)
		}
		if t != hsmapi.CKAExtractable && t != hsmapi.CKAValueLen && had && !isTrue(was) && isTrue(now) {
			return fmt.Errorf("%w: attribute 0x%x tells the key's history and does not turn true", hsmapi.ErrForbidden, t)
		}
	}
	return nil
}

// newKeyAttributes makes the attributes of a new secret or unwrapped key:
// those given (checked), and those the HSM states of its history, which
// the given ones may repeat but not contradict. local says the key was
// made here from the TRNG.
func newKeyAttributes(u hsmapi.User, given []hsmapi.Attribute, flags hsmapi.Flags, local bool) (map[uint32][]byte, error) {
	if err := checkAttributes(given); err != nil {
		return nil, err
	}
	attrs := attributeMap(given)
	if attrs == nil {
		attrs = map[uint32][]byte{}
	}
	exportable := flags&hsmapi.FlagExportable != 0
	for t, v := range map[uint32]bool{
		hsmapi.CKASensitive:        true,
		hsmapi.CKAExtractable:      exportable,
		hsmapi.CKALocal:            local,
		hsmapi.CKAAlwaysSensitive:  local,
		hsmapi.CKANeverExtractable: local && !exportable,
	} {
		if g, ok := attrs[t]; ok && isTrue(g) != v {
			return nil, fmt.Errorf("%w: attribute 0x%x cannot be %x for this key", hsmapi.ErrBadArguments, t, g)
		}
		attrs[t] = ckBool(v)
	}
	if err := checkAttributeChange(u, flags, false, nil, attrs); err != nil {
		return nil, err
	}
	return attrs, nil
}

// keyOp is what a key is asked to do with keys or data.
type keyOp int

const (
	opWrap keyOp = iota
	opUnwrap
	opEncrypt
	opDecrypt
)

var keyOps = [...]struct {
	name         string
	flag, other  hsmapi.Flags
	attr         uint32
	publicObject bool
}{
	opWrap:    {"wrap", hsmapi.FlagKeyEncipherment, hsmapi.FlagDataEncipherment, hsmapi.CKAWrap, true},
	opUnwrap:  {"unwrap", hsmapi.FlagKeyEncipherment, hsmapi.FlagDataEncipherment, hsmapi.CKAUnwrap, false},
	opEncrypt: {"encrypt", hsmapi.FlagDataEncipherment, hsmapi.FlagKeyEncipherment, hsmapi.CKAEncrypt, true},
	opDecrypt: {"decrypt", hsmapi.FlagDataEncipherment, hsmapi.FlagKeyEncipherment, hsmapi.CKADecrypt, false},
}

// checkUse fails unless k may do op: it has the op's flag and not the
// other one (the rule that keeps wrapped keys from being decrypted), and
// the PKCS#11 object that does op does not say it may not.
func checkUse(k *key, op keyOp) error {
	o := keyOps[op]
	f := k.info.Flags
	if f&o.flag == 0 {
		return fmt.Errorf("%w: key %s may not %s (lacks %v)", hsmapi.ErrForbidden, k.info.UUID, o.name, o.flag)
	}
	if f&o.other != 0 {
		return fmt.Errorf("%w: key %s has both keyencipherment and dataencipherment, so it neither wraps nor encrypts", hsmapi.ErrForbidden, k.info.UUID)
	}
	if v, ok := objectAttribute(k.attrs, k.info.Type.IsPrivate(), o.publicObject, o.attr); ok && !isTrue(v) {
		return fmt.Errorf("%w: key %s may not %s (attribute 0x%x is false)", hsmapi.ErrForbidden, k.info.UUID, o.name, o.attr)
	}
	return nil
}

// checkNewUse refuses flags a new secret or unwrapped key may not have:
// keyencipherment with dataencipherment; for an AES key anything but
// keyencipherment, token and exportable (it neither signs nor encrypts
// data here).
func checkNewUse(typ hsmapi.KeyType, flags hsmapi.Flags) error {
	if err := checkFlags(flags); err != nil {
		return err
	}
	both := hsmapi.FlagKeyEncipherment | hsmapi.FlagDataEncipherment
	if flags&both == both {
		return fmt.Errorf("%w: a key wraps keys or encrypts data, never both", hsmapi.ErrBadArguments)
	}
	if typ == hsmapi.KeyTypeAES && flags&^(hsmapi.FlagKeyEncipherment|hsmapi.FlagToken|hsmapi.FlagExportable) != 0 {
		return fmt.Errorf("%w: an AES key only wraps and unwraps (flags %v)", hsmapi.ErrBadArguments, flags)
	}
	return nil
}

// trustedWrapper reports whether w carries CKA_TRUSTED on the object that
// wraps (a key pair's public key object).
func trustedWrapper(w *key) bool {
	v, _ := objectAttribute(w.attrs, w.info.Type.IsPrivate(), true, hsmapi.CKATrusted)
	return isTrue(v)
}

// setValueLen states a secret key's size in bytes as CKA_VALUE_LEN (a
// CK_ULONG, stored as 8 bytes big-endian like the HSM's other numbers),
// refusing a request that said another.
func setValueLen(attrs map[uint32][]byte, n int) error {
	v := binary.BigEndian.AppendUint64(nil, uint64(n))
	if g, ok := attrs[hsmapi.CKAValueLen]; ok && !bytes.Equal(g, v) {
		return fmt.Errorf("%w: CKA_VALUE_LEN %x, the key has %d bytes", hsmapi.ErrBadArguments, g, n)
	}
	attrs[hsmapi.CKAValueLen] = v
	return nil
}
