package rpc

import (
	"crypto"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/sigder"
)

// libhal's digest algorithms (hal_digest_algorithm_t).
var digestAlgorithms = []struct {
	alg  uint32
	hash crypto.Hash
}{
	{1, crypto.SHA1},
	{2, crypto.SHA224},
	{3, crypto.SHA256},
	{4, crypto.SHA512_224},
	{5, crypto.SHA512_256},
	{6, crypto.SHA384},
	{7, crypto.SHA512},
}

func digestAlgorithm(alg uint32) (crypto.Hash, error) {
	for _, d := range digestAlgorithms {
		if d.alg == alg {
			return d.hash, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown digest algorithm %d", hsmapi.ErrBadArguments, alg)
}

func digestAlgorithmOf(h crypto.Hash) (uint32, bool) {
	for _, d := range digestAlgorithms {
		if d.hash == h {
			return d.alg, true
		}
	}
	return 0, false
}

// digestInfoDER is what a libhal client sends to sign with RSA: the
// PKCS#1 DigestInfo of the digest.
func digestInfoDER(h crypto.Hash, digest []byte) ([]byte, error) {
	if _, ok := digestAlgorithmOf(h); !ok {
		return nil, fmt.Errorf("%w: no libhal digest algorithm for %v", hsmapi.ErrUnsupported, h)
	}
	return sigder.DigestInfo(h, digest)
}

// ecdsaRawToDER turns libhal's r || s, each size bytes (the curve's), into
// the DER form of Token.Sign.
func ecdsaRawToDER(raw []byte, size int) ([]byte, error) {
	der, err := sigder.ECDSARawToDER(raw, size)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", hsmapi.ErrInvalidSignature, err)
	}
	return der, nil
}

// ecdsaDERToRaw turns Token.Sign's DER form into libhal's r || s.
func ecdsaDERToRaw(der []byte, size int) ([]byte, error) {
	raw, err := sigder.ECDSADERToRaw(der, size)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", hsmapi.ErrInvalidSignature, err)
	}
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
