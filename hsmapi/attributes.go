package hsmapi

import "errors"

// AttributeLabel is CKA_LABEL.
const AttributeLabel = 3

// MaxAttributeSize bounds one attribute value, and with it a key record.
const MaxAttributeSize = 1024

// MaxKeyAttributes bounds the attributes of one key: what the emulated HSM's
// key record (one 8 KiB flash block, less its header) can hold, each
// attribute taking at least 8 bytes there. Package hsm checks that the two
// agree.
const MaxKeyAttributes = (8192 - 64) / 8

// ErrAttributeNotFound: the key has no attribute of that type.
var ErrAttributeNotFound = errors.New("attribute not found")

// Attribute is a key attribute; Delete in SetAttributes removes it.
type Attribute struct {
	Type   uint32
	Value  []byte
	Delete bool
}
