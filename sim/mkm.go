package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// MasterKeySize is the size of the master key: an AES-256 key.
const MasterKeySize = 32

var (
	// ErrMasterKeyNotSet: the memory holds no key (never set, or zeroized).
	ErrMasterKeyNotSet = errors.New("sim: master key not set")
	// ErrMasterKeyBadLength: Set was given a key of the wrong size.
	ErrMasterKeyBadLength = errors.New("sim: master key has the wrong length")
)

// errMKMCorrupt reports a master key memory file that does not parse.
var errMKMCorrupt = errors.New("sim: master key memory is corrupt")

// The master key memory file, mkmFileSize bytes:
//
//	0..4    magic "CMKM"
//	4       version (1)
//	5       status: mkmStatusEmpty or mkmStatusSet
//	6..8    zero
//	8..40   key (all zero when the status is empty)
//	40..44  CRC-32 (IEEE), big-endian, over bytes 0..40
const (
	mkmFileName    = "mkm"
	mkmMagic       = "CMKM"
	mkmVersion     = 1
	mkmStatusEmpty = 0x00
	mkmStatusSet   = 0x01
	mkmKeyOff      = 8
	mkmCRCOff      = mkmKeyOff + MasterKeySize
	mkmFileSize    = mkmCRCOff + 4
	mkmTempPattern = ".mkm-*.tmp"
)

// MasterKeyMemory is the battery-backed memory holding the master key,
// persisted as one file (mode 0600) that is replaced atomically on change.
//
// Every change is written to a temporary file in the same directory, synced,
// renamed over the old file, and the directory is synced, so a crash leaves
// either the old or the new content. The replaced file's key bytes are then
// overwritten in place; that is best effort, since copy-on-write filesystems
// and SSDs may keep old copies.
type MasterKeyMemory struct {
	mu   sync.Mutex
	path string
	set  bool
	key  [MasterKeySize]byte
}

// createMKM makes a new, empty master key memory file at path. It fails with
// an error matching fs.ErrExist if path exists, and never leaves a partial
// file at path: the content is written to a temporary file that is then
// hard-linked into place.
func createMKM(path string) error {
	var empty [MasterKeySize]byte
	tmp, err := writeTempMKM(filepath.Dir(path), mkmStatusEmpty, &empty)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("sim: create master key memory: %w", err)
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("sim: create master key memory: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// openMKM loads the master key memory file at path. A stale temporary file
// left by a crash is scrubbed and removed first.
func openMKM(path string) (*MasterKeyMemory, error) {
	removeStaleTemps(filepath.Dir(path))
	buf, err := readMKMFile(path)
	if err != nil {
		return nil, fmt.Errorf("sim: open master key memory: %w", err)
	}
	defer clear(buf)
	m := &MasterKeyMemory{path: path}
	if err := m.decode(buf); err != nil {
		return nil, fmt.Errorf("sim: open master key memory %s: %w", path, err)
	}
	return m, nil
}

// readMKMFile reads the master key file, which must be a regular file of
// its fixed size: a FIFO or a device in its place (/dev/zero) would block
// or be read without end.
func readMKMFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", errMKMCorrupt, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, mkmFileSize+1) // one byte more shows a longer file
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		clear(buf)
		return nil, err
	}
	return buf[:n], nil
}

// decode parses the file content into m.
func (m *MasterKeyMemory) decode(buf []byte) error {
	if len(buf) != mkmFileSize {
		return fmt.Errorf("%w: size %d, want %d", errMKMCorrupt, len(buf), mkmFileSize)
	}
	if string(buf[0:4]) != mkmMagic {
		return fmt.Errorf("%w: bad magic", errMKMCorrupt)
	}
	if buf[4] != mkmVersion {
		return fmt.Errorf("%w: unsupported version %d", errMKMCorrupt, buf[4])
	}
	if got, want := binary.BigEndian.Uint32(buf[mkmCRCOff:]), crc32.ChecksumIEEE(buf[:mkmCRCOff]); got != want {
		return fmt.Errorf("%w: bad CRC", errMKMCorrupt)
	}
	if buf[6] != 0 || buf[7] != 0 {
		return fmt.Errorf("%w: reserved bytes not zero", errMKMCorrupt)
	}
	key := buf[mkmKeyOff:mkmCRCOff]
	switch buf[5] {
	case mkmStatusEmpty:
		for _, b := range key {
			if b != 0 {
				return fmt.Errorf("%w: key bytes left in an empty memory", errMKMCorrupt)
			}
		}
		m.set = false
	case mkmStatusSet:
		m.set = true
	default:
		return fmt.Errorf("%w: unknown status %#02x", errMKMCorrupt, buf[5])
	}
	copy(m.key[:], key)
	return nil
}

// encodeMKM returns the file content for status and key; the caller clears it.
func encodeMKM(status byte, key *[MasterKeySize]byte) []byte {
	buf := make([]byte, mkmFileSize)
	copy(buf, mkmMagic)
	buf[4] = mkmVersion
	buf[5] = status
	copy(buf[mkmKeyOff:], key[:])
	binary.BigEndian.PutUint32(buf[mkmCRCOff:], crc32.ChecksumIEEE(buf[:mkmCRCOff]))
	return buf
}

// Get returns a copy of the master key; the caller zeroes it when done.
func (m *MasterKeyMemory) Get() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.set {
		return nil, ErrMasterKeyNotSet
	}
	return append([]byte(nil), m.key[:]...), nil
}

// Set stores key (MasterKeySize bytes) durably.
func (m *MasterKeyMemory) Set(key []byte) error {
	if len(key) != MasterKeySize {
		return ErrMasterKeyBadLength
	}
	var k [MasterKeySize]byte
	defer clear(k[:])
	copy(k[:], key)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := replaceMKM(m.path, mkmStatusSet, &k); err != nil {
		return fmt.Errorf("sim: set master key: %w", err)
	}
	m.key = k
	m.set = true
	return nil
}

// Zeroize erases the key, as the tamper circuit does. The in-memory copy is
// cleared first, so it is gone even when writing the file fails.
func (m *MasterKeyMemory) Zeroize() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.key[:])
	m.set = false
	var zero [MasterKeySize]byte
	if err := replaceMKM(m.path, mkmStatusEmpty, &zero); err != nil {
		return fmt.Errorf("sim: zeroize master key: %w", err)
	}
	return nil
}

// wipe clears the in-memory copy of the key (board power-off). The file keeps
// it, as the battery-backed memory does.
func (m *MasterKeyMemory) wipe() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.key[:])
	m.set = false
}

// replaceMKM atomically replaces the file at path with one holding status and
// key, then overwrites the key bytes of the replaced file.
func replaceMKM(path string, status byte, key *[MasterKeySize]byte) error {
	dir := filepath.Dir(path)
	tmp, err := writeTempMKM(dir, status, key)
	if err != nil {
		return err
	}
	// Keep the old inode open so its key can be scrubbed once it is replaced.
	old, oldErr := os.OpenFile(path, os.O_RDWR, 0)
	if oldErr == nil {
		defer old.Close()
	}
	if err := os.Rename(tmp, path); err != nil {
		scrubAndRemove(tmp)
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	if oldErr == nil {
		// Best effort: the new content is durable already.
		var zero [MasterKeySize]byte
		if _, err := old.WriteAt(zero[:], mkmKeyOff); err == nil {
			_ = old.Sync()
		}
	}
	return nil
}

// writeTempMKM writes a complete, synced master key memory file into a new
// temporary file (mode 0600) in dir and returns its name.
func writeTempMKM(dir string, status byte, key *[MasterKeySize]byte) (string, error) {
	buf := encodeMKM(status, key)
	defer clear(buf)
	f, err := os.CreateTemp(dir, mkmTempPattern)
	if err != nil {
		return "", err
	}
	name := f.Name()
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(name)
		return "", err
	}
	_, werr := f.Write(buf)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		scrubAndRemove(name)
		return "", werr
	}
	return name, nil
}

// removeStaleTemps scrubs and removes temporary files a crash left in dir.
func removeStaleTemps(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, mkmTempPattern))
	for _, name := range names {
		scrubAndRemove(name)
	}
}

// scrubAndRemove overwrites a temporary file with zeros (best effort) and
// removes it.
func scrubAndRemove(name string) {
	if f, err := os.OpenFile(name, os.O_WRONLY, 0); err == nil {
		if fi, err := f.Stat(); err == nil && fi.Size() > 0 && fi.Size() <= mkmFileSize {
			if _, err := f.WriteAt(make([]byte, fi.Size()), 0); err == nil {
				_ = f.Sync()
			}
		}
		f.Close()
	}
	os.Remove(name)
}

// syncDir fsyncs a directory, making renames and new names in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
