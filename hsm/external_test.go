package hsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/storefile"
)

// signsAndVerifies signs with k and verifies under its public key.
func signsAndVerifies(s *Session, k hsmapi.KeyInfo) error {
	return hsmapi.SignAndVerify(ctx, s, k, []byte("stored and back"))
}

func TestStoreRestore(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	attrs := []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: []byte("app id")}}
	ec := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags, Label: "ec", Attributes: attrs})
	rsaKey := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: signFlags, Label: "rsa"})
	hss := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags, Label: "hss"})
	if err := signsAndVerifies(s, hss); err != nil {
		t.Fatal(err)
	}
	file, err := s.StoreKeys(ctx, []hsmapi.UUID{ec.UUID, rsaKey.UUID, hss.UUID})
	if err != nil {
		t.Fatal(err)
	}
	f, err := storefile.Parse(file)
	if err != nil || f.HSM != h.Identity().Serial || len(f.Keys) != 3 {
		t.Fatalf("file %+v, %v", f, err)
	}
	// The HSS key is disabled; the others still sign (no --delete here).
	if err := signsAndVerifies(s, hss); !errors.Is(err, hsmapi.ErrKeyExhausted) {
		t.Fatalf("stored HSS key signs: %v", err)
	}
	if _, err := s.CheckStoredKeys(ctx, file); err != nil {
		t.Fatal(err)
	}
	for _, k := range []hsmapi.KeyInfo{ec, rsaKey} {
		if err := s.DeleteKey(ctx, k.UUID); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.RestoreKeys(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Present || res[2].Present {
		t.Fatalf("results %+v", res)
	}
	for _, k := range []hsmapi.KeyInfo{ec, rsaKey, hss} {
		got, err := s.Key(ctx, k.UUID)
		if err != nil || got.Label != k.Label || !bytes.Equal(got.PublicKey, k.PublicKey) || got.Flags != k.Flags {
			t.Fatalf("key %s came back as %+v, %v", k.UUID, got, err)
		}
		if err := signsAndVerifies(s, k); err != nil {
			t.Fatalf("key %s: %v", k.Label, err)
		}
	}
	if got, _ := s.KeyAttributes(ctx, ec.UUID); !hasAttr(got, attrs[0]) {
		t.Fatalf("attributes came back as %v", got)
	}
	// Restored again: the keys are there; the HSS key is no longer
	// disabled, so the file (older than its state now) is refused whole.
	if _, err := s.RestoreKeys(ctx, file); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
		t.Fatalf("restore of a file older than the HSS key's state: %v", err)
	}
	// Stored again after use, the new file restores; the old one never.
	file2, err := s.StoreKeys(ctx, []hsmapi.UUID{hss.UUID})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RestoreKeys(ctx, file); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
		t.Fatalf("restore of the older file: %v", err)
	}
	if _, err := s.RestoreKeys(ctx, file2); err != nil {
		t.Fatal(err)
	}
	if err := signsAndVerifies(s, hss); err != nil {
		t.Fatal(err)
	}
}

func hasAttr(list []hsmapi.Attribute, a hsmapi.Attribute) bool {
	for _, b := range list {
		if b.Type == a.Type && bytes.Equal(b.Value, a.Value) {
			return true
		}
	}
	return false
}

// Any edit of the file, a file of another HSM, or one under a retired
// master key: refused, nothing stored.
func TestRestoreRefuses(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags, Label: "k"})
	file, err := s.StoreKeys(ctx, []hsmapi.UUID{k.UUID})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKey(ctx, k.UUID); err != nil {
		t.Fatal(err)
	}
	noKeys := func(name string) {
		t.Helper()
		if keys, _ := s.Keys(ctx, hsmapi.Filter{}); len(keys) != 0 {
			t.Fatalf("%s: %d keys stored", name, len(keys))
		}
	}
	f, _ := storefile.Parse(file)
	edits := map[string]func(f *storefile.File){
		"label":   func(f *storefile.File) { f.Keys[0].Label = "other" },
		"created": func(f *storefile.File) { f.Created = f.Created.Add(1e9) },
		"wrapped": func(f *storefile.File) { f.Keys[0].Wrapped[5] ^= 1 },
		"tag":     func(f *storefile.File) { f.Tag[0] ^= 1 },
		"type":    func(f *storefile.File) { f.Keys[0].Type = hsmapi.KeyTypeRSAPrivate },
		"hsm":     func(f *storefile.File) { f.HSM = "someone else" },
		"kcv":     func(f *storefile.File) { f.CheckValue[0] ^= 1 },
		"dropped": func(f *storefile.File) { f.Keys = append(f.Keys, f.Keys[0]); f.Keys[1].UUID[0] ^= 1 },
	}
	for name, edit := range edits {
		g, _ := storefile.Parse(file)
		edit(g)
		data, _ := g.Marshal()
		if _, err := s.RestoreKeys(ctx, data); err == nil {
			t.Errorf("%s edited: restored", name)
		}
		noKeys(name)
	}
	if _, err := s.RestoreKeys(ctx, file[:len(file)/2]); !errors.Is(err, storefile.ErrMalformed) {
		t.Errorf("truncated: %v", err)
	}
	_ = f

	// Another HSM.
	h2, _ := newTestHSM(t)
	if _, err := login(t, h2).RestoreKeys(ctx, file); !errors.Is(err, hsmapi.ErrNotThisHSM) {
		t.Errorf("another HSM: %v", err)
	}

	// After a rotation the ring takes it back; after retire, no more.
	res, err := s.RotateMasterKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckStoredKeys(ctx, file); err != nil {
		t.Fatalf("under the old key in the ring: %v", err)
	}
	if err := s.RetireMasterKey(ctx, res.OldCheckValue); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RestoreKeys(ctx, file); !errors.Is(err, hsmapi.ErrNotThisHSM) {
		t.Errorf("under a retired key: %v", err)
	}
	noKeys("retired")
}

// A power cut at every write of a restore: all of the keys or none.
func TestRestoreSurvivesPowerCutAtEveryWrite(t *testing.T) {
	base, _ := newTestHSM(t)
	bs := login(t, base)
	var ids []hsmapi.UUID
	var keys []hsmapi.KeyInfo
	for range 3 {
		k := generate(t, bs, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
		ids, keys = append(ids, k.UUID), append(keys, k)
	}
	file, err := bs.StoreKeys(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := bs.DeleteKey(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	bs.Close()
	eachPowerCut(t, "restore", base, func(s *Session) error {
		_, err := s.RestoreKeys(ctx, file)
		return err
	}, func(c powerCut) {
		if err := c.s.Login(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
			t.Fatal(err)
		}
		got, err := c.s.Keys(ctx, hsmapi.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case len(got) == 0 && !c.last:
		case len(got) == len(keys):
			for _, k := range keys {
				if err := signsAndVerifies(c.s, k); err != nil {
					t.Errorf("%s: %v", c.name, err)
				}
			}
		default:
			t.Errorf("%s: %d of %d keys", c.name, len(got), len(keys))
		}
	})
}
