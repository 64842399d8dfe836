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

// FormatToken names the file's version when a PKCS#11 token stored the
// keys under a storage key object of its own (File.Token): a format of its
// own, first in the binding, so that neither kind of file passes for the
// other and a file of the emulated HSM binds exactly as before.
const FormatToken = "cryptech-backup stored keys v1 (PKCS#11 token)"

// MaxFileSize bounds what Parse reads: 100,000 keys of a few KiB.
const MaxFileSize = 512 << 20

// ErrMalformed: the file is not a stored-keys file (truncated, not JSON,
// a field out of shape).
var ErrMalformed = errors.New("not a well-formed stored-keys file")

// File is a stored-keys file.
type File struct {
	// Token: a PKCS#11 token stored the keys, under a storage key object
	// on it (docs/stored-keys.md, "On a PKCS#11 token"), not an HSM under
	// its master key.
	Token bool
	// HSM is the serial of the HSM (the token) that stored the keys.
	HSM string
	// CheckValue is that of the master key the storage key comes from, or,
	// on a token, the storage key's own.
	CheckValue [hsmapi.MasterKeyCheckSize]byte
	Created    time.Time
	Keys       []Key
	// Tag authenticates Binding() under the storage MAC key (TagSize
	// bytes), or, on a token, is its digest wrapped under the storage key
	// (TokenTagSize bytes).
	Tag []byte
}

// Key is one stored key: what it is, for people and for list, and the key
// record the HSM wrapped (RFC 5649), which holds all of it again.
type Key struct {
	UUID    hsmapi.UUID
	Type    hsmapi.KeyType
	Label   string
	Wrapped []byte

	// A token's key also carries what its wrapped private key cannot: its
	// public key (SubjectPublicKeyInfo), its flags and the PKCS#11
	// attributes of both its objects (hsmapi.EncodeAttributes), so that it
	// arrives exactly as it left. Only in token files.
	PublicKey  []byte
	Flags      hsmapi.Flags
	Attributes []byte
}

type fileJSON struct {
	Format     string    `json:"format"`
	HSM        string    `json:"hsm"`
	CheckValue string    `json:"master_key_check_value,omitempty"`
	StorageKey string    `json:"storage_key_check_value,omitempty"`
	Created    string    `json:"created"`
	Keys       []keyJSON `json:"keys"`
	Tag        []byte    `json:"tag"`
}

type keyJSON struct {
	UUID       string  `json:"uuid"`
	Type       string  `json:"type"`
	Label      string  `json:"label"`
	Wrapped    []byte  `json:"wrapped"`
	PublicKey  []byte  `json:"public_key,omitempty"`
	Flags      *uint32 `json:"flags,omitempty"`
	Attributes []byte  `json:"attributes,omitempty"`
}

// Marshal writes the file as indented JSON.
func (f *File) Marshal() ([]byte, error) {
	j := fileJSON{Format: f.format(), HSM: f.HSM, CheckValue: hex.EncodeToString(f.CheckValue[:]),
		Created: f.Created.UTC().Format(time.RFC3339), Tag: f.Tag, Keys: []keyJSON{}}
	if f.Token {
		j.CheckValue, j.StorageKey = "", j.CheckValue
	}
	for _, k := range f.Keys {
		kj := keyJSON{UUID: k.UUID.String(), Type: k.Type.String(), Label: k.Label, Wrapped: k.Wrapped}
		if f.Token {
			flags := uint32(k.Flags)
			kj.PublicKey, kj.Flags, kj.Attributes = k.PublicKey, &flags, k.Attributes
		}
		j.Keys = append(j.Keys, kj)
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
	if j.Format != Format && j.Format != FormatToken {
		return nil, fmt.Errorf("%w: format %q, want %q or %q", ErrMalformed, j.Format, Format, FormatToken)
	}
	f := &File{Token: j.Format == FormatToken, HSM: j.HSM, Tag: j.Tag}
	cvField, cvHex, other := "master_key_check_value", j.CheckValue, j.StorageKey
	tagSize := TagSize
	if f.Token {
		cvField, cvHex, other = "storage_key_check_value", j.StorageKey, j.CheckValue
		tagSize = TokenTagSize
	}
	cv, err := hex.DecodeString(cvHex)
	if err != nil || len(cv) != len(f.CheckValue) || other != "" {
		return nil, fmt.Errorf("%w: %s %q (and no other check value)", ErrMalformed, cvField, cvHex)
	}
	copy(f.CheckValue[:], cv)
	if f.Created, err = time.Parse(time.RFC3339, j.Created); err != nil {
		return nil, fmt.Errorf("%w: created %q", ErrMalformed, j.Created)
	}
	if f.HSM == "" || len(f.Tag) != tagSize || len(j.Keys) == 0 {
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
		k := Key{UUID: u, Type: t, Label: kj.Label, Wrapped: kj.Wrapped, PublicKey: kj.PublicKey, Attributes: kj.Attributes}
		tokenKey := kj.Flags != nil || len(kj.PublicKey) > 0 || len(kj.Attributes) > 0
		if f.Token && (kj.Flags == nil || len(kj.PublicKey) == 0) || !f.Token && tokenKey {
			return nil, fmt.Errorf("%w: key %s: public_key, flags and attributes belong in a token's file, and only there", ErrMalformed, u)
		}
		if kj.Flags != nil {
			k.Flags = hsmapi.Flags(*kj.Flags)
		}
		f.Keys = append(f.Keys, k)
	}
	return f, nil
}

func (f *File) format() string {
	if f.Token {
		return FormatToken
	}
	return Format
}

// TagSize is the size of the tag: HMAC-SHA-256.
const TagSize = 32

// TokenTagSize is the size of a token file's tag: a SHA-256 digest wrapped
// with RFC 5649.
const TokenTagSize = 40

// Binding is what the tag authenticates: every field, each length-prefixed
// (u32), in order; a token file's keys with their public key, flags (u32)
// and attributes after the rest.
func (f *File) Binding() []byte {
	var b []byte
	field := func(v []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	field([]byte(f.format()))
	field([]byte(f.HSM))
	field(f.CheckValue[:])
	field([]byte(f.Created.UTC().Format(time.RFC3339)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(f.Keys)))
	for _, k := range f.Keys {
		field(k.UUID[:])
		b = binary.BigEndian.AppendUint32(b, uint32(k.Type))
		field([]byte(k.Label))
		field(k.Wrapped)
		if f.Token {
			field(k.PublicKey)
			b = binary.BigEndian.AppendUint32(b, uint32(k.Flags))
			field(k.Attributes)
		}
	}
	return b
}
