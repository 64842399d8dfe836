package hsm

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// TestHashsigHistoryCannotBeSquatted: the identifier of an HSS key is
// public, so anyone could compute the ID older versions gave its history
// record (a hash of the identifier). A key imported under that UUID leaves
// the HSS key importable, and its history is kept; the UUIDs the records
// have now are refused to any key.
func TestHashsigHistoryCannotBeSquatted(t *testing.T) {
	p := newPair(t)
	hk := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	ek := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
	id := hssID(t, hk)
	ew := p.export(t, ek, hsmapi.KEKOAEPSHA256, nil)

	// Where the history records are now: no key may go there.
	squat := p.importReq(ek, ew, hsmapi.KEKOAEPSHA256, nil)
	squat.UUID = hsmapi.UUID(packID(1))
	if _, err := p.dst.Import(ctx, squat); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("a key under the UUID of an HSS history record: %v", err)
	}
	// Where older versions put it: any key may, and the HSS key still
	// imports.
	old := sha256.Sum256(append([]byte("cryptech-backup HSS history\x00"), id[:]...))
	squat.UUID = hsmapi.UUID(old[:16])
	if _, err := p.dst.Import(ctx, squat); err != nil {
		t.Fatalf("a key under the UUID older versions gave the history record: %v", err)
	}
	req := p.importReq(hk, p.export(t, hk, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)
	if _, err := p.dst.Import(ctx, req); err != nil {
		t.Fatalf("the HSS key after a key took the old history UUID: %v", err)
	}
	sig := signHSS(t, p.dst, hk.UUID, "imported")
	if err := hsmapi.VerifySignature(hk.PublicKey, []byte("imported"), sig, crypto.Hash(0)); err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("squatter"))
	esig, err := p.dst.Sign(ctx, squat.UUID, d[:], crypto.SHA256)
	if err == nil {
		err = hsmapi.VerifySignature(ek.PublicKey, d[:], esig, crypto.SHA256)
	}
	if err != nil {
		t.Errorf("the key under the old history UUID: %v", err)
	}
	// The history was recorded: once the key is deleted, the part does not
	// come back.
	if err := p.dst.DeleteKey(ctx, hk.UUID); err != nil {
		t.Fatal(err)
	}
	if _, err := p.dst.Import(ctx, req); err == nil {
		t.Error("the HSS part imported a second time, after its key was deleted")
	}
}

// An HSM an older version left with a key in what is now the history
// records' namespace: the history goes to another ID, and the key is left
// as it is.
func TestHashsigHistoryPlaceHeldByOldKey(t *testing.T) {
	p := newPair(t)
	hk := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	id := hssID(t, hk)
	h := p.dstHSM
	if err := h.ks.Put(keystore.Record{ID: packID(1), Kind: kindKey, Data: []byte("an older version's key")}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.dst.Import(ctx, p.importReq(hk, p.export(t, hk, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil)); err != nil {
		t.Fatalf("import with a key where the first pack would go: %v", err)
	}
	if rec, err := h.ks.Get(packID(1)); err != nil || rec.Kind != kindKey || string(rec.Data) != "an older version's key" {
		t.Errorf("the key in the way was changed: %v", err)
	}
	if hh := historyOf(t, h, id); hh.at != packID(2) || len(hh.ranges) != 1 {
		t.Errorf("history %+v, want one range in pack 2", hh)
	}
}

// Every history record's ID is reserved, and no version 4 UUID is.
func TestHistoryNamespace(t *testing.T) {
	for i := range 1000 {
		if u := hsmapi.UUID(packID(uint64(i) << (i % 56))); !isReserved(u) {
			t.Fatalf("history ID %s is not reserved", u)
		}
		u, err := hsmapi.NewUUID(nil)
		if err != nil {
			t.Fatal(err)
		}
		if isReserved(u) {
			t.Fatalf("version 4 UUID %s is reserved", u)
		}
	}
	if isReserved(hsmapi.UUID{}) {
		t.Error("the nil UUID is reserved: it asks the HSM to choose one")
	}
}

// TestHashsigRefusalNamesEveryPart: a batch with several HSS parts this HSM
// may not store is refused with hsmapi.ErrHashsigRangeUsed (not "a different key
// already has this UUID": none has), naming each of them, and the way out
// it names has the HSM's own directory in it. Nothing is stored.
func TestHashsigRefusalNamesEveryPart(t *testing.T) {
	p := newPair(t)
	h := p.dstHSM
	var reqs []hsmapi.ImportRequest
	var ids [][16]byte
	for _, gr := range []hsmapi.GenerateRequest{
		{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable},
		{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable},
	} {
		k := generate(t, p.src, gr)
		reqs = append(reqs, p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil))
		if k.Hashsig != nil {
			ids = append(ids, hssID(t, k))
		}
	}
	// What an older version left of the first; the second was imported
	// and deleted.
	putLegacyHistory(t, h, ids[0], [2]uint64{1, 1024})
	if _, err := p.dst.Import(ctx, reqs[2]); err != nil {
		t.Fatal(err)
	}
	if err := p.dst.DeleteKey(ctx, reqs[2].UUID); err != nil {
		t.Fatal(err)
	}
	free := h.ks.Free()
	_, err := p.dst.ImportBatch(ctx, reqs)
	if !errors.Is(err, hsmapi.ErrHashsigRangeUsed) || errors.Is(err, hsmapi.ErrKeyNameInUse) {
		t.Fatalf("import of two used HSS parts: %v", err)
	}
	msg := err.Error()
	for i, want := range []string{
		fmt.Sprintf("key 0 (%s): signatures", reqs[0].UUID),
		fmt.Sprintf("key 2 (%s): signatures", reqs[2].UUID),
		fmt.Sprintf("cryptech-backup hashsig-history --hsm %s --forget %x:1-1024", h.board.Dir, ids[0]),
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("part %d: the refusal does not say %q: %s", i, want, msg)
		}
	}
	if strings.Contains(msg, "already has this UUID") || strings.Contains(msg, "--hsm DIR") {
		t.Errorf("the refusal says what is not so: %s", msg)
	}
	for _, r := range reqs {
		if _, err := p.dst.Key(ctx, r.UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
			t.Errorf("key %s: %v, want not stored", r.UUID, err)
		}
	}
	if h.ks.Free() != free {
		t.Errorf("%d free blocks after the refusal, %d before", h.ks.Free(), free)
	}
}
