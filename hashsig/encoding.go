package hashsig

import (
	"bytes"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"math"
)

// OID is id-alg-hss-lms-hashsig (RFC 8708, RFC 9708): the algorithm of HSS
// public keys in a SubjectPublicKeyInfo and of HSS private keys in PKCS#8.
var OID = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 17}

type algorithmIdentifier struct {
	Algorithm asn1.ObjectIdentifier
}

type subjectPublicKeyInfo struct {
	Algorithm algorithmIdentifier
	PublicKey asn1.BitString
}

// MarshalPKIXPublicKey encodes an HSS public key as a SubjectPublicKeyInfo
// as RFC 9708 does: the algorithm without parameters, and the RFC 8554
// public key itself as the bit string.
func MarshalPKIXPublicKey(pk *PublicKey) []byte {
	return marshalSPKI(algorithmIdentifier{OID}, pk.Bytes())
}

func marshalSPKI(alg any, key []byte) []byte {
	der, err := asn1.Marshal(struct {
		Algorithm any
		PublicKey asn1.BitString
	}{alg, asn1.BitString{Bytes: key, BitLength: 8 * len(key)}})
	if err != nil {
		panic("hashsig: marshal SubjectPublicKeyInfo: " + err.Error()) // fixed types: cannot fail
	}
	return der
}

// libhalPublicKey is what Cryptech's libhal (hashsig.c) puts in the bit
// string of an HSS SubjectPublicKeyInfo instead of the RFC 8554 bytes: the
// same fields, as DER. Its algorithm identifier carries NULL parameters.
type libhalPublicKey struct {
	L, LMSType, LMOTSType int64
	I, T1                 []byte
}

type libhalAlgorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue
}

var asn1NULL = asn1.RawValue{FullBytes: []byte{0x05, 0x00}}

// MarshalLibhalPKIXPublicKey encodes an HSS public key as libhal does
// (hal_hashsig_public_key_to_der): what a Cryptech HSM and libhal's
// clients read. Elsewhere this package writes RFC 9708's encoding.
func MarshalLibhalPKIXPublicKey(pk *PublicKey) []byte {
	return marshalSPKI(libhalAlgorithmIdentifier{OID, asn1NULL}, libhalBody(pk))
}

func libhalBody(pk *PublicKey) []byte {
	body, err := asn1.Marshal(libhalPublicKey{int64(pk.levels), int64(pk.top.typ), int64(pk.top.otsTyp), pk.top.id[:], pk.top.root})
	if err != nil {
		panic("hashsig: marshal libhal public key: " + err.Error()) // fixed types: cannot fail
	}
	return body
}

// ParsePKIXPublicKey parses an HSS SubjectPublicKeyInfo in either of its
// encodings: RFC 9708's (MarshalPKIXPublicKey) or libhal's
// (MarshalLibhalPKIXPublicKey). The two cannot be mistaken for each other:
// an RFC 8554 key starts with the 32-bit level count, so with a zero byte,
// libhal's with a SEQUENCE tag. Only DER is accepted.
func ParsePKIXPublicKey(der []byte) (*PublicKey, error) {
	var spki struct {
		Algorithm struct {
			Algorithm  asn1.ObjectIdentifier
			Parameters asn1.RawValue `asn1:"optional"`
		}
		PublicKey asn1.BitString
	}
	errNot := fmt.Errorf("%w: not an HSS SubjectPublicKeyInfo", ErrMalformed)
	rest, err := asn1.Unmarshal(der, &spki)
	if err != nil || len(rest) != 0 || !spki.Algorithm.Algorithm.Equal(OID) || spki.PublicKey.BitLength%8 != 0 {
		return nil, errNot
	}
	key := spki.PublicKey.Bytes
	params := spki.Algorithm.Parameters.FullBytes
	var pk *PublicKey
	var again []byte
	switch {
	case len(key) > 0 && key[0] == 0x30:
		// libhal writes NULL parameters and reads them absent too.
		if len(params) != 0 && !bytes.Equal(params, asn1NULL.FullBytes) {
			return nil, errNot
		}
		if pk, err = parseLibhalPublicKey(key); err != nil {
			return nil, err
		}
		again = MarshalLibhalPKIXPublicKey(pk)
		if len(params) == 0 {
			again = marshalSPKI(algorithmIdentifier{OID}, libhalBody(pk))
		}
	default:
		if len(params) != 0 {
			return nil, errNot
		}
		if pk, err = ParsePublicKey(key); err != nil {
			return nil, err
		}
		again = MarshalPKIXPublicKey(pk)
	}
	if !bytes.Equal(again, der) {
		return nil, fmt.Errorf("%w: HSS SubjectPublicKeyInfo is not DER", ErrMalformed)
	}
	return pk, nil
}

// parseLibhalPublicKey reads libhal's DER public key, checking it as the
// RFC 8554 bytes it stands for.
func parseLibhalPublicKey(b []byte) (*PublicKey, error) {
	var lk libhalPublicKey
	if rest, err := asn1.Unmarshal(b, &lk); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: not libhal's HSS public key", ErrMalformed)
	}
	for _, v := range []int64{lk.L, lk.LMSType, lk.LMOTSType} {
		if v < 0 || v > math.MaxUint32 {
			return nil, fmt.Errorf("%w: libhal's HSS public key holds %d", ErrMalformed, v)
		}
	}
	raw := binary.BigEndian.AppendUint32(nil, uint32(lk.L))
	raw = binary.BigEndian.AppendUint32(raw, uint32(lk.LMSType))
	raw = binary.BigEndian.AppendUint32(raw, uint32(lk.LMOTSType))
	if len(lk.I) != IDSize {
		return nil, fmt.Errorf("%w: libhal's HSS public key has a %d-byte I", ErrMalformed, len(lk.I))
	}
	raw = append(append(raw, lk.I...), lk.T1...)
	return ParsePublicKey(raw)
}

// privateKeyInfo is PKCS#8's PrivateKeyInfo (RFC 5208), version 0.
type privateKeyInfo struct {
	Version    int
	Algorithm  algorithmIdentifier
	PrivateKey []byte
}

// MarshalPKCS8 encodes the key's state (MarshalBinary) as a PKCS#8
// PrivateKeyInfo with id-alg-hss-lms-hashsig. No standard fixes the format
// of an HSS private key; this is the one of this package.
func (sk *PrivateKey) MarshalPKCS8() ([]byte, error) {
	state, err := sk.MarshalBinary()
	if err != nil {
		return nil, err
	}
	defer clear(state)
	return marshalPKCS8(state)
}

// StatePKCS8 wraps a serialized state, as a PersistFunc receives it, in the
// PKCS#8 form of MarshalPKCS8.
func StatePKCS8(state []byte) ([]byte, error) { return marshalPKCS8(state) }

func marshalPKCS8(state []byte) ([]byte, error) {
	der, err := asn1.Marshal(privateKeyInfo{0, algorithmIdentifier{OID}, state})
	if err != nil {
		return nil, fmt.Errorf("hashsig: marshal PKCS#8: %w", err)
	}
	return der, nil
}

// PKCS8Size is the length of MarshalPKCS8's encoding of a key of l levels
// whose top level is of type top: the same for every part of the key,
// whatever its range, so that a buffer for a part's encoding (or for the
// part wrapped) can be sized without splitting the key.
func PKCS8Size(l int, top LMSType) (int, error) {
	p, ok := top.Params()
	if !ok || l < 1 || l > MaxLevels {
		return 0, fmt.Errorf("%w: %d levels under %v", ErrBadParameters, l, top)
	}
	state := make([]byte, stateSize(l, p.M))
	der, err := marshalPKCS8(state)
	if err != nil {
		return 0, err
	}
	return len(der), nil
}

// IsPKCS8 reports whether der is a PKCS#8 PrivateKeyInfo of an HSS key.
func IsPKCS8(der []byte) bool {
	var info privateKeyInfo
	rest, err := asn1.Unmarshal(der, &info)
	return err == nil && len(rest) == 0 && info.Algorithm.Algorithm.Equal(OID)
}

// ParsePKCS8 loads a key from MarshalPKCS8's encoding. Like ParsePrivateKey
// it builds no tree: that waits for the key's first signature.
func ParsePKCS8(der []byte, persist PersistFunc) (*PrivateKey, error) {
	var info privateKeyInfo
	rest, err := asn1.Unmarshal(der, &info)
	if err != nil || len(rest) != 0 || info.Version != 0 || !info.Algorithm.Algorithm.Equal(OID) {
		return nil, fmt.Errorf("%w: not an HSS PKCS#8 private key", ErrMalformed)
	}
	defer clear(info.PrivateKey)
	return ParsePrivateKey(info.PrivateKey, persist)
}

// SignatureIndex returns the index a signature was made with: the leaves of
// each level, top first, read as one number. It checks only the form of the
// signature, not that it verifies.
func SignatureIndex(sig []byte) (uint64, error) {
	if len(sig) < 4 {
		return 0, fmt.Errorf("%w: HSS signature too short", ErrMalformed)
	}
	nspk := binary.BigEndian.Uint32(sig)
	if nspk >= MaxLevels {
		return 0, fmt.Errorf("%w: HSS signature with %d levels", ErrMalformed, nspk+1)
	}
	rest := sig[4:]
	var s uint64
	for l := uint32(0); l <= nspk; l++ {
		lms, after, err := splitLMSSignature(rest)
		if err != nil {
			return 0, err
		}
		p, _ := LMSType(binary.BigEndian.Uint32(lms[len(lms)-lmsPathSize(lms):])).Params()
		s = s<<p.H | uint64(binary.BigEndian.Uint32(lms))
		if l < nspk {
			if _, after, err = parseLMSPublicKey(after); err != nil {
				return 0, err
			}
		}
		rest = after
	}
	if len(rest) != 0 {
		return 0, fmt.Errorf("%w: %d bytes after the HSS signature", ErrMalformed, len(rest))
	}
	return s, nil
}

// lmsPathSize returns how many bytes from the end of an LMS signature its
// type field starts: 4 for the type plus the authentication path.
func lmsPathSize(lms []byte) int {
	ot := LMOTSType(binary.BigEndian.Uint32(lms[4:]))
	op, _ := ot.Params()
	return len(lms) - 4 - otsSignatureSize(op)
}
