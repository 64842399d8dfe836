package cryptoki

import (
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// findOp is an active C_FindObjects: the handles still to give, found at
// C_FindObjectsInit (the specification lets objects made or destroyed
// since show or not).
type findOp struct{ handles []uint }

// statelessAttrs are the attributes a template can be matched on without
// reading a key's stored attributes.
var statelessAttrs = map[uint]bool{attrClass: true, attrKeyType: true, attrToken: true}

// FindObjectsInit is C_FindObjectsInit: it finds the objects the session
// may see that have every attribute of tmpl with its value. An attribute
// the module does not know, or a secret one, matches nothing.
func (m *Module) FindObjectsInit(sh uint, tmpl []Attribute) RV {
	active := func(_ *slot, ss *session) RV {
		if ss.find != nil {
			return OperationActive
		}
		return OK
	}
	if rv := m.withSession(sh, active); rv != OK {
		return rv
	}
	hs, objs, rv := m.listObjects(sh)
	if rv != OK {
		return rv
	}
	needStored := false
	for _, a := range tmpl {
		needStored = needStored || !statelessAttrs[a.Type]
	}
	tok, rv := m.sessionToken(sh)
	if rv != OK {
		return rv
	}
	stored := map[hsmapi.UUID][]hsmapi.Attribute{}
	var found []uint
	for _, h := range hs {
		o := objs[h]
		var attrs []hsmapi.Attribute
		if needStored {
			var ok bool
			if attrs, ok = stored[o.UUID]; !ok {
				var err error
				if attrs, err = storedAttributes(tok, o.UUID); err != nil {
					// Gone since it was listed: not found.
					continue
				}
				stored[o.UUID] = attrs
			}
		}
		if newView(o, attrs).matches(tmpl) {
			found = append(found, h)
		}
	}
	return m.withSession(sh, func(sl *slot, ss *session) RV {
		if rv := active(sl, ss); rv != OK {
			return rv
		}
		ss.find = &findOp{handles: found}
		return OK
	})
}

// FindObjects is C_FindObjects: up to max more of the handles found.
func (m *Module) FindObjects(sh uint, max int) ([]uint, RV) {
	var out []uint
	rv := m.withSession(sh, func(_ *slot, ss *session) RV {
		if ss.find == nil {
			return OperationNotInitialized
		}
		n := min(max, len(ss.find.handles))
		out = append(out, ss.find.handles[:n]...)
		ss.find.handles = ss.find.handles[n:]
		return OK
	})
	return out, rv
}

// FindObjectsFinal is C_FindObjectsFinal.
func (m *Module) FindObjectsFinal(sh uint) RV {
	return m.withSession(sh, func(_ *slot, ss *session) RV {
		if ss.find == nil {
			return OperationNotInitialized
		}
		ss.find = nil
		return OK
	})
}

// sessionToken is the token behind session sh's slot.
func (m *Module) sessionToken(sh uint) (hsmapi.Token, RV) {
	var tok hsmapi.Token
	rv := m.withSession(sh, func(s *slot, _ *session) RV { tok = s.client.Token(); return OK })
	return tok, rv
}

// An AttributeBuffer is one entry of C_GetAttributeValue's template.
type AttributeBuffer struct {
	Type uint
	// Buf is the application's buffer (pValue, ulValueLen long), nil when
	// pValue is NULL.
	Buf []byte
	// Len is set to what ulValueLen becomes: the value's length, or
	// Unavailable.
	Len uint
}

// GetAttributeValue is C_GetAttributeValue. Every entry is answered: with
// its value and length; with the length alone for a NULL buffer; with
// Unavailable for a buffer too short (CKR_BUFFER_TOO_SMALL), a secret
// value (CKR_ATTRIBUTE_SENSITIVE) or an attribute the object does not have
// (CKR_ATTRIBUTE_TYPE_INVALID). When entries fail differently, the return
// value is the first of these that applies, in this order: sensitive,
// type invalid, buffer too small (the specification lets it be any).
func (m *Module) GetAttributeValue(sh, object uint, tmpl []AttributeBuffer) RV {
	o, rv := m.keyObject(sh, object)
	if rv != OK {
		return rv
	}
	tok, rv := m.sessionToken(sh)
	if rv != OK {
		return rv
	}
	stored, err := storedAttributes(tok, o.UUID)
	if err != nil {
		return ObjectHandleInvalid
	}
	v := newView(o, stored)
	var sensitive, invalid, small bool
	for i := range tmpl {
		e := &tmpl[i]
		val, rv := v.attribute(e.Type)
		switch {
		case rv == AttributeSensitive:
			sensitive = true
			e.Len = Unavailable
		case rv != OK:
			invalid = true
			e.Len = Unavailable
		case e.Buf == nil:
			e.Len = uint(len(val))
		case len(e.Buf) < len(val):
			small = true
			e.Len = Unavailable
		default:
			e.Len = uint(copy(e.Buf, val))
		}
	}
	switch {
	case sensitive:
		return AttributeSensitive
	case invalid:
		return AttributeTypeInvalid
	case small:
		return BufferTooSmall
	}
	return OK
}
