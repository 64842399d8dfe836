package hsm

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hsmkit/cryptech-backup/keystore"
	"github.com/hsmkit/cryptech-backup/sim"
)

// TestHashsigHistoriesShareABlock: the histories of HSS keys imported one
// by one share a flash block, which FlashUsage reports, and they are kept
// across a restart: no deleted key's part comes back.
func TestHashsigHistoriesShareABlock(t *testing.T) {
	p := newPair(t)
	h := p.dstHSM
	const n = 5
	var reqs []ImportRequest
	for range n {
		k := generate(t, p.src, GenerateRequest{Type: KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | FlagExportable})
		reqs = append(reqs, p.importReq(k, p.export(t, k, KEKOAEPSHA256, nil), KEKOAEPSHA256, nil))
	}
	free := h.ks.Free()
	for _, r := range reqs {
		if _, err := p.dst.Import(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if used := free - h.ks.Free(); used != n+1 {
		t.Errorf("%d HSS keys imported took %d flash blocks, want %d: one each and one for all their histories", n, used, n+1)
	}
	u, err := h.FlashUsage()
	if err != nil {
		t.Fatal(err)
	}
	want := FlashUsage{Blocks: 256, Free: h.ks.Free(), HistoryKeys: n, HistoryRanges: n, HistoryBlocks: 1}
	if u != want {
		t.Errorf("FlashUsage() = %+v, want %+v", u, want)
	}
	for _, r := range reqs {
		if err := p.dst.DeleteKey(ctx, r.UUID); err != nil {
			t.Fatal(err)
		}
	}
	h2, s2 := reopen(t, h, "restart")
	defer h2.Close()
	defer s2.Close()
	for i, r := range reqs {
		if _, err := s2.Import(ctx, r); !errors.Is(err, ErrHashsigRangeUsed) {
			t.Errorf("part %d again after its key was deleted and a restart: %v", i, err)
		}
	}
	blockAccount(t, h2, "after the restart")
}

// fakeID is the HSS identifier numbered i of a test.
func fakeID(i int) [16]byte {
	sum := sha256.Sum256(fmt.Appendf(nil, "identifier %d", i))
	return [16]byte(sum[:16])
}

// commitBook stores what a book changed, as an import does.
func commitBook(t *testing.T, h *HSM, b *historyBook) {
	t.Helper()
	if err := h.ks.Commit(nil, b.records()); err != nil {
		t.Fatal(err)
	}
}

// TestHistoryPacks: a full pack makes a new one; a history that outgrows
// its pack moves to another in the same write; one that would outgrow a
// block is refused; every history reads back as it was written.
func TestHistoryPacks(t *testing.T) {
	h, _ := newTestHSM(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	book := func() *historyBook {
		b, err := h.historyBook()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	want := map[[16]byte][]historyRange{}
	add := func(b *historyBook, i int, r historyRange) {
		t.Helper()
		hh, err := b.get(fakeID(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.add(hh, r); err != nil {
			t.Fatal(err)
		}
		want[fakeID(i)] = append(want[fakeID(i)], r)
	}
	check := func(name string, packs ...int) *historyBook {
		t.Helper()
		b := book()
		for n, size := range packs {
			if got := len(b.packs[packID(uint64(n+1))]); got != size {
				t.Errorf("%s: pack %d holds %d histories, want %d", name, n+1, got, size)
			}
		}
		if len(b.packs) != len(packs) {
			t.Errorf("%s: %d packs, want %d", name, len(b.packs), len(packs))
		}
		for id, rs := range want {
			hh, err := b.get(id)
			if err != nil || fmt.Sprint(hh.ranges) != fmt.Sprint(rs) {
				t.Fatalf("%s: history of %x is %v (%v), want %v", name, id, hh.ranges, err, rs)
			}
		}
		return b
	}

	const perPack = (keystore.MaxDataSize - packHead) / 37
	b := book()
	for i := range perPack + 1 {
		add(b, i, historyRange{next: uint64(i), end: uint64(i) + 32})
	}
	commitBook(t, h, b)
	b = check("one more than a pack holds", perPack, 1)

	// Three bytes are left in pack 1: one more range fits, two do not.
	add(b, 0, historyRange{next: 1000, end: 1010})
	commitBook(t, h, b)
	b = check("a history grown in its pack", perPack, 1)
	add(b, 0, historyRange{next: 2000, end: 2010})
	if len(b.records()) != 2 {
		t.Errorf("a history moved between packs in %d records, want 2 in one write", len(b.records()))
	}
	commitBook(t, h, b)
	b = check("a history that outgrew its pack", perPack-1, 2)

	// One history fills a block, and no more.
	hh, err := b.get(fakeID(1000))
	if err != nil {
		t.Fatal(err)
	}
	most := (keystore.MaxDataSize - packHead - entrySize(0)) / 17
	for i := range most {
		if err := b.add(hh, historyRange{next: uint64(i), end: uint64(i) + 1}); err != nil {
			t.Fatalf("range %d of %d: %v", i+1, most, err)
		}
	}
	if err := b.add(hh, historyRange{next: 1 << 40, end: 1<<40 + 1}); !errors.Is(err, ErrKeystoreFull) {
		t.Errorf("a history larger than a block: %v", err)
	}
}

// damageBlockOf changes a byte of the flash block that holds the record
// named id, off bytes into the block, with the HSM closed.
func damageBlockOf(t *testing.T, dir string, id []byte, off int) {
	t.Helper()
	img := filepath.Join(dir, "flash.img")
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, id)
	if at < 0 {
		t.Fatalf("no block names %x", id)
	}
	data[at/sim.BlockSize*sim.BlockSize+off] ^= 0x01
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHistoryFailsClosed: while a damaged flash block may have held HSS
// history (a pack, or a block whose header names nothing), the HSM takes no
// HSS key part, saying why; other keys still import.
func TestHistoryFailsClosed(t *testing.T) {
	for _, c := range []struct {
		name string
		// damage returns the ID of the block to damage and where
		damage func(hss, ec KeyInfo) ([]byte, int)
	}{
		{"a pack's data", func(KeyInfo, KeyInfo) ([]byte, int) { id := packID(1); return id[:], 54 }},
		{"a key's header", func(_, ec KeyInfo) ([]byte, int) { return ec.UUID[:], 3 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t)
			h := p.dstHSM
			dir := h.board.Dir
			var reqs []ImportRequest
			var keys []KeyInfo
			for _, gr := range []GenerateRequest{
				{Type: KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | FlagExportable},
				{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags | FlagExportable},
				{Type: KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | FlagExportable},
				{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags | FlagExportable},
			} {
				k := generate(t, p.src, gr)
				keys = append(keys, k)
				reqs = append(reqs, p.importReq(k, p.export(t, k, KEKOAEPSHA256, nil), KEKOAEPSHA256, nil))
			}
			if _, err := p.dst.ImportBatch(ctx, reqs[:2]); err != nil {
				t.Fatal(err)
			}
			// A later write, so that the damaged block is not the newest
			// (which Open would take for a torn write).
			generate(t, p.dst, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags})
			p.dst.Close()
			h.Close()
			id, off := c.damage(keys[0], keys[1])
			damageBlockOf(t, dir, id, off)
			h2, err := Open(dir, testOptions)
			if err != nil {
				t.Fatal(err)
			}
			defer h2.Close()
			if len(h2.DamagedBlocks()) != 1 {
				t.Fatalf("damaged blocks %v, want one", h2.DamagedBlocks())
			}
			s := raceSession(t, h2)
			defer s.Close()
			_, err = s.Import(ctx, reqs[2])
			if !errors.Is(err, keystore.ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte("takes no HSS key part")) {
				t.Errorf("HSS import with %s damaged: %v", c.name, err)
			}
			if _, err := s.Key(ctx, reqs[2].UUID); !errors.Is(err, ErrKeyNotFound) {
				t.Errorf("the refused key is there: %v", err)
			}
			if _, err := s.Import(ctx, reqs[3]); err != nil {
				t.Errorf("EC import with %s damaged: %v", c.name, err)
			}
			d := sha256.Sum256([]byte("still"))
			sig, err := s.Sign(ctx, reqs[3].UUID, d[:], crypto.SHA256)
			if err == nil {
				err = VerifySignature(keys[3].PublicKey, d[:], sig, crypto.SHA256)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
}
