package hsmapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/internal/quote"
)

// CheckKeyUser fails unless u may use private keys: the normal user or
// wheel, as libhal requires.
func CheckKeyUser(u User) error {
	switch u {
	case UserNormal, UserWheel:
		return nil
	case UserNone:
		return ErrNotLoggedIn
	default:
		return fmt.Errorf("%w: %s cannot use keys", ErrForbidden, u)
	}
}

// UUID names a key. New keys get a random (version 4) UUID.
type UUID [16]byte

// NewUUID returns a version 4 UUID read from r (crypto/rand when r is nil).
func NewUUID(r io.Reader) (UUID, error) {
	if r == nil {
		r = rand.Reader
	}
	var u UUID
	if _, err := io.ReadFull(r, u[:]); err != nil {
		return UUID{}, fmt.Errorf("new uuid: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u, nil
}

// ParseUUID parses the canonical 8-4-4-4-12 hexadecimal form.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("%w: %s", ErrBadUUID, quote.Short(s))
	}
	if _, err := hex.Decode(u[:], []byte(strings.ReplaceAll(s, "-", ""))); err != nil {
		return u, fmt.Errorf("%w: %s", ErrBadUUID, quote.Short(s))
	}
	return u, nil
}

func (u UUID) String() string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// IsZero reports whether u is the all-zero UUID, which names no key.
func (u UUID) IsZero() bool { return u == UUID{} }

// User is a libhal user. Values are the libhal wire values.
type User uint32

const (
	UserNone   User = 0
	UserNormal User = 1
	UserSO     User = 2
	UserWheel  User = 3
)

func (u User) String() string {
	switch u {
	case UserNone:
		return "none"
	case UserNormal:
		return "user"
	case UserSO:
		return "so"
	case UserWheel:
		return "wheel"
	}
	return fmt.Sprintf("user(%d)", uint32(u))
}

// KeyType is a libhal key type. Values are the libhal wire values.
type KeyType uint32

const (
	KeyTypeNone           KeyType = 0
	KeyTypeRSAPrivate     KeyType = 1
	KeyTypeRSAPublic      KeyType = 2
	KeyTypeECPrivate      KeyType = 3
	KeyTypeECPublic       KeyType = 4
	KeyTypeHashsigPrivate KeyType = 5
	KeyTypeHashsigPublic  KeyType = 6
	// KeyTypeAES is a secret AES key: the emulated HSM's own, libhal has
	// none. The value is out of libhal's range, as the extensions are.
	KeyTypeAES KeyType = 0x10001
)

var keyTypeNames = map[KeyType]string{
	KeyTypeNone:           "none",
	KeyTypeRSAPrivate:     "rsa-private",
	KeyTypeRSAPublic:      "rsa-public",
	KeyTypeECPrivate:      "ec-private",
	KeyTypeECPublic:       "ec-public",
	KeyTypeHashsigPrivate: "hashsig-private",
	KeyTypeHashsigPublic:  "hashsig-public",
	KeyTypeAES:            "aes",
}

func (t KeyType) String() string {
	if s, ok := keyTypeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("keytype(%d)", uint32(t))
}

// ParseKeyType is the inverse of String, for the names it gives known types.
func ParseKeyType(s string) (KeyType, error) {
	for t, name := range keyTypeNames {
		if name == s && t != KeyTypeNone {
			return t, nil
		}
	}
	return KeyTypeNone, fmt.Errorf("unknown key type %q", s)
}

// IsPrivate reports whether keys of this type have a private half.
func (t KeyType) IsPrivate() bool {
	return t == KeyTypeRSAPrivate || t == KeyTypeECPrivate || t == KeyTypeHashsigPrivate
}

// Curve is a libhal elliptic curve name. Values are the libhal wire values.
type Curve uint32

const (
	CurveNone Curve = 0
	CurveP256 Curve = 1
	CurveP384 Curve = 2
	CurveP521 Curve = 3
)

func (c Curve) String() string {
	switch c {
	case CurveNone:
		return "none"
	case CurveP256:
		return "p256"
	case CurveP384:
		return "p384"
	case CurveP521:
		return "p521"
	}
	return fmt.Sprintf("curve(%d)", uint32(c))
}

// ParseCurve accepts p256, p384, p521 (also P-256 and the like).
func ParseCurve(s string) (Curve, error) {
	switch strings.ToLower(strings.ReplaceAll(s, "-", "")) {
	case "p256":
		return CurveP256, nil
	case "p384":
		return CurveP384, nil
	case "p521":
		return CurveP521, nil
	}
	return CurveNone, fmt.Errorf("unknown curve %s (want p256, p384 or p521)", quote.Short(s))
}

// Flags are libhal key flags. Values are the libhal wire values.
type Flags uint32

const (
	FlagDigitalSignature Flags = 1 << 0
	FlagKeyEncipherment  Flags = 1 << 1
	FlagDataEncipherment Flags = 1 << 2
	// FlagToken keys persist in the flash keystore; others are volatile.
	FlagToken  Flags = 1 << 3
	FlagPublic Flags = 1 << 4
	// FlagExportable keys may leave the HSM, wrapped.
	FlagExportable Flags = 1 << 5

	allFlags = FlagDigitalSignature | FlagKeyEncipherment | FlagDataEncipherment |
		FlagToken | FlagPublic | FlagExportable
)

var flagNames = []struct {
	f    Flags
	name string
}{
	{FlagDigitalSignature, "digitalsignature"},
	{FlagKeyEncipherment, "keyencipherment"},
	{FlagDataEncipherment, "dataencipherment"},
	{FlagToken, "token"},
	{FlagPublic, "public"},
	{FlagExportable, "exportable"},
}

// String lists the flag names, comma-separated, as cryptech_backup does.
func (f Flags) String() string {
	var names []string
	for _, n := range flagNames {
		if f&n.f != 0 {
			names = append(names, n.name)
		}
	}
	if rest := f &^ allFlags; rest != 0 {
		names = append(names, fmt.Sprintf("0x%x", uint32(rest)))
	}
	return strings.Join(names, ",")
}

// Valid reports whether f holds only known flags.
func (f Flags) Valid() bool { return f&^allFlags == 0 }

// KEKEncryption names how a transit KEK is encrypted to a KEKEK.
type KEKEncryption string

const (
	// KEKOAEPSHA256 is RSA-OAEP with SHA-256 and MGF1-SHA-256: the default.
	KEKOAEPSHA256 KEKEncryption = "rsa-oaep-sha256"
	// KEKOAEPSHA1 is RSA-OAEP with SHA-1 and MGF1-SHA-1, the only OAEP of
	// SoftHSM2 2.6.
	KEKOAEPSHA1 KEKEncryption = "rsa-oaep-sha1"
	// KEKPKCS1v15 is RSA PKCS#1 v1.5 type 2 padding, as libhal does. Legacy:
	// use only when asked for.
	KEKPKCS1v15 KEKEncryption = "rsa-pkcs1v15"
)

// KEKEncryptions lists the KEK encryptions, strongest first.
var KEKEncryptions = []KEKEncryption{KEKOAEPSHA256, KEKOAEPSHA1, KEKPKCS1v15}

// ParseKEKEncryption checks that s names a known KEK encryption.
func ParseKEKEncryption(s string) (KEKEncryption, error) {
	for _, e := range KEKEncryptions {
		if string(e) == s {
			return e, nil
		}
	}
	return "", fmt.Errorf("%w: unknown KEK encryption %s", ErrBadArguments, quote.Short(s))
}

// KeyInfo describes a key: everything about it that is public.
type KeyInfo struct {
	UUID  UUID
	Type  KeyType
	Curve Curve
	// Bits is the RSA modulus size, or the curve's size for EC keys.
	Bits  int
	Flags Flags
	Label string
	// PublicKey is the SubjectPublicKeyInfo, DER.
	PublicKey []byte
	// Hashsig describes an HSS key; nil for other keys.
	Hashsig *HashsigInfo
}

// HashsigInfo describes an HSS key (RFC 8554).
type HashsigInfo struct {
	// L is the number of levels.
	L int
	// Levels are the LMS and LM-OTS types of each level, top first. A public
	// key names only its top level, so it has one entry.
	Levels []hashsig.Level
	// Remaining is how many signatures a private key can still make (zero
	// for a public key).
	Remaining uint64
	// RemainingUnknown: the backend cannot tell Remaining (a Cryptech HSM
	// over libhal's RPC).
	RemainingUnknown bool
}

// Errors callers branch on. Backends wrap them with context; test with
// errors.Is.
var (
	ErrBadArguments   = errors.New("bad arguments")
	ErrBadUUID        = errors.New("malformed UUID")
	ErrKeyNotFound    = errors.New("key not found")
	ErrKeyNameInUse   = errors.New("a different key already has this UUID")
	ErrForbidden      = errors.New("forbidden")
	ErrNotLoggedIn    = errors.New("not logged in")
	ErrPINIncorrect   = errors.New("PIN incorrect")
	ErrNotExportable  = errors.New("key is not exportable")
	ErrUnsupportedKey = errors.New("unsupported key")
	ErrUnsupported    = errors.New("not supported by this HSM")
	// ErrDecryption: a KEK or a wrapped key could not be recovered. Which step
	// failed is deliberately not told.
	ErrDecryption       = errors.New("decryption failed")
	ErrInvalidSignature = errors.New("invalid signature")
	ErrKeystoreFull     = errors.New("keystore full")
	// ErrDamaged: the token holds storage it cannot read (the emulated
	// HSM's flash blocks that failed their CRC; a PKCS#11 token's keys it
	// cannot use), so keys in it are missing. See DamageReporter.
	ErrDamaged = errors.New("keys cannot be read")
	// ErrTamper: the master key is gone (zeroized), so the keystore cannot be
	// read until it is restored.
	ErrTamper = errors.New("master key not set (tamper): keystore unreadable")
	// ErrKeyExhausted: a hash-based key has no signature left to make or to
	// give away (HASHSIG_KEY_EXHAUSTED).
	ErrKeyExhausted = errors.New("hash-based key exhausted")
	// ErrHashsigRangeUsed: an HSS key part may not be stored, as the token
	// holds a part of that key, or once received signatures of it that the
	// part holds: storing it could sign with a one-time key twice. Over
	// libhal's RPC it is KEY_NAME_IN_USE, libhal's answer to a key it
	// already has; errors.Is(err, ErrKeyNameInUse) is false, since no key
	// need have the UUID.
	ErrHashsigRangeUsed = errors.New("this HSM already held these HSS signatures")
)
