package rpc

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// libhal's digest algorithms (hal_digest_algorithm_t).
var digestAlgorithms = []struct {
	alg  uint32
	hash crypto.Hash
	oid  asn1.ObjectIdentifier
}{
	{1, crypto.SHA1, asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}},
	{2, crypto.SHA224, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}},
	{3, crypto.SHA256, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}},
	{4, crypto.SHA512_224, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 5}},
	{5, crypto.SHA512_256, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 6}},
	{6, crypto.SHA384, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}},
	{7, crypto.SHA512, asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}},
}

func digestAlgorithm(alg uint32) (crypto.Hash, asn1.ObjectIdentifier, error) {
	for _, d := range digestAlgorithms {
		if d.alg == alg {
			return d.hash, d.oid, nil
		}
	}
	return 0, nil, fmt.Errorf("%w: unknown digest algorithm %d", hsmapi.ErrBadArguments, alg)
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
// (Wycheproof's "incorrect size of signature" cases).
func ecdsaRawToDER(raw []byte, size int) ([]byte, error) {
	if size <= 0 || len(raw) != 2*size {
		return nil, fmt.Errorf("%w: ECDSA signature of %d bytes, want %d", hsmapi.ErrInvalidSignature, len(raw), 2*size)
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
// ECDSA signature that crosses the socket).
func addASN1Unsigned(b *cryptobyte.Builder, v []byte) {
	b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) {
		v = bytes.TrimLeft(v, "\x00")
		if len(v) == 0 || v[0]&0x80 != 0 {
			b.AddUint8(0) // 0, or a positive number whose top bit is set
		}
		b.AddBytes(v)
	})
}

// ecdsaDERToRaw turns an ASN.1 ECDSA signature (DER, nothing after it, as
// crypto/ecdsa accepts) into r || s for a curve whose scalars take size
// bytes.
func ecdsaDERToRaw(der []byte, size int) ([]byte, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	var r, s []byte // big-endian, without leading zeros; 0 is one zero byte
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() ||
		r[0] == 0 || s[0] == 0 || len(r) > size || len(s) > size {
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
