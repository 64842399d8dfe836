package wire

// AttributeNil is the uint sent in place of an attribute's value to mean
// "absent": delete it (PKEY_SET_ATTRIBUTES) or not present (a lengths-only
// PKEY_GET_ATTRIBUTES answer). libhal calls it HAL_PKEY_ATTRIBUTE_NIL.
const AttributeNil = 0xFFFFFFFF

// An Attribute is one key attribute as PKEY_MATCH, PKEY_SET_ATTRIBUTES and
// PKEY_GET_ATTRIBUTES carry it: uint type, then either bytes value or, when
// Absent, the uint [AttributeNil].
//
// Length is used only by a lengths-only PKEY_GET_ATTRIBUTES response (see
// [PkeyGetAttributesResponse.LengthsOnly]), whose wire form is uint type,
// uint length; there Value is nil, and an absent attribute has Absent set
// and Length 0. Everywhere else Length is ignored when encoding and left 0
// when decoding.
type Attribute struct {
	Type   uint32
	Value  []byte
	Absent bool
	Length uint32
}

// minAttributeSize is the smallest wire form of an attribute: a type and a
// length word.
const minAttributeSize = 8

// encodeAttributes appends uint n, then n attributes with their values.
func encodeAttributes(e *Encoder, attrs []Attribute) {
	e.Uint32(uint32(len(attrs)))
	for _, a := range attrs {
		e.Uint32(a.Type)
		if a.Absent {
			e.Uint32(AttributeNil)
		} else {
			e.Bytes(a.Value)
		}
	}
}

// decodeAttributes reads what encodeAttributes writes. With values, an
// absent attribute is malformed.
func decodeAttributes(d *Decoder, values bool) []Attribute {
	n := d.count(minAttributeSize, -1)
	if n == 0 {
		return nil
	}
	attrs := make([]Attribute, n)
	for i := range attrs {
		attrs[i].Type = d.Uint32()
		switch l := d.Uint32(); {
		case l == AttributeNil && values:
			d.fail(StatusRPCProtocolError, "attribute 0x%x without a value", attrs[i].Type)
		case l == AttributeNil:
			attrs[i].Absent = true
		default:
			attrs[i].Value = d.opaque(l, MaxPacket)
		}
		if d.err != nil {
			return nil
		}
	}
	return attrs
}

// encodeAttributeLengths appends uint n, then n (type, length) pairs.
func encodeAttributeLengths(e *Encoder, attrs []Attribute) {
	e.Uint32(uint32(len(attrs)))
	for _, a := range attrs {
		e.Uint32(a.Type)
		if a.Absent {
			e.Uint32(AttributeNil)
		} else {
			e.Uint32(a.Length)
		}
	}
}

// decodeAttributeLengths reads what encodeAttributeLengths writes.
func decodeAttributeLengths(d *Decoder) []Attribute {
	n := d.count(minAttributeSize, -1)
	if n == 0 {
		return nil
	}
	attrs := make([]Attribute, n)
	for i := range attrs {
		attrs[i].Type = d.Uint32()
		if l := d.Uint32(); l == AttributeNil {
			attrs[i].Absent = true
		} else {
			attrs[i].Length = l
		}
	}
	if d.err != nil {
		return nil
	}
	return attrs
}
