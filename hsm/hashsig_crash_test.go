package hsm

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// blockAccount checks that every flash block of h is free, holds a record,
// or is damaged: nothing a power cut left behind is lost for good.
func blockAccount(t *testing.T, h *HSM, name string) {
	t.Helper()
	records := 0
	for k := 1; k < 256; k++ {
		records += len(h.ks.List(keystore.Kind(k)))
	}
	if free, damaged := h.ks.Free(), len(h.ks.Damaged()); free+records+damaged != h.board.Flash.Blocks() {
		t.Errorf("%s: %d free blocks, %d records, %d damaged blocks: %d of %d blocks lost", name, free, records, damaged,
			h.board.Flash.Blocks()-free-records-damaged, h.board.Flash.Blocks())
	}
}

// cloneHSM copies the state directory of h (synced first) into a new
// directory and opens it there, logged in.
func cloneHSM(t *testing.T, h *HSM) (*HSM, *Session) {
	t.Helper()
	if err := h.board.Flash.Sync(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := copyDir(h.board.Dir, dir); err != nil {
		t.Fatal(err)
	}
	c, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	return c, raceSession(t, c)
}

// hssID is the identifier of an HSS key.
func hssID(t *testing.T, k hsmapi.KeyInfo) [16]byte {
	t.Helper()
	pub, err := hsmapi.ParsePublicKey(k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	hp, ok := pub.(*hashsig.PublicKey)
	if !ok {
		t.Fatalf("%s is not an HSS key", k.UUID)
	}
	_, id := hp.Top()
	return id
}

// reopen closes h as a power cut leaves it and opens it again, logged in.
func reopen(t *testing.T, h *HSM, name string) (*HSM, *Session) {
	t.Helper()
	dir := h.board.Dir
	h.Close()
	h2, err := Open(dir, testOptions)
	if err != nil {
		t.Fatalf("%s: the HSM does not open after the power cut: %v", name, err)
	}
	return h2, raceSession(t, h2)
}

// TestHashsigKeygenSurvivesPowerCutAtEveryWrite cuts power at each flash
// write of an HSS key generation: afterwards the key is there and signs, or
// nothing is, and no flash block is lost.
func TestHashsigKeygenSurvivesPowerCutAtEveryWrite(t *testing.T) {
	base, _ := newTestHSM(t)
	req := hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags, Label: "cut"}
	eachPowerCut(t, "keygen", base, func(s *Session) error {
		_, err := s.GenerateKey(ctx, req)
		return err
	}, func(c powerCut) {
		name, h, s, free := c.name, c.h, c.s, c.free
		keys, err := s.Keys(ctx, hsmapi.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		switch len(keys) {
		case 0:
			if h.ks.Free() != free {
				t.Errorf("%s: no key, and %d free blocks of %d before", name, h.ks.Free(), free)
			}
		case 1:
			sig := signHSS(t, s, keys[0].UUID, "after the cut")
			if err := hsmapi.VerifySignature(keys[0].PublicKey, []byte("after the cut"), sig, crypto.Hash(0)); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		default:
			t.Errorf("%s: %d keys", name, len(keys))
		}
		if c.last && len(keys) != 1 {
			t.Errorf("%s (after the last write): key lost", name)
		}
	})
}

// TestHashsigImportSurvivesPowerCutAtEveryWrite cuts power at each flash
// write of an import of two HSS keys and an RSA key, whose histories go into
// the pack that holds an earlier import's: afterwards all three keys are
// there, with the history of both HSS keys, or nothing is, the free blocks
// are as before, and the bundle imports again; the earlier history stays.
func TestHashsigImportSurvivesPowerCutAtEveryWrite(t *testing.T) {
	p := newPair(t)
	earlier := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	if _, err := p.dst.Import(ctx, p.importReq(earlier, p.export(t, earlier, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)); err != nil {
		t.Fatal(err)
	}
	if err := p.dst.DeleteKey(ctx, earlier.UUID); err != nil {
		t.Fatal(err)
	}
	var reqs []hsmapi.ImportRequest
	var hssIDs [][16]byte
	for _, gr := range []hsmapi.GenerateRequest{
		{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable},
		{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable},
		{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: signFlags | hsmapi.FlagExportable},
	} {
		k := generate(t, p.src, gr)
		reqs = append(reqs, p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil))
		if k.Hashsig != nil {
			hssIDs = append(hssIDs, hssID(t, k))
		}
	}
	eachPowerCut(t, "import", p.dstHSM, func(s *Session) error {
		_, err := s.ImportBatch(ctx, reqs)
		return err
	}, func(c powerCut) {
		name, h, s, free := c.name, c.h, c.s, c.free
		found := 0
		for _, r := range reqs {
			if _, err := s.Key(ctx, r.UUID); err == nil {
				found++
			}
		}
		histories := 0
		for _, id := range hssIDs {
			if hasHistory(t, h, id) {
				histories++
			}
		}
		if !hasHistory(t, h, hssID(t, earlier)) {
			t.Errorf("%s: the earlier import's history is lost", name)
		}
		switch {
		case found == len(reqs) && histories == len(hssIDs):
		case found == 0 && histories == 0:
			if h.ks.Free() != free {
				t.Errorf("%s: nothing imported, and %d free blocks of %d before", name, h.ks.Free(), free)
			}
			if _, err := s.ImportBatch(ctx, reqs); err != nil {
				t.Errorf("%s: the bundle does not import again: %v", name, err)
			}
		default:
			t.Errorf("%s: %d of %d keys and %d of %d HSS histories present", name, found, len(reqs), histories, len(hssIDs))
		}
		if c.last && found != len(reqs) {
			t.Errorf("%s (after the last write): keys lost", name)
		}
		// Whatever came through, the keys sign as the source's.
		for _, r := range reqs {
			if _, err := s.Key(ctx, r.UUID); err != nil {
				continue
			}
			msg, opts := []byte("after the cut"), crypto.SignerOpts(crypto.Hash(0))
			if r.UUID == reqs[2].UUID {
				d := sha256.Sum256(msg)
				msg, opts = d[:], crypto.SHA256
			}
			sig, err := s.Sign(ctx, r.UUID, msg, opts)
			if err == nil {
				err = hsmapi.VerifySignature(r.PublicKey, msg, sig, opts)
			}
			if err != nil {
				t.Errorf("%s: key %s: %v", name, r.UUID, err)
			}
		}
	})
}

// TestVolatileHashsigImportSurvivesPowerCutAtEveryWrite: the import of a
// volatile HSS key writes its history alone, a keystore transaction of one
// record, replacing the pack an earlier import wrote. A power cut at any of
// its writes leaves the pack as before or with the new range, the earlier
// history kept, and no flash block damaged or lost; and the part, whose
// key a restart forgets, is not taken again once its range is recorded.
func TestVolatileHashsigImportSurvivesPowerCutAtEveryWrite(t *testing.T) {
	p := newPair(t)
	earlier := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	if _, err := p.dst.Import(ctx, p.importReq(earlier, p.export(t, earlier, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)); err != nil {
		t.Fatal(err)
	}
	k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	req := p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)
	req.Flags &^= hsmapi.FlagToken
	eachPowerCut(t, "import", p.dstHSM, func(s *Session) error {
		_, err := s.Import(ctx, req)
		return err
	}, func(c powerCut) {
		name, h, s, free := c.name, c.h, c.s, c.free
		if !hasHistory(t, h, hssID(t, earlier)) {
			t.Errorf("%s: the earlier import's history is lost", name)
		}
		recorded := hasHistory(t, h, hssID(t, k))
		if c.last && !recorded {
			t.Errorf("%s (after the last write): the history is lost", name)
		}
		if got := h.DamagedBlocks(); len(got) != 0 {
			t.Errorf("%s: damaged blocks %v", name, got)
		}
		if h.ks.Free() != free {
			t.Errorf("%s: %d free blocks, %d before", name, h.ks.Free(), free)
		}
		_, err := s.Import(ctx, req)
		if recorded && !errors.Is(err, hsmapi.ErrHashsigRangeUsed) || !recorded && err != nil {
			t.Errorf("%s: recorded %v, the part again: %v", name, recorded, err)
		}
	})
}

// powerCut is one run of an operation cut short by a power failure: the
// HSM reopened after it, with its session, and the free blocks before.
type powerCut struct {
	name string
	h    *HSM
	s    *Session
	free int
	last bool // cut after the operation's last write
}

// eachPowerCut runs op on copies of base, with power cut after each of its
// flash writes in turn (and after the last), whole and torn; op must fail
// but after the last. check looks at the HSM reopened after each cut,
// which is then accounted for block by block and closed.
func eachPowerCut(t *testing.T, what string, base *HSM, op func(*Session) error, check func(powerCut)) {
	t.Helper()
	writes := func() int {
		h, s := cloneHSM(t, base)
		defer h.Close()
		before := h.board.Flash.Writes()
		if err := op(s); err != nil {
			t.Fatal(err)
		}
		return h.board.Flash.Writes() - before
	}()
	t.Logf("%s: %d flash writes", what, writes)
	for cut := range writes + 1 {
		for _, torn := range []bool{false, true} {
			name := fmt.Sprintf("cut %d of %d torn %v", cut, writes, torn)
			h, s := cloneHSM(t, base)
			free := h.ks.Free()
			h.board.Flash.CutPowerAfter(cut, torn)
			if err := op(s); cut < writes && err == nil {
				t.Errorf("%s: %s succeeded through a power cut", name, what)
			}
			h, s = reopen(t, h, name)
			check(powerCut{name: name, h: h, s: s, free: free, last: cut == writes})
			blockAccount(t, h, name)
			h.Close()
		}
	}
}
