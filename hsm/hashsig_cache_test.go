package hsm

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/sharetest"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// cachedLevels is a key that gets a tree cache (1,024 leaves, the
// threshold) and builds quickly (w1): its cache is 32 KiB, 5 parts.
var cachedLevels = []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H10, LMOTS: hashsig.LMOTS_SHA256_N32_W1}}

// cachedTwoLevels changes its cache's generation every 32 signatures.
var cachedTwoLevels = []hashsig.Level{
	{LMS: hashsig.LMS_SHA256_M32_H10, LMOTS: hashsig.LMOTS_SHA256_N32_W1},
	{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W1},
}

func generateCached(t *testing.T, s *Session, levels []hashsig.Level, flags hsmapi.Flags) hsmapi.KeyInfo {
	t.Helper()
	return generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: levels, Flags: flags})
}

// cacheRecords returns the cache parts in flash of the key with UUID id.
func cacheRecords(t *testing.T, h *HSM, id hsmapi.UUID) []keystore.Record {
	t.Helper()
	prefix := cacheID(id, 0)
	var out []keystore.Record
	for _, rid := range h.ks.List(kindHSSCache) {
		if !bytes.Equal(rid[:15], prefix[:15]) {
			continue
		}
		rec, err := h.ks.Get(rid)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

// signCounting signs msg with an HSS key, returning the signature, checked
// under the key's public key, and the leaves the signature built (0: its
// trees were all there, from a cache or an earlier signature).
func signCounting(t *testing.T, s *Session, k hsmapi.KeyInfo, msg string) ([]byte, int) {
	t.Helper()
	var built atomic.Int64
	pctx := WithProgress(ctx, func(done, total int) { built.Store(int64(done)) })
	sig, err := s.Sign(pctx, k.UUID, []byte(msg), crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := hsmapi.VerifySignature(k.PublicKey, []byte(msg), sig, crypto.Hash(0)); err != nil {
		t.Fatalf("signature does not verify under the key's public key: %v", err)
	}
	return sig, int(built.Load())
}

// signFromCache signs with k, the HSM just opened (or the key just
// loaded), and checks that the signature built nothing (its trees came
// from the cache), verifies, and used index want.
func signFromCache(t *testing.T, s *Session, k hsmapi.KeyInfo, what string, want uint64) []byte {
	t.Helper()
	sig, built := signCounting(t, s, k, what)
	if built != 0 {
		t.Errorf("%s: the first signature built %d leaves, the cache should have given them", what, built)
	}
	if got := sigIndex(t, sig); got != want {
		t.Errorf("%s: signed with index %d, want %d", what, got, want)
	}
	return sig
}

// indexes records the signature indexes a key used, failing on a repeat.
type indexes map[uint64]bool

func (ix indexes) add(t *testing.T, sig []byte, name string) {
	t.Helper()
	i := sigIndex(t, sig)
	if ix[i] {
		t.Fatalf("%s: index %d used twice", name, i)
	}
	ix[i] = true
}

// TestHashsigCacheFirstSignAfterOpen: a key's cache is stored at keygen,
// and after the HSM is opened again the key's first signature builds
// nothing, verifies, and uses the next index, from the state in flash.
func TestHashsigCacheFirstSignAfterOpen(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generateCached(t, s, cachedLevels, signFlags)
	parts := cacheRecords(t, h, k.UUID)
	if want := (hashsig.MaxCacheSize(cachedLevels) + partCapacity - 1) / partCapacity; len(parts) != want {
		t.Fatalf("after keygen the cache has %d parts, want %d", len(parts), want)
	}
	ix := indexes{}
	for i := range 3 {
		h, s = reopen(t, h, "reopen")
		ix.add(t, signFromCache(t, s, k, fmt.Sprint("open ", i), uint64(i)), fmt.Sprint("open ", i))
	}
	// Small keys and volatile keys keep none.
	small := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags})
	vol := generateCached(t, s, cachedLevels, hsmapi.FlagDigitalSignature)
	signHSS(t, s, small.UUID, "x")
	signHSS(t, s, vol.UUID, "x")
	if n := len(cacheRecords(t, h, small.UUID)) + len(cacheRecords(t, h, vol.UUID)); n != 0 {
		t.Errorf("an h5/h5 key and a volatile key have %d cache parts in flash", n)
	}
	if u, err := h.FlashUsage(); err != nil || u.CacheBlocks != len(parts) {
		t.Errorf("FlashUsage: %+v, %v; want %d cache blocks", u, err, len(parts))
	}
	h.Close()
}

// TestHashsigCacheFollowsTheTrees: when a signature moves the key to new
// trees, the cache is stored again, and a restart after it builds nothing.
// (Keygen builds the top tree only: the first signature builds the first
// lower tree, and stores the cache with it.)
func TestHashsigCacheFollowsTheTrees(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generateCached(t, s, cachedTwoLevels, signFlags)
	ix := indexes{}
	stored := [][]keystore.Record{cacheRecords(t, h, k.UUID)}
	for i := range 33 { // the first builds the first lower tree, the 33rd the second
		sig, _ := signCounting(t, s, k, "move on")
		ix.add(t, sig, "before")
		if i == 0 || i == 32 {
			stored = append(stored, cacheRecords(t, h, k.UUID))
		}
	}
	for i := 1; i < len(stored); i++ {
		if bytes.Equal(stored[i][0].Data, stored[i-1][0].Data) {
			t.Fatalf("cache %d: not stored again for the new lower tree", i)
		}
	}
	h, s = reopen(t, h, "reopen")
	defer h.Close()
	ix.add(t, signFromCache(t, s, k, "after open", 33), "after")
}

// TestHashsigBadCacheIsIgnored: whatever is wrong with a cache in flash,
// the key signs as without one: it rebuilds its trees, the signature
// verifies, no index repeats, and the cache stored afterwards serves the
// next open.
func TestHashsigBadCacheIsIgnored(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generateCached(t, s, cachedLevels, signFlags)
	other := generateCached(t, s, cachedLevels, signFlags)
	put := func(h *HSM, rec keystore.Record) {
		t.Helper()
		if err := h.ks.Store.Put(rec); err != nil {
			t.Fatal(err)
		}
	}
	// sealedAs seals the cache of key from under key on's headers, as a
	// clone of h (the same master key) would.
	sealedAs := func(on, from hsmapi.UUID, gen uint64) []keystore.Record {
		t.Helper()
		h.mu.Lock()
		defer h.mu.Unlock()
		kOn, kFrom := h.cache[on], h.cache[from]
		cache, _ := kFrom.hss.Cache()
		recs, err := h.sealTreeCache(kOn, cache, gen, (len(cache)+partCapacity-1)/partCapacity)
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	head, err := parsePartHeader(cacheRecords(t, h, k.UUID)[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	otherGen := sealedAs(k.UUID, k.UUID, head.gen+1)
	otherKeys := sealedAs(k.UUID, other.UUID, head.gen)
	for _, c := range []struct {
		name  string
		spoil func(h *HSM, parts []keystore.Record)
	}{
		{"a flipped byte in a sealed part", func(h *HSM, parts []keystore.Record) {
			parts[2].Data[len(parts[2].Data)/2] ^= 1
			put(h, parts[2])
		}},
		{"a flipped byte in a part's head", func(h *HSM, parts []keystore.Record) {
			parts[1].Data[5] ^= 1 // its generation
			put(h, parts[1])
		}},
		{"a part missing", func(h *HSM, parts []keystore.Record) {
			if err := h.ks.Store.Delete(parts[3].ID); err != nil {
				t.Fatal(err)
			}
		}},
		{"a part of another generation", func(h *HSM, parts []keystore.Record) {
			put(h, otherGen[1])
		}},
		{"the parts of another key, copied under this key's IDs", func(h *HSM, parts []keystore.Record) {
			for i, rec := range cacheRecords(t, h, other.UUID) {
				rec.ID = parts[i].ID
				put(h, rec)
			}
		}},
		{"another key's cache sealed as this key's", func(h *HSM, parts []keystore.Record) {
			for _, rec := range otherKeys {
				put(h, rec)
			}
		}},
		{"the parts swapped", func(h *HSM, parts []keystore.Record) {
			parts[0].ID, parts[1].ID = parts[1].ID, parts[0].ID
			put(h, parts[0])
			put(h, parts[1])
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, _ := cloneHSM(t, h)
			defer func() { h.Close() }()
			c.spoil(h, cacheRecords(t, h, k.UUID))
			ix := indexes{}
			h, s = reopen(t, h, c.name)
			sig, built := signCounting(t, s, k, "spoiled")
			if built == 0 {
				t.Errorf("the key signed without building its trees: it took the spoiled cache")
			}
			ix.add(t, sig, "spoiled")
			h, s = reopen(t, h, c.name)
			sig, built = signCounting(t, s, k, "stored again")
			if built != 0 {
				t.Errorf("after the cache was stored again, the first signature built %d leaves", built)
			}
			ix.add(t, sig, "stored again")
		})
	}
}

// TestHashsigCacheStoreSurvivesPowerCutAtEveryWrite cuts power at each
// flash write of a signature that stores its key's cache: the key is
// there, signs and verifies, and uses no index given out before the cut.
func TestHashsigCacheStoreSurvivesPowerCutAtEveryWrite(t *testing.T) {
	base, _ := newTestHSM(t)
	s := login(t, base)
	k := generateCached(t, s, cachedLevels, signFlags)
	base.mu.Lock()
	if err := base.dropTreeCache(k.UUID); err != nil {
		t.Fatal(err)
	}
	base.mu.Unlock()
	sign := func(s *Session) ([]byte, error) { return s.Sign(ctx, k.UUID, []byte("cut"), crypto.Hash(0)) }
	writes := func() int {
		h, s := cloneHSM(t, base)
		defer h.Close()
		before := h.board.Flash.Writes()
		if _, err := sign(s); err != nil {
			t.Fatal(err)
		}
		if len(cacheRecords(t, h, k.UUID)) == 0 {
			t.Fatal("the signature stored no cache")
		}
		return h.board.Flash.Writes() - before
	}()
	t.Logf("%d flash writes", writes)
	for cut := range writes + 1 {
		for _, torn := range []bool{false, true} {
			name := fmt.Sprintf("cut %d of %d torn %v", cut, writes, torn)
			h, s := cloneHSM(t, base)
			h.board.Flash.CutPowerAfter(cut, torn)
			ix := indexes{}
			if sig, err := sign(s); err == nil {
				ix.add(t, sig, name)
			}
			h, s = reopen(t, h, name)
			for range 2 {
				sig, _ := signCounting(t, s, k, "after the cut")
				ix.add(t, sig, name)
			}
			blockAccount(t, h, name)
			h.Close()
		}
	}
}

// TestHashsigDeleteSurvivesPowerCutAtEveryWrite: a key's cache goes
// before the key, so a power cut leaves the key (which signs) or nothing
// of it.
func TestHashsigCacheDeleteSurvivesPowerCutAtEveryWrite(t *testing.T) {
	base, _ := newTestHSM(t)
	s := login(t, base)
	k := generateCached(t, s, cachedLevels, signFlags)
	eachPowerCut(t, "delete", base, func(s *Session) error { return s.DeleteKey(ctx, k.UUID) }, func(c powerCut) {
		_, err := c.s.Key(ctx, k.UUID)
		switch {
		case err == nil:
			signCounting(t, c.s, k, "after the cut")
		case errors.Is(err, hsmapi.ErrKeyNotFound):
			if n := len(c.h.ks.List(kindHSSCache)); n != 0 {
				t.Errorf("%s: the key is gone and %d cache parts are left", c.name, n)
			}
		default:
			t.Errorf("%s: %v", c.name, err)
		}
	})
}

// TestHashsigCacheOfAnotherKeyUnderItsUUID: parts left under a UUID (as a
// crash in older versions could) meet a new key imported under it: they
// are refused, and the new key signs.
func TestHashsigCacheOfAnotherKeyUnderItsUUID(t *testing.T) {
	p := newPair(t)
	gone := generateCached(t, p.dst, cachedLevels, signFlags)
	left := cacheRecords(t, p.dstHSM, gone.UUID)
	if err := p.dst.DeleteKey(ctx, gone.UUID); err != nil {
		t.Fatal(err)
	}
	for _, rec := range left {
		if err := p.dstHSM.ks.Store.Put(rec); err != nil {
			t.Fatal(err)
		}
	}
	k := generateCached(t, p.src, cachedLevels, signFlags|hsmapi.FlagExportable)
	req := p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)
	req.UUID = gone.UUID
	k.UUID = gone.UUID
	if _, err := p.dst.Import(ctx, req); err != nil {
		t.Fatal(err)
	}
	h, s := reopen(t, p.dstHSM, "reopen")
	defer h.Close()
	if _, built := signCounting(t, s, k, "imported"); built == 0 {
		t.Error("the imported key took the cache of the key deleted before")
	}
}

// TestHashsigCacheSurvivesExport: an export splits the key; the part kept
// has the same trees, and its cache still serves.
func TestHashsigCacheSurvivesExport(t *testing.T) {
	p := newPair(t)
	k := generateCached(t, p.src, cachedLevels, signFlags|hsmapi.FlagExportable)
	signCounting(t, p.src, k, "before")
	p.export(t, k, hsmapi.KEKOAEPSHA256, nil)
	h := p.src.h
	h, s := reopen(t, h, "reopen")
	defer h.Close()
	signFromCache(t, s, k, "after export", 1)
}

// TestHashsigStoredKeyDropsItsCache: a key stored outside is disabled and
// its cache deleted.
func TestHashsigStoredKeyDropsItsCache(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generateCached(t, s, cachedLevels, signFlags)
	if _, err := s.StoreKeys(ctx, []hsmapi.UUID{k.UUID}); err != nil {
		t.Fatal(err)
	}
	if n := len(h.ks.List(kindHSSCache)); n != 0 {
		t.Errorf("%d cache parts left after the key was stored outside", n)
	}
}

// TestHashsigCacheGivesWayToKeys: caches leave cacheReserve blocks free,
// and when keys need more, caches are evicted: a flash with caches still
// takes keys until no cache is left, and an HSS key still signs.
func TestHashsigCacheGivesWayToKeys(t *testing.T) {
	h, _ := newTestHSM(t) // 256 blocks: a reserve of 32
	s := login(t, h)
	var hss []hsmapi.KeyInfo
	for {
		hss = append(hss, generateCached(t, s, cachedLevels, signFlags))
		if len(cacheRecords(t, h, hss[len(hss)-1].UUID)) == 0 {
			break // no room left for a cache
		}
	}
	if free, reserve := h.ks.Free(), cacheReserve(256); free < reserve {
		t.Fatalf("caches left %d blocks free, fewer than the reserve of %d", free, reserve)
	}
	cached := len(h.ks.List(kindHSSCache))
	t.Logf("%d HSS keys, %d cache blocks, %d free", len(hss), cached, h.ks.Free())
	stored := fillWithECKeys(t, s)
	if left := len(h.ks.List(kindHSSCache)); left != 0 || stored < cached {
		t.Errorf("the flash took %d keys, and %d of %d cache blocks are left", stored, left, cached)
	}
	for _, k := range hss[:3] {
		signCounting(t, s, k, "full")
	}
	// A PIN change finds its block too.
	if err := s.SetPIN(ctx, hsmapi.UserNormal, []byte("another user PIN")); err != nil {
		t.Error(err)
	}
}

// TestHashsigCacheRotateAndRetire: a rotation seals the caches again
// under the new master key, and the old key retires with them present.
func TestHashsigCacheRotateAndRetire(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generateCached(t, s, cachedLevels, signFlags)
	res, err := s.RotateMasterKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RetireMasterKey(ctx, res.OldCheckValue); err != nil {
		t.Fatalf("retire with caches present: %v", err)
	}
	h, s = reopen(t, h, "reopen")
	defer h.Close()
	signFromCache(t, s, k, "after a rotation and a retirement", 0)
}

// TestCachedKeyOperationsRaceDelete runs raceRound on HSS keys loaded from
// flash with their caches: signers read the cache and store it again
// while the key is exported, changed, listed and deleted; nothing hangs,
// no index repeats, and no cache part of the deleted key is left.
func TestCachedKeyOperationsRaceDelete(t *testing.T) {
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	kekekHSM := raceHSM(t)
	ks := raceSession(t, kekekHSM)
	kekek, err := ks.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: kekekFlags})
	if err != nil {
		t.Fatal(err)
	}
	h := raceHSM(t)
	for round := range rounds {
		s := raceSession(t, h)
		k, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: cachedTwoLevels, Flags: signFlags | hsmapi.FlagExportable})
		if err != nil {
			t.Fatal(err)
		}
		if len(cacheRecords(t, h, k.UUID)) == 0 {
			t.Fatal("no cache stored")
		}
		s.Close()
		dir := h.board.Dir
		h.Close()
		if h, err = Open(dir, testOptions); err != nil {
			t.Fatal(err)
		}
		sessions := make([]*Session, 7)
		for i := range sessions {
			sessions[i] = raceSession(t, h)
		}
		if _, ok := raceRound(t, sessions, k, parseKEKEK(t, kekek.PublicKey), round); !ok {
			return // wedged: leave the HSMs as they are
		}
		if n := len(cacheRecords(t, h, k.UUID)); n != 0 {
			t.Errorf("round %d: %d cache parts of the deleted key are left", round, n)
		}
		for _, s := range sessions {
			s.Close()
		}
	}
	ks.Close()
	h.Close()
	kekekHSM.Close()
}

// TestHashsigCacheAcrossZeroize: while the master key is zeroized, the key
// (and its cache) cannot be read; once the master key is restored from its
// shares, the key's first signature comes from the cache again.
func TestHashsigCacheAcrossZeroize(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generateCached(t, s, cachedLevels, signFlags)
	f := backupMasterKey(t, s, 2, 2)
	if err := s.ZeroizeMasterKey(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(ctx, k.UUID, []byte("zeroized"), crypto.Hash(0)); !errors.Is(err, hsmapi.ErrTamper) {
		t.Fatalf("sign while zeroized: %v", err)
	}
	sharetest.Restore(t, s, f, 1, 2)
	signFromCache(t, s, k, "after the restore", 0)
}
