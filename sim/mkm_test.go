package sim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

func newTestMKM(t *testing.T) (*MasterKeyMemory, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), mkmFileName)
	if err := createMKM(path); err != nil {
		t.Fatal(err)
	}
	m, err := openMKM(path)
	if err != nil {
		t.Fatal(err)
	}
	return m, path
}

func checkMode0600(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want 0600", path, fi.Mode().Perm())
	}
}

// checkNoTemps fails if a file other than the mkm is left in its directory.
func checkNoTemps(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != mkmFileName {
			t.Errorf("file left beside the mkm: %s", e.Name())
		}
	}
}

func testKey(v byte) []byte { return bytes.Repeat([]byte{v}, MasterKeySize) }

func TestMKMSetGetZeroize(t *testing.T) {
	m, path := newTestMKM(t)
	checkMode0600(t, path)
	if _, err := m.Get(); !errors.Is(err, ErrMasterKeyNotSet) {
		t.Fatalf("Get on a new memory: %v, want ErrMasterKeyNotSet", err)
	}
	for _, n := range []int{0, 16, MasterKeySize - 1, MasterKeySize + 1} {
		if err := m.Set(make([]byte, n)); !errors.Is(err, ErrMasterKeyBadLength) {
			t.Errorf("Set of %d bytes: %v", n, err)
		}
	}

	key := testKey(0xA7)
	if err := m.Set(key); err != nil {
		t.Fatal(err)
	}
	key[0] = 0 // Set copied it
	got, err := m.Get()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, testKey(0xA7)) {
		t.Fatalf("Get = %x", got)
	}
	got[0] = 0 // Get returned a copy
	if again, _ := m.Get(); !bytes.Equal(again, testKey(0xA7)) {
		t.Fatal("changing Get's result changed the memory")
	}
	checkMode0600(t, path)
	checkNoTemps(t, filepath.Dir(path))

	// Persisted: a new MasterKeyMemory on the same file has the key.
	m2, err := openMKM(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m2.Get(); err != nil || !bytes.Equal(got, testKey(0xA7)) {
		t.Fatalf("after reopen: %x, %v", got, err)
	}

	// Replacing the key.
	if err := m2.Set(testKey(0x3C)); err != nil {
		t.Fatal(err)
	}
	if got, _ := m2.Get(); !bytes.Equal(got, testKey(0x3C)) {
		t.Fatalf("after a second Set: %x", got)
	}

	if err := m2.Zeroize(); err != nil {
		t.Fatal(err)
	}
	if _, err := m2.Get(); !errors.Is(err, ErrMasterKeyNotSet) {
		t.Fatalf("Get after Zeroize: %v", err)
	}
	if m2.key != [MasterKeySize]byte{} {
		t.Fatal("Zeroize left the key in memory")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw[mkmKeyOff:mkmCRCOff], make([]byte, MasterKeySize)) {
		t.Fatal("Zeroize left key bytes in the file")
	}
	m3, err := openMKM(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m3.Get(); !errors.Is(err, ErrMasterKeyNotSet) {
		t.Fatalf("after Zeroize and reopen: %v", err)
	}
	checkMode0600(t, path)
	checkNoTemps(t, filepath.Dir(path))
}

// TestMKMZeroizeClearsMemoryOnWriteError: the tamper response clears the key
// in RAM even when the file cannot be written.
func TestMKMZeroizeClearsMemoryOnWriteError(t *testing.T) {
	m, path := newTestMKM(t)
	if err := m.Set(testKey(1)); err != nil {
		t.Fatal(err)
	}
	m.path = filepath.Join(path, "no", "such", "dir", mkmFileName)
	if err := m.Zeroize(); err == nil {
		t.Fatal("Zeroize into a missing directory succeeded")
	}
	if _, err := m.Get(); !errors.Is(err, ErrMasterKeyNotSet) {
		t.Fatalf("Get after a failed Zeroize: %v", err)
	}
}

func TestMKMCreateRefusesExisting(t *testing.T) {
	_, path := newTestMKM(t)
	if err := createMKM(path); !errors.Is(err, os.ErrExist) {
		t.Fatalf("createMKM over an existing file: %v", err)
	}
	checkNoTemps(t, filepath.Dir(path))
}

// TestMKMStaleTempRemoved: the temporary files a crash left, named as
// today's writer or an older one named them, are removed on open.
func TestMKMStaleTempRemoved(t *testing.T) {
	for _, name := range []string{".mkm-123.tmp", ".mkm.tmp123"} {
		_, path := newTestMKM(t)
		stale := filepath.Join(filepath.Dir(path), name)
		if err := os.WriteFile(stale, encodeMKM(mkmStatusSet, (*[MasterKeySize]byte)(testKey(9))), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := openMKM(path); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stale temporary file %s still there: %v", name, err)
		}
	}
}

// TestMKMStaleLinkedTempSparesTheMKM: a crash between linking a new mkm
// into place and removing the temporary name leaves a name that shares
// the mkm's inode; cleaning it up must not zero the mkm.
func TestMKMStaleLinkedTempSparesTheMKM(t *testing.T) {
	m, path := newTestMKM(t)
	if err := m.Set(testKey(5)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".mkm-123.tmp", ".mkm.tmp123"} {
		if err := os.Link(path, filepath.Join(filepath.Dir(path), name)); err != nil {
			t.Skipf("no hard links here: %v", err)
		}
		m2, err := openMKM(path)
		if err != nil {
			t.Fatalf("after %s: %v", name, err)
		}
		if got, err := m2.Get(); err != nil || !bytes.Equal(got, testKey(5)) {
			t.Fatalf("after %s: %x, %v", name, got, err)
		}
		checkNoTemps(t, filepath.Dir(path))
	}
}

func TestMKMCorrupt(t *testing.T) {
	valid := encodeMKM(mkmStatusSet, (*[MasterKeySize]byte)(testKey(0x42)))
	// recrc fixes the CRC of a modified image, so that the check after
	// the CRC is the one that fails.
	recrc := func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[mkmCRCOff:], crc32.ChecksumIEEE(b[:mkmCRCOff]))
		return b
	}
	mod := func(f func(b []byte)) []byte {
		b := bytes.Clone(valid)
		f(b)
		return b
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty file", nil},
		{"extended", append(bytes.Clone(valid), 0)},
		{"bad magic", recrc(mod(func(b []byte) { b[0] = 'X' }))},
		{"version 2", recrc(mod(func(b []byte) { b[4] = 2 }))},
		{"bad CRC", mod(func(b []byte) { b[mkmCRCOff] ^= 1 })},
		{"key bit flipped", mod(func(b []byte) { b[mkmKeyOff+3] ^= 0x10 })},
		{"unknown status", recrc(mod(func(b []byte) { b[5] = 7 }))},
		{"reserved byte set", recrc(mod(func(b []byte) { b[6] = 1 }))},
		{"empty status with key bytes", recrc(mod(func(b []byte) { b[5] = mkmStatusEmpty }))},
		{"all 0xFF", bytes.Repeat([]byte{0xFF}, mkmFileSize)},
		{"all zero", make([]byte, mkmFileSize)},
	}
	dir := t.TempDir()
	path := filepath.Join(dir, mkmFileName)
	for _, tt := range tests {
		if err := os.WriteFile(path, tt.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := openMKM(path); !errors.Is(err, errMKMCorrupt) {
			t.Errorf("%s: %v, want errMKMCorrupt", tt.name, err)
		}
	}
	// Every truncation of a valid file is refused.
	for n := range len(valid) {
		if err := os.WriteFile(path, valid[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := openMKM(path); !errors.Is(err, errMKMCorrupt) {
			t.Errorf("truncated to %d bytes: %v", n, err)
		}
	}
	// A longer file is refused (mkm_unix_test.go: devices and FIFOs).
	if err := os.WriteFile(path, append(bytes.Clone(valid), 0), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openMKM(path); !errors.Is(err, errMKMCorrupt) {
		t.Errorf("one byte too long: %v", err)
	}
	os.Remove(path)
	// And the valid one loads.
	if err := os.WriteFile(path, valid, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := openMKM(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Get(); !bytes.Equal(got, testKey(0x42)) {
		t.Fatalf("valid file: %x", got)
	}
}

// Rotation keeps the old keys, newest first, across a reopen; retiring
// drops one; zeroize drops them all; a file with no old keys is version 1.
func TestMKMRing(t *testing.T) {
	m, path := newTestMKM(t)
	if err := m.Rotate(testKey(1)); !errors.Is(err, ErrMasterKeyNotSet) {
		t.Fatalf("rotate an empty memory: %v", err)
	}
	if err := m.Set(testKey(1)); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= MaxOldKeys+1; i++ {
		if err := m.Rotate(testKey(byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Rotate(testKey(99)); !errors.Is(err, ErrRingFull) {
		t.Fatalf("a ninth old key: %v", err)
	}
	checkMode0600(t, path)
	m2, err := openMKM(path)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := m2.Get()
	old := m2.OldKeys()
	if !bytes.Equal(key, testKey(MaxOldKeys+1)) || len(old) != MaxOldKeys || !bytes.Equal(old[0], testKey(MaxOldKeys)) || !bytes.Equal(old[MaxOldKeys-1], testKey(1)) {
		t.Fatalf("after reopen: key %x, %d old keys", key[:2], len(old))
	}
	if err := m2.Retire(0); err != nil {
		t.Fatal(err)
	}
	if err := m2.Retire(MaxOldKeys); err == nil {
		t.Fatal("retired a key out of range")
	}
	m3, err := openMKM(path)
	if err != nil {
		t.Fatal(err)
	}
	if old := m3.OldKeys(); len(old) != MaxOldKeys-1 || !bytes.Equal(old[0], testKey(MaxOldKeys-1)) {
		t.Fatalf("after retire: %d old keys", len(old))
	}
	for range MaxOldKeys - 1 {
		if err := m3.Retire(0); err != nil {
			t.Fatal(err)
		}
	}
	if fi, _ := os.Stat(path); fi.Size() != mkmFileSize {
		t.Fatalf("no old keys left, but the file is %d bytes", fi.Size())
	}
	if err := m3.Rotate(testKey(50)); err != nil {
		t.Fatal(err)
	}
	if err := m3.Zeroize(); err != nil {
		t.Fatal(err)
	}
	m4, err := openMKM(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m4.Get(); !errors.Is(err, ErrMasterKeyNotSet) || len(m4.OldKeys()) != 0 {
		t.Fatalf("after zeroize: %v, %d old keys", err, len(m4.OldKeys()))
	}
}

// A damaged ring file is refused: CRC, counts, bytes in unused slots.
func TestMKMRingCorrupt(t *testing.T) {
	var k [MasterKeySize]byte
	copy(k[:], testKey(7))
	good := encodeMKMRing(mkmStatusSet, &k, [][MasterKeySize]byte{k})
	m := &MasterKeyMemory{}
	if err := m.decode(good); err != nil {
		t.Fatal(err)
	}
	refix := func(b []byte) []byte {
		binary.BigEndian.PutUint32(b[mkmRingCRCOff:], crc32.ChecksumIEEE(b[:mkmRingCRCOff]))
		return b
	}
	for name, b := range map[string][]byte{
		"crc":         append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1),
		"count 0":     refix(append(bytes.Clone(good[:6]), append([]byte{0}, good[7:]...)...)),
		"count 9":     refix(append(bytes.Clone(good[:6]), append([]byte{9}, good[7:]...)...)),
		"unused slot": refix(func() []byte { b := bytes.Clone(good); b[mkmRingOff+MasterKeySize] = 1; return b }()),
		"version 1":   refix(func() []byte { b := bytes.Clone(good); b[4] = 1; return b }()),
		"empty+ring":  refix(func() []byte { b := bytes.Clone(good); b[5] = mkmStatusEmpty; return b }()),
	} {
		if err := (&MasterKeyMemory{}).decode(b); !errors.Is(err, errMKMCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
