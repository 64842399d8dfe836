package rpc

import (
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// extListKeys answers the keys PKEY_MATCH's filter finds, described as
// Token.Keys describes them, through the download buffer: one listing of
// the keystore for the whole answer, where PKEY_MATCH lists it again for
// every page and the client then asks several requests per key.
// As PKEY_MATCH, it finds no keys, rather than failing, for a client not
// logged in as the user or wheel.
func (c *serverConn) extListKeys(r *wire.ExtListKeysRequest) (wire.Args, error) {
	var keys []hsmapi.KeyInfo
	if u := c.fe.User(); u == hsmapi.UserNormal || u == hsmapi.UserWheel {
		var err error
		if keys, err = c.fe.Token().Keys(bg, filterOf(r.Type, r.Curve, r.Mask, r.Flags, r.Attributes)); err != nil {
			return nil, err
		}
	}
	res := make([]hsmapi.ImportResult, len(keys))
	for i, k := range keys {
		res[i].Key = k
	}
	return c.xfer.answer(encodeKeyList(res))
}

// filterOf is the filter of PKEY_MATCH and EXT_LIST_KEYS. An attribute
// sent as libhal's HAL_PKEY_ATTRIBUTE_NIL filters nothing.
func filterOf(typ, curve, mask, flags uint32, attrs []wire.Attribute) hsmapi.Filter {
	f := hsmapi.Filter{Type: hsmapi.KeyType(typ), Curve: hsmapi.Curve(curve), Mask: hsmapi.Flags(mask), Flags: hsmapi.Flags(flags)}
	for _, a := range attrs {
		if !a.Absent {
			f.Attributes = append(f.Attributes, hsmapi.Attribute{Type: a.Type, Value: a.Value})
		}
	}
	return f
}
