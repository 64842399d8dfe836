package hsm

import (
	"errors"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
	"github.com/hsmkit/cryptech-backup/keyshare"
)

// everyKeySigns signs with each key and verifies under its public key.
func everyKeySigns(t *testing.T, name string, s *Session, keys []hsmapi.KeyInfo) {
	t.Helper()
	for _, k := range keys {
		if err := signsAndVerifies(s, k); err != nil {
			t.Errorf("%s: key %s: %v", name, k.UUID, err)
		}
	}
}

// recordsUnder counts the key records that open under key.
func recordsUnder(t *testing.T, h *HSM, key []byte) int {
	t.Helper()
	n := 0
	for _, id := range h.ks.List(kindKey) {
		rec, err := h.ks.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if plain, err := keywrap.UnwrapPad(key, rec.Data); err == nil {
			clear(plain)
			n++
		}
	}
	return n
}

func TestRotateMasterKey(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	var keys []hsmapi.KeyInfo
	for range 3 {
		keys = append(keys, generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags}))
	}
	old, _ := h.board.MKM.Get()
	defer clear(old)
	res, err := s.RotateMasterKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := h.board.MKM.Get()
	defer clear(cur)
	if res.Resealed != 3 || res.OldCheckValue != keyshare.CheckValue(old) || res.CheckValue != keyshare.CheckValue(cur) || res.CheckValue == res.OldCheckValue {
		t.Fatalf("result %+v", res)
	}
	if recordsUnder(t, h, cur) != 3 || recordsUnder(t, h, old) != 0 {
		t.Fatal("records not sealed again under the new key")
	}
	st, err := s.MasterKeyStatus(ctx)
	if err != nil || len(st.OldKeys) != 1 || st.OldKeys[0].CheckValue != res.OldCheckValue || st.OldKeys[0].Records != 0 {
		t.Fatalf("status %+v, %v", st, err)
	}
	everyKeySigns(t, "after rotate", s, keys)

	// Retire: an unknown check value, then the old key.
	if err := s.RetireMasterKey(ctx, [8]byte{1}); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Fatalf("retire unknown: %v", err)
	}
	if err := s.RetireMasterKey(ctx, res.OldCheckValue); err != nil {
		t.Fatal(err)
	}
	s.Close()
	h2, s2 := restarted(t, h)
	if len(h2.board.MKM.OldKeys()) != 0 {
		t.Fatal("the retired key is still in the ring")
	}
	everyKeySigns(t, "after restart", s2, keys)

	// The SO may; the user may not.
	user := userSession(t, h2, hsmapi.UserNormal, userPIN)
	if _, err := user.RotateMasterKey(ctx); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Fatalf("user rotates: %v", err)
	}
	if err := user.RetireMasterKey(ctx, res.CheckValue); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Fatalf("user retires: %v", err)
	}
}

// A power cut at each flash write of a rotation: every key opens and
// signs, under the new key or the old one; retire refuses while records
// are under the old key; a second rotation finishes the job.
func TestRotateSurvivesPowerCutAtEveryWrite(t *testing.T) {
	base, _ := newTestHSM(t)
	bs := login(t, base)
	var keys []hsmapi.KeyInfo
	for range 3 {
		keys = append(keys, generate(t, bs, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags}))
	}
	bs.Close()
	eachPowerCut(t, "rotate", base, func(s *Session) error {
		_, err := s.RotateMasterKey(ctx)
		return err
	}, func(c powerCut) {
		if err := c.s.Login(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
			t.Fatal(err)
		}
		everyKeySigns(t, c.name, c.s, keys)
		st, err := c.s.MasterKeyStatus(ctx)
		if err != nil || len(st.OldKeys) != 1 {
			t.Fatalf("%s: status %+v, %v", c.name, st, err)
		}
		left := st.OldKeys[0].Records
		if c.last && left != 0 {
			t.Errorf("%s: %d records under the old key", c.name, left)
		}
		if left > 0 {
			if err := c.s.RetireMasterKey(ctx, st.OldKeys[0].CheckValue); !errors.Is(err, hsmapi.ErrForbidden) {
				t.Errorf("%s: retire with %d records under the key: %v", c.name, left, err)
			}
			if _, err := c.s.RotateMasterKey(ctx); err != nil {
				t.Fatalf("%s: rotate again: %v", c.name, err)
			}
			everyKeySigns(t, c.name+" rotated again", c.s, keys)
		}
		cur, _ := c.h.board.MKM.Get()
		defer clear(cur)
		if n := recordsUnder(t, c.h, cur); n != len(keys) {
			t.Errorf("%s: %d records under the current key", c.name, n)
		}
	})
}

// The ring is bounded: the ninth rotation without a retire is refused and
// changes nothing.
func TestRotateRingFull(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	for range 8 {
		if _, err := s.RotateMasterKey(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := h.board.MKM.Get()
	defer clear(before)
	if _, err := s.RotateMasterKey(ctx); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Fatalf("ninth rotation: %v", err)
	}
	after, _ := h.board.MKM.Get()
	defer clear(after)
	if string(before) != string(after) {
		t.Fatal("a refused rotation changed the key")
	}
	everyKeySigns(t, "ring full", s, []hsmapi.KeyInfo{k})
}

// A backup made before a rotation is stale: after a wipe its shares are
// refused as another key's; a backup of the new key restores.
func TestRestoreStaleBackup(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	stale := backupMasterKey(t, s, 2, 2)
	res, err := s.RotateMasterKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cv, ok, _ := h.recordedCheckValue(); !ok || cv != res.CheckValue {
		t.Fatalf("recorded check value %x after rotate to %x", cv, res.CheckValue)
	}
	fresh := backupMasterKey(t, s, 2, 2)
	if err := s.ZeroizeMasterKey(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.BeginRestore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SubmitShare(ctx, sealShare(t, stale, 1, st)); !errors.Is(err, hsmapi.ErrShareRefused) {
		t.Fatalf("a share of the old key: %v", err)
	}
	for i := 1; i <= 2; i++ {
		if st, err = s.SubmitShare(ctx, sealShare(t, fresh, i, st)); err != nil {
			t.Fatal(err)
		}
	}
	everyKeySigns(t, "restored", s, []hsmapi.KeyInfo{k})

	// A crash between the rotation's memory write and its record: the
	// next power-up records the key's check value.
	if err := h.ks.Put(keystoreRecordOf(res.OldCheckValue)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	h2, _ := restarted(t, h)
	if cv, _, _ := h2.recordedCheckValue(); cv != res.CheckValue {
		t.Fatalf("after power-up the record says %x, the key is %x", cv, res.CheckValue)
	}
}
