package rpc

import (
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"fmt"
	"hash"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// libhal's digest algorithms (hal_digest_algorithm_t).
var digestAlgorithms = []struct {
	alg  uint32
	hash crypto.Hash
	new  func() hash.Hash
	oid  asn1.ObjectIdentifier
}{
	{1, crypto.SHA1, sha1.New, asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}},
	{2, crypto.SHA224, sha256.New224, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}},
	{3, crypto.SHA256, sha256.New, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}},
	{4, crypto.SHA512_224, sha512.New512_224, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 5}},
	{5, crypto.SHA512_256, sha512.New512_256, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 6}},
	{6, crypto.SHA384, sha512.New384, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}},
	{7, crypto.SHA512, sha512.New, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}},
}

func digestAlgorithm(alg uint32) (crypto.Hash, func() hash.Hash, asn1.ObjectIdentifier, error) {
	for _, d := range digestAlgorithms {
		if d.alg == alg {
			return d.hash, d.new, d.oid, nil
		}
	}
	return 0, nil, nil, fmt.Errorf("%w: unknown digest algorithm %d", hsmapi.ErrBadArguments, alg)
}

func digestAlgorithmOf(h crypto.Hash) (uint32, asn1.ObjectIdentifier, bool) {
	for _, d := range digestAlgorithms {
		if d.hash == h {
			return d.alg, d.oid, true
		}
	}
	return 0, nil, false
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue
}

type digestInfo struct {
	Algorithm algorithmIdentifier
	Digest    []byte
}

// algorithmIDDER is the DER AlgorithmIdentifier of a digest, with NULL
// parameters, as HASH_GET_DIGEST_ALGORITHM_ID answers and DigestInfo holds.
func algorithmIDDER(oid asn1.ObjectIdentifier) []byte {
	der, err := asn1.Marshal(algorithmIdentifier{oid, asn1.NullRawValue})
	if err != nil {
		panic("rpc: marshal AlgorithmIdentifier: " + err.Error()) // fixed types: cannot fail
	}
	return der
}

// digestInfoDER is what a libhal client sends to sign with RSA: the
// PKCS#1 DigestInfo of the digest.
func digestInfoDER(h crypto.Hash, digest []byte) ([]byte, error) {
	_, oid, ok := digestAlgorithmOf(h)
	if !ok {
		return nil, fmt.Errorf("%w: no libhal digest algorithm for %v", hsmapi.ErrUnsupported, h)
	}
	return asn1.Marshal(digestInfo{algorithmIdentifier{oid, asn1.NullRawValue}, digest})
}

// ecdsaRawToDER turns libhal's r || s, each size bytes (the curve's), into
// the ASN.1 form of Token.Sign: SEQUENCE { INTEGER r, INTEGER s }, in DER.
// Any other length is refused, as PKCS#11 defines the form: leading zeros
// added or dropped would give one signature many encodings that verify
// (Wycheproof's "incorrect size of signature" cases). It is written out by
// hand, not with encoding/asn1, because it runs for every ECDSA signature
// that crosses the socket and reflection cost a tenth of the overhead of a
// signature over RPC.
func ecdsaRawToDER(raw []byte, size int) ([]byte, error) {
	if size <= 0 || len(raw) != 2*size {
		return nil, fmt.Errorf("%w: ECDSA signature of %d bytes, want %d", hsmapi.ErrInvalidSignature, len(raw), 2*size)
	}
	n := len(raw) / 2
	r, s := derIntLen(raw[:n]), derIntLen(raw[n:])
	body := derLen(r) + derLen(s)
	out := make([]byte, 0, derLen(body))
	out = appendDERHeader(out, 0x30, body)
	out = appendDERHeader(out, 0x02, r)
	out = appendDERInt(out, raw[:n])
	out = appendDERHeader(out, 0x02, s)
	out = appendDERInt(out, raw[n:])
	return out, nil
}

// derIntLen is the length of the DER INTEGER content of the unsigned
// big-endian b: without leading zeros, with one zero byte before a top bit
// that is set, a single zero for 0.
func derIntLen(b []byte) int {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) == 0 || b[0]&0x80 != 0 {
		return len(b) + 1
	}
	return len(b)
}

// appendDERInt appends the DER INTEGER content of the unsigned big-endian b.
func appendDERInt(dst, b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) == 0 || b[0]&0x80 != 0 {
		dst = append(dst, 0)
	}
	return append(dst, b...)
}

// derLen is the size of a DER element with n bytes of content.
func derLen(n int) int {
	switch {
	case n < 0x80:
		return 2 + n
	case n < 0x100:
		return 3 + n
	default:
		return 4 + n
	}
}

// appendDERHeader appends a tag and the DER length n (below 65536).
func appendDERHeader(dst []byte, tag byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, tag, byte(n))
	case n < 0x100:
		return append(dst, tag, 0x81, byte(n))
	default:
		return append(dst, tag, 0x82, byte(n>>8), byte(n))
	}
}

// derElement reads a DER element with the given tag from the front of b
// (short or minimal long-form length up to two bytes) and returns its
// content and what follows.
func derElement(b []byte, tag byte) (content, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, false
	}
	n := int(b[1])
	b = b[2:]
	switch {
	case n < 0x80:
	case n == 0x81 && len(b) >= 1 && b[0] >= 0x80:
		n = int(b[0])
		b = b[1:]
	case n == 0x82 && len(b) >= 2 && b[0] != 0:
		n = int(b[0])<<8 | int(b[1])
		b = b[2:]
	default:
		return nil, nil, false
	}
	if len(b) < n {
		return nil, nil, false
	}
	return b[:n], b[n:], true
}

// derPositiveInt reads a minimally encoded, strictly positive DER INTEGER
// and returns its magnitude, big-endian without leading zeros.
func derPositiveInt(b []byte) (v, rest []byte, ok bool) {
	v, rest, ok = derElement(b, 0x02)
	if !ok || len(v) == 0 || v[0]&0x80 != 0 {
		return nil, nil, false // absent, empty or negative
	}
	if v[0] == 0 {
		if len(v) == 1 || v[1]&0x80 == 0 {
			return nil, nil, false // zero, or not minimal
		}
		v = v[1:]
	}
	return v, rest, true
}

// ecdsaDERToRaw turns an ASN.1 ECDSA signature (DER, nothing after it, as
// crypto/ecdsa accepts) into r || s for a curve whose scalars take size
// bytes.
func ecdsaDERToRaw(der []byte, size int) ([]byte, error) {
	seq, rest, ok := derElement(der, 0x30)
	var r, s []byte
	if ok {
		r, seq, ok = derPositiveInt(seq)
	}
	if ok {
		s, seq, ok = derPositiveInt(seq)
	}
	if !ok || len(rest) != 0 || len(seq) != 0 || len(r) > size || len(s) > size {
		return nil, fmt.Errorf("%w: malformed ECDSA signature", hsmapi.ErrInvalidSignature)
	}
	raw := make([]byte, 2*size)
	copy(raw[size-len(r):size], r)
	copy(raw[2*size-len(s):], s)
	return raw, nil
}

// curveSize is the byte size of a curve's scalars.
func curveSize(c hsmapi.Curve) int {
	switch c {
	case hsmapi.CurveP256:
		return 32
	case hsmapi.CurveP384:
		return 48
	case hsmapi.CurveP521:
		return 66
	}
	return 0
}
