package hsm

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

const (
	// MinPINLength and MaxPINLength bound a PIN, as in libhal.
	MinPINLength = 4
	MaxPINLength = 4096

	// DefaultPINIterations is the PBKDF2-HMAC-SHA256 work factor for new
	// PINs: OWASP's 2023 figure for that PRF. libhal uses at least 1000.
	DefaultPINIterations = 600_000

	pinSaltSize = 16
	pinHashSize = 32
)

// pinRecord is how a user's PIN is kept in the keystore: never the PIN, only
// a salted PBKDF2-HMAC-SHA256 of it. The iteration count travels with the
// record so that it can be raised without breaking old PINs.
type pinRecord struct {
	iterations uint32
	salt       [pinSaltSize]byte
	hash       [pinHashSize]byte
}

const pinRecordVersion = 1

func checkPINLength(pin []byte) error {
	if len(pin) < MinPINLength || len(pin) > MaxPINLength {
		return fmt.Errorf("%w: a PIN has %d to %d bytes", hsmapi.ErrBadArguments, MinPINLength, MaxPINLength)
	}
	return nil
}

func newPINRecord(rand io.Reader, pin []byte, iterations int) (pinRecord, error) {
	if err := checkPINLength(pin); err != nil {
		return pinRecord{}, err
	}
	r := pinRecord{iterations: uint32(iterations)}
	if _, err := io.ReadFull(rand, r.salt[:]); err != nil {
		return pinRecord{}, fmt.Errorf("pin salt: %w", err)
	}
	h, err := pinHash(pin, r.salt[:], iterations)
	if err != nil {
		return pinRecord{}, err
	}
	copy(r.hash[:], h)
	clear(h)
	return r, nil
}

// pinHash derives the stored form of a PIN. Go's PBKDF2 takes the password
// as a string, a copy this package cannot wipe; the caller's buffer is.
func pinHash(pin, salt []byte, iterations int) ([]byte, error) {
	h, err := pbkdf2.Key(sha256.New, string(pin), salt, iterations, pinHashSize)
	if err != nil {
		return nil, fmt.Errorf("pin hash: %w", err)
	}
	return h, nil
}

// verify compares pin with the record in constant time: the comparison of
// the derived hashes must not reveal how many leading bytes matched.
func (r pinRecord) verify(pin []byte) bool {
	h, err := pinHash(pin, r.salt[:], int(r.iterations))
	if err != nil {
		return false
	}
	defer clear(h)
	return subtle.ConstantTimeCompare(h, r.hash[:]) == 1
}

func (r pinRecord) marshal() []byte {
	b := []byte{pinRecordVersion}
	b = binary.BigEndian.AppendUint32(b, r.iterations)
	b = append(b, r.salt[:]...)
	return append(b, r.hash[:]...)
}

var errBadPINRecord = errors.New("corrupt PIN record")

func parsePINRecord(b []byte) (pinRecord, error) {
	var r pinRecord
	if len(b) != 1+4+pinSaltSize+pinHashSize || b[0] != pinRecordVersion {
		return r, errBadPINRecord
	}
	r.iterations = binary.BigEndian.Uint32(b[1:5])
	if r.iterations == 0 {
		return r, errBadPINRecord
	}
	copy(r.salt[:], b[5:5+pinSaltSize])
	copy(r.hash[:], b[5+pinSaltSize:])
	return r, nil
}

// checkPINInTurn checks a PIN as a Cryptech HSM does, one request at a
// time: every PIN check of the HSM, and the wrong-PIN delay after a wrong
// one, happen under one HSM-wide lock, so that N wrong guesses take N
// delays however many connections send them, and a right PIN waits behind
// the wrong ones before it. Only waiting for the turn gives up with ctx;
// the check and the delay, once begun, run to their end.
func (h *HSM) checkPINInTurn(ctx context.Context, u hsmapi.User, pin []byte) error {
	select {
	case h.loginTurn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-h.loginTurn }()
	return h.checkPIN(u, pin)
}
