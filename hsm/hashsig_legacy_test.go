package hsm

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keystore"
	"github.com/hsmkit/cryptech-backup/sim"
)

// putLegacyHistory writes a history record as versions before the history
// and the keys went into one transaction wrote them.
func putLegacyHistory(t *testing.T, h *HSM, id [16]byte, ranges ...[2]uint64) {
	t.Helper()
	b := append([]byte(nil), id[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ranges)))
	for _, r := range ranges {
		b = binary.BigEndian.AppendUint64(b, r[0])
		b = binary.BigEndian.AppendUint64(b, r[1])
	}
	if err := h.ks.Put(keystore.Record{ID: legacyHistoryID(id), Kind: kindHashsigLegacy, Data: b}); err != nil {
		t.Fatal(err)
	}
}

// hasHistory reports whether id has a history: in a pack, or in a record
// of its own an older version wrote.
func hasHistory(t *testing.T, h *HSM, id [16]byte) bool {
	t.Helper()
	return len(historyOf(t, h, id).ranges) > 0
}

// historyOf reads the history of id.
func historyOf(t *testing.T, h *HSM, id [16]byte) *hashsigHistory {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := h.readPacks()
	if err != nil {
		t.Fatal(err)
	}
	hh, err := b.get(id)
	if err != nil {
		t.Fatal(err)
	}
	return hh
}

// TestOpenReclaimsLegacyKeygenHistory: a history record an older version
// wrote for a generated key ([0, 2^h), one range) that no key holds, as a
// keygen cut short left it, is deleted at Open and its block is free again.
// The records of a generated key that still exists and of an import are
// kept, and so is everything while the HSM cannot read all its keys.
func TestOpenReclaimsLegacyKeygenHistory(t *testing.T) {
	h, dir := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags})
	other := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	held := hssID(t, k)
	orphan, orphanBig, imported := [16]byte{0xA1}, [16]byte{0xA2}, [16]byte{0xA3}
	putLegacyHistory(t, h, held, [2]uint64{0, 1024})
	putLegacyHistory(t, h, orphan, [2]uint64{0, 1024})
	putLegacyHistory(t, h, orphanBig, [2]uint64{0, math.MaxUint64})
	putLegacyHistory(t, h, imported, [2]uint64{512, 1024})
	free := h.ks.Free()
	s.Close()
	h.Close()

	// Not while a key record cannot be read: a damaged block.
	img := filepath.Join(dir, "flash.img")
	clean, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(clean)
	at := bytes.Index(damaged, other.UUID[:])
	damaged[at/sim.BlockSize*sim.BlockSize+300] ^= 0xff
	if err := os.WriteFile(img, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	h2, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if !hasHistory(t, h2, orphan) || !hasHistory(t, h2, orphanBig) {
		t.Error("a keygen history record was reclaimed though a key record is damaged")
	}
	h2.Close()
	if err := os.WriteFile(img, clean, 0o600); err != nil {
		t.Fatal(err)
	}

	// Not without the master key.
	b, err := sim.OpenBoard(dir)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := b.MKM.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer clear(mk)
	if err := b.MKM.Zeroize(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	h3, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if !hasHistory(t, h3, orphan) {
		t.Error("a keygen history record was reclaimed without the master key")
	}
	if err := h3.board.MKM.Set(mk); err != nil {
		t.Fatal(err)
	}
	h3.Close()

	h4, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h4.Close()
	if hasHistory(t, h4, orphan) || hasHistory(t, h4, orphanBig) {
		t.Error("the orphan keygen history records were not reclaimed")
	}
	if !hasHistory(t, h4, held) || !hasHistory(t, h4, imported) {
		t.Error("a history record that is not a keygen orphan was deleted")
	}
	if got := h4.ks.Free(); got != free+2 {
		t.Errorf("%d free blocks after the reclaim, want %d", got, free+2)
	}
	blockAccount(t, h4, "after the reclaim")
	// The key whose keygen record stays still signs.
	s4 := raceSession(t, h4)
	defer s4.Close()
	signHSS(t, s4, k.UUID, "still here")
}

// TestLegacyImportHistoryHasAWayOut: a history record an older version
// wrote for an import a crash cut short refuses the bundle, with an error
// that says what to do; HashsigOrphans lists it and ForgetHashsigRange,
// the operator's decision, lets the bundle import. Ranges recorded with
// their keys cannot be forgotten.
func TestLegacyImportHistoryHasAWayOut(t *testing.T) {
	p := newPair(t)
	k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	req := p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)
	id := hssID(t, k)
	h := p.dstHSM
	// Every part a split hands out lies in [1, 1024).
	putLegacyHistory(t, h, id, [2]uint64{1, 1024})
	_, err := p.dst.Import(ctx, req)
	if !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
		t.Fatalf("import over an unconfirmed range: %v", err)
	}
	way := fmt.Sprintf("cryptech-backup hashsig-history --hsm %s --forget %x:1-1024", h.board.Dir, id)
	if !strings.Contains(err.Error(), way) || !strings.Contains(err.Error(), "cut short") {
		t.Errorf("the refusal does not name the way out (%s): %v", way, err)
	}
	orphans, err := h.HashsigOrphans()
	if err != nil {
		t.Fatal(err)
	}
	want := []HashsigHistory{{ID: id, Ranges: []HashsigRange{{Next: 1, End: 1024, Unconfirmed: true}}}}
	if fmt.Sprint(orphans) != fmt.Sprint(want) {
		t.Errorf("HashsigOrphans() = %v, want %v", orphans, want)
	}
	if err := h.ForgetHashsigRange(id, 1, 1000); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("forget a range not recorded: %v", err)
	}
	if err := h.ForgetHashsigRange(id, 1, 1024); err != nil {
		t.Fatal(err)
	}
	if hasHistory(t, h, id) {
		t.Error("the forgotten range's record is still there")
	}
	res, err := p.dst.Import(ctx, req)
	if err != nil {
		t.Fatalf("import after the range was forgotten: %v", err)
	}
	sig := signHSS(t, p.dst, k.UUID, "imported")
	if err := hsmapi.VerifySignature(k.PublicKey, []byte("imported"), sig, crypto.Hash(0)); err != nil {
		t.Fatal(err)
	}
	// Its range is recorded with the key now: confirmed, and not an orphan
	// while the key exists.
	next := sigIndex(t, sig)
	end := next + res.Key.Hashsig.Remaining
	if err := h.ForgetHashsigRange(id, next, end); !errors.Is(err, ErrHashsigConfirmed) {
		t.Errorf("forget a range recorded with its key: %v", err)
	}
	if orphans, err := h.HashsigOrphans(); err != nil || len(orphans) != 0 {
		t.Errorf("HashsigOrphans() with the key present = %v, %v", orphans, err)
	}
	if err := p.dst.DeleteKey(ctx, k.UUID); err != nil {
		t.Fatal(err)
	}
	orphans, err = h.HashsigOrphans()
	want = []HashsigHistory{{ID: id, Ranges: []HashsigRange{{Next: next, End: end}}}}
	if err != nil || fmt.Sprint(orphans) != fmt.Sprint(want) {
		t.Errorf("HashsigOrphans() after the delete = %v, %v; want %v", orphans, err, want)
	}
	if err := h.ForgetHashsigRange(id, next, end); !errors.Is(err, ErrHashsigConfirmed) {
		t.Errorf("forget a deleted key's range: %v", err)
	}
	_, err = p.dst.Import(ctx, req)
	if !errors.Is(err, hsmapi.ErrHashsigRangeUsed) || strings.Contains(err.Error(), "--forget") {
		t.Errorf("the bundle again after its key was deleted: %v", err)
	}
}

// TestLegacyHistoryKeepsItsRanges: an import of a part that overlaps no
// range of a legacy record succeeds, and the record, now written with the
// key, keeps the legacy range unconfirmed; an identifier a key holds cannot
// be forgotten.
func TestLegacyHistoryKeepsItsRanges(t *testing.T) {
	p := newPair(t)
	k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	req := p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)
	id := hssID(t, k)
	h := p.dstHSM
	// The source keeps [0, 512) and hands out [512, 1024).
	putLegacyHistory(t, h, id, [2]uint64{100, 200})
	if _, err := p.dst.Import(ctx, req); err != nil {
		t.Fatal(err)
	}
	// Still where the older version wrote it, so no key can take its ID.
	rec, err := h.ks.Get(legacyHistoryID(id))
	if err != nil {
		t.Fatal(err)
	}
	if packs := h.ks.List(kindHashsigPack); len(packs) != 0 {
		t.Errorf("a second history record for one identifier: %x", packs)
	}
	if rec.Kind != kindHashsigHistory {
		t.Errorf("history record of kind %d, want %d", rec.Kind, kindHashsigHistory)
	}
	hh, err := readHistory(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := []historyRange{{100, 200, true}, {512, 1024, false}}
	if fmt.Sprint(hh.ranges) != fmt.Sprint(want) {
		t.Errorf("ranges %v, want %v", hh.ranges, want)
	}
	if err := h.ForgetHashsigRange(id, 100, 200); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
		t.Errorf("forget a range of an identifier a key holds: %v", err)
	}
}

func TestHistoryRecordFormats(t *testing.T) {
	hh := &hashsigHistory{id: [16]byte{7}, ranges: []historyRange{{0, 10, true}, {20, 1 << 40, false}}, at: legacyHistoryID([16]byte{7})}
	r := hh.record()
	got, err := readHistory(r)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(hh) {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	for n := range len(r.Data) {
		if _, err := parseHistory(kindHashsigHistory, r.Data[:n]); err == nil {
			t.Errorf("%d of %d bytes parse", n, len(r.Data))
		}
	}
	bad := append([]byte(nil), r.Data...)
	bad[len(bad)-1] = 2 // an unknown flag
	if _, err := parseHistory(kindHashsigHistory, bad); err == nil {
		t.Error("an unknown range flag parses")
	}
	bad = append([]byte{1}, r.Data[1:]...)
	if _, err := parseHistory(kindHashsigHistory, bad); err == nil {
		t.Error("a record of an unknown version parses")
	}
	if _, err := parseHistory(kindKey, r.Data); err == nil {
		t.Error("a record of another kind parses")
	}
	// Another identifier's record under this ID.
	moved := (&hashsigHistory{id: [16]byte{8}, at: legacyHistoryID([16]byte{8})}).record()
	moved.ID = r.ID
	if _, err := readHistory(moved); err == nil {
		t.Error("a history record under another identifier's ID is read")
	}
}

func TestIsKeygenRange(t *testing.T) {
	for _, c := range []struct {
		next, end uint64
		want      bool
	}{
		{0, 32, true}, {0, 1024, true}, {0, 1 << 60, true}, {0, math.MaxUint64, true},
		{1, 1024, false}, {0, 16, false}, {0, 1 << 11, false}, {0, 1000, false}, {0, 1 << 63, false}, {512, 1024, false},
	} {
		if got := isKeygenRange(c.next, c.end); got != c.want {
			t.Errorf("isKeygenRange(%d, %d) = %v", c.next, c.end, got)
		}
	}
}

// The operator's tools refuse to decide while a key could hold the
// identifier unseen: a damaged key block, or no master key.
func TestForgetNeedsEveryKeyReadable(t *testing.T) {
	h, dir := newTestHSM(t)
	s := login(t, h)
	other := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	id := [16]byte{0xB1}
	putLegacyHistory(t, h, id, [2]uint64{16, 32})
	s.Close()
	h.Close()
	img := filepath.Join(dir, "flash.img")
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, other.UUID[:])
	data[at/sim.BlockSize*sim.BlockSize+300] ^= 0xff
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	h2, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if _, err := h2.HashsigOrphans(); !errors.Is(err, ErrHashsigKeysUnreadable) {
		t.Errorf("HashsigOrphans with a damaged key block: %v", err)
	}
	if err := h2.ForgetHashsigRange(id, 16, 32); !errors.Is(err, ErrHashsigKeysUnreadable) {
		t.Errorf("ForgetHashsigRange with a damaged key block: %v", err)
	}
	if err := h2.Tamper(); err != nil {
		t.Fatal(err)
	}
	if _, err := h2.HashsigOrphans(); !errors.Is(err, hsmapi.ErrTamper) {
		t.Errorf("HashsigOrphans without the master key: %v", err)
	}
	if !hasHistory(t, h2, id) {
		t.Error("the record is gone")
	}
}
