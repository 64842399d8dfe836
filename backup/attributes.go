package backup

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// Attributes are the attributes a key carries besides its label (see
// hsm.AttributeReader): on a PKCS#11 token, its CKA_ID, usages and policy.
// In a bundle they are a JSON object from the type, "0x" and eight
// lower-case hexadecimal digits, to the value in lower-case hexadecimal,
// in order of type. Every check of hsm's key attributes applies, so that a
// bundle that reads well also stores.
type Attributes []hsm.Attribute

var attributeTypeForm = regexp.MustCompile(`^0x[0-9a-f]{8}$`)

func (a Attributes) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, at := range a {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `"0x%08x":"%s"`, at.Type, hex.EncodeToString(at.Value))
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func (a *Attributes) UnmarshalJSON(data []byte) error { return decodeValue(data, a) }

// maxAttributes bounds the attributes of one key: what the HSM's key record
// (a flash block) can hold, each attribute taking at least 8 bytes there.
const maxAttributes = keystore.MaxDataSize / 8

func (a *Attributes) decodeJSON(d *decoder) error {
	if err := d.open('{', "an object of attributes"); err != nil {
		return err
	}
	// Collected in scratch, kept in a slice of their number.
	out := d.attrs[:0]
	for d.dec.More() {
		if len(out) == maxAttributes {
			return fmt.Errorf("attributes: more than %d", maxAttributes)
		}
		key, err := d.str("an attribute type")
		if err != nil {
			return err
		}
		if !attributeTypeForm.MatchString(key) {
			return fmt.Errorf("attribute type %q is not 0x and eight lower-case hexadecimal digits", key)
		}
		typ, _ := strconv.ParseUint(key[2:], 16, 32) // checked by the form
		// A string only: null or any other type is not an empty value.
		s, err := d.str("a string of hexadecimal digits")
		if err != nil {
			return fmt.Errorf("attribute %s: %w", key, err)
		}
		v, err := hex.DecodeString(s)
		if err != nil || strings.ContainsAny(s, "ABCDEF") {
			return fmt.Errorf("attribute %s: the value is not lower-case hexadecimal", key)
		}
		out = append(out, hsm.Attribute{Type: uint32(typ), Value: v})
	}
	d.attrs = out
	if err := d.close(); err != nil {
		return err
	}
	if len(out) == 0 {
		return errors.New("attributes: an empty object (leave the field out instead)")
	}
	if err := out.check(); err != nil {
		return err
	}
	*a = slices.Clone(out)
	clear(d.attrs)
	return nil
}

// check refuses what a key record cannot hold, and any order but that of
// type, which makes the encoding canonical.
func (a Attributes) check() error {
	for i, at := range a {
		switch {
		case at.Type == hsm.AttributeLabel:
			return errors.New("attributes: the label (0x00000003) is the label field, not an attribute")
		case at.Delete:
			return fmt.Errorf("attributes: 0x%08x deleted", at.Type)
		case i > 0 && at.Type == a[i-1].Type:
			return fmt.Errorf("attributes: 0x%08x given twice", at.Type)
		case i > 0 && at.Type < a[i-1].Type:
			return fmt.Errorf("attributes: 0x%08x after 0x%08x, out of order", at.Type, a[i-1].Type)
		case len(at.Value) > hsm.MaxAttributeSize:
			return fmt.Errorf("attributes: 0x%08x has %d bytes, more than %d", at.Type, len(at.Value), hsm.MaxAttributeSize)
		}
		if at.Type == hsm.AttributePublicObject {
			if _, err := hsm.DecodeAttributes(at.Value); err != nil {
				return fmt.Errorf("attributes: 0x%08x (the public key object's): %w", at.Type, err)
			}
		}
	}
	return nil
}

// sortedAttributes returns attrs in order of type, as a bundle holds them;
// nil for none.
func sortedAttributes(attrs []hsm.Attribute) Attributes {
	if len(attrs) == 0 {
		return nil
	}
	out := slices.Clone(attrs)
	slices.SortFunc(out, func(a, b hsm.Attribute) int { return cmp.Compare(a.Type, b.Type) })
	return Attributes(out)
}
