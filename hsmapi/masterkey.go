package hsmapi

import (
	"context"
	"errors"
)

// MasterKeyCheckSize is the size of a master key's check value
// (keyshare.CheckValue).
const MasterKeyCheckSize = 8

// MasterKeyStatus is what `masterkey status` shows.
type MasterKeyStatus struct {
	// Set: the master key memory holds a key (not zeroized).
	Set bool
	// CheckValue is the key's, or, when the key is not set, the one the HSM
	// recorded for it (CheckValueKnown false if it never did: no backup
	// was made).
	CheckValue      [MasterKeyCheckSize]byte
	CheckValueKnown bool
	// OldKeys is the old-key ring, newest first.
	OldKeys []OldKey
	// Restore is the restore in progress, nil if none.
	Restore *RestoreStatus
}

// RestoreStatus is a restore session: the HSM's HPKE key for it and the
// shares it holds so far.
type RestoreStatus struct {
	// ID names the session; a share sealed to it opens in no other.
	ID [16]byte
	// PublicKey is the session's HPKE public key (X25519).
	PublicKey []byte
	// Received of Threshold shares are in; Threshold is 0 until the first
	// share says it. CheckValue is the key they belong to (when Received >
	// 0). Done: the master key was recombined and written; the session is
	// over.
	Received, Threshold int
	CheckValue          [MasterKeyCheckSize]byte
	Done                bool
}

// OldKey is a key of the old-key ring: what a rotation kept.
type OldKey struct {
	CheckValue [MasterKeyCheckSize]byte
	// Records still sealed under it (a rotation cut short): retire
	// refuses while there are any.
	Records int
}

// RotateResult says what a rotation did.
type RotateResult struct {
	// CheckValue is the new key's, OldCheckValue the one it replaced
	// (now first in the old-key ring).
	CheckValue, OldCheckValue [MasterKeyCheckSize]byte
	// Resealed records were sealed again; Skipped ones were in damaged
	// flash blocks and could not be read.
	Resealed, Skipped int
}

// BackupRequest asks for the master key split into Shares shares, any
// Threshold of which recombine it, share i sealed under Passphrases[i-1].
// KDF gives Argon2id's parameters; zero fields take the defaults.
type BackupRequest struct {
	ID                string
	Threshold, Shares int
	Passphrases       [][]byte
	KDFTime           uint32
	KDFMemoryKiB      uint32
	KDFThreads        uint8
}

// MasterKeyKeeper is implemented by HSMs whose master key the SO (or wheel)
// can back up in shares, zeroize, and restore from shares: the emulated
// HSM. Every method needs the SO or wheel login.
type MasterKeyKeeper interface {
	MasterKeyStatus(ctx context.Context) (MasterKeyStatus, error)
	// BackupMasterKey splits the master key inside the HSM and returns the
	// key file (docs/masterkey-file.md): no share leaves it unsealed.
	BackupMasterKey(ctx context.Context, req BackupRequest) ([]byte, error)
	// ZeroizeMasterKey wipes the master key as tamper does.
	ZeroizeMasterKey(ctx context.Context) error
	// BeginRestore opens a restore session, or returns the one open.
	BeginRestore(ctx context.Context) (RestoreStatus, error)
	// SubmitShare hands the restore session one share sealed to it
	// (package sharetransit). A refused share leaves the session as it was.
	SubmitShare(ctx context.Context, sealed []byte) (RestoreStatus, error)
	// AbortRestore ends the restore session and forgets its shares.
	AbortRestore(ctx context.Context) error
	// RotateMasterKey makes a new master key, keeps the old one in the
	// old-key ring, and seals every keystore record again.
	RotateMasterKey(ctx context.Context) (RotateResult, error)
	// RetireMasterKey drops an old key from the ring, refusing while a
	// record is still sealed under it.
	RetireMasterKey(ctx context.Context, checkValue [MasterKeyCheckSize]byte) error
}

// KeyStorer is implemented by HSMs that keep keys outside their keystore,
// wrapped under a storage key derived from their master key
// (docs/stored-keys.md): the emulated HSM; and by PKCS#11 tokens (package
// p11), under a storage key object on the token.
type KeyStorer interface {
	// StoreKeys returns the stored-keys file for the keys; HSS keys among
	// them are disabled in the HSM first (they give away every signature
	// they have left) and sign again only once restored.
	StoreKeys(ctx context.Context, ids []UUID) ([]byte, error)
	// CheckStoredKeys checks that the file is this HSM's, whole, and that
	// every key opens; it stores nothing.
	CheckStoredKeys(ctx context.Context, file []byte) ([]KeyInfo, error)
	// RestoreKeys takes the keys back, all or none.
	RestoreKeys(ctx context.Context, file []byte) ([]ImportResult, error)
}

var (
	// ErrNotThisHSM: a stored-keys file of another HSM, or of a master key
	// this HSM no longer holds.
	ErrNotThisHSM = errors.New("not stored by this HSM")
	// ErrMasterKeySet: a restore was asked of an HSM whose master key is set.
	ErrMasterKeySet = errors.New("the master key is set: there is nothing to restore")
	// ErrNoRestore: a share was submitted with no restore session open.
	ErrNoRestore = errors.New("no restore session is open")
	// ErrShareRefused: the restore session refused a share (another
	// master key's, sent twice, or shares that do not recombine to the
	// key); the session is unchanged.
	ErrShareRefused = errors.New("share refused")
)
