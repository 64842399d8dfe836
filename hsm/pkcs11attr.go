package hsm

import (
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// checkAttributes refuses attributes a key record cannot hold: the label
// (it has its own field), deletions, repeated types, values too long.
func checkAttributes(attrs []hsmapi.Attribute) error {
	seen := map[uint32]bool{}
	for _, a := range attrs {
		switch {
		case a.Type == hsmapi.AttributeLabel:
			return fmt.Errorf("%w: the label is not an attribute here", hsmapi.ErrBadArguments)
		case a.Delete:
			return fmt.Errorf("%w: attribute 0x%x deleted in a new key", hsmapi.ErrBadArguments, a.Type)
		case seen[a.Type]:
			return fmt.Errorf("%w: attribute 0x%x given twice", hsmapi.ErrBadArguments, a.Type)
		case len(a.Value) > hsmapi.MaxAttributeSize:
			return fmt.Errorf("%w: attribute 0x%x longer than %d bytes", hsmapi.ErrBadArguments, a.Type, hsmapi.MaxAttributeSize)
		}
		seen[a.Type] = true
	}
	return nil
}

// attributeMap turns a checked list into a record's map; nil for none.
func attributeMap(attrs []hsmapi.Attribute) map[uint32][]byte {
	if len(attrs) == 0 {
		return nil
	}
	m := make(map[uint32][]byte, len(attrs))
	for _, a := range attrs {
		m[a.Type] = append([]byte(nil), a.Value...)
	}
	return m
}
