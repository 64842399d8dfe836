package cryptoki

import (
	"context"
	"errors"
	"slices"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// Object classes (CKA_CLASS values).
const (
	ClassData        = 0x0
	ClassCertificate = 0x1
	ClassPublicKey   = 0x2
	ClassPrivateKey  = 0x3
	ClassSecretKey   = 0x4
)

// A KeyObject is what an object handle names: one object of one key of the
// slot's HSM. A key with a private half is two objects, its private key
// object and its public key object; a public key alone is one.
type KeyObject struct {
	UUID hsmapi.UUID
	// Class is ClassPrivateKey, ClassPublicKey or ClassSecretKey.
	Class uint
	// Info is the key as the token described it when the handle was used.
	Info hsmapi.KeyInfo
}

// objectRef is what a handle stands for, without asking the token.
type objectRef struct {
	uuid  hsmapi.UUID
	class uint
	// facts is the key as the token last described it for this handle
	// (see keyFacts); nil when it has not been described since the table
	// last forgot (forgetFacts), and always for an HSS key.
	facts *hsmapi.KeyInfo
}

// keyHandles are the object handles of one key: pub is the public key
// object's (a secret key's one object), priv the private key object's (0
// for a public key alone and a secret key).
type keyHandles struct{ priv, pub uint }

// objectTable gives each key of a slot its object handles, the first time
// the module sees the key, for as long as the slot lives: an application
// may keep a handle from one call to the next and find the same object,
// and a handle is never given to another object, even once its key is gone
// (so a stale handle is invalid, never someone else's key). The handles are
// numbered in one sequence for the module (Module.objectSeq), so they are
// never reused after a C_Finalize either.
type objectTable struct {
	byKey    map[hsmapi.UUID]keyHandles
	byHandle map[uint]objectRef
	// owner is the session that made each session object (a volatile key
	// of the HSM), which takes it along when it closes.
	owner map[hsmapi.UUID]uint
	// epoch counts forgetFacts: a description asked for before one is
	// not kept after it.
	epoch uint64
}

// forgetFacts drops every key description the handles keep: after a
// login or logout (the HSM drops its volatile keys at logout, and shows
// each user other keys) and C_InitToken (every key is gone).
func (t *objectTable) forgetFacts() {
	t.epoch++
	for h, r := range t.byHandle {
		r.facts = nil
		t.byHandle[h] = r
	}
}

// dropFacts drops the descriptions kept for key id's handles: the module
// deleted it.
func (t *objectTable) dropFacts(id hsmapi.UUID) {
	kh := t.byKey[id]
	for _, h := range []uint{kh.priv, kh.pub} {
		if r, ok := t.byHandle[h]; ok && h != 0 {
			r.facts = nil
			t.byHandle[h] = r
		}
	}
}

// keepFacts keeps info as what object handle h, naming key info.UUID,
// stands for, unless the table forgot since epoch or the handle names
// another key now. HSS keys are never kept: their signatures left change
// with every signature.
func (t *objectTable) keepFacts(h uint, info hsmapi.KeyInfo, epoch uint64) {
	r, ok := t.byHandle[h]
	if !ok || r.uuid != info.UUID || t.epoch != epoch || info.Hashsig != nil {
		return
	}
	r.facts = &info
	t.byHandle[h] = r
}

// own records that session sh made the session object id.
func (t *objectTable) own(sh uint, id hsmapi.UUID) {
	if t.owner == nil {
		t.owner = map[hsmapi.UUID]uint{}
	}
	t.owner[id] = sh
}

// owned removes and returns the session objects of session sh.
func (t *objectTable) owned(sh uint) []hsmapi.UUID {
	var out []hsmapi.UUID
	for id, owner := range t.owner {
		if owner == sh {
			out = append(out, id)
			delete(t.owner, id)
		}
	}
	return out
}

// handlesFor returns the handles of key k, giving it handles first if it
// has none yet. Called with m.mu held.
func (m *Module) handlesFor(s *slot, k hsmapi.KeyInfo) keyHandles {
	lockassert.Held(&m.mu)
	t := &s.objects
	if t.byKey == nil {
		t.byKey = map[hsmapi.UUID]keyHandles{}
		t.byHandle = map[uint]objectRef{}
	}
	h, ok := t.byKey[k.UUID]
	if !ok {
		if k.Type.IsPrivate() {
			m.objectSeq++
			h.priv = m.objectSeq
			t.byHandle[h.priv] = objectRef{uuid: k.UUID, class: ClassPrivateKey}
		}
		m.objectSeq++
		h.pub = m.objectSeq
		t.byHandle[h.pub] = objectRef{uuid: k.UUID, class: oneObjectClass(k)}
		t.byKey[k.UUID] = h
	}
	// k was described just now: the handles keep it.
	t.keepFacts(h.priv, k, t.epoch)
	t.keepFacts(h.pub, k, t.epoch)
	return h
}

// objectVisible applies PKCS#11's rule on top of the HSM's: a private key
// object (CKA_PRIVATE) is seen only by the normal user, and the SO sees
// the objects it may mark trusted (trust.go), public and secret key
// objects. The HSM shows its keys only to users who may use keys, and to
// the SO those it may trust, so without a login the token lists nothing
// at all anyway. The caller holds the module's lock, which guards s.user.
func objectVisible(s *slot, class uint) bool {
	return class == ClassPublicKey || s.user == hsmapi.UserNormal ||
		class == ClassSecretKey && s.user == hsmapi.UserSO
}

// oneObjectClass is the class of the object a key has besides its private
// key object: a secret key's own, or the public key object.
func oneObjectClass(k hsmapi.KeyInfo) uint {
	if k.Type == hsmapi.KeyTypeAES {
		return ClassSecretKey
	}
	return ClassPublicKey
}

// keyObject resolves object handle object of session sh: the key and which
// of its objects the handle names, as the token describes the key now.
// A handle the module never gave, one of another slot, one whose key is
// gone or one the session may not see is ObjectHandleInvalid.
func (m *Module) keyObject(sh, object uint) (KeyObject, RV) {
	return m.describe(sh, object, false)
}

// keyFacts is keyObject for a caller that needs only what never changes
// about a key: its type, curve, size, flags and public key (the HSM
// changes none of them; a key's attributes and label are another matter,
// and the caller must not use Info.Label). It asks the token the first
// time a handle is used and keeps the answer with the handle: over RPC
// a description takes three round trips, more than the signature itself,
// and C_SignInit comes before every signature. An HSS key is asked each
// time, for the signatures it has left.
//
// A key deleted through this module, or dropped with its session or at
// logout, is never described from what was kept. One deleted behind the
// module's back (another application over RPC) is found gone by the
// operation itself: C_Sign answers CKR_KEY_HANDLE_INVALID (or, for a key
// of another kind or size imported under the same UUID meanwhile,
// CKR_GENERAL_ERROR: sign checks the signature's form).
func (m *Module) keyFacts(sh, object uint) (KeyObject, RV) {
	return m.describe(sh, object, true)
}

func (m *Module) describe(sh, object uint, kept bool) (KeyObject, RV) {
	var s *slot
	var ref objectRef
	var epoch uint64
	rv := m.withSession(sh, func(sl *slot, _ *session) RV {
		r, ok := sl.objects.byHandle[object]
		if !ok || !objectVisible(sl, r.class) {
			return ObjectHandleInvalid
		}
		s, ref, epoch = sl, r, sl.objects.epoch
		return OK
	})
	if rv != OK {
		return KeyObject{}, rv
	}
	if kept && ref.facts != nil {
		return KeyObject{UUID: ref.uuid, Class: ref.class, Info: *ref.facts}, OK
	}
	// The token works without m.mu.
	info, err := s.client.Token().Key(context.Background(), ref.uuid)
	if errors.Is(err, hsmapi.ErrForbidden) {
		// The SO, who uses no keys, sees those it may trust.
		var c hsmapi.TrustCandidate
		c, err = trustCandidate(s.client.Token(), ref.uuid)
		info = c.Key
	}
	switch {
	case errors.Is(err, hsmapi.ErrKeyNotFound), errors.Is(err, hsmapi.ErrNotLoggedIn), errors.Is(err, hsmapi.ErrForbidden):
		return KeyObject{}, ObjectHandleInvalid
	case err != nil:
		return KeyObject{}, tokenRV(err)
	}
	m.withSession(sh, func(sl *slot, _ *session) RV {
		if sl == s {
			sl.objects.keepFacts(object, info, epoch)
		}
		return OK
	})
	return KeyObject{UUID: ref.uuid, Class: ref.class, Info: info}, OK
}

// listObjects returns the handles of every object of the slot of session
// sh that the session may see, in order of handle, with what each names.
// The token decides which keys it shows (the HSM's login rules); a token
// that shows none to this user is an empty list, not an error.
func (m *Module) listObjects(sh uint) ([]uint, map[uint]KeyObject, RV) {
	var s *slot
	var user hsmapi.User
	rv := m.withSession(sh, func(sl *slot, _ *session) RV { s, user = sl, sl.user; return OK })
	if rv != OK {
		return nil, nil, rv
	}
	// Secret keys are listed when asked for by their type (hsmapi.Token).
	var keys []hsmapi.KeyInfo
	// The SO: a libhal server finds no keys for it, rather than refusing.
	forbidden := user == hsmapi.UserSO
	for _, f := range []hsmapi.Filter{{}, {Type: hsmapi.KeyTypeAES}} {
		some, err := s.client.Token().Keys(context.Background(), f)
		switch {
		case errors.Is(err, hsmapi.ErrForbidden):
			forbidden = true
		case errors.Is(err, hsmapi.ErrNotLoggedIn):
		case err != nil:
			return nil, nil, tokenRV(err)
		}
		keys = append(keys, some...)
	}
	if forbidden {
		// The SO, who uses no keys, sees those it may trust.
		cands, err := trustCandidates(s.client.Token())
		if err != nil && !errors.Is(err, hsmapi.ErrForbidden) && !errors.Is(err, hsmapi.ErrUnsupported) {
			return nil, nil, tokenRV(err)
		}
		for _, c := range cands {
			keys = append(keys, c.Key)
		}
	}
	objs := map[uint]KeyObject{}
	var hs []uint
	rv = m.withSession(sh, func(sl *slot, _ *session) RV {
		if sl != s {
			// Finalized and initialized again meanwhile.
			return SessionHandleInvalid
		}
		for _, k := range keys {
			h := m.handlesFor(sl, k)
			if h.priv != 0 && objectVisible(sl, ClassPrivateKey) {
				objs[h.priv] = KeyObject{UUID: k.UUID, Class: ClassPrivateKey, Info: k}
				hs = append(hs, h.priv)
			}
			if c := oneObjectClass(k); objectVisible(sl, c) {
				objs[h.pub] = KeyObject{UUID: k.UUID, Class: c, Info: k}
				hs = append(hs, h.pub)
			}
		}
		return OK
	})
	if rv != OK {
		return nil, nil, rv
	}
	slices.Sort(hs)
	return hs, objs, OK
}

// tokenRV is the return value for a token's error that the caller has no
// better answer for.
func tokenRV(err error) RV {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, hsmapi.ErrNotLoggedIn):
		return UserNotLoggedIn
	case errors.Is(err, hsmapi.ErrKeystoreFull):
		return DeviceMemory
	case errors.Is(err, hsmapi.ErrTamper), errors.Is(err, hsmapi.ErrDamaged):
		return DeviceError
	}
	return GeneralError
}

// dropSessionObjects destroys the session objects session sh made, as
// PKCS#11 has them go with their session. (The HSM drops every volatile
// key at logout anyway, which comes with the last session's end.)
func (m *Module) dropSessionObjects(s *slot, sh uint) {
	m.mu.Lock()
	gone := s.objects.owned(sh)
	for _, id := range gone {
		s.objects.dropFacts(id)
	}
	m.mu.Unlock()
	for _, id := range gone {
		// Gone already, or the token's session with it: nothing to do.
		s.client.Token().DeleteKey(context.Background(), id)
	}
}

// ObjectSize is C_GetObjectSize: the HSM does not tell what a key takes
// in its flash, so the size is Unavailable (as the specification allows).
func (m *Module) ObjectSize(sh, object uint) (uint, RV) {
	if _, rv := m.keyObject(sh, object); rv != OK {
		return 0, rv
	}
	return Unavailable, OK
}
