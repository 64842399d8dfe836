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

// The master key memory file, mkmFileSize bytes while it holds no old keys:
//
//	0..4    magic "CMKM"
//	4       version (1)
//	5       status: mkmStatusEmpty or mkmStatusSet
//	6..8    zero
//	8..40   key (all zero when the status is empty)
//	40..44  CRC-32 (IEEE), big-endian, over bytes 0..40
//
// With old keys (a rotation kept them in the old-key ring), version 2,
// mkmRingFileSize bytes:
//
//	0..6    as in version 1, the version 2
//	6       number of old keys, 1 to MaxOldKeys
//	7       zero
//	8..40   key
//	40..296 MaxOldKeys slots of 32 bytes: the old keys, newest first, then zeros
//	296..300 CRC-32 (IEEE), big-endian, over bytes 0..296
const (
	mkmFileName     = "mkm"
	mkmMagic        = "CMKM"
	mkmVersion      = 1
	mkmVersionRing  = 2
	mkmStatusEmpty  = 0x00
	mkmStatusSet    = 0x01
	mkmKeyOff       = 8
	mkmCRCOff       = mkmKeyOff + MasterKeySize
	mkmFileSize     = mkmCRCOff + 4
	mkmRingOff      = mkmKeyOff + MasterKeySize
	mkmRingCRCOff   = mkmRingOff + MaxOldKeys*MasterKeySize
	mkmRingFileSize = mkmRingCRCOff + 4
	// mkmLegacyTempPattern names the temporary files of versions before
	// package atomicfile, which a crash may have left.
	mkmLegacyTempPattern = ".mkm-*.tmp"
)

// MaxOldKeys is how many old keys the ring holds, as a real HSM's master
// key memory has room for a few keys only.
const MaxOldKeys = 8

// ErrRingFull: a rotation would push a ninth key into the old-key ring.
var ErrRingFull = fmt.Errorf("sim: the old-key ring is full (%d keys): retire one first", MaxOldKeys)

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
	// ring holds the old keys, newest first: kept by a rotation so that what
	// was sealed under them still opens.
	ring [][MasterKeySize]byte
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
	buf := make([]byte, mkmRingFileSize+1) // one byte more shows a longer file
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		clear(buf)
		return nil, err
	}
	return buf[:n], nil
}

// decode parses the file content into m.
func (m *MasterKeyMemory) decode(buf []byte) error {
	crcOff, version := mkmCRCOff, byte(mkmVersion)
	switch len(buf) {
	case mkmFileSize:
	case mkmRingFileSize:
		crcOff, version = mkmRingCRCOff, mkmVersionRing
	default:
		return fmt.Errorf("%w: size %d, want %d or %d", errMKMCorrupt, len(buf), mkmFileSize, mkmRingFileSize)
	}
	if string(buf[0:4]) != mkmMagic {
		return fmt.Errorf("%w: bad magic", errMKMCorrupt)
	}
	if buf[4] != version {
		return fmt.Errorf("%w: unsupported version %d for a file of %d bytes", errMKMCorrupt, buf[4], len(buf))
	}
	if got, want := binary.BigEndian.Uint32(buf[crcOff:]), crc32.ChecksumIEEE(buf[:crcOff]); got != want {
		return fmt.Errorf("%w: bad CRC", errMKMCorrupt)
	}
	old := 0
	if version == mkmVersionRing {
		old = int(buf[6])
		if old < 1 || old > MaxOldKeys {
			return fmt.Errorf("%w: %d old keys", errMKMCorrupt, old)
		}
	} else if buf[6] != 0 {
		return fmt.Errorf("%w: reserved bytes not zero", errMKMCorrupt)
	}
	if buf[7] != 0 {
		return fmt.Errorf("%w: reserved bytes not zero", errMKMCorrupt)
	}
	key := buf[mkmKeyOff : mkmKeyOff+MasterKeySize]
	switch buf[5] {
	case mkmStatusEmpty:
		if !allZero(buf[mkmKeyOff:crcOff]) {
			return fmt.Errorf("%w: key bytes left in an empty memory", errMKMCorrupt)
		}
		if old != 0 {
			return fmt.Errorf("%w: old keys in an empty memory", errMKMCorrupt)
		}
		m.set = false
	case mkmStatusSet:
		m.set = true
	default:
		return fmt.Errorf("%w: unknown status %#02x", errMKMCorrupt, buf[5])
	}
	if version == mkmVersionRing && !allZero(buf[mkmRingOff+old*MasterKeySize:crcOff]) {
		return fmt.Errorf("%w: bytes in unused old-key slots", errMKMCorrupt)
	}
	copy(m.key[:], key)
	m.ring = make([][MasterKeySize]byte, old)
	for i := range m.ring {
		copy(m.ring[i][:], buf[mkmRingOff+i*MasterKeySize:])
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// encodeMKM returns the file content for status and key; the caller clears it.
func encodeMKM(status byte, key *[MasterKeySize]byte) []byte {
	return encodeMKMRing(status, key, nil)
}

// encodeMKMRing returns the file content for status, key and old keys:
// version 1 when there are none, so that the file is what it always was
// until a rotation. The caller clears it.
func encodeMKMRing(status byte, key *[MasterKeySize]byte, ring [][MasterKeySize]byte) []byte {
	if len(ring) == 0 {
		buf := make([]byte, mkmFileSize)
		copy(buf, mkmMagic)
		buf[4] = mkmVersion
		buf[5] = status
		copy(buf[mkmKeyOff:], key[:])
		binary.BigEndian.PutUint32(buf[mkmCRCOff:], crc32.ChecksumIEEE(buf[:mkmCRCOff]))
		return buf
	}
	buf := make([]byte, mkmRingFileSize)
	copy(buf, mkmMagic)
	buf[4] = mkmVersionRing
	buf[5] = status
	buf[6] = byte(len(ring))
	copy(buf[mkmKeyOff:], key[:])
	for i := range ring {
		copy(buf[mkmRingOff+i*MasterKeySize:], ring[i][:])
	}
	binary.BigEndian.PutUint32(buf[mkmRingCRCOff:], crc32.ChecksumIEEE(buf[:mkmRingCRCOff]))
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

// Set stores key (MasterKeySize bytes) durably. The old-key ring stays.
func (m *MasterKeyMemory) Set(key []byte) error {
	if len(key) != MasterKeySize {
		return ErrMasterKeyBadLength
	}
	var k [MasterKeySize]byte
	defer clear(k[:])
	copy(k[:], key)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := replaceMKM(m.path, mkmStatusSet, &k, m.ring); err != nil {
		return fmt.Errorf("sim: set master key: %w", err)
	}
	m.key = k
	m.set = true
	return nil
}

// Rotate makes key the master key and puts the one it replaces first in
// the old-key ring, in one atomic write.
func (m *MasterKeyMemory) Rotate(key []byte) error {
	if len(key) != MasterKeySize {
		return ErrMasterKeyBadLength
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.set {
		return ErrMasterKeyNotSet
	}
	if len(m.ring) == MaxOldKeys {
		return ErrRingFull
	}
	var k [MasterKeySize]byte
	defer clear(k[:])
	copy(k[:], key)
	ring := append([][MasterKeySize]byte{m.key}, m.ring...)
	if err := replaceMKM(m.path, mkmStatusSet, &k, ring); err != nil {
		wipeRing(ring[:1])
		return fmt.Errorf("sim: rotate master key: %w", err)
	}
	wipeRing(m.ring) // copied into ring
	m.key, m.ring = k, ring
	return nil
}

// OldKeys returns copies of the old keys, newest first; the caller zeroes
// them when done.
func (m *MasterKeyMemory) OldKeys() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([][]byte, len(m.ring))
	for i := range m.ring {
		out[i] = append([]byte(nil), m.ring[i][:]...)
	}
	return out
}

// Retire drops old key i (as OldKeys numbers them) from the ring.
func (m *MasterKeyMemory) Retire(i int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i < 0 || i >= len(m.ring) {
		return fmt.Errorf("sim: retire old key %d of %d", i, len(m.ring))
	}
	ring := append(append([][MasterKeySize]byte(nil), m.ring[:i]...), m.ring[i+1:]...)
	status := byte(mkmStatusEmpty)
	if m.set {
		status = mkmStatusSet
	}
	if err := replaceMKM(m.path, status, &m.key, ring); err != nil {
		wipeRing(ring)
		return fmt.Errorf("sim: retire old key: %w", err)
	}
	wipeRing(m.ring) // the rest copied into ring
	m.ring = ring
	return nil
}

func wipeRing(ring [][MasterKeySize]byte) {
	for i := range ring {
		clear(ring[i][:])
	}
}

// Zeroize erases the key and the old-key ring, as the tamper circuit does.
// The in-memory copies are cleared first, so they are gone even when
// writing the file fails.
func (m *MasterKeyMemory) Zeroize() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.key[:])
	wipeRing(m.ring)
	m.ring = nil
	m.set = false
	var zero [MasterKeySize]byte
	if err := replaceMKM(m.path, mkmStatusEmpty, &zero, nil); err != nil {
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
	wipeRing(m.ring)
	m.ring = nil
	m.set = false
}

// replaceMKM atomically replaces the file at path with one holding status and
// key; the writer scrubs the replaced file and any temporary copy.
func replaceMKM(path string, status byte, key *[MasterKeySize]byte, ring [][MasterKeySize]byte) error {
	buf := encodeMKMRing(status, key, ring)
	defer clear(buf)
	return atomicfile.Write(path, buf, atomicfile.Options{Secret: true})
}
