// Package sigder converts signatures and digests between the forms the
// faces of an HSM speak: ECDSA as ASN.1 DER (crypto/ecdsa, the Token
// contract) or as r || s (libhal's RPC, PKCS#11), and a digest as the
// PKCS#1 DigestInfo an RSA PKCS#1 v1.5 signature signs. The DER is built
// and read with cryptobyte and encoding/asn1, never by hand.
package sigder

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrMalformed: an ECDSA signature that is not of the form asked for.
var ErrMalformed = errors.New("malformed ECDSA signature")

// ErrUnknownHash: a hash with no DigestInfo algorithm here.
var ErrUnknownHash = errors.New("no DigestInfo algorithm for this hash")

// digestOIDs are the algorithms of RFC 8017's DigestInfo (and FIPS 180-4's
// truncated SHA-512s).
var digestOIDs = map[crypto.Hash]asn1.ObjectIdentifier{
	crypto.SHA1:       {1, 3, 14, 3, 2, 26},
	crypto.SHA224:     {2, 16, 840, 1, 101, 3, 4, 2, 4},
	crypto.SHA256:     {2, 16, 840, 1, 101, 3, 4, 2, 1},
	crypto.SHA384:     {2, 16, 840, 1, 101, 3, 4, 2, 2},
	crypto.SHA512:     {2, 16, 840, 1, 101, 3, 4, 2, 3},
	crypto.SHA512_224: {2, 16, 840, 1, 101, 3, 4, 2, 5},
	crypto.SHA512_256: {2, 16, 840, 1, 101, 3, 4, 2, 6},
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue
}

type digestInfo struct {
	Algorithm algorithmIdentifier
	Digest    []byte
}

// AlgorithmIdentifier is the DER AlgorithmIdentifier of hash h, with NULL
// parameters, as a DigestInfo holds it.
func AlgorithmIdentifier(h crypto.Hash) ([]byte, error) {
	oid, ok := digestOIDs[h]
	if !ok {
		return nil, fmt.Errorf("%w: %v", ErrUnknownHash, h)
	}
	return asn1.Marshal(algorithmIdentifier{oid, asn1.NullRawValue})
}

// DigestInfo is the PKCS#1 DigestInfo (DER) of digest, made with hash h:
// what an RSA PKCS#1 v1.5 signature signs. For h 0 it is digest itself, a
// digest signed as it is.
func DigestInfo(h crypto.Hash, digest []byte) ([]byte, error) {
	if h == 0 {
		return bytes.Clone(digest), nil
	}
	oid, ok := digestOIDs[h]
	if !ok {
		return nil, fmt.Errorf("%w: %v", ErrUnknownHash, h)
	}
	return asn1.Marshal(digestInfo{algorithmIdentifier{oid, asn1.NullRawValue}, digest})
}

// ECDSARawToDER turns r || s, each size bytes (the curve's), into
// SEQUENCE { INTEGER r, INTEGER s }, in DER. Any other length is refused,
// as PKCS#11 defines the form: leading zeros added or dropped would give
// one signature many encodings that verify (Wycheproof's "incorrect size of
// signature" cases).
func ECDSARawToDER(raw []byte, size int) ([]byte, error) {
	if size <= 0 || len(raw) != 2*size {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrMalformed, len(raw), 2*size)
	}
	// Room for both INTEGERs with a zero byte and four bytes of header
	// each, and the SEQUENCE header.
	b := cryptobyte.NewFixedBuilder(make([]byte, 0, 2*size+16))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addASN1Unsigned(b, raw[:size])
		addASN1Unsigned(b, raw[size:])
	})
	return b.Bytes()
}

// addASN1Unsigned adds the unsigned big-endian v as an INTEGER: what
// AddASN1BigInt would, without making a big.Int of it (this runs for every
// ECDSA signature that crosses a face).
func addASN1Unsigned(b *cryptobyte.Builder, v []byte) {
	b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) {
		v = bytes.TrimLeft(v, "\x00")
		if len(v) == 0 || v[0]&0x80 != 0 {
			b.AddUint8(0) // 0, or a positive number whose top bit is set
		}
		b.AddBytes(v)
	})
}

// ECDSADERToRaw turns an ASN.1 ECDSA signature (DER, nothing after it, as
// crypto/ecdsa accepts) into r || s for a curve whose scalars take size
// bytes.
func ECDSADERToRaw(der []byte, size int) ([]byte, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	var r, s []byte // big-endian, without leading zeros; 0 is one zero byte
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() ||
		r[0] == 0 || s[0] == 0 || len(r) > size || len(s) > size {
		return nil, ErrMalformed
	}
	raw := make([]byte, 2*size)
	copy(raw[size-len(r):size], r)
	copy(raw[2*size-len(s):], s)
	return raw, nil
}
