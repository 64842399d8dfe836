// Package keyshare splits a master key into k-of-n shares with Shamir's
// scheme and puts k of them back together.
//
// The sharing is done by github.com/cloudflare/circl/secretsharing over the
// scalar field of Ristretto255, a prime field of order
// ℓ = 2^252 + 27742317777372353535851937790883648493, whose arithmetic circl
// does in constant time (its NIST-curve fields are not constant time in the
// secret, by its own warning). A 32-byte key does not fit one element of
// that field, so it is shared as two halves of 16 bytes, each read as an
// integer below 2^128 < ℓ: an injective map into the field, undone exactly
// after recovery (a result of 2^128 or more can only come from shares that
// do not belong together, and is refused). Each half has its own random
// polynomial of degree k-1; a share holds both halves' values at the same
// x-coordinate, its index. Shamir's secrecy holds per half: any k-1 shares
// of a half are uniformly distributed whatever the half is, and the halves'
// polynomials are independent, so k-1 shares say nothing about the key.
// Nothing in the scheme depends on the secret being uniform in the field.
//
// CheckValue names a key without revealing it, so that a file of shares and
// an HSM can say whether they belong to the same key.
package keyshare

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
)

const (
	// KeySize is the size of the key shared: an AES-256 master key.
	KeySize = 32
	// ValueSize is the size of a share's value: two field elements.
	ValueSize = 2 * scalarSize
	// MaxShares is the most shares a key is split into; an index is a byte.
	MaxShares = 255
	// CheckValueSize is the size of a key's check value.
	CheckValueSize = 8

	scalarSize = 32
	halfSize   = KeySize / 2
)

var (
	// ErrTooFewShares: fewer shares than the threshold were given.
	ErrTooFewShares = errors.New("keyshare: fewer shares than the threshold")
	// ErrDuplicateShare: two shares have the same index.
	ErrDuplicateShare = errors.New("keyshare: a share was given twice")
	// ErrMismatch: the shares do not belong to one key (or one of them is
	// damaged): they recombine to something that is no key.
	ErrMismatch = errors.New("keyshare: the shares do not belong together")
)

// Share is one of the n shares of a key.
type Share struct {
	// Index is the share's x-coordinate, 1 to n.
	Index uint8
	// Value is the value at Index of the two halves' polynomials, each a
	// canonical little-endian Ristretto255 scalar.
	Value [ValueSize]byte
}

// Wipe zeroes the share's value.
func (s *Share) Wipe() { clear(s.Value[:]) }

// Split shares key (KeySize bytes) among n shares so that any k of them
// recover it, 1 <= k <= n <= MaxShares. The random coefficients come from
// circl's Ristretto255, which draws them from crypto/rand.
func Split(key []byte, k, n int) ([]Share, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("keyshare: split: the key is %d bytes, not %d", len(key), KeySize)
	}
	if k < 1 || n < k || n > MaxShares {
		return nil, fmt.Errorf("keyshare: split: %d of %d shares: want 1 <= threshold <= shares <= %d", k, n, MaxShares)
	}
	shares := make([]Share, n)
	for h := range 2 {
		secret, err := halfToScalar(key[h*halfSize : (h+1)*halfSize])
		if err != nil {
			return nil, err
		}
		// circl's Ristretto255 ignores the reader and uses crypto/rand.
		ss := secretsharing.New(nil, uint(k-1), secret)
		for i, s := range ss.Share(uint(n)) {
			if err := putScalar(shares[i].Value[h*scalarSize:(h+1)*scalarSize], s.Value); err != nil {
				return nil, err
			}
			shares[i].Index = uint8(i + 1)
		}
	}
	return shares, nil
}

// Combine recovers the key from k or more shares of a key split k-of-n.
// Only the first k are used. Shares of different keys, or a damaged share,
// give ErrMismatch when they recombine to no key at all; when they happen to
// recombine to 32 bytes, only the key's check value tells: compare it.
func Combine(k int, shares []Share) ([]byte, error) {
	if k < 1 || k > MaxShares {
		return nil, fmt.Errorf("keyshare: combine: threshold %d out of range", k)
	}
	if len(shares) < k {
		return nil, fmt.Errorf("%w: %d of %d", ErrTooFewShares, len(shares), k)
	}
	shares = shares[:k]
	seen := make(map[uint8]bool, k)
	for _, s := range shares {
		// secretsharing.Recover panics on a repeated ID and refuses zero.
		if s.Index == 0 {
			return nil, fmt.Errorf("keyshare: combine: share index 0")
		}
		if seen[s.Index] {
			return nil, fmt.Errorf("%w: index %d", ErrDuplicateShare, s.Index)
		}
		seen[s.Index] = true
	}
	key := make([]byte, KeySize)
	for h := range 2 {
		ss := make([]secretsharing.Share, k)
		for i, s := range shares {
			v := group.Ristretto255.NewScalar()
			if err := v.UnmarshalBinary(s.Value[h*scalarSize : (h+1)*scalarSize]); err != nil {
				clear(key)
				return nil, fmt.Errorf("%w: share %d is not canonical", ErrMismatch, s.Index)
			}
			ss[i] = secretsharing.Share{ID: group.Ristretto255.NewScalar().SetUint64(uint64(s.Index)), Value: v}
		}
		secret, err := secretsharing.Recover(uint(k-1), ss)
		if err != nil {
			clear(key)
			return nil, fmt.Errorf("keyshare: combine: %w", err)
		}
		if err := scalarToHalf(key[h*halfSize:(h+1)*halfSize], secret); err != nil {
			clear(key)
			return nil, err
		}
	}
	return key, nil
}

// CheckValue is the key's check value: the first CheckValueSize bytes of
// HMAC-SHA-256 under the key of a fixed label. It names the key without
// revealing anything about it (a PRF output), and a wrong key matches it
// with probability 2^-64.
func CheckValue(key []byte) [CheckValueSize]byte {
	m := hmac.New(sha256.New, key)
	io.WriteString(m, "cryptech-backup master key check value v1")
	var cv [CheckValueSize]byte
	copy(cv[:], m.Sum(nil))
	return cv
}

// Matches reports, in constant time, whether key has check value cv.
func Matches(key []byte, cv [CheckValueSize]byte) bool {
	got := CheckValue(key)
	return subtle.ConstantTimeCompare(got[:], cv[:]) == 1
}

// halfToScalar reads 16 bytes as a little-endian integer below 2^128, which
// is a canonical Ristretto255 scalar.
func halfToScalar(half []byte) (group.Scalar, error) {
	var buf [scalarSize]byte
	defer clear(buf[:])
	copy(buf[:], half)
	s := group.Ristretto255.NewScalar()
	if err := s.UnmarshalBinary(buf[:]); err != nil {
		return nil, fmt.Errorf("keyshare: %w", err)
	}
	return s, nil
}

// scalarToHalf writes s, which must be below 2^128, as 16 bytes.
func scalarToHalf(half []byte, s group.Scalar) error {
	var buf [scalarSize]byte
	defer clear(buf[:])
	if err := putScalar(buf[:], s); err != nil {
		return err
	}
	var high byte
	for _, b := range buf[halfSize:] {
		high |= b
	}
	if subtle.ConstantTimeByteEq(high, 0) != 1 {
		return ErrMismatch
	}
	copy(half, buf[:halfSize])
	return nil
}

func putScalar(dst []byte, s group.Scalar) error {
	b, err := s.MarshalBinary()
	if err != nil || len(b) != scalarSize {
		return fmt.Errorf("keyshare: encode scalar: %v", err)
	}
	copy(dst, b)
	clear(b)
	return nil
}
