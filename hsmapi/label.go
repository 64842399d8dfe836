package hsmapi

import (
	"fmt"
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
