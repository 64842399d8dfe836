package hsmapi

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"

	"github.com/hsmkit/cryptech-backup/internal/quote"
)

// KEKSize is the size of a transit KEK: an AES-256 key.
const KEKSize = 32

var (
	oidRSAEncryption    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSAESOAEP        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	oidMGF1             = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidSHA1             = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256           = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidAES256WrapPad    = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 48}
	asn1NULL            = asn1.RawValue{Tag: asn1.TagNull, FullBytes: []byte{0x05, 0x00}}
	errEPKI             = errors.New("malformed EncryptedPrivateKeyInfo")
	errUnknownAlgorithm = errors.New("unsupported key encryption algorithm")
)

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

// encryptedPrivateKeyInfo is PKCS#8's EncryptedPrivateKeyInfo (RFC 5208).
type encryptedPrivateKeyInfo struct {
	Algorithm     algorithmIdentifier
	EncryptedData []byte
}

// rsaesOAEPParams is RSAES-OAEP-params of RFC 8017; absent fields take the
// SHA-1 defaults. A pSourceAlgorithm (an OAEP label) is refused.
type rsaesOAEPParams struct {
	HashAlgorithm    algorithmIdentifier `asn1:"optional,explicit,tag:0"`
	MaskGenAlgorithm algorithmIdentifier `asn1:"optional,explicit,tag:1"`
	PSourceAlgorithm asn1.RawValue       `asn1:"optional,explicit,tag:2"`
}

func marshalEPKI(alg algorithmIdentifier, data []byte) []byte {
	der, err := asn1.Marshal(encryptedPrivateKeyInfo{alg, data})
	if err != nil {
		panic("hsmapi: marshal EncryptedPrivateKeyInfo: " + err.Error()) // fixed types: cannot fail
	}
	return der
}

// unmarshalDER parses der into v, accepting only the DER encoding of what
// it holds and nothing after it. encoding/asn1 alone lets other byte
// strings through (such as an explicit tag's wrong length), and in a
// bundle a changed byte must be refused, not read past.
func unmarshalDER(der []byte, v any) error {
	rest, err := asn1.Unmarshal(der, v)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errors.New("trailing data")
	}
	// v is a pointer; Marshal wants what it points to.
	if again, err := asn1.Marshal(reflect.ValueOf(v).Elem().Interface()); err != nil || !bytes.Equal(again, der) {
		return errors.New("not DER")
	}
	return nil
}

// parseEPKI parses an EncryptedPrivateKeyInfo. The algorithm's parameters,
// kept raw, are checked by the caller.
func parseEPKI(der []byte) (encryptedPrivateKeyInfo, error) {
	var e encryptedPrivateKeyInfo
	if err := unmarshalDER(der, &e); err != nil || len(e.EncryptedData) == 0 {
		return e, errEPKI
	}
	return e, nil
}

// kekAlgorithm is the AlgorithmIdentifier each KEK encryption is written
// with. PKCS#1 v1.5 carries no parameters, as libhal writes it.
func kekAlgorithm(enc KEKEncryption) (algorithmIdentifier, error) {
	switch enc {
	case KEKPKCS1v15:
		return algorithmIdentifier{Algorithm: oidRSAEncryption}, nil
	case KEKOAEPSHA1:
		return algorithmIdentifier{Algorithm: oidRSAESOAEP, Parameters: mustRaw(rsaesOAEPParams{})}, nil
	case KEKOAEPSHA256:
		sha256ID := algorithmIdentifier{Algorithm: oidSHA256, Parameters: asn1NULL}
		return algorithmIdentifier{Algorithm: oidRSAESOAEP, Parameters: mustRaw(rsaesOAEPParams{
			HashAlgorithm:    sha256ID,
			MaskGenAlgorithm: algorithmIdentifier{Algorithm: oidMGF1, Parameters: mustRaw(sha256ID)},
		})}, nil
	}
	return algorithmIdentifier{}, fmt.Errorf("%w: unknown KEK encryption %s", ErrBadArguments, quote.Short(string(enc)))
}

func mustRaw(v any) asn1.RawValue {
	der, err := asn1.Marshal(v)
	if err != nil {
		panic("hsmapi: marshal: " + err.Error()) // fixed types: cannot fail
	}
	return asn1.RawValue{FullBytes: der}
}

// KEKEncryptionOfEPKI reads which KEK encryption an encrypted KEK (an
// EncryptedPrivateKeyInfo, as Export makes it) uses: what a libhal client,
// which names none, gets.
func KEKEncryptionOfEPKI(der []byte) (KEKEncryption, error) {
	e, err := parseEPKI(der)
	if err != nil {
		return "", fmt.Errorf("%w: KEK: %v", ErrBadArguments, err)
	}
	enc, err := kekEncryptionOf(e.Algorithm)
	if err != nil {
		return "", fmt.Errorf("%w: KEK: %v", ErrBadArguments, err)
	}
	return enc, nil
}

// kekEncryptionOf reads which KEK encryption an AlgorithmIdentifier names.
func kekEncryptionOf(alg algorithmIdentifier) (KEKEncryption, error) {
	switch {
	case alg.Algorithm.Equal(oidRSAEncryption):
		if len(alg.Parameters.FullBytes) != 0 && !isNULL(alg.Parameters) {
			return "", errUnknownAlgorithm
		}
		return KEKPKCS1v15, nil
	case alg.Algorithm.Equal(oidRSAESOAEP):
		var p rsaesOAEPParams
		if err := unmarshalDER(alg.Parameters.FullBytes, &p); err != nil {
			return "", errUnknownAlgorithm
		}
		if len(p.PSourceAlgorithm.FullBytes) != 0 {
			return "", errUnknownAlgorithm
		}
		hash, err := hashOf(p.HashAlgorithm, oidSHA1)
		if err != nil {
			return "", err
		}
		mgfHash := oidSHA1
		if len(p.MaskGenAlgorithm.Algorithm) != 0 {
			if !p.MaskGenAlgorithm.Algorithm.Equal(oidMGF1) {
				return "", errUnknownAlgorithm
			}
			var h algorithmIdentifier
			if err := unmarshalDER(p.MaskGenAlgorithm.Parameters.FullBytes, &h); err != nil {
				return "", errUnknownAlgorithm
			}
			if mgfHash, err = hashOf(h, nil); err != nil {
				return "", err
			}
		}
		switch {
		case hash.Equal(oidSHA256) && mgfHash.Equal(oidSHA256):
			return KEKOAEPSHA256, nil
		case hash.Equal(oidSHA1) && mgfHash.Equal(oidSHA1):
			return KEKOAEPSHA1, nil
		}
	}
	return "", errUnknownAlgorithm
}

// hashOf returns the hash OID of an AlgorithmIdentifier whose parameters
// are absent or NULL, or def when the identifier itself is absent.
func hashOf(alg algorithmIdentifier, def asn1.ObjectIdentifier) (asn1.ObjectIdentifier, error) {
	if len(alg.Algorithm) == 0 && def != nil {
		return def, nil
	}
	if len(alg.Parameters.FullBytes) != 0 && !isNULL(alg.Parameters) {
		return nil, errUnknownAlgorithm
	}
	return alg.Algorithm, nil
}

func isNULL(v asn1.RawValue) bool {
	return len(v.FullBytes) == 2 && v.FullBytes[0] == 0x05 && v.FullBytes[1] == 0x00
}

// PublicKEKEK is a destination's public KEKEK, checked by ParseKEKEK: an
// RSA key fit to carry a KEK, with the SubjectPublicKeyInfo it was read
// from. An export of many keys parses it once, and each backend takes what
// it needs: the key (to encrypt KEKs itself) or the bytes (to send on).
type PublicKEKEK struct {
	spki []byte
	key  *rsa.PublicKey
}

// SPKI is the SubjectPublicKeyInfo (DER) the KEKEK was parsed from. It is
// shared: callers do not change it.
func (k *PublicKEKEK) SPKI() []byte { return k.spki }

// Key is the KEKEK's RSA public key.
func (k *PublicKEKEK) Key() *rsa.PublicKey { return k.key }

// Fingerprint names a public key by the SHA-256 of its
// SubjectPublicKeyInfo, as OpenSSH names keys: the name operators compare
// for a KEKEK.
func Fingerprint(spki []byte) string {
	sum := sha256.Sum256(spki)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// ParseKEKEK checks that a public KEKEK (a SubjectPublicKeyInfo, DER) is an
// RSA key fit to carry a KEK.
func ParseKEKEK(spki []byte) (*PublicKEKEK, error) {
	pub, err := ParsePublicKey(spki)
	if err != nil {
		return nil, fmt.Errorf("KEKEK: %w", err)
	}
	rsaPub, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: KEKEK is %s, not an RSA key", ErrUnsupportedKey, KeyKind(pub))
	}
	if err := CheckKEKEKSize(rsaPub); err != nil {
		return nil, err
	}
	return &PublicKEKEK{spki: spki, key: rsaPub}, nil
}

// CheckKEKEKSize refuses a KEKEK too small to protect what it carries: the
// legacy RSA keys this HSM moves may be smaller, a KEKEK may not.
func CheckKEKEKSize(pub *rsa.PublicKey) error {
	if bits := pub.N.BitLen(); bits < MinGeneratedRSABits {
		return fmt.Errorf("%w: KEKEK has %d bits, at least %d needed", ErrUnsupportedKey, bits, MinGeneratedRSABits)
	}
	return nil
}

// The encodings of a transfer, which every backend must write and read
// alike, also one whose HSM does the cryptography itself (a PKCS#11 token
// wraps with C_WrapKey).

// MarshalEncryptedKey encodes a PrivateKeyInfo wrapped with RFC 5649 under a
// transit KEK: EncryptedPrivateKeyInfo with id-aes256-wrap-pad.
func MarshalEncryptedKey(wrapped []byte) []byte {
	return marshalEPKI(algorithmIdentifier{Algorithm: oidAES256WrapPad}, wrapped)
}

// ParseEncryptedKey reverses MarshalEncryptedKey, returning the wrapped bytes.
func ParseEncryptedKey(der []byte) ([]byte, error) {
	e, err := parseEPKI(der)
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped key: %v", ErrBadArguments, err)
	}
	if !e.Algorithm.Algorithm.Equal(oidAES256WrapPad) || len(e.Algorithm.Parameters.FullBytes) != 0 {
		return nil, fmt.Errorf("%w: wrapped key: %v", ErrBadArguments, errUnknownAlgorithm)
	}
	return e.EncryptedData, nil
}

// MarshalEncryptedKEK encodes a KEK encrypted to a KEKEK with enc.
func MarshalEncryptedKEK(enc KEKEncryption, ct []byte) ([]byte, error) {
	alg, err := kekAlgorithm(enc)
	if err != nil {
		return nil, err
	}
	return marshalEPKI(alg, ct), nil
}

// ParseEncryptedKEK reverses MarshalEncryptedKEK, checking the encryption is want.
func ParseEncryptedKEK(der []byte, want KEKEncryption) ([]byte, error) {
	enc, err := KEKEncryptionOfEPKI(der)
	if err != nil {
		return nil, err
	}
	if enc != want {
		return nil, fmt.Errorf("%w: KEK is encrypted with %s, expected %s", ErrBadArguments, enc, want)
	}
	e, _ := parseEPKI(der)
	return e.EncryptedData, nil
}

// BindingDigest is what a tag wraps under the transit KEK (see
// ExportRequest.Binding): a hash of the caller's binding under a label of
// its own, so that a tag can never pass for a wrapped key.
func BindingDigest(binding []byte) []byte {
	h := sha256.New()
	h.Write([]byte("cryptech-backup binding tag v1\x00"))
	h.Write(binding)
	return h.Sum(nil)
}
