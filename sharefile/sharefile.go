// Package sharefile reads and writes a master-key backup: a text file with a
// header naming the key (its check value, the HSM it came from, k of n) and
// one section per share, each sealed under its custodian's passphrase. The
// layout is specified in docs/masterkey-file.md.
//
// A section is sealed with AES-256-GCM under a key that Argon2id derives
// from the passphrase and a fresh random salt, with the parameters written
// in the section. Every derived key seals exactly one share (a new salt
// every time, also when a passphrase changes), so the nonce is fixed at
// zero, as age does with its scrypt stanzas. The additional data is the
// header and the section as written, but for the sealed value itself: an
// edit of any field, or a section moved to another file or index, fails to
// open just as a wrong passphrase does.
package sharefile

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/hsmkit/cryptech-backup/keyshare"
)

// Magic is the file's first line.
const Magic = "cryptech-backup master key shares v1"

// MaxFileSize bounds what Parse reads: 255 sections of well under 1 KiB.
const MaxFileSize = 1 << 20

var (
	// ErrMalformed: the file does not follow the layout (truncated, edited
	// out of shape, or not a key file).
	ErrMalformed = errors.New("not a well-formed master key file")
	// ErrNoShare: the file has no section of that name.
	ErrNoShare = errors.New("no such share in the key file")
	// ErrOpen: the section does not open: a wrong passphrase, or the file
	// was edited (the two cannot be told apart).
	ErrOpen = errors.New("wrong passphrase, or the key file was edited")
)

// KDF holds Argon2id's parameters (RFC 9106).
type KDF struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultKDF is RFC 9106's second recommended option (64 MiB, 3 passes),
// with 4 lanes.
var DefaultKDF = KDF{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

// Bounds on what a file may ask for: a doctored file must not make check
// or submit spend hours or exhaust memory. (It gains an attacker nothing
// to lower them: the share was sealed under the original ones.)
const (
	maxKDFTime      = 64
	maxKDFMemoryKiB = 4 << 20 // 4 GiB
	saltSize        = 16
	sealedSize      = keyshare.ValueSize + 16
)

func (k KDF) valid() bool {
	return k.Time >= 1 && k.Time <= maxKDFTime && k.Threads >= 1 &&
		k.MemoryKiB >= 8*uint32(k.Threads) && k.MemoryKiB <= maxKDFMemoryKiB
}

// Header names the key the shares recombine to.
type Header struct {
	// ID names the backup; its shares are sections ID-1 to ID-n.
	ID string
	// HSM is the serial of the HSM whose master key this is.
	HSM string
	// CheckValue is the master key's (keyshare.CheckValue).
	CheckValue [keyshare.CheckValueSize]byte
	// Threshold shares of Shares recombine to the key.
	Threshold, Shares int
	// Created is when the key was split, to the second, in UTC.
	Created time.Time
}

// Section is one share, sealed.
type Section struct {
	Index int
	// ShareCheck is the checksum of the share (ShareCheck), which tells a
	// damaged share from a good one after it opens.
	ShareCheck [8]byte
	KDF        KDF
	Salt       []byte
	Sealed     []byte
}

// File is a key file: its header and the sections it holds (all n shares
// when written by a backup; a custodian's copy may hold fewer).
type File struct {
	Header
	Sections []Section
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_.]([A-Za-z0-9_.-]{0,62}[A-Za-z0-9_.])?$`)

// ValidID reports whether id can name a backup: 1 to 64 letters, digits,
// '_', '.', '-', not starting or ending in '-'.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// New starts a key file with header h and no sections.
func New(h Header) (*File, error) {
	h.Created = h.Created.UTC().Truncate(time.Second)
	if err := h.check(); err != nil {
		return nil, err
	}
	return &File{Header: h}, nil
}

func (h *Header) check() error {
	switch {
	case !ValidID(h.ID):
		return fmt.Errorf("%w: id %q", ErrMalformed, h.ID)
	case h.HSM == "" || len(h.HSM) > 256 || strings.ContainsAny(h.HSM, "\r\n") || strings.TrimSpace(h.HSM) != h.HSM:
		return fmt.Errorf("%w: hsm %q", ErrMalformed, h.HSM)
	case h.Threshold < 1 || h.Shares < h.Threshold || h.Shares > keyshare.MaxShares:
		return fmt.Errorf("%w: %d of %d shares", ErrMalformed, h.Threshold, h.Shares)
	}
	return nil
}

// Name is the name of share index of this file: ID-index.
func (f *File) Name(index int) string { return f.ID + "-" + strconv.Itoa(index) }

// Section finds a share by name.
func (f *File) Section(name string) (*Section, error) {
	for i := range f.Sections {
		if f.Name(f.Sections[i].Index) == name {
			return &f.Sections[i], nil
		}
	}
	return nil, fmt.Errorf("%w: %q (it has %s)", ErrNoShare, name, strings.Join(f.Names(), ", "))
}

// Names lists the file's shares in order.
func (f *File) Names() []string {
	var names []string
	for _, s := range f.Sections {
		names = append(names, f.Name(s.Index))
	}
	return names
}

// Seal adds share to the file, or replaces the section of its index,
// sealed under passphrase with kdf.
func (f *File) Seal(share keyshare.Share, passphrase []byte, kdf KDF) error {
	if int(share.Index) < 1 || int(share.Index) > f.Shares {
		return fmt.Errorf("sharefile: share index %d of %d", share.Index, f.Shares)
	}
	if !kdf.valid() {
		return fmt.Errorf("sharefile: Argon2id parameters out of range: %+v", kdf)
	}
	s := Section{Index: int(share.Index), ShareCheck: ShareCheck(share), KDF: kdf, Salt: make([]byte, saltSize)}
	if _, err := rand.Read(s.Salt); err != nil {
		return fmt.Errorf("sharefile: salt: %w", err)
	}
	aead, err := sectionAEAD(passphrase, &s)
	if err != nil {
		return err
	}
	s.Sealed = aead.Seal(nil, make([]byte, aead.NonceSize()), share.Value[:], f.additionalData(&s))
	for i := range f.Sections {
		if f.Sections[i].Index == s.Index {
			f.Sections[i] = s
			return nil
		}
	}
	f.Sections = append(f.Sections, s)
	return nil
}

// Open unseals the share called name with passphrase and checks it against
// its checksum. The caller wipes the share when done.
func (f *File) Open(name string, passphrase []byte) (keyshare.Share, error) {
	s, err := f.Section(name)
	if err != nil {
		return keyshare.Share{}, err
	}
	aead, err := sectionAEAD(passphrase, s)
	if err != nil {
		return keyshare.Share{}, err
	}
	plain, err := aead.Open(nil, make([]byte, aead.NonceSize()), s.Sealed, f.additionalData(s))
	if err != nil {
		return keyshare.Share{}, fmt.Errorf("share %s: %w", name, ErrOpen)
	}
	defer clear(plain)
	share := keyshare.Share{Index: uint8(s.Index)}
	if len(plain) != len(share.Value) {
		return keyshare.Share{}, fmt.Errorf("share %s: %w: sealed value of %d bytes", name, ErrMalformed, len(plain))
	}
	copy(share.Value[:], plain)
	sum := ShareCheck(share)
	if subtle.ConstantTimeCompare(sum[:], s.ShareCheck[:]) != 1 {
		share.Wipe()
		return keyshare.Share{}, fmt.Errorf("share %s: %w: its checksum does not match", name, ErrMalformed)
	}
	return share, nil
}

// ShareCheck is a share's checksum: the first 8 bytes of SHA-256 over a
// label, the index and the value. It reveals nothing useful: the value is a
// uniformly random field element of 253 bits.
func ShareCheck(s keyshare.Share) [8]byte {
	h := sha256.New()
	h.Write([]byte("cryptech-backup master key share check v1"))
	h.Write([]byte{s.Index})
	h.Write(s.Value[:])
	var sum [8]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func sectionAEAD(passphrase []byte, s *Section) (cipher.AEAD, error) {
	if !s.KDF.valid() {
		return nil, fmt.Errorf("%w: Argon2id parameters out of range", ErrMalformed)
	}
	key := argon2.IDKey(passphrase, s.Salt, s.KDF.Time, s.KDF.MemoryKiB, s.KDF.Threads, 32)
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// additionalData binds a section to the whole header and to its own
// fields: the text that Marshal writes for them, without the sealed value.
func (f *File) additionalData(s *Section) []byte {
	var b bytes.Buffer
	f.writeHeader(&b)
	f.writeSection(&b, s, false)
	return b.Bytes()
}

// Marshal writes the file in its text layout.
func (f *File) Marshal() []byte {
	var b bytes.Buffer
	f.writeHeader(&b)
	for i := range f.Sections {
		f.writeSection(&b, &f.Sections[i], true)
	}
	return b.Bytes()
}

func (f *File) writeHeader(b *bytes.Buffer) {
	fmt.Fprintf(b, "%s\nid: %s\nhsm: %s\ncheck-value: %x\nthreshold: %d\nshares: %d\ncreated: %s\n",
		Magic, f.ID, f.HSM, f.CheckValue, f.Threshold, f.Shares, f.Created.Format(time.RFC3339))
}

func (f *File) writeSection(b *bytes.Buffer, s *Section, sealed bool) {
	fmt.Fprintf(b, "\n[%s]\nindex: %d\ncheck-value: %x\nshare-check: %x\nkdf: argon2id\nkdf-time: %d\nkdf-memory-kib: %d\nkdf-threads: %d\nsalt: %s\n",
		f.Name(s.Index), s.Index, f.CheckValue, s.ShareCheck, s.KDF.Time, s.KDF.MemoryKiB, s.KDF.Threads,
		base64.StdEncoding.EncodeToString(s.Salt))
	if sealed {
		fmt.Fprintf(b, "sealed: %s\n", base64.StdEncoding.EncodeToString(s.Sealed))
	}
}

// Parse reads a key file. It accepts only what Marshal writes, byte for
// byte: anything else is ErrMalformed, naming the line.
func Parse(data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxFileSize)
	}
	p := &parser{sc: bufio.NewScanner(bytes.NewReader(data))}
	p.sc.Buffer(nil, 4096)
	f, err := p.file()
	if err != nil {
		return nil, err
	}
	// The canonical form is the only form: what does not write back the
	// same was not written by Marshal (stray spaces, CRLF, leading zeros).
	if !bytes.Equal(f.Marshal(), data) {
		return nil, fmt.Errorf("%w: not in canonical form", ErrMalformed)
	}
	return f, nil
}

type parser struct {
	sc   *bufio.Scanner
	line int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrMalformed, p.line, fmt.Sprintf(format, args...))
}

func (p *parser) next() (string, bool) {
	if !p.sc.Scan() {
		return "", false
	}
	p.line++
	return p.sc.Text(), true
}

// field reads the next line as "key: value".
func (p *parser) field(key string) (string, error) {
	l, ok := p.next()
	if !ok {
		return "", p.errorf("ends before %q (truncated?)", key)
	}
	v, ok := strings.CutPrefix(l, key+": ")
	if !ok {
		return "", p.errorf("want %q", key)
	}
	return v, nil
}

func (p *parser) number(key string, max int) (int, error) {
	v, err := p.field(key)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > max {
		return 0, p.errorf("%s: %q", key, v)
	}
	return n, nil
}

func (p *parser) hex8(key string) ([8]byte, error) {
	var out [8]byte
	v, err := p.field(key)
	if err != nil {
		return out, err
	}
	b, err := hex.DecodeString(v)
	if err != nil || len(b) != len(out) {
		return out, p.errorf("%s: want %d hex bytes", key, len(out))
	}
	copy(out[:], b)
	return out, nil
}

func (p *parser) base64(key string, size int) ([]byte, error) {
	v, err := p.field(key)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(b) != size {
		return nil, p.errorf("%s: want %d bytes of base64", key, size)
	}
	return b, nil
}

func (p *parser) file() (*File, error) {
	if l, ok := p.next(); !ok || l != Magic {
		return nil, fmt.Errorf("%w: the first line is not %q", ErrMalformed, Magic)
	}
	var f File
	var err error
	if f.ID, err = p.field("id"); err != nil {
		return nil, err
	}
	if f.HSM, err = p.field("hsm"); err != nil {
		return nil, err
	}
	if f.CheckValue, err = p.hex8("check-value"); err != nil {
		return nil, err
	}
	if f.Threshold, err = p.number("threshold", keyshare.MaxShares); err != nil {
		return nil, err
	}
	if f.Shares, err = p.number("shares", keyshare.MaxShares); err != nil {
		return nil, err
	}
	created, err := p.field("created")
	if err != nil {
		return nil, err
	}
	if f.Created, err = time.Parse(time.RFC3339, created); err != nil {
		return nil, p.errorf("created: %q", created)
	}
	if err := f.Header.check(); err != nil {
		return nil, err
	}
	seen := map[int]bool{}
	for {
		l, ok := p.next()
		if !ok {
			break
		}
		if l != "" {
			return nil, p.errorf("want an empty line before a section")
		}
		s, err := p.section(&f)
		if err != nil {
			return nil, err
		}
		if seen[s.Index] {
			return nil, p.errorf("share %d twice", s.Index)
		}
		seen[s.Index] = true
		f.Sections = append(f.Sections, s)
	}
	if err := p.sc.Err(); err != nil {
		return nil, p.errorf("%v", err)
	}
	if len(f.Sections) == 0 {
		return nil, fmt.Errorf("%w: no shares (truncated?)", ErrMalformed)
	}
	return &f, nil
}

func (p *parser) section(f *File) (Section, error) {
	var s Section
	name, ok := p.next()
	if !ok || !strings.HasPrefix(name, "[") || !strings.HasSuffix(name, "]") {
		return s, p.errorf("want a section name in brackets")
	}
	var err error
	if s.Index, err = p.number("index", f.Shares); err != nil {
		return s, err
	}
	if s.Index < 1 || name != "["+f.Name(s.Index)+"]" {
		return s, p.errorf("section %s is not share %d of %s", name, s.Index, f.ID)
	}
	cv, err := p.hex8("check-value")
	if err != nil {
		return s, err
	}
	if cv != f.CheckValue {
		return s, p.errorf("the share's check value is not the file's: a share of another key")
	}
	if s.ShareCheck, err = p.hex8("share-check"); err != nil {
		return s, err
	}
	if v, err := p.field("kdf"); err != nil {
		return s, err
	} else if v != "argon2id" {
		return s, p.errorf("unknown kdf %q", v)
	}
	t, err := p.number("kdf-time", maxKDFTime)
	if err != nil {
		return s, err
	}
	m, err := p.number("kdf-memory-kib", maxKDFMemoryKiB)
	if err != nil {
		return s, err
	}
	th, err := p.number("kdf-threads", 255)
	if err != nil {
		return s, err
	}
	s.KDF = KDF{Time: uint32(t), MemoryKiB: uint32(m), Threads: uint8(th)}
	if !s.KDF.valid() {
		return s, p.errorf("Argon2id parameters out of range")
	}
	if s.Salt, err = p.base64("salt", saltSize); err != nil {
		return s, err
	}
	if s.Sealed, err = p.base64("sealed", sealedSize); err != nil {
		return s, err
	}
	return s, nil
}
