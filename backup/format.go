package backup

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/quote"
)

// Version is the bundle format this package writes. Files without a version
// come from cryptech_backup.
const Version = 1

// Errors callers branch on.
var (
	// ErrFormat: a file is not a well-formed KEKEK file or bundle.
	ErrFormat = errors.New("malformed file")
	// ErrWrongKEKEK: the bundle was made for a KEKEK this HSM does not hold.
	ErrWrongKEKEK = errors.New("bundle was made for another KEKEK")
	// ErrLegacy: the operation needs PKCS#1 v1.5 KEK encryption, which the
	// caller did not allow.
	ErrLegacy = errors.New("needs legacy PKCS#1 v1.5 KEK encryption")
)

// KEKEKFile is what Setup writes: the destination's KEKEK.
type KEKEKFile struct {
	Comment string `json:"comment"`
	// KEKEncryptions lists what the destination can undo, strongest first.
	// Absent in cryptech_backup's files, which means PKCS#1 v1.5 only.
	KEKEncryptions []hsmapi.KEKEncryption `json:"kek_encryptions,omitempty"`
	// KEKEKKDF, KEKEKPKCS8 and KEKEKSalt carry a soft KEKEK's private half
	// (soft.go); such a file has no KEKEKUUID.
	KEKEKKDF    *KDF        `json:"kekek_kdf,omitempty"`
	KEKEKPKCS8  Base64Lines `json:"kekek_pkcs8,omitempty"`
	KEKEKPubkey Base64Lines `json:"kekek_pubkey"`
	KEKEKSalt   Base64Lines `json:"kekek_salt,omitempty"`
	KEKEKUUID   string      `json:"kekek_uuid,omitempty"`
	Version     int         `json:"version,omitempty"`
}

// Bundle is what Export writes: the wrapped keys. Fields are declared in
// sorted order so the JSON has sorted keys, as cryptech_backup writes it.
type Bundle struct {
	Comment string `json:"comment"`
	// KEKEncryption names how every key's KEK is encrypted.
	KEKEncryption hsmapi.KEKEncryption `json:"kek_encryption,omitempty"`
	// The soft KEKEK's fields of the KEKEK file, carried as cryptech_backup
	// carries them, for import to load it.
	KEKEKKDF    *KDF        `json:"kekek_kdf,omitempty"`
	KEKEKPKCS8  Base64Lines `json:"kekek_pkcs8,omitempty"`
	KEKEKPubkey Base64Lines `json:"kekek_pubkey"`
	KEKEKSalt   Base64Lines `json:"kekek_salt,omitempty"`
	KEKEKUUID   string      `json:"kekek_uuid,omitempty"`
	Keys        []BundleKey `json:"keys"`
	Version     int         `json:"version,omitempty"`
}

// BundleKey is one key of a bundle: a wrapped private key (PKCS8 and KEK
// set) or a public key (only SPKI).
type BundleKey struct {
	// Attributes are the key's attributes besides its label, when the
	// source has any (see Attributes).
	Attributes Attributes `json:"attributes,omitempty"`

	Comment string       `json:"comment"`
	Flags   hsmapi.Flags `json:"flags"`
	KEK     Base64Lines  `json:"kek,omitempty"`
	Label   string       `json:"label,omitempty"`
	// LabelHex carries, in lower-case hex, a label that Label cannot: one
	// CheckLabel refuses (see setLabel). Never both.
	LabelHex string      `json:"label_hex,omitempty"`
	PKCS8    Base64Lines `json:"pkcs8,omitempty"`
	SPKI     Base64Lines `json:"spki,omitempty"`
	Tag      Base64Lines `json:"tag,omitempty"`
	UUID     string      `json:"uuid"`
}

// setLabel puts a key's label in the entry: as text when it is one
// CheckLabel accepts, otherwise as label_hex, so that any bytes a libhal
// client set arrive as they left (encoding/json would turn bytes that are
// not UTF-8 into U+FFFD, and an importer refuses control and format
// characters as text). A label longer than an HSM keeps is refused.
func (k *BundleKey) setLabel(label string) error {
	if err := hsmapi.CheckRawLabel(label); err != nil {
		return err
	}
	k.Label, k.LabelHex = label, ""
	if hsmapi.CheckLabel(label) != nil {
		k.Label, k.LabelHex = "", hex.EncodeToString([]byte(label))
	}
	return nil
}

// label reads the entry's label, in the one form setLabel writes: a
// label that passes CheckLabel is text, any other (up to what an HSM keeps)
// is lower-case hex.
func (k *BundleKey) label() (string, error) {
	if k.LabelHex == "" {
		if err := hsmapi.CheckLabel(k.Label); err != nil {
			return "", fmt.Errorf("label: %s (a label of other bytes is label_hex)", reason(err))
		}
		return k.Label, nil
	}
	if k.Label != "" {
		return "", errors.New("both label and label_hex")
	}
	raw := make([]byte, len(k.LabelHex)/2)
	if !decodeLowerHex(raw, k.LabelHex) {
		return "", errors.New("label_hex: not lower-case hexadecimal")
	}
	label := string(raw)
	if err := hsmapi.CheckRawLabel(label); err != nil {
		return "", fmt.Errorf("label_hex: %s", reason(err))
	}
	if hsmapi.CheckLabel(label) == nil {
		return "", errors.New("label_hex holds a label that is given as label")
	}
	return label, nil
}

// decodeLowerHex decodes src, which must be lower-case hexadecimal, into
// dst, which must have half its length: the one form the files give bytes
// in.
func decodeLowerHex[T string | []byte](dst []byte, src T) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := lowerHexDigit(src[2*i])
		lo, ok2 := lowerHexDigit(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func lowerHexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// reason is what a check of package hsm found wrong, without the
// ErrBadArguments it wraps: in a file, the fault is the file's.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), hsmapi.ErrBadArguments.Error()+": ")
}

// IsPrivate reports whether the entry carries a wrapped private key.
func (k *BundleKey) IsPrivate() bool { return len(k.PKCS8) != 0 || len(k.KEK) != 0 }

// Base64Lines is binary data carried as cryptech_backup carries it: Base64
// split into lines of 76 characters, as a JSON array of strings.
type Base64Lines []byte

const base64LineLength = 76

func (b Base64Lines) MarshalJSON() ([]byte, error) {
	s := base64.StdEncoding.EncodeToString(b)
	lines := []string{}
	for len(s) > base64LineLength {
		lines = append(lines, s[:base64LineLength])
		s = s[base64LineLength:]
	}
	if s != "" {
		lines = append(lines, s)
	}
	return json.Marshal(lines)
}

func (b *Base64Lines) UnmarshalJSON(data []byte) error { return decodeValue(data, b) }

// A binary field holds at most maxBinaryField bytes: the largest is a
// wrapped RSA-8192 private key (4.8 KB; keys that size or larger fill the
// HSM's flash block, 8,128 bytes, by themselves). Its lines are bounded as
// they are read, so that a file of millions of lines, or of one long one,
// is refused at the bound rather than built up in memory first.
const (
	maxBinaryField = 8 << 10
	maxBase64Lines = (4*((maxBinaryField+2)/3) + base64LineLength - 1) / base64LineLength
)

func (b *Base64Lines) decodeJSON(d *decoder) error {
	if err := d.open(tokenBeginArray, "an array of Base64 lines"); err != nil {
		return err
	}
	d.scratch = d.scratch[:0]
	for n := 0; d.more(); n++ {
		if n == maxBase64Lines {
			return fmt.Errorf("more than %d lines of Base64: no field holds more than %d bytes", maxBase64Lines, maxBinaryField)
		}
		line, err := d.text("a Base64 line (a string)")
		if err != nil {
			if se := (*streamError)(nil); errors.As(err, &se) {
				return err
			}
			return fmt.Errorf("line %d: %w", n+1, err)
		}
		if len(line) > base64LineLength {
			return fmt.Errorf("line %d of Base64 has %d characters, more than %d", n+1, len(line), base64LineLength)
		}
		// The decoder would skip line breaks inside a line; the format has none.
		if bytes.ContainsAny(line, "\r\n") {
			return errors.New("bad Base64: line break inside a line")
		}
		d.scratch = append(d.scratch, line...)
	}
	if err := d.close(); err != nil {
		return err
	}
	// Kept in exactly its length.
	d.decoded = slices.Grow(d.decoded[:0], base64.StdEncoding.DecodedLen(len(d.scratch)))
	n, err := base64.StdEncoding.Strict().Decode(d.decoded[:cap(d.decoded)], d.scratch)
	if err != nil {
		return fmt.Errorf("bad Base64: %v", err)
	}
	if err := d.keep(n); err != nil {
		return err
	}
	out := make([]byte, n)
	copy(out, d.decoded[:n])
	*b = out
	return nil
}

// MaxKeys bounds the keys of one bundle: far more than a keystore holds,
// few enough that a hostile file cannot make an import run for long.
const MaxKeys = 10_000

// ReadKEKEKFile parses a KEKEK file, strictly.
func ReadKEKEKFile(r io.Reader) (*KEKEKFile, error) {
	var f KEKEKFile
	if err := decodeStrict(r, &f); err != nil {
		return nil, fmt.Errorf("read KEKEK file: %w", err)
	}
	if len(f.KEKEKPubkey) == 0 {
		return nil, fmt.Errorf("read KEKEK file: %w: no kekek_pubkey", ErrFormat)
	}
	if f.Version != 0 && f.Version != Version {
		return nil, fmt.Errorf("read KEKEK file: %w: unsupported version %d", ErrFormat, f.Version)
	}
	if err := checkKEKEKName(f.KEKEKUUID, f.soft()); err != nil {
		return nil, fmt.Errorf("read KEKEK file: %w", err)
	}
	for i, e := range f.KEKEncryptions {
		if _, err := hsmapi.ParseKEKEncryption(string(e)); err != nil {
			return nil, fmt.Errorf("read KEKEK file: %w: kek_encryptions[%d]: %s", ErrFormat, i, reason(err))
		}
		if slices.Contains(f.KEKEncryptions[:i], e) {
			return nil, fmt.Errorf("read KEKEK file: %w: kek_encryptions: %q given twice", ErrFormat, e)
		}
	}
	return &f, nil
}

// ReadBundle parses a bundle, strictly. It checks the form of every field;
// Import checks what they mean.
func ReadBundle(r io.Reader) (*Bundle, error) {
	var b Bundle
	if err := decodeStrict(r, &b); err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	// Each key's form was checked as it was read.
	if err := b.checkWhole(); err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	return &b, nil
}

// check checks every field of a bundle, as Import does before it stores
// anything.
func (b *Bundle) check() error {
	for i := range b.Keys {
		if err := b.Keys[i].checkForm(); err != nil {
			return fmt.Errorf("key %d: %w: %v", i, ErrFormat, err)
		}
	}
	return b.checkWhole()
}

// checkWhole checks what the keys' entries do not say by themselves: the
// bundle's own fields, and each key against the bundle's version.
func (b *Bundle) checkWhole() error {
	if b.Version != 0 && b.Version != Version {
		return fmt.Errorf("%w: unsupported version %d", ErrFormat, b.Version)
	}
	if len(b.KEKEKPubkey) == 0 {
		return fmt.Errorf("%w: no kekek_pubkey", ErrFormat)
	}
	if err := checkKEKEKName(b.KEKEKUUID, b.soft()); err != nil {
		return err
	}
	if b.Version != 0 {
		if _, err := hsmapi.ParseKEKEncryption(string(b.KEKEncryption)); err != nil {
			return fmt.Errorf("%w: kek_encryption: %s", ErrFormat, reason(err))
		}
	} else if b.KEKEncryption != "" {
		return fmt.Errorf("%w: kek_encryption in a bundle without version", ErrFormat)
	}
	if b.Keys == nil {
		return fmt.Errorf("%w: no keys array", ErrFormat)
	}
	if len(b.Keys) > MaxKeys {
		return fmt.Errorf("%w: %d keys, more than the %d a bundle may hold", ErrFormat, len(b.Keys), MaxKeys)
	}
	legacy := b.Version == 0
	for i := range b.Keys {
		k := &b.Keys[i]
		if !legacy && k.IsPrivate() && (len(k.SPKI) == 0 || len(k.Tag) == 0) {
			return fmt.Errorf("key %d: %w: a private key needs spki and tag", i, ErrFormat)
		}
		if legacy && (k.Label != "" || k.LabelHex != "" || len(k.Tag) != 0 || len(k.Attributes) != 0) {
			return fmt.Errorf("key %d: %w: label, label_hex, tag and attributes need a versioned bundle", i, ErrFormat)
		}
	}
	return nil
}

// checkForm checks what a key's entry says by itself, whatever the
// bundle's version: a reader checks it as each key is read, so that a
// bundle's faults are found before the rest of it is read.
func (k *BundleKey) checkForm() error {
	if err := checkUUID(k.UUID); err != nil {
		return fmt.Errorf("uuid: %v", err)
	}
	if !k.Flags.Valid() {
		return fmt.Errorf("unknown flags 0x%x", uint32(k.Flags))
	}
	switch {
	case k.IsPrivate():
		if len(k.PKCS8) == 0 || len(k.KEK) == 0 {
			return errors.New("a private key needs both pkcs8 and kek")
		}
	case len(k.SPKI) == 0:
		return errors.New("neither a private key (pkcs8, kek) nor a public key (spki)")
	case len(k.Tag) != 0:
		return errors.New("a public key has no tag")
	}
	if _, err := k.label(); err != nil {
		return err
	}
	return k.Attributes.check()
}

func (k *BundleKey) decodeJSON(d *decoder) error {
	if err := d.object(reflect.ValueOf(k).Elem()); err != nil {
		return err
	}
	return k.checkForm()
}

// Fingerprint names a KEKEK by the SHA-256 of its SubjectPublicKeyInfo, as
// OpenSSH names keys. Anyone who can swap the KEKEK file receives the keys;
// operators compare the fingerprint setup prints with the one export prints.
func Fingerprint(spki []byte) string { return hsmapi.Fingerprint(spki) }

// checkUUID accepts a UUID only in the canonical lower-case form the files
// are written in, and never the nil UUID, which names no key.
func checkUUID(s string) error {
	id, err := hsmapi.ParseUUID(s)
	if err != nil {
		return err
	}
	if id.String() != s {
		return fmt.Errorf("%s is not in canonical lower-case form", quote.Short(s))
	}
	if id.IsZero() {
		return errors.New("the nil UUID names no key")
	}
	return nil
}

// Write encodes v (a *KEKEKFile or *Bundle) as cryptech_backup does: sorted
// keys, four-space indent.
func Write(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
