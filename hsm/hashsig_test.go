package hsm

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

var twoLevels = []hashsig.Level{
	{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4},
	{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4},
}

func signHSS(t *testing.T, s *Session, id hsmapi.UUID, msg string) []byte {
	t.Helper()
	sig, err := s.Sign(ctx, id, []byte(msg), crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func sigIndex(t *testing.T, sig []byte) uint64 {
	t.Helper()
	s, err := hashsig.SignatureIndex(sig)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHashsigKeyStateSurvivesRestart(t *testing.T) {
	h, dir := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags, Label: "lms"})
	if k.Type != hsmapi.KeyTypeHashsigPrivate || k.Hashsig == nil || k.Hashsig.Remaining != 1024 || len(k.Hashsig.Levels) != 2 {
		t.Fatalf("generated %+v", k)
	}
	for i := range 3 {
		sig := signHSS(t, s, k.UUID, "before")
		if err := s.Verify(ctx, k.UUID, []byte("before"), sig, crypto.Hash(0)); err != nil {
			t.Fatal(err)
		}
		if err := hsmapi.VerifySignature(k.PublicKey, []byte("before"), sig, crypto.Hash(0)); err != nil {
			t.Fatal(err)
		}
		if got := sigIndex(t, sig); got != uint64(i) {
			t.Errorf("signature %d used index %d", i, got)
		}
	}
	if _, err := s.Sign(ctx, k.UUID, []byte("x"), crypto.SHA256); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("HSS sign with a hash named: %v", err)
	}
	s.Close()
	h.Close()

	h2, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	s2 := login(t, h2)
	info, err := s2.Key(ctx, k.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if info.Hashsig.Remaining != 1021 {
		t.Errorf("after restart %d signatures left, want 1021", info.Hashsig.Remaining)
	}
	sig := signHSS(t, s2, k.UUID, "after")
	if got := sigIndex(t, sig); got != 3 {
		t.Errorf("after restart the key signed with index %d, want 3", got)
	}
	if err := hsmapi.VerifySignature(k.PublicKey, []byte("after"), sig, crypto.Hash(0)); err != nil {
		t.Error(err)
	}
}

func TestHashsigExportSplitsTheRange(t *testing.T) {
	p := newPair(t)
	k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	signHSS(t, p.src, k.UUID, "one")
	w := p.export(t, k, hsmapi.KEKOAEPSHA256, nil)
	res, err := p.dst.Import(ctx, p.importReq(k, w, hsmapi.KEKOAEPSHA256, nil))
	if err != nil {
		t.Fatal(err)
	}
	srcInfo, _ := p.src.Key(ctx, k.UUID)
	if srcInfo.Hashsig.Remaining+res.Key.Hashsig.Remaining != 1023 || srcInfo.Hashsig.Remaining < 500 {
		t.Errorf("source keeps %d, destination gets %d of 1023", srcInfo.Hashsig.Remaining, res.Key.Hashsig.Remaining)
	}
	used := map[uint64]string{}
	for i := range 20 {
		for name, s := range map[string]*Session{"source": p.src, "destination": p.dst} {
			sig := signHSS(t, s, k.UUID, "both")
			if err := hsmapi.VerifySignature(k.PublicKey, []byte("both"), sig, crypto.Hash(0)); err != nil {
				t.Fatalf("%s signature %d: %v", name, i, err)
			}
			idx := sigIndex(t, sig)
			if other, dup := used[idx]; dup {
				t.Fatalf("index %d used by the %s and the %s", idx, other, name)
			}
			used[idx] = name
		}
	}
	// The same part again is present, and left alone.
	again, err := p.dst.Import(ctx, p.importReq(k, w, hsmapi.KEKOAEPSHA256, nil))
	if err != nil || !again.Present {
		t.Fatalf("re-import: present=%v err=%v", again.Present, err)
	}
	after, _ := p.dst.Key(ctx, k.UUID)
	if after.Hashsig.Remaining != res.Key.Hashsig.Remaining-20 {
		t.Errorf("re-import changed the destination's range: %d left", after.Hashsig.Remaining)
	}
	// Another part of the key under another name is refused.
	w2 := p.export(t, k, hsmapi.KEKOAEPSHA256, nil)
	req := p.importReq(k, w2, hsmapi.KEKOAEPSHA256, nil)
	req.UUID = hsmapi.UUID{0x40, 1, 2, 3}
	if _, err := p.dst.Import(ctx, req); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
		t.Errorf("second part of one HSS key under another UUID: %v", err)
	}
}

// TestHashsigPresentIsThePartHeld: an HSS part whose range this HSM
// received before is reported present only if the key under its UUID is
// that part. Part 1 imported under U and deleted, then part 2 imported
// under U: part 1 again is refused, and part 2 stays as it was; part 2
// again is present, after signatures and after a restart too. Before the
// held key's own range was looked at, part 1 was reported present, with
// part 2's key.
func TestHashsigPresentIsThePartHeld(t *testing.T) {
	for _, token := range []bool{true, false} {
		t.Run(fmt.Sprintf("token %v", token), func(t *testing.T) {
			p := newPair(t)
			k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
			part1 := p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)
			part2 := p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)
			if !token {
				part1.Flags &^= hsmapi.FlagToken
				part2.Flags &^= hsmapi.FlagToken
			}
			if _, err := p.dst.Import(ctx, part1); err != nil {
				t.Fatal(err)
			}
			if err := p.dst.DeleteKey(ctx, part1.UUID); err != nil {
				t.Fatal(err)
			}
			res, err := p.dst.Import(ctx, part2)
			if err != nil {
				t.Fatal(err)
			}
			first := sigIndex(t, signHSS(t, p.dst, part2.UUID, "part 2"))
			s := p.dst
			check := func(when string) {
				t.Helper()
				if res, err := s.Import(ctx, part1); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
					t.Errorf("%s: part 1 again, part 2 under its UUID: present %v, %v", when, res.Present, err)
				}
				again, err := s.Import(ctx, part2)
				if err != nil || !again.Present {
					t.Errorf("%s: part 2 again: present %v, %v", when, again.Present, err)
				}
				// Still part 2, signing on where it was.
				sig := signHSS(t, s, part2.UUID, when)
				if err := hsmapi.VerifySignature(k.PublicKey, []byte(when), sig, crypto.Hash(0)); err != nil {
					t.Fatal(err)
				}
				if q := sigIndex(t, sig); q <= first || q >= first+res.Key.Hashsig.Remaining {
					t.Errorf("%s: signed index %d, part 2 is [%d, %d)", when, q, first, first+res.Key.Hashsig.Remaining)
				}
			}
			check("after signing")
			if token {
				h, s2 := reopen(t, p.dstHSM, "restart")
				defer h.Close()
				defer s2.Close()
				s = s2
				check("after a restart")
			}
		})
	}
}

func TestHashsigExhaustion(t *testing.T) {
	p := newPair(t)
	one := []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}
	k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: one, Flags: signFlags | hsmapi.FlagExportable})
	for range 31 {
		signHSS(t, p.src, k.UUID, "m")
	}
	if _, err := p.src.Export(ctx, hsmapi.ExportRequest{Key: k.UUID, KEKEKPublicKey: parseKEKEK(t, p.kekek.PublicKey), Encryption: hsmapi.KEKOAEPSHA256}); !errors.Is(err, hsmapi.ErrKeyExhausted) {
		t.Errorf("export of a key with one signature left: %v", err)
	}
	signHSS(t, p.src, k.UUID, "last")
	if _, err := p.src.Sign(ctx, k.UUID, []byte("m"), crypto.Hash(0)); !errors.Is(err, hsmapi.ErrKeyExhausted) {
		t.Errorf("sign with an exhausted key: %v", err)
	}
}

func TestHashsigGenerateRefusesBadLevels(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	for _, levels := range [][]hashsig.Level{
		nil,
		make([]hashsig.Level, 9),
		{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHAKE_N32_W4}},
		{{LMS: 0x99, LMOTS: hashsig.LMOTS_SHA256_N32_W4}},
	} {
		if _, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: levels, Flags: signFlags}); !errors.Is(err, hsmapi.ErrBadArguments) {
			t.Errorf("levels %v: %v", levels, err)
		}
	}
}

// TestHashsigPartArrivesOnce: one part of an HSS key can be stored once.
// Under a second UUID in the same batch, again after it was deleted, as a
// volatile key and then a token key, or a different part under the UUID it
// has: all refused, so no index can be signed with twice here.
func TestHashsigPartArrivesOnce(t *testing.T) {
	p := newPair(t)
	k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	w := p.export(t, k, hsmapi.KEKOAEPSHA256, nil)
	req := p.importReq(k, w, hsmapi.KEKOAEPSHA256, nil)
	twin := req
	twin.UUID = hsmapi.UUID{0x40, 9}
	if _, err := p.dst.ImportBatch(ctx, []hsmapi.ImportRequest{req, twin}); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("one part under two UUIDs in one batch: %v", err)
	}
	volatile := req
	volatile.Flags &^= hsmapi.FlagToken
	if _, err := p.dst.Import(ctx, volatile); err != nil {
		t.Fatal(err)
	}
	fresh := req
	fresh.UUID = hsmapi.UUID{}
	if _, err := p.dst.Import(ctx, fresh); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
		t.Errorf("the part again as a token key while a volatile copy exists: %v", err)
	}
	p.dst.Logout(ctx) // drops the volatile copy
	if err := p.dst.Login(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
		t.Fatal(err)
	}
	if _, err := p.dst.Import(ctx, req); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
		t.Errorf("the part again after its volatile copy was dropped: %v", err)
	}

	// A second, different part, under the UUID of a part the destination has.
	other := newPair(t)
	k2 := generate(t, other.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	w1 := other.export(t, k2, hsmapi.KEKOAEPSHA256, nil)
	if _, err := other.dst.Import(ctx, other.importReq(k2, w1, hsmapi.KEKOAEPSHA256, nil)); err != nil {
		t.Fatal(err)
	}
	w2 := other.export(t, k2, hsmapi.KEKOAEPSHA256, nil)
	if _, err := other.dst.Import(ctx, other.importReq(k2, w2, hsmapi.KEKOAEPSHA256, nil)); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
		t.Errorf("another part under the same UUID: %v", err)
	}
	// Deleted, then the same bundle again.
	if err := other.dst.DeleteKey(ctx, k2.UUID); err != nil {
		t.Fatal(err)
	}
	if _, err := other.dst.Import(ctx, other.importReq(k2, w1, hsmapi.KEKOAEPSHA256, nil)); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
		t.Errorf("the part again after it was deleted: %v", err)
	}
}

// TestHashsigSignsOnAFullKeystore: one flash block stays free so that an HSS
// key can always store its state.
func TestHashsigSignsOnAFullKeystore(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags})
	fillWithECKeys(t, s)
	for range 3 {
		signHSS(t, s, k.UUID, "still signing")
	}
}

// fillWithECKeys generates P-256 keys until the keystore is full, and
// returns how many it stored.
func fillWithECKeys(t *testing.T, s *Session) int {
	t.Helper()
	for n := 0; ; n++ {
		_, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
		if errors.Is(err, hsmapi.ErrKeystoreFull) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// A deleted HSS key's seed is cleared from memory.
func TestDeletedHashsigKeyIsWiped(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags})
	signHSS(t, s, k.UUID, "before")
	h.mu.Lock()
	hss := h.cache[k.UUID].hss
	h.mu.Unlock()
	state, err := hss.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKey(ctx, k.UUID); err != nil {
		t.Fatal(err)
	}
	if _, err := hss.Sign([]byte("after")); err == nil {
		t.Error("the deleted key's object still signs")
	}
	wiped, _ := hss.MarshalBinary()
	// The seed follows the 8-byte header, the level types and I.
	at := 8 + 8*len(twoLevels) + hashsig.IDSize
	if bytes.Equal(wiped[at:at+32], state[at:at+32]) {
		t.Error("the deleted key's seed is still in memory")
	}
}

// A generated key writes no history (see hsm/hashsig.go): once it is
// deleted, a part it handed out may come back, and it never signs with an
// index the key used; the part then has a history, and comes back once only.
func TestGeneratedKeyPartComesBackOnce(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	free := h.ks.Free()
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	kekek := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: kekekFlags})
	if got := h.ks.Free(); got != free-2 {
		t.Errorf("two keys generated took %d blocks", free-got)
	}
	used := map[uint64]bool{}
	for range 3 {
		used[sigIndex(t, signHSS(t, s, k.UUID, "before"))] = true
	}
	w, err := s.Export(ctx, hsmapi.ExportRequest{Key: k.UUID, KEKEKPublicKey: parseKEKEK(t, kekek.PublicKey), Encryption: hsmapi.KEKOAEPSHA256})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		used[sigIndex(t, signHSS(t, s, k.UUID, "after the split"))] = true
	}
	req := hsmapi.ImportRequest{KEKEKUUID: kekek.UUID, Wrapped: w, Encryption: hsmapi.KEKOAEPSHA256, UUID: k.UUID, Flags: k.Flags, PublicKey: k.PublicKey}
	fresh := req
	fresh.UUID = hsmapi.UUID{}
	if _, err := s.Import(ctx, fresh); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
		t.Errorf("a part of a key the HSM holds: %v", err)
	}
	if err := s.DeleteKey(ctx, k.UUID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, req); err != nil {
		t.Fatalf("the part after its key was deleted: %v", err)
	}
	for range 5 {
		sig := signHSS(t, s, k.UUID, "the part")
		if q := sigIndex(t, sig); used[q] {
			t.Fatalf("the part signed with index %d, which the deleted key used", q)
		}
		if err := hsmapi.VerifySignature(k.PublicKey, []byte("the part"), sig, crypto.Hash(0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteKey(ctx, k.UUID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, req); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
		t.Errorf("the part a second time: %v", err)
	}
}
