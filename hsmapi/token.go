package hsmapi

import (
	"context"
	"crypto"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hashsig"
)

// Token is what the transfer protocols need from an HSM, whichever HSM it is:
// the emulated one (hsm.Session), a remote libhal HSM over RPC (rpc.Client),
// or a PKCS#11 token (p11.Token). It is roughly the libhal pkey API, keyed
// by UUID instead of handles.
//
// A backend that cannot do something returns an error wrapping
// [ErrUnsupported].
type Token interface {
	// Login authenticates this session as user.
	Login(ctx context.Context, user User, pin []byte) error
	// Logout ends the login; volatile keys of the session are dropped.
	Logout(ctx context.Context) error

	// GenerateKey makes a new RSA or EC key pair.
	GenerateKey(ctx context.Context, req GenerateRequest) (KeyInfo, error)
	// Key describes one key, or returns ErrKeyNotFound.
	Key(ctx context.Context, id UUID) (KeyInfo, error)
	// Keys lists the keys that match f, ordered by UUID. Secret keys
	// (KeyTypeAES) are listed only when f.Type asks for them: the transfer
	// and libhal's clients know key pairs alone.
	Keys(ctx context.Context, f Filter) ([]KeyInfo, error)
	// DeleteKey removes a key.
	DeleteKey(ctx context.Context, id UUID) error

	// Sign signs digest, the hash of a message, like crypto.Signer: opts
	// names the hash, and *rsa.PSSOptions asks for RSA-PSS. RSA signatures
	// are PKCS#1 v1.5 otherwise; ECDSA signatures are ASN.1 DER. An HSS key
	// signs the message itself (opts.HashFunc() is 0, digest is the
	// message), with the RFC 8554 signature format.
	Sign(ctx context.Context, id UUID, digest []byte, opts crypto.SignerOpts) ([]byte, error)
	// Verify checks a signature made as Sign makes them, returning
	// ErrInvalidSignature when it does not verify.
	Verify(ctx context.Context, id UUID, digest, sig []byte, opts crypto.SignerOpts) error

	// KEKEncryptions lists the KEK encryptions this token can both produce
	// and undo, strongest first.
	KEKEncryptions(ctx context.Context) ([]KEKEncryption, error)
	// Export wraps an exportable private key for the holder of a KEKEK.
	Export(ctx context.Context, req ExportRequest) (WrappedKey, error)
	// Import unwraps a key exported to one of this token's KEKEKs, or loads
	// a public key.
	Import(ctx context.Context, req ImportRequest) (ImportResult, error)

	// Close logs out and releases the session; it is safe to call twice.
	Close() error
}

// BatchImporter is implemented by tokens that can import several keys as one
// atomic step, all of them or none even across a crash. Callers fall back to
// importing one at a time and deleting what they stored on failure, also
// when ImportBatch returns an error wrapping ErrUnsupported (a remote token
// that turns out not to offer it).
type BatchImporter interface {
	ImportBatch(ctx context.Context, reqs []ImportRequest) ([]ImportResult, error)
}

// AttributeReader is implemented by tokens whose keys carry attributes
// besides the label: the PKCS#11 attributes a key had on a PKCS#11 token
// (see pkcs11attr.go), or whatever a libhal client set. Export carries them
// in the bundle so that a key arrives as it left.
type AttributeReader interface {
	// KeyAttributes returns every attribute of a key but its label,
	// ordered by type.
	KeyAttributes(ctx context.Context, id UUID) ([]Attribute, error)
}

// PrivateKeyLoader is implemented by tokens that take a private key in the
// clear, as libhal's PKEY_LOAD takes a PKCS#8 PrivateKeyInfo. Such a key was
// not made inside the token, and the token says so (CKA_LOCAL false). The
// soft KEKEK of cryptech_backup is loaded this way for one import and
// deleted again.
type PrivateKeyLoader interface {
	LoadPrivateKey(ctx context.Context, req LoadRequest) (KeyInfo, error)
}

// DamageReporter is implemented by tokens that know of storage they cannot
// read (the emulated HSM's flash blocks that failed their CRC, directly or
// over RPC): keys in it are missing from Keys, and an export would leave
// them out.
type DamageReporter interface {
	// DamagedBlocks lists the damaged flash blocks, in order.
	DamagedBlocks(ctx context.Context) ([]int, error)
}

// UnreadableReporter is implemented by tokens that leave out of Keys some
// keys they cannot use (a PKCS#11 token's keys of other types, a private
// key whose public half it cannot find): an export would silently lack the
// exportable ones.
type UnreadableReporter interface {
	// UnreadableKeys describes each such key, one line each.
	UnreadableKeys(ctx context.Context) ([]string, error)
}

// PINSetter is implemented by tokens whose PINs a logged-in user can
// change (libhal's SET_PIN).
type PINSetter interface {
	SetPIN(ctx context.Context, user User, pin []byte) error
}

// Identifier is implemented by tokens that can tell which HSM they are:
// the emulated HSM, directly or over RPC from this project's server (a
// Cryptech HSM's RPC cannot tell). The PKCS#11 face shows it as the
// token's CK_TOKEN_INFO.
type Identifier interface {
	Identity(ctx context.Context) (Identity, error)
}

// Identity is what an HSM says it is. Serial stays the same for the life
// of the HSM; Label is its name, which its owner may change.
type Identity struct {
	Manufacturer, Model, Serial, Label string
}

// TokenInitializer is implemented by tokens that PKCS#11's C_InitToken can
// re-initialize: the emulated HSM in-process. Given the SO's PIN (checked
// as a login checks it, with the HSM's wrong-PIN delay), it deletes every
// key and names the HSM label; its PINs, and the HSS history that keeps a
// one-time signature key's used parts from coming back, stay.
type TokenInitializer interface {
	InitToken(ctx context.Context, soPIN []byte, label string) error
}

// AttributeWriter is implemented by tokens whose keys' attributes can be
// set and deleted (libhal's PKEY_SET_ATTRIBUTES).
type AttributeWriter interface {
	SetAttributes(ctx context.Context, id UUID, attrs []Attribute) error
}

// KEKEKGenerator is implemented by tokens that make a better KEKEK than
// GenerateKey with the KEKEK's flags can: a PKCS#11 token, whose KEKEK
// then cannot be changed and keeps what it unwraps from being read.
type KEKEKGenerator interface {
	GenerateKEKEK(ctx context.Context, bits int, label string) (KeyInfo, error)
}

// KEKEKVetter is implemented by tokens whose keys can do more than their
// flags tell: a PKCS#11 token, where an RSA key with keyencipherment
// (CKA_UNWRAP) may also sign with raw RSA, be changed, or unwrap a
// bundle's KEK as a secret that can be read. KEKEKFlaws says how a key
// would give a bundle's KEK away to whoever has the token's user PIN; none
// for a KEKEK as GenerateKEKEK makes it. The emulated HSM, directly or over
// RPC, is no such token: a key does what its flags let it, no flag lets a
// user decrypt with an RSA key (libhal has neither a decrypt call nor raw
// RSA), and a KEK is unwrapped only inside an import.
type KEKEKVetter interface {
	KEKEKFlaws(ctx context.Context, id UUID) ([]string, error)
}

// UnusableLister is implemented by tokens that leave out of Keys the keys
// they cannot use (a PKCS#11 token's keys of other types, say Ed25519), so
// that a listing can name them and none is missing unsaid.
type UnusableLister interface {
	UnusableKeys(ctx context.Context) ([]string, error)
}

// LoadRequest asks to store a private key given in the clear.
type LoadRequest struct {
	// PKCS8 is the PrivateKeyInfo (DER). The token does not keep this
	// buffer; the caller wipes it.
	PKCS8 []byte
	// Flags without FlagToken make a volatile key, gone at logout.
	Flags      Flags
	Label      string
	Attributes []Attribute
}

// GenerateRequest asks for a new key pair.
type GenerateRequest struct {
	// Type is KeyTypeRSAPrivate, KeyTypeECPrivate or KeyTypeHashsigPrivate.
	Type KeyType
	// Bits is the RSA modulus size: 2048, 3072 or 4096. (Keys of
	// MinRSABits to MaxRSABits made elsewhere can be loaded and imported.)
	Bits int
	// Curve is the EC curve.
	Curve Curve
	// Levels are the LMS and LM-OTS types of an HSS key, top first.
	Levels []hashsig.Level
	Flags  Flags
	Label  string
	// Attributes are stored with the key (see AttributeReader), never the
	// label, which is Label. The emulated HSM stores them in the same
	// keystore write as the key, so that no crash leaves the key without
	// them; a token that cannot (libhal over RPC) sets them right after,
	// deleting the key should that fail.
	Attributes []Attribute
}

// Filter selects keys: a key matches when its type and curve equal Type and
// Curve (zero matches any), its flags under Mask equal Flags, and it has
// each of Attributes with that value.
type Filter struct {
	Type       KeyType
	Curve      Curve
	Mask       Flags
	Flags      Flags
	Attributes []Attribute
}

// Matches reports whether k passes the filter, leaving out Attributes,
// which KeyInfo does not carry (but for the label). A secret key matches
// only a filter of its type (see Token.Keys).
func (f Filter) Matches(k KeyInfo) bool {
	return (f.Type == KeyTypeNone && k.Type != KeyTypeAES || f.Type == k.Type) &&
		(f.Curve == CurveNone || f.Curve == k.Curve) &&
		k.Flags&f.Mask == f.Flags
}

// ExportRequest asks to wrap one private key for a KEKEK.
type ExportRequest struct {
	// Key is the exportable private key to wrap.
	Key UUID
	// KEKEKPublicKey is the destination's public KEKEK, parsed once for
	// the whole export (ParseKEKEK). (ImportRequest.KEKEKUUID names the
	// private half on the destination.)
	KEKEKPublicKey *PublicKEKEK
	// Encryption is how the transit KEK is encrypted to the KEKEK.
	Encryption KEKEncryption
	// Binding, when not nil, is bound to the wrapped key: the export carries
	// a Tag that only the KEK can make, and Import with the same Binding
	// fails unless it matches. Backup binds the bundle's metadata this way so
	// that a change to any field is refused.
	Binding []byte
}

// KEKEK returns the request's KEKEK, refusing a request without one.
func (r ExportRequest) KEKEK() (*PublicKEKEK, error) {
	if r.KEKEKPublicKey == nil {
		return nil, fmt.Errorf("%w: no KEKEK to export to", ErrBadArguments)
	}
	return r.KEKEKPublicKey, nil
}

// WrappedKey is an exported private key.
type WrappedKey struct {
	// EncryptedKey is an EncryptedPrivateKeyInfo (DER): the PrivateKeyInfo
	// wrapped under the transit KEK with id-aes256-wrap-pad (see
	// MarshalEncryptedKey). Bundles call it "pkcs8", as libhal does.
	EncryptedKey []byte
	// EncryptedKEK is an EncryptedPrivateKeyInfo (DER) too: the transit KEK
	// encrypted to the KEKEK (see MarshalEncryptedKEK). Bundles call it
	// "kek".
	EncryptedKEK []byte
	// Tag authenticates the ExportRequest's Binding; nil without one.
	Tag []byte
}

// ImportRequest asks to store one key: a private key wrapped by Export
// (Wrapped.EncryptedKey set) or a public key (only PublicKey set).
type ImportRequest struct {
	// KEKEKUUID names this token's RSA private key that can decrypt
	// Wrapped.EncryptedKEK; it must carry FlagKeyEncipherment.
	KEKEKUUID  UUID
	Wrapped    WrappedKey
	Encryption KEKEncryption
	// Binding must equal the exporter's; nil skips the check (bundles of
	// other tools carry no tag).
	Binding []byte

	// UUID names the new key; zero asks for a fresh one.
	UUID UUID
	// Label is any bytes CheckRawLabel accepts: a key arrives with the
	// label it left with, also one a libhal client set to bytes no file
	// or command line may give (GenerateRequest and LoadRequest keep
	// CheckLabel's rules).
	Label string
	Flags Flags
	// PublicKey is the key's SubjectPublicKeyInfo (DER). For a private key it
	// is optional; when given, the unwrapped key must match it.
	PublicKey []byte
	// Attributes are stored with the key exactly as given (see
	// AttributeReader); never the label, which is Label.
	Attributes []Attribute
}

// ImportResult tells what Import did.
type ImportResult struct {
	Key KeyInfo
	// Present is true when the same key was already stored under that UUID,
	// so nothing was stored.
	Present bool
	// Warnings are what the operator should know of the key's arrival, one
	// line each (a PKCS#11 token: another key there has its CKA_ID).
	Warnings []string
}

// SecretKeyGenerator is implemented by tokens that make secret (AES) keys
// inside, from their own random source.
type SecretKeyGenerator interface {
	GenerateSecretKey(ctx context.Context, req SecretKeyRequest) (KeyInfo, error)
}

// SecretKeyLoader is implemented by tokens that store a secret (AES) key
// given in the clear, as PKCS#11's C_CreateObject does: marked not made
// inside (CKA_LOCAL false). req.Bits is len(value)*8.
type SecretKeyLoader interface {
	LoadSecretKey(ctx context.Context, req SecretKeyRequest, value []byte) (KeyInfo, error)
}

// KeyWrapper is implemented by tokens that wrap keys under their keys, and
// unwrap such blobs into new keys, as PKCS#11's C_WrapKey and C_UnwrapKey
// do (see docs/key-policy.md for what each key may do).
type KeyWrapper interface {
	// WrapKey wraps key under wrappingKey: a secret key as its value, a
	// private key as its PKCS#8 PrivateKeyInfo.
	WrapKey(ctx context.Context, wrappingKey, key UUID, mech WrapMechanism) ([]byte, error)
	// UnwrapKey stores what wrapped holds as a new key.
	UnwrapKey(ctx context.Context, unwrappingKey UUID, mech WrapMechanism, wrapped []byte, req UnwrapRequest) (KeyInfo, error)
}

// Encrypter is implemented by tokens that encrypt data with a key's public
// half (RSA-OAEP).
type Encrypter interface {
	Encrypt(ctx context.Context, key UUID, p OAEPParams, plaintext []byte) ([]byte, error)
}

// Decrypter is implemented by tokens that decrypt data with a private key
// (RSA-OAEP).
type Decrypter interface {
	Decrypt(ctx context.Context, key UUID, p OAEPParams, ciphertext []byte) ([]byte, error)
}

// TrustSetter is implemented by tokens whose security officer marks the
// keys that may wrap keys with CKA_WRAP_WITH_TRUSTED (CKA_TRUSTED).
type TrustSetter interface {
	SetTrusted(ctx context.Context, key UUID, trusted bool) error
}

// TrustLister is implemented by tokens that show their security officer
// the keys it may mark trusted: every token key that wraps with its public
// half or is a secret key, with its stored attributes. The SO uses no keys
// and Keys, Key and KeyAttributes refuse it; a face that lets the SO set
// CKA_TRUSTED (PKCS#11's C_SetAttributeValue) reads the keys from here.
// Nothing secret is listed: a key pair's entry is its KeyInfo and its
// attributes, never its private half.
type TrustLister interface {
	TrustCandidates(ctx context.Context) ([]TrustCandidate, error)
}

// TrustCandidate is one key TrustLister shows, ordered by UUID.
type TrustCandidate struct {
	Key        KeyInfo
	Attributes []Attribute
}

// RandomReader is implemented by tokens that give random bytes of the
// HSM's own: the emulated HSM's TRNG, a libhal HSM's GET_RANDOM. A face
// that hands out randomness (PKCS#11's C_GenerateRandom) takes it from
// here, never from its own process.
type RandomReader interface {
	// Random fills p.
	Random(ctx context.Context, p []byte) error
}

// PSSSigner is implemented by tokens that can say whether Sign takes
// *rsa.PSSOptions. A token that does not implement it is taken to sign
// RSA with PKCS#1 v1.5 only, as libhal does over its RPC, so that a face
// never offers what its token would refuse.
type PSSSigner interface {
	SignsPSS() bool
}
