package hashsig

import (
	"crypto"
	"encoding/binary"
	"fmt"
)

// PublicKey is an HSS public key: the number of levels and the top LMS
// public key.
type PublicKey struct {
	levels int
	top    *lmsPublicKey
}

// ParsePublicKey parses the RFC 8554 encoding: u32(L) || LMS public key.
func ParsePublicKey(b []byte) (*PublicKey, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: HSS public key too short", ErrMalformed)
	}
	l := binary.BigEndian.Uint32(b)
	if l < 1 || l > MaxLevels {
		return nil, fmt.Errorf("%w: HSS public key with %d levels", ErrMalformed, l)
	}
	top, rest, err := parseLMSPublicKey(b[4:])
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the HSS public key", ErrMalformed, len(rest))
	}
	return &PublicKey{levels: int(l), top: top}, nil
}

// Bytes returns the RFC 8554 encoding.
func (pk *PublicKey) Bytes() []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(pk.levels)), pk.top.marshal()...)
}

// Levels is L, the number of LMS levels.
func (pk *PublicKey) Levels() int { return pk.levels }

// Top returns the parameters and identifier of the top LMS tree.
func (pk *PublicKey) Top() (Level, [IDSize]byte) {
	return Level{pk.top.typ, pk.top.otsTyp}, pk.top.id
}

// Equal reports whether x is the same public key, like the Equal methods of
// the standard library's key types.
func (pk *PublicKey) Equal(x crypto.PublicKey) bool {
	other, ok := x.(*PublicKey)
	return ok && other != nil && string(pk.Bytes()) == string(other.Bytes())
}

// Verify checks an HSS signature of msg (RFC 8554 Algorithm 6b), returning
// nil or an error wrapping ErrInvalidSignature or ErrMalformed.
func (pk *PublicKey) Verify(msg, sig []byte) error {
	if len(sig) < 4 {
		return fmt.Errorf("%w: HSS signature too short", ErrMalformed)
	}
	nspk := binary.BigEndian.Uint32(sig)
	if nspk+1 != uint32(pk.levels) {
		return fmt.Errorf("%w: signature has %d levels, the key %d", ErrInvalidSignature, nspk+1, pk.levels)
	}
	rest := sig[4:]
	key := pk.top
	p, _ := key.typ.Params()
	h := newHasher(p.Hash, p.M)
	for range nspk {
		lmsSig, after, err := splitLMSSignature(rest)
		if err != nil {
			return err
		}
		next, after, err := parseLMSPublicKey(after)
		if err != nil {
			return err
		}
		if err := CheckLevels([]Level{{pk.top.typ, pk.top.otsTyp}, {next.typ, next.otsTyp}}); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidSignature, err)
		}
		if err := key.verify(h, next.marshal(), lmsSig); err != nil {
			return err
		}
		key, rest = next, after
	}
	return key.verify(h, msg, rest)
}
