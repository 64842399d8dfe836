package cryptoki

import (
	"context"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// The SO uses no keys on this HSM, so the token shows it none as it shows
// them to the user. It shows the SO the keys it may mark trusted
// (hsmapi.TrustLister), and the module makes of them the objects the SO
// sees: public key objects and secret key objects, never a private key
// object. CKA_TRUSTED is all the SO changes (SetAttributeValue). A token
// that lists nothing to its SO (a libhal server over RPC, which has no
// such call, or one of this project's before extensions version 5) shows
// the SO no objects.

// trustCandidates lists the keys tok shows its SO to trust; ErrForbidden
// when tok shows none.
func trustCandidates(tok hsmapi.Token) ([]hsmapi.TrustCandidate, error) {
	l, ok := tok.(hsmapi.TrustLister)
	if !ok {
		return nil, fmt.Errorf("list keys to trust: %w: the token shows its SO no keys", hsmapi.ErrForbidden)
	}
	return l.TrustCandidates(context.Background())
}

// trustCandidate is key id as tok shows it its SO to trust.
func trustCandidate(tok hsmapi.Token, id hsmapi.UUID) (hsmapi.TrustCandidate, error) {
	cands, err := trustCandidates(tok)
	if err != nil {
		return hsmapi.TrustCandidate{}, err
	}
	for _, c := range cands {
		if c.Key.UUID == id {
			return c, nil
		}
	}
	return hsmapi.TrustCandidate{}, fmt.Errorf("%w: %s", hsmapi.ErrKeyNotFound, id)
}

// loggedInAs reports whether session sh's slot is logged in as user u.
func (m *Module) loggedInAs(sh uint, u hsmapi.User) bool {
	is := false
	m.withSession(sh, func(s *slot, _ *session) RV { is = s.user == u; return OK })
	return is
}

// setTrusted is C_SetAttributeValue for the SO: CKA_TRUSTED, true or
// false, set by the HSM's TrustSetter; any other attribute of the template
// must keep its value (CKR_ATTRIBUTE_READ_ONLY otherwise), as the SO
// changes nothing else of a key.
func (m *Module) setTrusted(sh, object uint, tmpl []Attribute) RV {
	v, tok, rv := m.editObject(sh, object, attrModifiable, true)
	if rv != OK {
		return rv
	}
	var want, set bool
	for _, a := range tmpl {
		if _, known := attrKinds[a.Type]; !known || !v.applies(a.Type) {
			return AttributeTypeInvalid
		}
		if !validValue(a.Type, a.Value) {
			return AttributeValueInvalid
		}
		if a.Type == attrTrusted {
			want, _ = boolOf(a.Value)
			set = true
			continue
		}
		if cur, rv := v.attribute(a.Type); rv != OK || !sameValue(a.Type, cur, a.Value) {
			return AttributeReadOnly
		}
	}
	if cur, _ := v.attribute(attrTrusted); !set || sameValue(attrTrusted, cur, boolValue(want)) {
		return OK
	}
	ts, ok := tok.(hsmapi.TrustSetter)
	if !ok {
		return AttributeReadOnly
	}
	return attributeWriteRV(ts.SetTrusted(context.Background(), v.obj.UUID, want))
}
