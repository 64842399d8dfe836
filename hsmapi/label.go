package hsmapi

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLabelLength bounds a key label.
const MaxLabelLength = 256

// CheckLabel refuses labels that are too long, not UTF-8, or hold control
// or format characters: labels travel in bundles anyone can write, and end
// up printed on an operator's terminal, where a right-to-left override
// (U+202E) or an invisible character would make one label look like
// another.
func CheckLabel(label string) error {
	if len(label) > MaxLabelLength {
		return fmt.Errorf("%w: label longer than %d bytes", ErrBadArguments, MaxLabelLength)
	}
	if !utf8.ValidString(label) {
		return fmt.Errorf("%w: label is not UTF-8", ErrBadArguments)
	}
	for _, r := range label {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: label holds control character %U", ErrBadArguments, r)
		}
		if unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("%w: label holds format character %U", ErrBadArguments, r)
		}
	}
	return nil
}

// MaxRawLabelLength bounds a label this HSM stores: what a libhal client
// may set over RPC (one attribute's worth), and what an import, which must
// take any key another HSM exports, carries.
const MaxRawLabelLength = MaxAttributeSize

// CheckRawLabel refuses a label this HSM cannot keep: longer than
// MaxRawLabelLength. Any bytes are a label otherwise, as libhal stores what
// a client sets; what prints one escapes it. Labels from the command line,
// and those a bundle gives as text, keep CheckLabel's rules.
func CheckRawLabel(label string) error {
	if len(label) > MaxRawLabelLength {
		return fmt.Errorf("%w: label longer than %d bytes", ErrBadArguments, MaxRawLabelLength)
	}
	return nil
}

// MaxTokenLabelLength bounds an HSM's own label (Identity.Label): the
// length of PKCS#11's CK_TOKEN_INFO label.
const MaxTokenLabelLength = 32

// CheckTokenLabel refuses an HSM label PKCS#11 cannot show whole, or one
// CheckLabel refuses. Trailing blanks are refused too: PKCS#11 pads the
// label with them, so they could not be told from the padding.
func CheckTokenLabel(label string) error {
	if len(label) > MaxTokenLabelLength {
		return fmt.Errorf("%w: an HSM label has at most %d bytes", ErrBadArguments, MaxTokenLabelLength)
	}
	if strings.TrimRight(label, " ") != label {
		return fmt.Errorf("%w: an HSM label does not end in a blank", ErrBadArguments)
	}
	return CheckLabel(label)
}

// TokenLabelOf makes a valid HSM label of s, as far as it can: cut to
// MaxTokenLabelLength on a character boundary, trailing blanks dropped.
// (The emulated HSM's label defaults to its directory's name.)
func TokenLabelOf(s string) string {
	for len(s) > MaxTokenLabelLength {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return strings.TrimRight(s, " ")
}
