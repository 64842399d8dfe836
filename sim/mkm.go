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

	"github.com/hsmkit/cryptech-backup/internal/atomicfile"
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
	// mkmLegacyTempPattern names the temporary files of versions before
	// package atomicfile, which a crash may have left.
	mkmLegacyTempPattern = ".mkm-*.tmp"
)

// MasterKeyMemory is the battery-backed memory holding the master key,
// persisted as one file (mode 0600) that is replaced atomically on change.
//
// Every change goes through package atomicfile, so a crash leaves either the
// old or the new content, and the replaced file and temporary copies are
// zeroed (best effort: copy-on-write filesystems and SSDs may keep old
// copies).
type MasterKeyMemory struct {
	// mu guards the key and its file. It is a leaf: the HSM takes it under
	// its own lock (hsm.HSM.mu), and nothing is taken under it.
	mu   sync.Mutex
	path string
	set  bool
	key  [MasterKeySize]byte
}

// createMKM makes a new, empty master key memory file at path. It fails with
// an error matching fs.ErrExist if path exists, and never leaves a partial
// file at path.
func createMKM(path string) error {
	var empty [MasterKeySize]byte
	buf := encodeMKM(mkmStatusEmpty, &empty)
	defer clear(buf)
	if err := atomicfile.Write(path, buf, atomicfile.Options{Secret: true, NoReplace: true}); err != nil {
		return fmt.Errorf("sim: create master key memory: %w", err)
	}
	return nil
}

// openMKM loads the master key memory file at path. A stale temporary file
// left by a crash is scrubbed and removed first.
func openMKM(path string) (*MasterKeyMemory, error) {
	atomicfile.RemoveTemps(path)
	legacy, _ := filepath.Glob(filepath.Join(filepath.Dir(path), mkmLegacyTempPattern))
	for _, name := range legacy {
		atomicfile.Scrub(name)
	}
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
// key; the writer scrubs the replaced file and any temporary copy.
func replaceMKM(path string, status byte, key *[MasterKeySize]byte) error {
	buf := encodeMKM(status, key)
	defer clear(buf)
	return atomicfile.Write(path, buf, atomicfile.Options{Secret: true})
}
