package hsm

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
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
	var reqs []hsmapi.ImportRequest
	for range n {
		k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
		reqs = append(reqs, p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil))
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
		if _, err := s2.Import(ctx, r); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
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
	if err := b.add(hh, historyRange{next: 1 << 40, end: 1<<40 + 1}); !errors.Is(err, hsmapi.ErrKeystoreFull) {
		t.Errorf("a history larger than a block: %v", err)
	}
}

// editBlockOf changes the flash block whose header names the record id,
// with the HSM closed: edit gets the block's bytes and every block's
// sequence number.
func editBlockOf(t *testing.T, dir string, id keystore.ID, edit func(blk []byte, seqs []uint64)) {
	t.Helper()
	img := filepath.Join(dir, "flash.img")
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	const seqAt, idAt = 8, 24 // in a block's header (package keystore)
	var seqs []uint64
	at := -1
	for blk := 0; blk < len(data); blk += sim.BlockSize {
		if data[blk] != 0xFF {
			seqs = append(seqs, binary.BigEndian.Uint64(data[blk+seqAt:]))
		}
		if bytes.Equal(data[blk+idAt:][:len(id)], id[:]) {
			at = blk
		}
	}
	if at < 0 {
		t.Fatalf("no block names %x", id)
	}
	edit(data[at:][:sim.BlockSize], seqs)
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// damageBlockOf flips the given bits of one byte of the flash block whose
// header names the record id, off bytes into the block, with the HSM
// closed.
func damageBlockOf(t *testing.T, dir string, id keystore.ID, off int, bits byte) {
	t.Helper()
	editBlockOf(t, dir, id, func(blk []byte, _ []uint64) { blk[off] ^= bits })
}

// TestNewestHistoryBlockDamaged: after an HSS key is imported, used and
// deleted, the block of its history is the newest on the chip. Damaged so
// that it reads as a write a power cut tore (its last data byte, a range's
// flags byte, reads erased) or as a transaction that never committed (its
// status byte reads pending), it is kept and reported, and the deleted
// part is not imported again; a volatile key's history, alone in its
// write, too. Before history records always went in a keystore
// transaction, and such records were told from torn writes, Open erased
// the block without a word, and the part imported again and signed with
// the index it had used.
func TestNewestHistoryBlockDamaged(t *testing.T) {
	const statusAt, lenAt, headerSize = 0, 40, 44 // package keystore's block layout
	lastDataByte := func(blk []byte) { blk[headerSize+int(binary.BigEndian.Uint32(blk[lenAt:]))-1] = 0xFF }
	statusPending := func(blk []byte) { blk[statusAt] = 0x77 }
	for _, c := range []struct {
		name   string
		token  bool
		damage func(blk []byte)
	}{
		{"token key: last data byte erased", true, lastDataByte},
		{"token key: status pending", true, statusPending},
		{"volatile key: last data byte erased", false, lastDataByte},
		{"volatile key: status pending", false, statusPending},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t)
			h := p.dstHSM
			dir := h.board.Dir
			k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
			req := p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)
			if !c.token {
				req.Flags &^= hsmapi.FlagToken
			}
			if _, err := p.dst.Import(ctx, req); err != nil {
				t.Fatal(err)
			}
			first := sigIndex(t, signHSS(t, p.dst, req.UUID, "used once"))
			if err := p.dst.DeleteKey(ctx, req.UUID); err != nil {
				t.Fatal(err)
			}
			p.dst.Close()
			h.Close()
			editBlockOf(t, dir, packID(1), func(blk []byte, seqs []uint64) {
				if seq := binary.BigEndian.Uint64(blk[8:]); seq != slices.Max(seqs) {
					t.Fatalf("the history's block is number %d, not the newest of %v", seq, seqs)
				}
				c.damage(blk)
			})
			h2, err := Open(dir, testOptions)
			if err != nil {
				t.Fatal(err)
			}
			defer h2.Close()
			s := raceSession(t, h2)
			defer s.Close()
			_, err = s.Import(ctx, req)
			if err == nil {
				again := sigIndex(t, signHSS(t, s, req.UUID, "again"))
				t.Fatalf("the history is gone without a trace (damaged blocks %v): the deleted part imported again and signed index %d (first signed %d)", h2.DamagedBlocks(), again, first)
			}
			if !errors.Is(err, hsmapi.ErrDamaged) || !strings.Contains(err.Error(), "imports no HSS key") {
				t.Errorf("import: %v", err)
			}
			if len(h2.DamagedBlocks()) != 1 {
				t.Errorf("damaged blocks %v, want the history's", h2.DamagedBlocks())
			}
			if _, err := s.Key(ctx, req.UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
				t.Errorf("the refused key is there: %v", err)
			}
		})
	}
}

// TestHistoryFailsClosed: while a damaged flash block may have held HSS
// history (a pack or an older version's record, whatever its header now
// says its ID or kind is, or a block whose header names nothing), the HSM
// takes no HSS key part, saying why and what to do; other keys still
// import. A damaged block that was provably something else (a key, the
// SO's PIN) stops nothing. Before damage in the ID of a history record was
// told apart, a pack or an older version's record so damaged was forgotten,
// and the parts it recorded imported again.
func TestHistoryFailsClosed(t *testing.T) {
	const kindAt, idAt = 2, 24 // in a block's header (package keystore)
	type damage struct {
		id   keystore.ID
		off  int
		bits byte
	}
	pack := func(off int, bits byte) func(_, _ hsmapi.KeyInfo) damage {
		return func(_, _ hsmapi.KeyInfo) damage { return damage{packID(1), off, bits} }
	}
	legacy := func(off int, bits byte) func(_, _ hsmapi.KeyInfo) damage {
		return func(_, next hsmapi.KeyInfo) damage { return damage{legacyHistoryID(hssID(t, next)), off, bits} }
	}
	for _, c := range []struct {
		name string
		// what to damage, given the EC key stored and the HSS key to import
		// next
		damage func(ec, next hsmapi.KeyInfo) damage
		// an older version's record of the next key's identifier, which
		// refuses its import while it is read
		legacy  bool
		refused bool
	}{
		{"a pack's data", pack(54, 0x01), false, true},
		{"a pack's ID, out of the history's namespace", pack(idAt, 0x01), false, true},
		{"a pack's ID, in the last byte of its prefix", pack(idAt+5, 0x01), false, true},
		{"a pack's ID, in its version field", pack(idAt+6, 0x10), false, true},
		{"a pack's ID, in its number", pack(idAt+15, 0x01), false, true},
		{"a pack's kind, to a key's", pack(kindAt, byte(kindHashsigPack^kindKey)), false, true},
		{"an older version's record's ID", legacy(idAt, 0x01), true, true},
		{"an older version's record's kind, to a key's", legacy(kindAt, byte(kindHashsigLegacy^kindKey)), true, true},
		{"a key's header", func(ec, _ hsmapi.KeyInfo) damage { return damage{keystore.ID(ec.UUID), 3, 0x01} }, false, true},
		{"a key's data", func(ec, _ hsmapi.KeyInfo) damage { return damage{keystore.ID(ec.UUID), 300, 0x01} }, false, false},
		{"a key's ID", func(ec, _ hsmapi.KeyInfo) damage { return damage{keystore.ID(ec.UUID), idAt + 15, 0x01} }, false, false},
		{"a key's kind, to the SO's PIN's", func(ec, _ hsmapi.KeyInfo) damage {
			return damage{keystore.ID(ec.UUID), kindAt, byte(kindKey ^ kindPIN)}
		}, false, true},
		{"the SO's PIN", func(_, _ hsmapi.KeyInfo) damage { return damage{pinID(hsmapi.UserSO), 60, 0x01} }, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t)
			h := p.dstHSM
			dir := h.board.Dir
			var reqs []hsmapi.ImportRequest
			var keys []hsmapi.KeyInfo
			for _, gr := range []hsmapi.GenerateRequest{
				{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable},
				{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable},
				{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable},
				{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable},
			} {
				k := generate(t, p.src, gr)
				keys = append(keys, k)
				reqs = append(reqs, p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil))
			}
			if c.legacy {
				// Every part a split hands out lies in [1, 1024).
				putLegacyHistory(t, h, hssID(t, keys[2]), [2]uint64{1, 1024})
			}
			if _, err := p.dst.ImportBatch(ctx, reqs[:2]); err != nil {
				t.Fatal(err)
			}
			// A later write, so that the damaged block is not the newest
			// (which Open would take for a torn write, if Put wrote it).
			generate(t, p.dst, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
			p.dst.Close()
			h.Close()
			d := c.damage(keys[1], keys[2])
			damageBlockOf(t, dir, d.id, d.off, d.bits)
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
			if c.refused {
				if !errors.Is(err, hsmapi.ErrDamaged) || !strings.Contains(err.Error(), "imports no HSS key") ||
					!strings.Contains(err.Error(), "export this HSM's keys to a new HSM") {
					t.Errorf("HSS import with %s damaged: %v", c.name, err)
				}
				if _, err := s.Key(ctx, reqs[2].UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
					t.Errorf("the refused key is there: %v", err)
				}
			} else {
				if err != nil {
					t.Fatalf("HSS import with %s damaged: %v", c.name, err)
				}
				sig := signHSS(t, s, reqs[2].UUID, "imported")
				if err := hsmapi.VerifySignature(keys[2].PublicKey, []byte("imported"), sig, crypto.Hash(0)); err != nil {
					t.Error(err)
				}
			}
			if _, err := s.Import(ctx, reqs[3]); err != nil {
				t.Errorf("EC import with %s damaged: %v", c.name, err)
			}
			dg := sha256.Sum256([]byte("still"))
			sig, err := s.Sign(ctx, reqs[3].UUID, dg[:], crypto.SHA256)
			if err == nil {
				err = hsmapi.VerifySignature(keys[3].PublicKey, dg[:], sig, crypto.SHA256)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
}
