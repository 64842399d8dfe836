package hsmapi

import (
	"errors"
)

// AttributeLabel is CKA_LABEL.
const AttributeLabel = 3

// MaxAttributeSize bounds one attribute value, and with it a key record.
const MaxAttributeSize = 1024

// ErrAttributeNotFound: the key has no attribute of that type.
var ErrAttributeNotFound = errors.New("attribute not found")

// Attribute is a key attribute; Delete in SetAttributes removes it.
type Attribute struct {
	Type   uint32
	Value  []byte
	Delete bool
}
