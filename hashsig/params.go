package hashsig

import (
	"fmt"
	"strings"
)

// HashFamily is the hash function of a parameter set.
type HashFamily int

const (
	SHA256 HashFamily = iota + 1
	SHAKE256
)

func (f HashFamily) String() string {
	if f == SHAKE256 {
		return "shake256"
	}
	return "sha256"
}

// LMSType is an RFC 8554 / SP 800-208 LMS parameter set; the values are the
// registered code points. Zero is reserved and invalid.
type LMSType uint32

// The LMS parameter sets.
const (
	LMS_SHA256_M32_H5  LMSType = 0x05
	LMS_SHA256_M32_H10 LMSType = 0x06
	LMS_SHA256_M32_H15 LMSType = 0x07
	LMS_SHA256_M32_H20 LMSType = 0x08
	LMS_SHA256_M32_H25 LMSType = 0x09
	LMS_SHA256_M24_H5  LMSType = 0x0a
	LMS_SHA256_M24_H10 LMSType = 0x0b
	LMS_SHA256_M24_H15 LMSType = 0x0c
	LMS_SHA256_M24_H20 LMSType = 0x0d
	LMS_SHA256_M24_H25 LMSType = 0x0e
	LMS_SHAKE_M32_H5   LMSType = 0x0f
	LMS_SHAKE_M32_H10  LMSType = 0x10
	LMS_SHAKE_M32_H15  LMSType = 0x11
	LMS_SHAKE_M32_H20  LMSType = 0x12
	LMS_SHAKE_M32_H25  LMSType = 0x13
	LMS_SHAKE_M24_H5   LMSType = 0x14
	LMS_SHAKE_M24_H10  LMSType = 0x15
	LMS_SHAKE_M24_H15  LMSType = 0x16
	LMS_SHAKE_M24_H20  LMSType = 0x17
	LMS_SHAKE_M24_H25  LMSType = 0x18
	lmsTypeFirst               = LMS_SHA256_M32_H5
	lmsTypeLast                = LMS_SHAKE_M24_H25
)

// LMSParams describe an LMS parameter set.
type LMSParams struct {
	Hash HashFamily
	// M is the size of a tree node in bytes.
	M int
	// H is the height of the tree: it has 2^H leaves.
	H int
}

// Params returns the parameters of t; ok is false for an unknown type.
func (t LMSType) Params() (p LMSParams, ok bool) {
	if t < lmsTypeFirst || t > lmsTypeLast {
		return LMSParams{}, false
	}
	i := int(t - lmsTypeFirst)
	p.Hash = SHA256
	if i >= 10 {
		p.Hash = SHAKE256
	}
	p.M = 32
	if i%10 >= 5 {
		p.M = 24
	}
	p.H = 5 * (i%5 + 1)
	return p, true
}

// Valid reports whether t is a known parameter set.
func (t LMSType) Valid() bool { _, ok := t.Params(); return ok }

// String names t as the command line does: "sha256-m32-h10".
func (t LMSType) String() string {
	p, ok := t.Params()
	if !ok {
		return fmt.Sprintf("lms(0x%x)", uint32(t))
	}
	return fmt.Sprintf("%s-m%d-h%d", p.Hash, p.M, p.H)
}

// LMOTSType is an RFC 8554 / SP 800-208 LM-OTS parameter set; the values are
// the registered code points. Zero is reserved and invalid.
type LMOTSType uint32

// The LM-OTS parameter sets.
const (
	LMOTS_SHA256_N32_W1 LMOTSType = 0x01
	LMOTS_SHA256_N32_W2 LMOTSType = 0x02
	LMOTS_SHA256_N32_W4 LMOTSType = 0x03
	LMOTS_SHA256_N32_W8 LMOTSType = 0x04
	LMOTS_SHA256_N24_W1 LMOTSType = 0x05
	LMOTS_SHA256_N24_W2 LMOTSType = 0x06
	LMOTS_SHA256_N24_W4 LMOTSType = 0x07
	LMOTS_SHA256_N24_W8 LMOTSType = 0x08
	LMOTS_SHAKE_N32_W1  LMOTSType = 0x09
	LMOTS_SHAKE_N32_W2  LMOTSType = 0x0a
	LMOTS_SHAKE_N32_W4  LMOTSType = 0x0b
	LMOTS_SHAKE_N32_W8  LMOTSType = 0x0c
	LMOTS_SHAKE_N24_W1  LMOTSType = 0x0d
	LMOTS_SHAKE_N24_W2  LMOTSType = 0x0e
	LMOTS_SHAKE_N24_W4  LMOTSType = 0x0f
	LMOTS_SHAKE_N24_W8  LMOTSType = 0x10
	lmotsTypeFirst                = LMOTS_SHA256_N32_W1
	lmotsTypeLast                 = LMOTS_SHAKE_N24_W8
)

// LMOTSParams describe an LM-OTS parameter set (RFC 8554 section 4.1).
type LMOTSParams struct {
	Hash HashFamily
	// N is the size of a hash output in bytes.
	N int
	// W is the Winternitz parameter: bits per digit, 1, 2, 4 or 8.
	W int
	// P is the number of W-bit digits (hash chains) in a signature.
	P int
	// LS is the left shift of the checksum.
	LS int
}

// Params returns the parameters of t; ok is false for an unknown type.
func (t LMOTSType) Params() (p LMOTSParams, ok bool) {
	if t < lmotsTypeFirst || t > lmotsTypeLast {
		return LMOTSParams{}, false
	}
	i := int(t - lmotsTypeFirst)
	p.Hash = SHA256
	if i >= 8 {
		p.Hash = SHAKE256
	}
	p.N = 32
	if i%8 >= 4 {
		p.N = 24
	}
	p.W = 1 << (i % 4)
	p.P, p.LS = otsSizes(p.N, p.W)
	return p, true
}

// otsSizes computes p and ls as RFC 8554 Appendix B does: u digits of the
// hash, v digits of the checksum.
func otsSizes(n, w int) (p, ls int) {
	u := (8*n + w - 1) / w
	maxSum := ((1 << w) - 1) * u
	bits := 0
	for maxSum > 0 {
		bits++
		maxSum >>= 1
	}
	v := (bits + w - 1) / w
	return u + v, 16 - v*w
}

// Valid reports whether t is a known parameter set.
func (t LMOTSType) Valid() bool { _, ok := t.Params(); return ok }

// String names t as the command line does: "sha256-n32-w4".
func (t LMOTSType) String() string {
	p, ok := t.Params()
	if !ok {
		return fmt.Sprintf("lmots(0x%x)", uint32(t))
	}
	return fmt.Sprintf("%s-n%d-w%d", p.Hash, p.N, p.W)
}

// LMSTypes and LMOTSTypes list every parameter set, in code point order.
func LMSTypes() []LMSType {
	var ts []LMSType
	for t := lmsTypeFirst; t <= lmsTypeLast; t++ {
		ts = append(ts, t)
	}
	return ts
}

func LMOTSTypes() []LMOTSType {
	var ts []LMOTSType
	for t := lmotsTypeFirst; t <= lmotsTypeLast; t++ {
		ts = append(ts, t)
	}
	return ts
}

// ParseLMSType accepts a name such as "sha256-m32-h10" (case-insensitive,
// "shake" for "shake256").
func ParseLMSType(name string) (LMSType, error) {
	n := normalizeName(name)
	for _, t := range LMSTypes() {
		if t.String() == n {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown LMS type %q", ErrBadParameters, name)
}

// ParseLMOTSType accepts a name such as "sha256-n32-w4".
func ParseLMOTSType(name string) (LMOTSType, error) {
	n := normalizeName(name)
	for _, t := range LMOTSTypes() {
		if t.String() == n {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown LM-OTS type %q", ErrBadParameters, name)
}

func normalizeName(name string) string {
	n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
	if strings.HasPrefix(n, "shake-") {
		n = "shake256-" + strings.TrimPrefix(n, "shake-")
	}
	return n
}

// MaxLevels bounds an HSS key: RFC 8554 allows 1 to 8 levels.
const MaxLevels = 8

// Level is the parameter pair of one HSS level.
type Level struct {
	LMS   LMSType
	LMOTS LMOTSType
}

// CheckLevels validates an HSS parameter list: 1 to 8 levels, known types,
// and one hash family and output size throughout, as SP 800-208 requires.
// Its errors wrap ErrBadParameters.
func CheckLevels(levels []Level) error {
	if len(levels) < 1 || len(levels) > MaxLevels {
		return fmt.Errorf("%w: an HSS key has 1 to %d levels, not %d", ErrBadParameters, MaxLevels, len(levels))
	}
	first, _ := levels[0].LMS.Params()
	for i, l := range levels {
		lp, ok := l.LMS.Params()
		if !ok {
			return fmt.Errorf("%w: level %d: unknown LMS type %d", ErrBadParameters, i, uint32(l.LMS))
		}
		op, ok := l.LMOTS.Params()
		if !ok {
			return fmt.Errorf("%w: level %d: unknown LM-OTS type %d", ErrBadParameters, i, uint32(l.LMOTS))
		}
		if lp.Hash != op.Hash || lp.M != op.N || lp.Hash != first.Hash || lp.M != first.M {
			return fmt.Errorf("%w: level %d: %v with %v: every level must use one hash and output size", ErrBadParameters, i, l.LMS, l.LMOTS)
		}
	}
	return nil
}

// totalHeight is the sum of the levels' heights: the key signs at most
// 2^totalHeight messages.
func totalHeight(levels []Level) int {
	h := 0
	for _, l := range levels {
		p, _ := l.LMS.Params()
		h += p.H
	}
	return h
}
