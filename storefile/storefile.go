// Package storefile is the stored-keys file of `cryptech-backup store`:
// keys an HSM wrapped under a storage key derived from its own master key,
// to keep outside it (the signer has more keys than its keystore holds),
// and that only it can take back. docs/stored-keys.md specifies it.
//
// The HSM makes and checks the file: the binding (Binding) is what its
// tag authenticates, every field of the file included, so that no field
// can be edited and no key added, dropped or swapped without the tag
// failing.
package storefile

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// Format names the file's version.
const Format = "cryptech-backup stored keys v1"

// MaxFileSize bounds what Parse reads: 100,000 keys of a few KiB.
const MaxFileSize = 512 << 20

// ErrMalformed: the file is not a stored-keys file (truncated, not JSON,
// a field out of shape).
var ErrMalformed = errors.New("not a well-formed stored-keys file")

// File is a stored-keys file.
type File struct {
	// HSM is the serial of the HSM that stored the keys.
	HSM string
	// CheckValue is that of the master key the storage key comes from.
	CheckValue [hsmapi.MasterKeyCheckSize]byte
	Created    time.Time
	Keys       []Key
	// Tag authenticates Binding() under the storage MAC key.
	Tag []byte
}

// Key is one stored key: what it is, for people and for list, and the key
// record the HSM wrapped (RFC 5649), which holds all of it again.
type Key struct {
	UUID    hsmapi.UUID
	Type    hsmapi.KeyType
	Label   string
	Wrapped []byte
}

type fileJSON struct {
	Format     string    `json:"format"`
	HSM        string    `json:"hsm"`
	CheckValue string    `json:"master_key_check_value"`
	Created    string    `json:"created"`
	Keys       []keyJSON `json:"keys"`
	Tag        []byte    `json:"tag"`
}

type keyJSON struct {
	UUID    string `json:"uuid"`
	Type    string `json:"type"`
	Label   string `json:"label"`
	Wrapped []byte `json:"wrapped"`
}

// Marshal writes the file as indented JSON.
func (f *File) Marshal() ([]byte, error) {
	j := fileJSON{Format: Format, HSM: f.HSM, CheckValue: hex.EncodeToString(f.CheckValue[:]),
		Created: f.Created.UTC().Format(time.RFC3339), Tag: f.Tag, Keys: []keyJSON{}}
	for _, k := range f.Keys {
		j.Keys = append(j.Keys, keyJSON{UUID: k.UUID.String(), Type: k.Type.String(), Label: k.Label, Wrapped: k.Wrapped})
	}
	out, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Parse reads a stored-keys file. It checks the shape only: the HSM checks
// the tag.
func Parse(data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var j fileJSON
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	if j.Format != Format {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrMalformed, j.Format, Format)
	}
	f := &File{HSM: j.HSM, Tag: j.Tag}
	cv, err := hex.DecodeString(j.CheckValue)
	if err != nil || len(cv) != len(f.CheckValue) {
		return nil, fmt.Errorf("%w: master_key_check_value %q", ErrMalformed, j.CheckValue)
	}
	copy(f.CheckValue[:], cv)
	if f.Created, err = time.Parse(time.RFC3339, j.Created); err != nil {
		return nil, fmt.Errorf("%w: created %q", ErrMalformed, j.Created)
	}
	if f.HSM == "" || len(f.Tag) != TagSize || len(j.Keys) == 0 {
		return nil, fmt.Errorf("%w: no HSM, no tag or no keys", ErrMalformed)
	}
	seen := map[hsmapi.UUID]bool{}
	for i, kj := range j.Keys {
		u, err := hsmapi.ParseUUID(kj.UUID)
		if err != nil {
			return nil, fmt.Errorf("%w: key %d: %v", ErrMalformed, i, err)
		}
		t, err := hsmapi.ParseKeyType(kj.Type)
		if err != nil {
			return nil, fmt.Errorf("%w: key %s: %v", ErrMalformed, u, err)
		}
		if seen[u] {
			return nil, fmt.Errorf("%w: key %s twice", ErrMalformed, u)
		}
		seen[u] = true
		if len(kj.Wrapped) < 16 {
			return nil, fmt.Errorf("%w: key %s: no wrapped key", ErrMalformed, u)
		}
		f.Keys = append(f.Keys, Key{UUID: u, Type: t, Label: kj.Label, Wrapped: kj.Wrapped})
	}
	return f, nil
}

// TagSize is the size of the tag: HMAC-SHA-256.
const TagSize = 32

// Binding is what the tag authenticates: every field, each length-prefixed
// (u32), in order.
func (f *File) Binding() []byte {
	var b []byte
	field := func(v []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	field([]byte(Format))
	field([]byte(f.HSM))
	field(f.CheckValue[:])
	field([]byte(f.Created.UTC().Format(time.RFC3339)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.Keys)))
	for _, k := range f.Keys {
		field(k.UUID[:])
		b = binary.BigEndian.AppendUint32(b, uint32(k.Type))
		field([]byte(k.Label))
		field(k.Wrapped)
	}
	return b
}
