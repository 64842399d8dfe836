package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keystore"
	"github.com/hsmkit/cryptech-backup/sim"
)

// TestHashsigHistoryForget: an HSM left by an older version with the HSS
// history record of an import a crash cut short refuses the bundle with
// one line that names hashsig-history; the command lists the record and,
// told to, forgets it; then the bundle imports.
func TestHashsigHistoryForget(t *testing.T) {
	dir := t.TempDir()
	kekek, hss := makeSource(t, dir)
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	bundle := filepath.Join(dir, "backup.json")
	var stdout, stderr bytes.Buffer
	if st := run([]string{"export", "--hsm", src, "-i", kekek, "-o", bundle}, pinEnv(&stdout, &stderr)); st != 0 {
		t.Fatalf("export: %d %s", st, stderr.String())
	}
	id := hssIdentifier(t, src, hss)
	// What an older version left: the history record of the part a split
	// hands out (above index 0), written before the key, which never came.
	putLegacyHistoryRecord(t, dst, id, 1, 32)
	forget := fmt.Sprintf("%x:1-32", id)

	stdout.Reset()
	stderr.Reset()
	if st := run([]string{"import", "--hsm", dst, "-i", bundle}, pinEnv(&stdout, &stderr)); st != 1 {
		t.Fatalf("import over the record: exit %d, stderr %s", st, stderr.String())
	}
	checkOneLine(t, stderr.String(), `cut short.*cryptech-backup hashsig-history --hsm `+regexp.QuoteMeta(dst)+` --forget `+forget)

	stdout.Reset()
	stderr.Reset()
	if st := run([]string{"hashsig-history", "--hsm", dst}, pinEnv(&stdout, &stderr)); st != 0 {
		t.Fatalf("hashsig-history: exit %d, stderr %s", st, stderr.String())
	}
	if got := stdout.String(); !strings.HasPrefix(got, forget+"\t") || strings.Count(got, "\n") != 1 || !strings.Contains(got, "older version") {
		t.Errorf("hashsig-history lists %q, want one line for %s", got, forget)
	}

	for _, bad := range []string{"zz:1-32", forget[:31] + ":1-32", fmt.Sprintf("%x:32-1", id), fmt.Sprintf("%x:1", id)} {
		stderr.Reset()
		if st := run([]string{"hashsig-history", "--hsm", dst, "--forget", bad}, pinEnv(&stdout, &stderr)); st != 2 {
			t.Errorf("--forget %s: exit %d, stderr %s", bad, st, stderr.String())
		}
	}
	stderr.Reset()
	if st := run([]string{"hashsig-history", "--hsm", dst, "--forget", fmt.Sprintf("%x:2-32", id)}, pinEnv(&stdout, &stderr)); st != 1 {
		t.Errorf("--forget a range not recorded: exit %d, stderr %s", st, stderr.String())
	}
	stderr.Reset()
	if st := run([]string{"hashsig-history", "--hsm", dst, "--forget", forget}, pinEnv(&stdout, &stderr)); st != 0 {
		t.Fatalf("--forget: exit %d, stderr %s", st, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if st := run([]string{"import", "--hsm", dst, "-i", bundle}, pinEnv(&stdout, &stderr)); st != 0 {
		t.Fatalf("import after --forget: exit %d, stderr %s", st, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	if st := run([]string{"hashsig-history", "--hsm", dst}, pinEnv(&stdout, &stderr)); st != 0 || stdout.Len() != 0 {
		t.Errorf("hashsig-history with the key imported: exit %d, stdout %q", st, stdout.String())
	}
	// 64 blocks: 3 PINs, the flash size, the KEKEK, the two keys imported
	// and the history of the HSS key.
	if want := "cryptech-backup: flash: 56 of 64 blocks free, 0 damaged; HSS history, kept for good: keys 1, ranges 1, blocks 1\n"; stderr.String() != want {
		t.Errorf("hashsig-history says %q, want %q", stderr.String(), want)
	}
}

// TestHashsigHistoryInUse: on an HSM another process holds (serve), the
// command says to stop it, on one line.
func TestHashsigHistoryInUse(t *testing.T) {
	dir := t.TempDir()
	makeSource(t, dir)
	src := filepath.Join(dir, "src")
	h, err := hsm.Open(src, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var stdout, stderr bytes.Buffer
	if st := run([]string{"hashsig-history", "--hsm", src}, pinEnv(&stdout, &stderr)); st != 1 {
		t.Fatalf("exit %d, stderr %s", st, stderr.String())
	}
	checkOneLine(t, stderr.String(), `open in another process.*stop cryptech-backup serve`)
}

// hssIdentifier reads the HSS identifier of key id in the HSM in dir.
func hssIdentifier(t *testing.T, dir string, id hsmapi.UUID) [16]byte {
	t.Helper()
	h, err := hsm.Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s := h.NewSession()
	defer s.Close()
	if err := s.Login(context.Background(), hsmapi.UserWheel, []byte(fixesPIN)); err != nil {
		t.Fatal(err)
	}
	k, err := s.Key(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := hashsig.ParsePKIXPublicKey(k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_, hid := pub.Top()
	return hid
}

// putLegacyHistoryRecord writes, into the keystore of the HSM in dir, an
// HSS history record as versions before 2 wrote them (kind 3, no version).
func putLegacyHistoryRecord(t *testing.T, dir string, id [16]byte, next, end uint64) {
	t.Helper()
	b, err := sim.OpenBoard(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ks, err := keystore.Open(b.Flash)
	if err != nil {
		t.Fatal(err)
	}
	data := binary.BigEndian.AppendUint32(append([]byte(nil), id[:]...), 1)
	data = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(data, next), end)
	name := sha256.Sum256(append([]byte("cryptech-backup HSS history\x00"), id[:]...))
	if err := ks.Put(keystore.Record{ID: keystore.ID(name[:16]), Kind: 3, Data: data}); err != nil {
		t.Fatal(err)
	}
}

// TestUsageLineNamesTreeCaches: the flash line names the HSS tree caches'
// blocks when there are any, and is as before when there are none.
func TestUsageLineNamesTreeCaches(t *testing.T) {
	u := hsm.FlashUsage{Blocks: 64, Free: 40, HistoryKeys: 1, HistoryRanges: 1, HistoryBlocks: 1}
	const head = "flash: 40 of 64 blocks free, 0 damaged; HSS history, kept for good: keys 1, ranges 1, blocks 1"
	if got := usageLine(u); got != head {
		t.Errorf("without caches: %q", got)
	}
	u.CacheBlocks = 9
	if got, want := usageLine(u), head+"; HSS tree caches, freed when keys need the room: blocks 9"; got != want {
		t.Errorf("with caches: %q, want %q", got, want)
	}
}
