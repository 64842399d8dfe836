package cryptoki

import (
	"context"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// loggedIn is an initialized module with one R/W session logged in as the
// user.
func loggedIn(t *testing.T) (*Module, uint) {
	t.Helper()
	return moduleOn(t, newHSM(t))
}

// tokenOf is the token session behind the module's slot, to make keys
// behind the module's back as another application of the HSM would.
func tokenOf(m *Module) hsmapi.Token {
	slots, _ := m.SlotList()
	var tok hsmapi.Token
	m.withSlot(slots[0], func(s *slot) RV { tok = s.client.Token(); return OK })
	return tok
}

func generate(t *testing.T, m *Module, req hsmapi.GenerateRequest) hsmapi.KeyInfo {
	t.Helper()
	if req.Flags == 0 {
		req.Flags = hsmapi.FlagDigitalSignature | hsmapi.FlagToken
	}
	k, err := tokenOf(m).GenerateKey(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestObjectHandles(t *testing.T) {
	m, h := loggedIn(t)
	ec := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Label: "ec"})
	pubOnly, err := tokenOf(m).Import(context.Background(), hsmapi.ImportRequest{PublicKey: ec.PublicKey, Flags: hsmapi.FlagToken, Label: "pub"})
	if err != nil {
		t.Fatal(err)
	}
	hs, objs, rv := m.listObjects(h)
	if rv != OK {
		t.Fatal(rv)
	}
	if len(hs) != 3 {
		t.Fatalf("%d objects, want 3 (a pair and a public key alone)", len(hs))
	}
	count := map[hsmapi.UUID][]uint{}
	for _, oh := range hs {
		o := objs[oh]
		count[o.UUID] = append(count[o.UUID], o.Class)
		got, rv := m.keyObject(h, oh)
		if rv != OK || got.UUID != o.UUID || got.Class != o.Class || got.Info.Label != o.Info.Label {
			t.Errorf("keyObject(%d): %+v %#x, want %+v", oh, got, rv, o)
		}
	}
	if c := count[ec.UUID]; len(c) != 2 || c[0] != ClassPrivateKey || c[1] != ClassPublicKey {
		t.Errorf("the pair's objects: classes %v", c)
	}
	if c := count[pubOnly.Key.UUID]; len(c) != 1 || c[0] != ClassPublicKey {
		t.Errorf("the public key's objects: classes %v", c)
	}

	// Stable: listing again gives the same handles.
	again, _, _ := m.listObjects(h)
	if len(again) != len(hs) {
		t.Fatalf("second listing: %v, first %v", again, hs)
	}
	for i := range hs {
		if again[i] != hs[i] {
			t.Fatalf("second listing: %v, first %v", again, hs)
		}
	}

	// A key deleted: its handles are invalid, and never given again.
	if err := tokenOf(m).DeleteKey(context.Background(), ec.UUID); err != nil {
		t.Fatal(err)
	}
	for _, oh := range hs {
		if objs[oh].UUID != ec.UUID {
			continue
		}
		if _, rv := m.keyObject(h, oh); rv != ObjectHandleInvalid {
			t.Errorf("handle %d of a deleted key: %#x", oh, rv)
		}
	}
	other := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256})
	now, objs2, _ := m.listObjects(h)
	for _, oh := range now {
		if objs2[oh].UUID == other.UUID && oh <= hs[len(hs)-1] {
			t.Errorf("the new key got handle %d, an old one", oh)
		}
	}

	for _, c := range []struct {
		name      string
		sess, obj uint
		want      RV
	}{
		{"no such object", h, 0, ObjectHandleInvalid},
		{"never given", h, 1 << 20, ObjectHandleInvalid},
		{"no such session", h + 100, hs[0], SessionHandleInvalid},
	} {
		if _, rv := m.keyObject(c.sess, c.obj); rv != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, rv, c.want)
		}
	}
}

func TestObjectsNeedLogin(t *testing.T) {
	m, h := loggedIn(t)
	k := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256})
	hs, objs, _ := m.listObjects(h)
	if len(hs) != 2 {
		t.Fatalf("%d objects", len(hs))
	}
	if rv := m.Logout(h); rv != OK {
		t.Fatal(rv)
	}
	for _, oh := range hs {
		if _, rv := m.keyObject(h, oh); rv != ObjectHandleInvalid {
			t.Errorf("%v object of %s after logout: %#x", objs[oh].Class, k.UUID, rv)
		}
	}
	if got, _, rv := m.listObjects(h); rv != OK || len(got) != 0 {
		t.Errorf("objects after logout: %v %#x", got, rv)
	}
	if rv := m.Login(h, UserSO, hsmtest.PIN); rv != OK {
		t.Fatal(rv)
	}
	// The SO sees the objects it may trust (trust_test.go): the public one.
	if got, gotObjs, rv := m.listObjects(h); rv != OK || len(got) != 1 || gotObjs[got[0]].Class != ClassPublicKey {
		t.Errorf("objects the SO sees: %v %#x", got, rv)
	}
}
