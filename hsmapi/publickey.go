package hsmapi

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hashsig"
)

// NewHashsigInfo describes an HSS key: its public half, and its private
// half (nil for a public key alone) for the levels below the top.
func NewHashsigInfo(pk *hashsig.PublicKey, sk *hashsig.PrivateKey) *HashsigInfo {
	top, _ := pk.Top()
	hi := &HashsigInfo{L: pk.Levels(), Levels: []hashsig.Level{top}}
	if sk != nil {
		hi.Levels = sk.Levels()
	}
	return hi
}

// The RSA keys this HSM holds, as libhal does: keys made elsewhere, legacy
// ones included, can be loaded, imported, exported and used. Only keys of
// MinGeneratedRSABits or more are made here, and a KEKEK has at least that.
const (
	MinRSABits          = 1024
	MaxRSABits          = 8192
	MinGeneratedRSABits = 2048
)

// CheckGeneratedRSABits refuses a modulus size new keys are not made with:
// only 2048, 3072 and 4096 bits. Smaller legacy keys (down to MinRSABits)
// can still be loaded, imported and used, and the error says so.
func CheckGeneratedRSABits(bits int) error {
	switch {
	case bits == 2048, bits == 3072, bits == 4096:
		return nil
	case bits >= MinRSABits && bits < MinGeneratedRSABits:
		return fmt.Errorf("%w: RSA keys under %d bits can be moved and used but not generated", ErrBadArguments, MinGeneratedRSABits)
	}
	return fmt.Errorf("%w: new RSA keys have 2048, 3072 or 4096 bits, not %d", ErrBadArguments, bits)
}

// DescribeKey names a public key's libhal type, curve and size, refusing the
// keys this HSM does not hold.
func DescribeKey(pub crypto.PublicKey, private bool) (KeyType, Curve, int, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		bits := p.N.BitLen()
		if bits < MinRSABits || bits > MaxRSABits {
			return 0, 0, 0, fmt.Errorf("%w: RSA keys have %d to %d bits, not %d", ErrUnsupportedKey, MinRSABits, MaxRSABits, bits)
		}
		// libhal takes any exponent; Go's crypto/rsa an odd one below 2^31.
		if p.E < 3 || p.E%2 == 0 {
			return 0, 0, 0, fmt.Errorf("%w: RSA public exponent %d", ErrUnsupportedKey, p.E)
		}
		if private {
			return KeyTypeRSAPrivate, CurveNone, bits, nil
		}
		return KeyTypeRSAPublic, CurveNone, bits, nil
	case *hashsig.PublicKey:
		if private {
			return KeyTypeHashsigPrivate, CurveNone, 0, nil
		}
		return KeyTypeHashsigPublic, CurveNone, 0, nil
	case *ecdsa.PublicKey:
		var c Curve
		switch p.Curve {
		case elliptic.P256():
			c = CurveP256
		case elliptic.P384():
			c = CurveP384
		case elliptic.P521():
			c = CurveP521
		default:
			return 0, 0, 0, fmt.Errorf("%w: EC curve %s", ErrUnsupportedKey, p.Curve.Params().Name)
		}
		if private {
			return KeyTypeECPrivate, c, p.Curve.Params().BitSize, nil
		}
		return KeyTypeECPublic, c, p.Curve.Params().BitSize, nil
	}
	return 0, 0, 0, fmt.Errorf("%w: %s", ErrUnsupportedKey, KeyKind(pub))
}

// DescribePublicKey fills the public facts of a KeyInfo (type, curve, size,
// HSS levels) from a SubjectPublicKeyInfo, for backends that learn keys by
// their public half. private says whether the key has a private half.
func DescribePublicKey(spki []byte, private bool) (KeyInfo, error) {
	pub, err := ParsePublicKey(spki)
	if err != nil {
		return KeyInfo{}, err
	}
	typ, curve, bits, err := DescribeKey(pub, private)
	if err != nil {
		return KeyInfo{}, err
	}
	info := KeyInfo{Type: typ, Curve: curve, Bits: bits, PublicKey: spki}
	if hp, ok := pub.(*hashsig.PublicKey); ok {
		info.Hashsig = NewHashsigInfo(hp, nil)
	}
	return info, nil
}

// ParsePublicKey parses a SubjectPublicKeyInfo (DER): RSA, EC, or HSS
// (RFC 9708, giving a *hashsig.PublicKey). Its error says what the bytes
// are not, without the parser's internals.
func ParsePublicKey(spki []byte) (crypto.PublicKey, error) {
	if pub, err := x509.ParsePKIXPublicKey(spki); err == nil {
		return pub, nil
	}
	if pub, err := hashsig.ParsePKIXPublicKey(spki); err == nil {
		return pub, nil
	}
	return nil, fmt.Errorf("%w: not a SubjectPublicKeyInfo of a supported algorithm", ErrUnsupportedKey)
}

// SamePublicKey reports whether two SubjectPublicKeyInfos hold the same key,
// whatever their encoding.
func SamePublicKey(a, b []byte) bool {
	pa, errA := ParsePublicKey(a)
	pb, errB := ParsePublicKey(b)
	if errA != nil || errB != nil {
		return false
	}
	eq, ok := pa.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(pb)
}

// KeyKind names a key's algorithm for messages.
func KeyKind(k any) string {
	switch k.(type) {
	case *rsa.PublicKey, *rsa.PrivateKey:
		return "an RSA key"
	case *ecdsa.PublicKey, *ecdsa.PrivateKey:
		return "an EC key"
	case ed25519.PublicKey, ed25519.PrivateKey:
		return "an Ed25519 key"
	case *ecdh.PublicKey, *ecdh.PrivateKey:
		return "an X25519 key"
	case *hashsig.PublicKey, *hashsig.PrivateKey:
		return "an HSS key"
	}
	return "a key of an unknown kind"
}

// VerifySignature checks, in software, a signature made as Token.Sign makes
// them, under a public key given as a SubjectPublicKeyInfo (DER). It returns
// ErrInvalidSignature when the signature does not verify.
func VerifySignature(spki, digest, sig []byte, opts crypto.SignerOpts) error {
	pub, err := ParsePublicKey(spki)
	if err != nil {
		return err
	}
	return VerifyDigest(pub, digest, sig, opts)
}

// VerifyDigest is VerifySignature with the public key parsed.
func VerifyDigest(pub crypto.PublicKey, digest, sig []byte, opts crypto.SignerOpts) error {
	if opts == nil {
		return fmt.Errorf("%w: no hash given", ErrBadArguments)
	}
	var err error
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			err = rsa.VerifyPSS(p, pss.Hash, digest, sig, pss)
		} else {
			err = rsa.VerifyPKCS1v15(p, opts.HashFunc(), digest, sig)
		}
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, digest, sig) {
			err = ErrInvalidSignature
		}
	case *hashsig.PublicKey:
		if opts.HashFunc() != 0 {
			return fmt.Errorf("%w: an HSS signature covers the message itself, not a %v digest", ErrBadArguments, opts.HashFunc())
		}
		err = p.Verify(digest, sig)
	default:
		return fmt.Errorf("%w: cannot verify with %s", ErrUnsupportedKey, KeyKind(pub))
	}
	if err != nil {
		return ErrInvalidSignature
	}
	return nil
}

// SignAndVerify has tok sign msg with key k (its SHA-256; an HSS key signs
// msg itself) and checks the signature under k's public key: the test of a
// key that has moved or come back, as the demos and tests run it.
func SignAndVerify(ctx context.Context, tok Token, k KeyInfo, msg []byte) error {
	opts := crypto.SignerOpts(crypto.Hash(0))
	if k.Type != KeyTypeHashsigPrivate {
		d := sha256.Sum256(msg)
		msg, opts = d[:], crypto.SHA256
	}
	sig, err := tok.Sign(ctx, k.UUID, msg, opts)
	if err != nil {
		return err
	}
	return VerifySignature(k.PublicKey, msg, sig, opts)
}
