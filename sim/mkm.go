package sim

import "errors"

// MasterKeySize is the size of the master key: an AES-256 key.
const MasterKeySize = 32

var (
	// ErrMasterKeyNotSet: the memory holds no key (never set, or zeroized).
	ErrMasterKeyNotSet = errors.New("sim: master key not set")
	// ErrMasterKeyBadLength: Set was given a key of the wrong size.
	ErrMasterKeyBadLength = errors.New("sim: master key has the wrong length")
)

// MasterKeyMemory is the battery-backed memory holding the master key,
// persisted as one file (mode 0600) that is replaced atomically on change.
type MasterKeyMemory struct{}

// Get returns a copy of the master key; the caller zeroes it when done.
func (m *MasterKeyMemory) Get() ([]byte, error) { panic("TODO") }

// Set stores key (MasterKeySize bytes) durably.
func (m *MasterKeyMemory) Set(key []byte) error { panic("TODO") }

// Zeroize erases the key, as the tamper circuit does.
func (m *MasterKeyMemory) Zeroize() error { panic("TODO") }
