package rpc

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// AttributeHashsigRemaining is a read-only attribute this server adds for
// HSS private keys: the signatures left, as a big-endian uint64. libhal has
// no way to tell it.
const AttributeHashsigRemaining = 0xC7B50001

// headerSize is what an answer's func, client and status take.
const headerSize = 12

// keyAttributes is every attribute PKEY_GET_ATTRIBUTES can answer for a
// key, by type: the stored ones, the label (3) when the key has one, and
// AttributeHashsigRemaining for an HSS private key.
func (c *serverConn) keyAttributes(id hsmapi.UUID) (map[uint32][]byte, error) {
	k, err := c.fe.Token().Key(bg, id)
	if err != nil {
		return nil, err
	}
	var stored []hsmapi.Attribute
	if ar, ok := c.fe.Token().(hsmapi.AttributeReader); ok {
		if stored, err = ar.KeyAttributes(bg, id); err != nil {
			return nil, err
		}
	}
	m := make(map[uint32][]byte, len(stored)+2)
	for _, a := range stored {
		m[a.Type] = a.Value
	}
	if k.Label != "" {
		m[hsmapi.AttributeLabel] = []byte(k.Label)
	}
	if k.Type == hsmapi.KeyTypeHashsigPrivate {
		m[AttributeHashsigRemaining] = binary.BigEndian.AppendUint64(nil, k.Hashsig.Remaining)
	}
	return m, nil
}

// getAttributes is PKEY_GET_ATTRIBUTES as libhal answers it (rpc_server.c,
// hal_ks_get_attributes). With buffer_len 0 it tells each attribute's
// length, 0 for one the key lacks; otherwise it gives the values, and any
// attribute missing is ATTRIBUTE_NOT_FOUND. A key with no attributes at all
// answers ATTRIBUTE_NOT_FOUND either way, as libhal's does.
func (c *serverConn) getAttributes(r *wire.PkeyGetAttributesRequest) (wire.Args, error) {
	id, err := c.pkey(r.Pkey)
	if err != nil {
		return nil, err
	}
	if len(r.Types) == 0 {
		return nil, fmt.Errorf("%w: no attributes asked for", hsmapi.ErrBadArguments)
	}
	// libhal refuses what could not fit in its answer before looking.
	if 4*(1+2*uint64(len(r.Types)))+uint64(r.BufferLen) > wire.MaxPacket-headerSize {
		return nil, wire.StatusRPCPacketOverflow
	}
	have, err := c.keyAttributes(id)
	if err != nil {
		return nil, err
	}
	if len(have) == 0 {
		return nil, hsmapi.ErrAttributeNotFound
	}
	resp := &wire.PkeyGetAttributesResponse{LengthsOnly: r.BufferLen == 0}
	used, missing := 0, false
	for _, t := range r.Types {
		v, ok := have[t]
		switch {
		case resp.LengthsOnly:
			resp.Attributes = append(resp.Attributes, wire.Attribute{Type: t, Length: uint32(len(v))})
		case !ok:
			missing = true
		default:
			if used += len(v); used > int(r.BufferLen) {
				return nil, wire.StatusResultTooLong
			}
			resp.Attributes = append(resp.Attributes, wire.Attribute{Type: t, Value: v})
		}
	}
	if missing {
		return nil, hsmapi.ErrAttributeNotFound
	}
	return resp, nil
}

// setAttributes is PKEY_SET_ATTRIBUTES: values stored as given (the label
// too, whatever its bytes, as libhal stores it), an absent value deleting.
func (c *serverConn) setAttributes(r *wire.PkeySetAttributesRequest) (wire.Args, error) {
	id, err := c.pkey(r.Pkey)
	if err != nil {
		return nil, err
	}
	if len(r.Attributes) == 0 {
		return nil, fmt.Errorf("%w: no attributes to set", hsmapi.ErrBadArguments)
	}
	attrs := make([]hsmapi.Attribute, len(r.Attributes))
	for i, a := range r.Attributes {
		if a.Type == AttributeHashsigRemaining {
			return nil, fmt.Errorf("%w: attribute 0x%x is read only", hsmapi.ErrBadArguments, a.Type)
		}
		attrs[i] = hsmapi.Attribute{Type: a.Type, Value: a.Value, Delete: a.Absent}
	}
	aw, ok := c.fe.Token().(hsmapi.AttributeWriter)
	if !ok {
		return nil, fmt.Errorf("%w: this token keeps no attributes", hsmapi.ErrUnsupported)
	}
	return &wire.PkeySetAttributesResponse{}, aw.SetAttributes(bg, id, attrs)
}

// extGetAttributes answers EXT_GET_ATTRIBUTES: what PKEY_GET_ATTRIBUTES
// would, for every attribute, in one request that never fails for an
// attribute the key lacks. (A key's attributes fit in a flash block, so
// they fit in a packet.)
func (c *serverConn) extGetAttributes(r *wire.ExtGetAttributesRequest) (wire.Args, error) {
	id, err := c.pkey(r.Pkey)
	if err != nil {
		return nil, err
	}
	have, err := c.keyAttributes(id)
	if err != nil {
		return nil, err
	}
	resp := &wire.ExtGetAttributesResponse{}
	for _, t := range slices.Sorted(maps.Keys(have)) {
		resp.Attributes = append(resp.Attributes, wire.Attribute{Type: t, Value: have[t]})
	}
	return resp, nil
}
