package cryptoki

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// freeAttrs are the attributes an application may change at will: what
// names and describes an object, and what the HSM stores without acting
// on (it has no derivation and no signature recovery).
var freeAttrs = map[uint]bool{
	attrLabel: true, attrID: true, attrSubject: true, attrStartDate: true, attrEndDate: true,
	attrDerive: true, attrSignRecover: true, attrVerifyRecover: true,
}

// change checks one attribute of a C_SetAttributeValue or C_CopyObject
// template against the object's current value. What may change: the free
// attributes; CKA_COPYABLE and CKA_DESTROYABLE from true to false, and
// CKA_WRAP_WITH_TRUSTED from false to true (each only restricts the key);
// CKA_TRUSTED back to false (to true only the SO, whose C_SetAttributeValue
// is setTrusted). A copy may also move between token and session, be private or not,
// be made unmodifiable, and lose usages (never gain one). Anything else is
// CKR_ATTRIBUTE_READ_ONLY unless it keeps its value: the HSM's flags never
// change, so CKA_SENSITIVE never turns off nor CKA_EXTRACTABLE on.
func change(v *objectView, a Attribute, copying bool) RV {
	if _, known := attrKinds[a.Type]; !known || !v.applies(a.Type) {
		return AttributeTypeInvalid
	}
	if !validValue(a.Type, a.Value) {
		return AttributeValueInvalid
	}
	cur, rv := v.attribute(a.Type)
	if rv == OK && sameValue(a.Type, cur, a.Value) {
		return OK
	}
	if freeAttrs[a.Type] {
		return OK
	}
	want, _ := boolOf(a.Value)
	switch a.Type {
	case attrCopyable, attrDestroyable, attrTrusted:
		if !want {
			return OK
		}
	case attrWrapWithTrusted:
		if want {
			return OK
		}
	case attrToken, attrPrivate:
		if copying {
			return OK
		}
	case attrModifiable:
		if copying && !want {
			return OK
		}
	}
	if copying && !want && isUsage(a.Type) {
		return OK
	}
	return AttributeReadOnly
}

func isUsage(t uint) bool {
	for _, u := range usages() {
		if t == u.priv || t == u.pub {
			return t != attrExtractable
		}
	}
	return false
}

// edit is an object's stored attributes being changed.
type edit struct {
	own   map[uint32][]byte
	label string
	flags hsmapi.Flags
}

// applyTemplate checks a template against an object (see change) and
// returns what the object's stored attributes, label and the key's flags
// become.
func applyTemplate(v *objectView, tmpl []Attribute, copying bool) (edit, RV) {
	label, _ := v.attribute(attrLabel)
	e := edit{own: maps.Clone(v.own), label: string(label), flags: v.obj.Info.Flags}
	for _, a := range tmpl {
		if rv := change(v, a, copying); rv != OK {
			return e, rv
		}
		if len(a.Value) > hsmapi.MaxAttributeSize {
			return e, AttributeValueInvalid
		}
		switch b, _ := boolOf(a.Value); {
		case a.Type == attrLabel:
			if hsmapi.CheckRawLabel(string(a.Value)) != nil {
				return e, AttributeValueInvalid
			}
			e.label = string(a.Value)
		case a.Type == attrToken:
			e.flags = setFlag(e.flags, hsmapi.FlagToken, b)
		case isUsage(a.Type):
			for _, u := range usages() {
				if a.Type == u.priv || a.Type == u.pub {
					e.flags = setFlag(e.flags, u.flag, b)
				}
			}
		case a.Type == attrID || storedAttrs[a.Type] != nil:
			e.own[uint32(a.Type)] = append([]byte(nil), a.Value...)
		}
	}
	return e, OK
}

func setFlag(f, flag hsmapi.Flags, on bool) hsmapi.Flags {
	if on {
		return f | flag
	}
	return f &^ flag
}

// list is an attribute map as a sorted list.
func list(m map[uint32][]byte) []hsmapi.Attribute {
	out := make([]hsmapi.Attribute, 0, len(m))
	for _, t := range slices.Sorted(maps.Keys(m)) {
		out = append(out, hsmapi.Attribute{Type: t, Value: m[t]})
	}
	return out
}

// editObject resolves an object to change, copy or destroy, and checks
// that session sh may: the policy attribute (CKA_MODIFIABLE, CKA_COPYABLE,
// CKA_DESTROYABLE) must be true, and when the object itself changes
// (writes) a token object needs a read/write session.
func (m *Module) editObject(sh, object, policy uint, writes bool) (*objectView, hsmapi.Token, RV) {
	o, rv := m.keyObject(sh, object)
	if rv != OK {
		return nil, nil, rv
	}
	tok, rv := m.sessionToken(sh)
	if rv != OK {
		return nil, nil, rv
	}
	stored, err := storedAttributes(tok, o.UUID)
	if err != nil {
		return nil, nil, ObjectHandleInvalid
	}
	v := newView(o, stored)
	if writes && o.Info.Flags&hsmapi.FlagToken != 0 {
		if rv := m.withSession(sh, func(_ *slot, ss *session) RV {
			if !ss.rw {
				return SessionReadOnly
			}
			return OK
		}); rv != OK {
			return nil, nil, rv
		}
	}
	if b, _ := v.attribute(policy); !sameValue(policy, b, trueValue(0)) {
		return nil, nil, ActionProhibited
	}
	return v, tok, OK
}

// SetAttributeValue is C_SetAttributeValue: the whole template or
// nothing, stored in one step.
func (m *Module) SetAttributeValue(sh, object uint, tmpl []Attribute) RV {
	if m.loggedInAs(sh, hsmapi.UserSO) {
		return m.setTrusted(sh, object, tmpl)
	}
	v, tok, rv := m.editObject(sh, object, attrModifiable, true)
	if rv != OK {
		return rv
	}
	e, rv := applyTemplate(v, tmpl, false)
	if rv != OK {
		return rv
	}
	var attrs []hsmapi.Attribute
	if v.pair {
		// The public object of a pair: its attributes are one list, and
		// its label is its own only when it differs from the key's.
		if e.label != v.obj.Info.Label {
			e.own[hsmapi.CKALabel] = []byte(e.label)
		} else {
			delete(e.own, hsmapi.CKALabel)
		}
		attrs = []hsmapi.Attribute{{Type: hsmapi.AttributePublicObject, Value: hsmapi.EncodeAttributes(list(e.own))}}
	} else {
		for t, val := range e.own {
			if old, ok := v.own[t]; !ok || string(old) != string(val) {
				attrs = append(attrs, hsmapi.Attribute{Type: t, Value: val})
			}
		}
		if e.label != v.obj.Info.Label {
			attrs = append(attrs, hsmapi.Attribute{Type: hsmapi.AttributeLabel, Value: []byte(e.label)})
		}
	}
	if len(attrs) == 0 {
		return OK
	}
	w, ok := tok.(hsmapi.AttributeWriter)
	if !ok {
		return AttributeReadOnly
	}
	return attributeWriteRV(w.SetAttributes(context.Background(), v.obj.UUID, attrs))
}

// attributeWriteRV answers C_SetAttributeValue for what the HSM said to a
// change of a key's attributes (or its trust).
func attributeWriteRV(err error) RV {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, hsmapi.ErrBadArguments):
		return AttributeValueInvalid
	case errors.Is(err, hsmapi.ErrForbidden):
		// The HSM's own key policy said no.
		return AttributeReadOnly
	case errors.Is(err, hsmapi.ErrKeyNotFound):
		return ObjectHandleInvalid
	}
	return tokenRV(err)
}

// DestroyObject is C_DestroyObject. The HSM keeps a key pair as one key,
// but PKCS#11 has two objects that live apart:
//   - destroying the private key object deletes the key and leaves the
//     public key object as it was (same handle, same attributes), now a
//     public key alone. The public key is stored first, then the pair
//     deleted, so that a crash between the two loses nothing;
//   - the public key object of a pair cannot be destroyed alone
//     (CKR_ACTION_PROHIBITED): the HSM cannot drop half a key. Destroy the
//     private key object first, as PKCS#11 libraries do when they delete
//     a pair (p11 does);
//   - destroying a public key alone deletes it.
func (m *Module) DestroyObject(sh, object uint) RV {
	v, tok, rv := m.editObject(sh, object, attrDestroyable, true)
	if rv != OK {
		return rv
	}
	ctx := context.Background()
	if v.pair {
		return ActionProhibited
	}
	// A public key alone, or a secret key, is one object: it goes.
	if v.obj.Class == ClassPublicKey || v.obj.Class == ClassSecretKey {
		if err := tok.DeleteKey(ctx, v.obj.UUID); err != nil {
			return deleteRV(err)
		}
		m.forget(sh, v.obj.UUID, hsmapi.KeyInfo{})
		return OK
	}
	// The public key object survives its private key.
	pubView := newView(KeyObject{UUID: v.obj.UUID, Class: ClassPublicKey, Info: v.obj.Info}, list(v.key))
	label, _ := pubView.attribute(attrLabel)
	attrs := maps.Clone(pubView.own)
	delete(attrs, hsmapi.CKALabel)
	if local, ok := v.key[hsmapi.CKALocal]; ok {
		attrs[hsmapi.CKALocal] = local
	}
	if _, ok := attrs[hsmapi.CKAID]; !ok {
		id, _ := pubView.attribute(attrID)
		attrs[hsmapi.CKAID] = id
	}
	res, err := tok.Import(ctx, hsmapi.ImportRequest{
		PublicKey:  v.obj.Info.PublicKey,
		Flags:      v.obj.Info.Flags &^ hsmapi.FlagExportable,
		Label:      string(label),
		Attributes: list(attrs),
	})
	if err != nil {
		return tokenRV(err)
	}
	if err := tok.DeleteKey(ctx, v.obj.UUID); err != nil {
		tok.DeleteKey(ctx, res.Key.UUID)
		return deleteRV(err)
	}
	m.forget(sh, v.obj.UUID, res.Key)
	return OK
}

func deleteRV(err error) RV {
	switch {
	case errors.Is(err, hsmapi.ErrKeyNotFound):
		return ObjectHandleInvalid
	case errors.Is(err, hsmapi.ErrForbidden):
		// The SO, who sees the keys it may trust and deletes none.
		return ActionProhibited
	}
	return tokenRV(err)
}

// forget drops a deleted key's handles; when the key's public half lives
// on as key pub, its public key object keeps its handle.
func (m *Module) forget(sh uint, id hsmapi.UUID, pub hsmapi.KeyInfo) {
	m.withSession(sh, func(s *slot, _ *session) RV {
		t := &s.objects
		h := t.byKey[id]
		delete(t.byKey, id)
		delete(t.byHandle, h.priv)
		owner, owned := t.owner[id]
		delete(t.owner, id)
		if pub.UUID.IsZero() {
			delete(t.byHandle, h.pub)
			return OK
		}
		t.byKey[pub.UUID] = keyHandles{pub: h.pub}
		t.byHandle[h.pub] = objectRef{uuid: pub.UUID, class: ClassPublicKey}
		if owned {
			t.own(owner, pub.UUID)
		}
		return OK
	})
}

// CopyObject is C_CopyObject. A public key object is copied as a new
// public key alone, with the template's changes (see change: never a
// usage more). A private key object is never copied
// (CKR_ACTION_PROHIBITED): the HSM has no way to duplicate a private key
// but to hold it in the clear, and a copy of an HSS key's state would
// sign twice with one one-time key.
func (m *Module) CopyObject(sh, object uint, tmpl []Attribute) (uint, RV) {
	// Copying an object only reads it: any session may.
	v, tok, rv := m.editObject(sh, object, attrCopyable, false)
	if rv != OK {
		return 0, rv
	}
	if v.obj.Class != ClassPublicKey {
		return 0, ActionProhibited
	}
	e, rv := applyTemplate(v, tmpl, true)
	if rv != OK {
		return 0, rv
	}
	if rv := m.writable(sh, e.flags); rv != OK {
		return 0, rv
	}
	delete(e.own, hsmapi.CKALabel)
	if local, ok := v.key[hsmapi.CKALocal]; ok {
		e.own[hsmapi.CKALocal] = local
	}
	res, err := tok.Import(context.Background(), hsmapi.ImportRequest{
		PublicKey:  v.obj.Info.PublicKey,
		Flags:      e.flags &^ hsmapi.FlagExportable,
		Label:      e.label,
		Attributes: list(e.own),
	})
	if err != nil {
		return 0, createRV(err)
	}
	h, rv := m.adopt(sh, res.Key)
	return h.pub, rv
}

// createRV is the answer to the HSM's refusal to store a key.
func createRV(err error) RV {
	switch {
	case errors.Is(err, hsmapi.ErrBadArguments), errors.Is(err, hsmapi.ErrUnsupportedKey):
		return AttributeValueInvalid
	case errors.Is(err, hsmapi.ErrForbidden):
		return UserNotLoggedIn
	}
	return tokenRV(err)
}
