// Package sharetransit carries one master-key share from a custodian to an
// HSM's restore session, encrypted to the session's key with HPKE (RFC
// 9180, github.com/cloudflare/circl/hpke): DHKEM(X25519, HKDF-SHA256),
// HKDF-SHA256, AES-256-GCM, base mode. Only the HSM holds the session's
// private key, so neither the connection nor the server in between (the
// `serve` process, its log) ever sees a share.
//
// The sealed submission is enc (32 bytes) followed by the ciphertext of
//
//	version (1) | check value (8) | threshold (1) | shares (1) | index (1) | value (64)
//
// with HPKE's info the string "cryptech-backup master key restore v1" and
// the restore session's 16-byte ID as additional data, so that a
// submission meant for one session opens in no other.
package sharetransit

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"

	"github.com/hsmkit/cryptech-backup/keyshare"
	"github.com/hsmkit/cryptech-backup/sharefile"
)

// SessionIDSize is the size of a restore session's ID.
const SessionIDSize = 16

const (
	version     = 1
	payloadSize = 1 + keyshare.CheckValueSize + 3 + keyshare.ValueSize
	info        = "cryptech-backup master key restore v1"
)

var suite = hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_AES256GCM)

// ErrNotForSession: the submission does not open under this session's key
// (made for another session, or damaged on the way).
var ErrNotForSession = errors.New("the share was not sealed to this restore session (or was damaged on the way)")

// Submission is a share and what its key file says about it.
type Submission struct {
	CheckValue        [keyshare.CheckValueSize]byte
	Threshold, Shares int
	Share             keyshare.Share
}

// Wipe zeroes the share.
func (s *Submission) Wipe() { s.Share.Wipe() }

// SessionKey is a restore session's HPKE key pair.
type SessionKey struct {
	priv kem.PrivateKey
	// Public is the public key a custodian seals to.
	Public []byte
}

// SeedSize is the size of the seed a session key is derived from.
const SeedSize = 32

// NewSessionKey derives a session's key pair from SeedSize bytes drawn from
// the HSM's TRNG; the HSM keeps the seed to derive it again after a restart.
func NewSessionKey(seed []byte) (*SessionKey, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("restore session key: a seed of %d bytes, not %d", len(seed), SeedSize)
	}
	pub, priv := hpke.KEM_X25519_HKDF_SHA256.Scheme().DeriveKeyPair(seed)
	pb, err := pub.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return &SessionKey{priv: priv, Public: pb}, nil
}

// Seal encrypts sub to the restore session with public key pub and ID id.
func Seal(pub []byte, id [SessionIDSize]byte, sub *Submission) ([]byte, error) {
	pk, err := hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("restore session key: %w", err)
	}
	if sub.Threshold < 1 || sub.Shares < sub.Threshold || sub.Shares > keyshare.MaxShares || sub.Share.Index == 0 {
		return nil, fmt.Errorf("sharetransit: share %d, %d of %d", sub.Share.Index, sub.Threshold, sub.Shares)
	}
	sender, err := suite.NewSender(pk, []byte(info))
	if err != nil {
		return nil, err
	}
	enc, sealer, err := sender.Setup(rand.Reader)
	if err != nil {
		return nil, err
	}
	plain := make([]byte, 0, payloadSize)
	plain = append(plain, version)
	plain = append(plain, sub.CheckValue[:]...)
	plain = append(plain, byte(sub.Threshold), byte(sub.Shares), sub.Share.Index)
	plain = append(plain, sub.Share.Value[:]...)
	defer clear(plain)
	ct, err := sealer.Seal(plain, id[:])
	if err != nil {
		return nil, err
	}
	return append(enc, ct...), nil
}

// SealFrom seals share, one of the backup f, to the restore session with
// public key pub and ID id: what `masterkey submit` sends.
func SealFrom(f *sharefile.File, share keyshare.Share, pub []byte, id [SessionIDSize]byte) ([]byte, error) {
	return Seal(pub, id, &Submission{CheckValue: f.CheckValue, Threshold: f.Threshold, Shares: f.Shares, Share: share})
}

// Open decrypts a submission sealed to this session. The caller wipes it.
func (k *SessionKey) Open(id [SessionIDSize]byte, sealed []byte) (*Submission, error) {
	encSize := hpke.KEM_X25519_HKDF_SHA256.Scheme().CiphertextSize()
	if len(sealed) < encSize {
		return nil, ErrNotForSession
	}
	receiver, err := suite.NewReceiver(k.priv, []byte(info))
	if err != nil {
		return nil, err
	}
	opener, err := receiver.Setup(sealed[:encSize])
	if err != nil {
		return nil, ErrNotForSession
	}
	plain, err := opener.Open(sealed[encSize:], id[:])
	if err != nil {
		return nil, ErrNotForSession
	}
	defer clear(plain)
	if len(plain) != payloadSize || plain[0] != version {
		return nil, fmt.Errorf("%w: malformed submission", ErrNotForSession)
	}
	sub := &Submission{Threshold: int(plain[9]), Shares: int(plain[10])}
	copy(sub.CheckValue[:], plain[1:9])
	sub.Share.Index = plain[11]
	copy(sub.Share.Value[:], plain[12:])
	if sub.Threshold < 1 || sub.Shares < sub.Threshold || sub.Share.Index == 0 || int(sub.Share.Index) > sub.Shares {
		sub.Wipe()
		return nil, fmt.Errorf("%w: share %d of a %d-of-%d backup", ErrNotForSession, plain[11], plain[9], plain[10])
	}
	return sub, nil
}
