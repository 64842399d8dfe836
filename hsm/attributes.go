package hsm

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// Keys carry attributes as libhal keys do (pkey_set_attributes,
// pkey_get_attributes): values by type, the PKCS#11 attribute numbers of
// Cryptech's PKCS#11 layer. The label is attribute AttributeLabel (CKA_LABEL)
// and is KeyInfo.Label.

// record returns the keystore record of k with the given private DER.
func (k *key) record(private []byte) *keyRecord {
	return &keyRecord{uuid: k.info.UUID, typ: k.info.Type, curve: k.info.Curve, flags: k.info.Flags,
		label: k.info.Label, public: k.info.PublicKey, private: private, attrs: k.attrs}
}

// attribute returns one attribute of k.
func (k *key) attribute(t uint32) ([]byte, bool) {
	if t == hsmapi.AttributeLabel {
		return []byte(k.info.Label), k.info.Label != ""
	}
	v, ok := k.attrs[t]
	return v, ok
}

// hasAttributes reports whether k has each attribute with its value.
func (k *key) hasAttributes(want []hsmapi.Attribute) bool {
	for _, a := range want {
		v, ok := k.attribute(a.Type)
		if !ok || string(v) != string(a.Value) {
			return false
		}
	}
	return true
}

// Attributes returns the values of the requested attributes of a key, in
// order, or ErrAttributeNotFound for the first it lacks.
func (s *Session) Attributes(_ context.Context, id hsmapi.UUID, types []uint32) ([]hsmapi.Attribute, error) {
	k, err := s.key(id)
	if err != nil {
		return nil, fmt.Errorf("get attributes: %w", err)
	}
	out := make([]hsmapi.Attribute, len(types))
	for i, t := range types {
		v, ok := k.attribute(t)
		if !ok {
			return nil, fmt.Errorf("get attributes of %s: %w: type %d", id, hsmapi.ErrAttributeNotFound, t)
		}
		out[i] = hsmapi.Attribute{Type: t, Value: append([]byte(nil), v...)}
	}
	return out, nil
}

// SetAttributes sets or deletes attributes of a key, durably for a token
// key, as the key policy allows (policy.go). The key is replaced, never
// changed in place, so that readers holding it see a consistent key.
func (s *Session) SetAttributes(_ context.Context, id hsmapi.UUID, attrs []hsmapi.Attribute) error {
	if err := s.requireKeyUser(); err != nil {
		return fmt.Errorf("set attributes: %w", err)
	}
	return s.h.setAttributes(s, id, func(*key) []hsmapi.Attribute { return attrs })
}

// SetTrusted sets or clears CKA_TRUSTED on the object of a key that wraps
// (a key pair's public key object), as only the security officer (or
// wheel) may: a wrapping key so marked may wrap keys that carry
// CKA_WRAP_WITH_TRUSTED.
func (s *Session) SetTrusted(_ context.Context, id hsmapi.UUID, trusted bool) error {
	if u := s.User(); !mayTrust(u) {
		return fmt.Errorf("set CKA_TRUSTED of %s: %w: only the security officer may (logged in as %s)", id, hsmapi.ErrForbidden, u)
	}
	return s.h.setAttributes(s, id, func(k *key) []hsmapi.Attribute {
		a := hsmapi.Attribute{Type: hsmapi.CKATrusted, Value: ckBool(trusted)}
		if !k.info.Type.IsPrivate() {
			return []hsmapi.Attribute{a}
		}
		var list []hsmapi.Attribute
		if enc, ok := k.attrs[hsmapi.AttributePublicObject]; ok {
			list, _ = hsmapi.DecodeAttributes(enc)
		}
		list = slices.DeleteFunc(list, func(b hsmapi.Attribute) bool { return b.Type == hsmapi.CKATrusted })
		return []hsmapi.Attribute{{Type: hsmapi.AttributePublicObject, Value: hsmapi.EncodeAttributes(append(list, a))}}
	})
}

// TrustCandidates lists, to the security officer (or wheel), the keys
// SetTrusted may mark: the keys of this session's view (the token keys;
// the SO makes no volatile ones), each with its attributes. Nothing of
// them is secret: a key's description and attributes never hold its
// private half or value.
func (s *Session) TrustCandidates(_ context.Context) ([]hsmapi.TrustCandidate, error) {
	if u := s.User(); !mayTrust(u) {
		return nil, fmt.Errorf("list keys to trust: %w: only the security officer may (logged in as %s)", hsmapi.ErrForbidden, u)
	}
	keys, err := s.h.visibleKeys(s)
	if err != nil {
		return nil, fmt.Errorf("list keys to trust: %w", err)
	}
	out := make([]hsmapi.TrustCandidate, len(keys))
	for i, info := range snapshotAll(keys) {
		out[i] = hsmapi.TrustCandidate{Key: info, Attributes: keys[i].attributeList()}
	}
	return out, nil
}

// setAttributes applies the changes edit makes of the key as it is, under
// the HSM's lock.
func (h *HSM) setAttributes(s *Session, id hsmapi.UUID, edit func(*key) []hsmapi.Attribute) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	k, err := h.lookup(s, id)
	if err != nil {
		return fmt.Errorf("set attributes: %w", err)
	}
	attrs := edit(k)
	nk := *k
	nk.attrs = maps.Clone(k.attrs)
	if nk.attrs == nil {
		nk.attrs = map[uint32][]byte{}
	}
	for _, a := range attrs {
		switch {
		case a.Type == hsmapi.AttributeLabel && a.Delete:
			nk.info.Label = ""
		case a.Type == hsmapi.AttributeLabel:
			// Any bytes, as libhal stores them: a libhal client may set
			// what it likes (CheckRawLabel). Labels from the command line
			// keep CheckLabel's rules (GenerateRequest, LoadRequest), and
			// whatever prints a label escapes it.
			if err := hsmapi.CheckRawLabel(string(a.Value)); err != nil {
				return fmt.Errorf("set attributes of %s: %w", id, err)
			}
			nk.info.Label = string(a.Value)
		case a.Delete:
			delete(nk.attrs, a.Type)
		case len(a.Value) > hsmapi.MaxAttributeSize:
			return fmt.Errorf("set attributes of %s: %w: attribute %d longer than %d bytes", id, hsmapi.ErrBadArguments, a.Type, hsmapi.MaxAttributeSize)
		default:
			nk.attrs[a.Type] = append([]byte(nil), a.Value...)
		}
	}
	prev := k.attrs
	if prev == nil {
		prev = map[uint32][]byte{} // a key stored already: not a new one
	}
	if err := checkAttributeChange(s.User(), k.info.Flags, k.secret != nil, prev, nk.attrs); err != nil {
		return fmt.Errorf("set attributes of %s: %w", id, err)
	}
	if k.owner != nil {
		// Bounded as a stored key is, by what its block could hold.
		if attributeBytes(&nk) > keystore.MaxDataSize {
			return fmt.Errorf("set attributes of %s: %w: the key's attributes would not fit in a flash block", id, hsmapi.ErrBadArguments)
		}
		h.volatile[id] = &nk
		return nil
	}
	// The private part comes from flash, as last stored: an HSS key's state
	// is whatever it last persisted, without taking the key's own lock here.
	rec, err := h.ks.Get(keystore.ID(id))
	if err != nil {
		return fmt.Errorf("set attributes of %s: %w", id, err)
	}
	stored, err := h.unseal(id, rec.Data)
	if err != nil {
		return err
	}
	r := nk.record(stored.private)
	defer r.wipe()
	defer stored.wipe()
	data, err := h.seal(r)
	if err != nil {
		return err
	}
	if len(data) > keystore.MaxDataSize {
		return fmt.Errorf("set attributes of %s: %w: the key's attributes do not fit in a flash block", id, hsmapi.ErrBadArguments)
	}
	if err := h.ks.Put(keystore.Record{ID: keystore.ID(id), Kind: kindKey, Data: data}); err != nil {
		return fmt.Errorf("set attributes of %s: %w", id, err)
	}
	h.cache[id] = &nk
	return nil
}

// attributeBytes is what a key's label and attributes take in its record.
func attributeBytes(k *key) int {
	n := len(k.info.Label)
	for _, v := range k.attrs {
		n += 8 + len(v)
	}
	return n
}

// KeyAttributes returns every attribute of a key but its label, ordered by
// type.
func (s *Session) KeyAttributes(_ context.Context, id hsmapi.UUID) ([]hsmapi.Attribute, error) {
	k, err := s.key(id)
	if err != nil {
		return nil, fmt.Errorf("get attributes: %w", err)
	}
	return k.attributeList(), nil
}

// attributeList is a copy of the key's attributes, ordered by type.
func (k *key) attributeList() []hsmapi.Attribute {
	out := make([]hsmapi.Attribute, 0, len(k.attrs))
	for _, t := range slices.Sorted(maps.Keys(k.attrs)) {
		out = append(out, hsmapi.Attribute{Type: t, Value: append([]byte(nil), k.attrs[t]...)})
	}
	return out
}

// LoadPrivateKey stores a private key given in the clear (an RSA or EC
// PKCS#8 PrivateKeyInfo), as libhal's PKEY_LOAD does. The key is marked
// not made here (CKA_LOCAL false) unless the caller's attributes say
// otherwise. HSS keys are refused: a copy of a stateful key's state, loaded
// next to the original, would sign twice with one index.
func (s *Session) LoadPrivateKey(_ context.Context, req hsmapi.LoadRequest) (hsmapi.KeyInfo, error) {
	if err := s.requireKeyUser(); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load key: %w", err)
	}
	if err := checkNewKey(req.Flags, req.Label); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load key: %w", err)
	}
	if err := checkAttributes(req.Attributes); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load key: %w", err)
	}
	signer, hss, err := parsePrivateKey(req.PKCS8)
	if hss != nil {
		hss.Wipe()
		return hsmapi.KeyInfo{}, fmt.Errorf("load key: %w: HSS private keys are never loaded in the clear", hsmapi.ErrUnsupportedKey)
	}
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load key: %w", err)
	}
	attrs := attributeMap(req.Attributes)
	if _, ok := attrs[hsmapi.CKALocal]; !ok {
		if attrs == nil {
			attrs = map[uint32][]byte{}
		}
		attrs[hsmapi.CKALocal] = []byte{0}
	}
	if err := checkAttributeChange(s.User(), req.Flags, false, nil, attrs); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load key: %w", err)
	}
	k, err := s.h.storeNew(s, signer, req.Flags, req.Label, attrs)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load key: %w", err)
	}
	return k.info, nil
}
