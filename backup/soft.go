package backup

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
	"github.com/hsmkit/cryptech-backup/internal/quote"
)

// A soft KEKEK is cryptech_backup's "setup --soft-backup": the KEKEK is made
// in software and its private half travels in the KEKEK file, wrapped under
// a key derived from a passphrase, so that a backup can be restored into an
// HSM that does not exist yet. The bundle carries the same fields, and
// import loads the private half into the destination for the length of
// one import.

// Errors callers branch on.
var (
	// ErrPassphrase: the passphrase does not open the soft KEKEK, or the
	// file's wrapped KEKEK was changed. The two cannot be told apart.
	ErrPassphrase = errors.New("wrong passphrase or damaged KEKEK file")
	// ErrWeakPassphrase: a new soft KEKEK's passphrase is too short.
	ErrWeakPassphrase = errors.New("passphrase too short")
	// ErrNoPassphrase: a soft bundle needs a passphrase and none can be had.
	ErrNoPassphrase = errors.New("the bundle was made for a soft KEKEK and no passphrase was given")
)

// Passphrase lengths, in bytes. A new soft KEKEK's passphrase alone guards
// the keys of every bundle made for it against whoever holds the file, with
// all the time in the world, so it must be long: 15 is NIST SP 800-63B-4's
// minimum for a password that is the only factor. Import takes any length
// up to the maximum, since cryptech_backup set no minimum.
const (
	MinPassphraseLength = 15
	MaxPassphraseLength = 1024
)

// softComment is what cryptech_backup writes in a soft KEKEK file.
const softComment = "KEKEK software keypair"

// cryptech_backup's KDF: PBKDF2-HMAC-SHA256 over a 16-byte salt, 8000
// iterations, a 32-byte AES key.
const (
	legacyIterations = 8000
	saltSize         = 16
	maxSaltSize      = 64
	wrapKeySize      = 32
)

// KDF describes the modern key derivation of a soft KEKEK file: Argon2id
// (RFC 9106) with these parameters. A file without it uses cryptech_backup's
// PBKDF2 over kekek_salt.
type KDF struct {
	// Memory is in KiB.
	Memory  uint32      `json:"memory"`
	Name    string      `json:"name"`
	Salt    Base64Lines `json:"salt"`
	Threads uint32      `json:"threads"`
	Time    uint32      `json:"time"`
}

const kdfArgon2id = "argon2id"

// DefaultKDF is what setup writes: RFC 9106's second recommended option
// (t=3, 64 MiB, 4 lanes): 0.38 s a derivation on this project's 2-core
// machine, so each guess at the passphrase costs that much too.
var DefaultKDF = KDF{Name: kdfArgon2id, Time: 3, Memory: 64 << 10, Threads: 4}

// Bounds a reader puts on the parameters, so that a file cannot make an
// import take gigabytes or minutes before the passphrase is even checked.
const (
	maxKDFMemory  = 1 << 20 // KiB: 1 GiB
	maxKDFTime    = 16
	maxKDFThreads = 16
)

func (k *KDF) check() error {
	switch {
	case k.Name != kdfArgon2id:
		return fmt.Errorf("unknown KDF %s", quote.Short(k.Name))
	case len(k.Salt) < saltSize || len(k.Salt) > maxSaltSize:
		return fmt.Errorf("a %d-byte salt, not %d to %d", len(k.Salt), saltSize, maxSaltSize)
	case k.Time < 1 || k.Time > maxKDFTime:
		return fmt.Errorf("time %d, not 1 to %d", k.Time, maxKDFTime)
	case k.Threads < 1 || k.Threads > maxKDFThreads:
		return fmt.Errorf("threads %d, not 1 to %d", k.Threads, maxKDFThreads)
	case k.Memory < 8*k.Threads || k.Memory > maxKDFMemory:
		return fmt.Errorf("memory %d KiB, not 8 per thread to %d", k.Memory, maxKDFMemory)
	}
	return nil
}

// softKEKEK is the part of a KEKEK file or bundle that carries a soft
// KEKEK's private half.
type softKEKEK struct {
	kdf    *KDF
	pkcs8  []byte // EncryptedPrivateKeyInfo, id-aes256-wrap-pad
	salt   []byte // cryptech_backup's PBKDF2 salt, when kdf is nil
	pubkey []byte
}

func (s softKEKEK) isSoft() bool {
	return s.kdf != nil || len(s.pkcs8) != 0 || len(s.salt) != 0
}

// IsSoft reports whether the file describes a soft KEKEK.
func (f *KEKEKFile) IsSoft() bool { return f.soft().isSoft() }

// IsSoft reports whether the bundle was made for a soft KEKEK.
func (b *Bundle) IsSoft() bool { return b.soft().isSoft() }

func (f *KEKEKFile) soft() softKEKEK {
	return softKEKEK{kdf: f.KEKEKKDF, pkcs8: f.KEKEKPKCS8, salt: f.KEKEKSalt, pubkey: f.KEKEKPubkey}
}

func (b *Bundle) soft() softKEKEK {
	return softKEKEK{kdf: b.KEKEKKDF, pkcs8: b.KEKEKPKCS8, salt: b.KEKEKSalt, pubkey: b.KEKEKPubkey}
}

// checkKEKEKName checks how a file names its KEKEK: a soft one by its
// wrapped private half (it has no UUID: it gets one when it is loaded), any
// other by kekek_uuid.
func checkKEKEKName(uuid string, s softKEKEK) error {
	if !s.isSoft() {
		if err := checkUUID(uuid); err != nil {
			return fmt.Errorf("%w: kekek_uuid: %v", ErrFormat, err)
		}
		return nil
	}
	switch {
	case uuid != "":
		return fmt.Errorf("%w: kekek_uuid in a file for a soft KEKEK, which has none", ErrFormat)
	case len(s.pkcs8) == 0:
		return fmt.Errorf("%w: kekek_salt or kekek_kdf without kekek_pkcs8", ErrFormat)
	case (s.kdf == nil) == (len(s.salt) == 0):
		return fmt.Errorf("%w: a soft KEKEK needs exactly one of kekek_salt (cryptech_backup) and kekek_kdf", ErrFormat)
	case s.kdf == nil && (len(s.salt) < saltSize || len(s.salt) > maxSaltSize):
		return fmt.Errorf("%w: kekek_salt has %d bytes, not %d to %d", ErrFormat, len(s.salt), saltSize, maxSaltSize)
	}
	if s.kdf != nil {
		if err := s.kdf.check(); err != nil {
			return fmt.Errorf("%w: kekek_kdf: %v", ErrFormat, err)
		}
	}
	if _, err := hsmapi.ParseEncryptedKey(s.pkcs8); err != nil {
		return fmt.Errorf("%w: kekek_pkcs8: %v", ErrFormat, err)
	}
	return nil
}

// wrapKey derives the AES-256 key that wraps the KEKEK from the passphrase.
func (s softKEKEK) wrapKey(passphrase []byte) ([]byte, error) {
	if s.kdf == nil {
		// crypto/pbkdf2 takes a string, as the PINs' derivation does: that
		// copy of the passphrase cannot be wiped.
		return pbkdf2.Key(sha256.New, string(passphrase), s.salt, legacyIterations, wrapKeySize)
	}
	return argon2.IDKey(passphrase, s.kdf.Salt, s.kdf.Time, s.kdf.Memory, uint8(s.kdf.Threads), wrapKeySize), nil
}

// privateKey unwraps the KEKEK's PrivateKeyInfo; the caller wipes it.
func (s softKEKEK) privateKey(passphrase []byte) ([]byte, error) {
	if len(passphrase) > MaxPassphraseLength {
		return nil, fmt.Errorf("%w: the passphrase is longer than %d bytes", ErrPassphrase, MaxPassphraseLength)
	}
	wrapped, err := hsmapi.ParseEncryptedKey(s.pkcs8)
	if err != nil {
		return nil, fmt.Errorf("%w: kekek_pkcs8: %v", ErrPassphrase, err)
	}
	key, err := s.wrapKey(passphrase)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	// The unwrap checks its integrity value in constant time.
	der, err := keywrap.UnwrapPad(key, wrapped)
	if err != nil {
		return nil, ErrPassphrase
	}
	return der, nil
}

// SoftOptions tune NewSoftKEKEK.
type SoftOptions struct {
	// Bits is the KEKEK's size (DefaultKEKEKBits if zero).
	Bits int
	// Legacy writes cryptech_backup's file: its fields and its KDF
	// (PBKDF2-HMAC-SHA256, 8000 iterations), which it can restore. Else the
	// file is version 1 with Argon2id, which cryptech_backup refuses.
	Legacy bool
	// KDF, if set, replaces DefaultKDF's parameters (its salt is made
	// fresh). Tests use cheap ones.
	KDF *KDF
}

// NewSoftKEKEK makes a KEKEK in software, from crypto/rand, and writes its
// private half into the KEKEK file under passphrase. No HSM takes part.
func NewSoftKEKEK(passphrase []byte, opts SoftOptions) (*KEKEKFile, error) {
	f, err := newSoftKEKEK(passphrase, opts)
	if err != nil {
		return nil, fmt.Errorf("setup: soft KEKEK: %w", err)
	}
	return f, nil
}

func newSoftKEKEK(passphrase []byte, opts SoftOptions) (*KEKEKFile, error) {
	if len(passphrase) < MinPassphraseLength {
		return nil, fmt.Errorf("%w: %d bytes, at least %d needed", ErrWeakPassphrase, len(passphrase), MinPassphraseLength)
	}
	if len(passphrase) > MaxPassphraseLength {
		return nil, fmt.Errorf("the passphrase is longer than %d bytes", MaxPassphraseLength)
	}
	bits := opts.Bits
	if bits == 0 {
		bits = DefaultKEKEKBits
	}
	if bits != 2048 && bits != 3072 && bits != 4096 {
		return nil, fmt.Errorf("%w: a %d-bit KEKEK; 2048, 3072 or 4096", hsmapi.ErrUnsupportedKey, bits)
	}
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	f := &KEKEKFile{Comment: softComment}
	var s softKEKEK
	if opts.Legacy {
		s.salt, f.KEKEKSalt = salt, salt
	} else {
		kdf := DefaultKDF
		if opts.KDF != nil {
			kdf = *opts.KDF
		}
		kdf.Salt = salt
		if err := kdf.check(); err != nil {
			return nil, err
		}
		s.kdf, f.KEKEKKDF = &kdf, &kdf
		f.Version = Version
		// Whoever restores it loads the KEKEK into an HSM of their choice;
		// these are what such an HSM undoes here (SoftHSM2 2.6 does SHA-1
		// only, and then needs a bundle made from a SoftHSM2 source).
		f.KEKEncryptions = []hsmapi.KEKEncryption{hsmapi.KEKOAEPSHA256, hsmapi.KEKOAEPSHA1}
	}
	// The key's numbers are Go big integers, which cannot be cleared (as in
	// package hsm); the DER and the wrapping key are.
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, err
	}
	if f.KEKEKPubkey, err = x509.MarshalPKIXPublicKey(&priv.PublicKey); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	key, err := s.wrapKey(passphrase)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	wrapped, err := keywrap.WrapPad(key, der)
	if err != nil {
		return nil, err
	}
	f.KEKEKPKCS8 = hsmapi.MarshalEncryptedKey(wrapped)
	return f, nil
}

// softKEKEKFlags: the loaded KEKEK only unwraps, and is volatile, so that
// it goes at logout even if deleting it fails or the process dies.
const softKEKEKFlags = hsmapi.FlagKeyEncipherment

// loadSoftKEKEK opens a soft KEKEK with the passphrase and loads its private
// half into tok as a volatile key. The caller must call the returned
// function, which deletes the key again, whatever happens.
func loadSoftKEKEK(ctx context.Context, tok hsmapi.Token, s softKEKEK, ask func(context.Context) ([]byte, error)) (hsmapi.UUID, func() error, error) {
	loader, ok := tok.(hsmapi.PrivateKeyLoader)
	if !ok {
		return hsmapi.UUID{}, nil, fmt.Errorf("%w: the bundle was made for a soft KEKEK, and this HSM cannot load a private key", hsmapi.ErrUnsupported)
	}
	if ask == nil {
		return hsmapi.UUID{}, nil, ErrNoPassphrase
	}
	pass, err := ask(ctx)
	defer clear(pass)
	if err != nil {
		return hsmapi.UUID{}, nil, err
	}
	der, err := s.privateKey(pass)
	if err != nil {
		return hsmapi.UUID{}, nil, err
	}
	defer clear(der)
	k, err := loader.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: softKEKEKFlags})
	if err != nil {
		return hsmapi.UUID{}, nil, fmt.Errorf("load the soft KEKEK: %w", err)
	}
	remove := func() error {
		// Also after an interrupt: the key must not outlive the import.
		if err := tok.DeleteKey(context.WithoutCancel(ctx), k.UUID); err != nil {
			return fmt.Errorf("delete the loaded soft KEKEK %s (it is volatile and goes at logout): %w", k.UUID, err)
		}
		return nil
	}
	if !hsmapi.SamePublicKey(k.PublicKey, s.pubkey) {
		return hsmapi.UUID{}, nil, errors.Join(fmt.Errorf("%w: its private key is not kekek_pubkey's", ErrPassphrase), remove())
	}
	if err := checkKEKEK(k); err != nil {
		return hsmapi.UUID{}, nil, errors.Join(err, remove())
	}
	return k.UUID, remove, nil
}
