package backup

import (
	"bytes"
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/quote"
)

// Attributes are the attributes a key carries besides its label (see
// hsmapi.AttributeReader): on a PKCS#11 token, its CKA_ID, usages and policy.
// In a bundle they are a JSON object from the type, "0x" and eight
// lower-case hexadecimal digits, to the value in lower-case hexadecimal,
// in order of type. Every check of hsm's key attributes applies, so that a
// bundle that reads well also stores.
type Attributes []hsmapi.Attribute

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

func (a *Attributes) UnmarshalJSON(data []byte) error {
	if err := decodeValue(data, a); err != nil {
		return err
	}
	return a.check()
}

// maxAttributes bounds the attributes of one key.
const maxAttributes = hsmapi.MaxKeyAttributes

// maxBundleAttributes bounds the attributes of a whole bundle: 64 a key on
// average, where the largest real key, from a PKCS#11 token, has 27 (and a
// key made by Cryptech's PKCS#11 layer over libhal about as many), so that
// a bundle of keys with 1,016 attributes of a few bytes each cannot keep
// three times its size in memory (each attribute is an hsmapi.Attribute of 40
// bytes, for 16 bytes of file).
const maxBundleAttributes = 64 * MaxKeys

// attributeSpan is an attribute as it is read: its value is
// scratch[off:off+n].
type attributeSpan struct {
	typ    uint32
	off, n int
}

var attributeSize = int(reflect.TypeFor[hsmapi.Attribute]().Size())

func (a *Attributes) decodeJSON(d *decoder) error {
	if err := d.open(tokenBeginObject, "an object of attributes"); err != nil {
		return err
	}
	// The values are collected in scratch and kept in one array of their
	// length, the attributes in a slice of their number.
	d.attrs, d.scratch = d.attrs[:0], d.scratch[:0]
	for d.more() {
		switch {
		case len(d.attrs) == maxAttributes:
			return fmt.Errorf("attributes: more than %d", maxAttributes)
		case d.attributes == maxBundleAttributes:
			return fmt.Errorf("more than %d attributes in the bundle", maxBundleAttributes)
		}
		d.attributes++
		name, err := d.text("an attribute type")
		if err != nil {
			return err
		}
		if !attributeTypeForm.Match(name) {
			return fmt.Errorf("attribute type %s is not 0x and eight lower-case hexadecimal digits", quote.Short(string(name)))
		}
		typ, _ := strconv.ParseUint(string(name[2:]), 16, 32) // checked by the form
		// A string only: null or any other type is not an empty value.
		value, err := d.text("a string of hexadecimal digits")
		if err != nil {
			return fmt.Errorf("attribute 0x%08x: %w", typ, err)
		}
		if len(value) > 2*hsmapi.MaxAttributeSize {
			return fmt.Errorf("attributes: 0x%08x has more than %d bytes", typ, hsmapi.MaxAttributeSize)
		}
		off := len(d.scratch)
		d.scratch = append(d.scratch, make([]byte, len(value)/2)...)
		if !decodeLowerHex(d.scratch[off:], value) {
			return fmt.Errorf("attribute 0x%08x: the value is not lower-case hexadecimal", typ)
		}
		d.attrs = append(d.attrs, attributeSpan{uint32(typ), off, len(value) / 2})
	}
	if err := d.close(); err != nil {
		return err
	}
	if len(d.attrs) == 0 {
		return errors.New("attributes: an empty object (leave the field out instead)")
	}
	if err := d.keep(len(d.attrs)*attributeSize + len(d.scratch)); err != nil {
		return err
	}
	values := slices.Clone(d.scratch)
	out := make(Attributes, len(d.attrs))
	for i, s := range d.attrs {
		out[i] = hsmapi.Attribute{Type: s.typ, Value: values[s.off : s.off+s.n : s.off+s.n]}
	}
	// Their check is the key's (BundleKey.checkForm).
	*a = out
	return nil
}

// check refuses what a key record cannot hold, and any order but that of
// type, which makes the encoding canonical.
func (a Attributes) check() error {
	for i, at := range a {
		switch {
		case at.Type == hsmapi.AttributeLabel:
			return errors.New("attributes: the label (0x00000003) is the label field, not an attribute")
		case at.Delete:
			return fmt.Errorf("attributes: 0x%08x deleted", at.Type)
		case i > 0 && at.Type == a[i-1].Type:
			return fmt.Errorf("attributes: 0x%08x given twice", at.Type)
		case i > 0 && at.Type < a[i-1].Type:
			return fmt.Errorf("attributes: 0x%08x after 0x%08x, out of order", at.Type, a[i-1].Type)
		case len(at.Value) > hsmapi.MaxAttributeSize:
			return fmt.Errorf("attributes: 0x%08x has %d bytes, more than %d", at.Type, len(at.Value), hsmapi.MaxAttributeSize)
		}
		if at.Type == hsmapi.AttributePublicObject {
			if _, err := hsmapi.DecodeAttributes(at.Value); err != nil {
				return fmt.Errorf("attributes: 0x%08x (the public key object's): %w", at.Type, err)
			}
		}
	}
	return nil
}

// sortedAttributes returns attrs in order of type, as a bundle holds them;
// nil for none.
func sortedAttributes(attrs []hsmapi.Attribute) Attributes {
	if len(attrs) == 0 {
		return nil
	}
	out := slices.Clone(attrs)
	slices.SortFunc(out, func(a, b hsmapi.Attribute) int { return cmp.Compare(a.Type, b.Type) })
	return Attributes(out)
}
