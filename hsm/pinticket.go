package hsm

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/atomicfile"
)

// PIN tickets: the in-memory verifier (pinfast.go) across the processes of
// one boot. Each command of the CLI powers the emulated board up anew, so
// the verifier dies with it; a ticket is what lets the next command's login
// skip PBKDF2. A ticket lives outside the HSM's directory, in a directory
// of the operator's alone (normally $XDG_RUNTIME_DIR/cryptech-backup, a
// tmpfs gone at reboot), one file per HSM serial and user:
//
//	magic "CPT1" | boot id length (1) | boot id | expiry (8, Unix seconds)
//	| HMAC-SHA-256(kt, all of the above || PIN)
//
// kt = HKDF-SHA-256(master key, info: label, serial, user, boot id, PIN
// record, each after its length). A ticket never holds the PIN, and is no bearer token: a login
// still gives the PIN, and the ticket only makes checking it cheap. A new
// PIN, a master key rotated or zeroized, another boot, another HSM or user:
// kt differs and the ticket passes nothing. Whatever does not match is the
// full check as before, and a wrong PIN still waits out the delay.

// DefaultPINTicketLifetime is how long a ticket stands after the full check
// that wrote it: an operator's or a CI job's sitting. It is not extended
// by use (that would write a file per login), so a loop pays one full
// check an hour.
const DefaultPINTicketLifetime = time.Hour

// PINTickets turns on PIN tickets (see docs/pin-tickets.md).
type PINTickets struct {
	// Dir holds the tickets. It must be the process's user's, with no
	// access for group or others; it is made (0700) if missing and its
	// parent exists. A directory that fails these checks gets no tickets.
	Dir string
	// Lifetime (DefaultPINTicketLifetime if zero).
	Lifetime time.Duration
	// BootID returns what names this boot (nil: the kernel's
	// /proc/sys/kernel/random/boot_id). An error means no tickets.
	BootID func() ([]byte, error)
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

const (
	ticketMagic    = "CPT1"
	ticketKDFLabel = "cryptech-backup PIN ticket v1"
	maxBootIDSize  = 64
	maxTicketSize  = len(ticketMagic) + 1 + maxBootIDSize + 8 + sha256.Size
	bootIDPath     = "/proc/sys/kernel/random/boot_id"
	ticketDirPerm  = 0o700
	ticketFileExt  = ".pin-ticket"
	ticketNoAccess = 0o077
)

func kernelBootID() ([]byte, error) {
	b, err := os.ReadFile(bootIDPath)
	return bytes.TrimSpace(b), err
}

// pinTicket is one user's ticket of one HSM, as a login sees it.
type pinTicket struct {
	path   string
	key    []byte // kt
	boot   []byte
	now    time.Time
	expiry time.Time // of a ticket written now
}

// ticketState is what a login makes of the ticket it found.
type ticketState int

const (
	ticketPasses   ticketState = iota
	ticketMismatch             // well formed and current: a wrong PIN, or a PIN record or master key since changed
	ticketStale                // absent, unreadable, foreign, malformed, expired or from another boot
)

// ticketFor returns u's ticket of this HSM, or nil when there can be none:
// tickets off, no usable directory, no boot id, no master key (tampered).
func (h *HSM) ticketFor(u hsmapi.User, record []byte) *pinTicket {
	cfg := h.opts.PINTickets
	if cfg == nil || cfg.Dir == "" || !ticketDirOK(cfg.Dir) {
		return nil
	}
	bootID := cfg.BootID
	if bootID == nil {
		bootID = kernelBootID
	}
	boot, err := bootID()
	if err != nil || len(boot) == 0 || len(boot) > maxBootIDSize {
		return nil
	}
	mk, err := h.masterKey()
	if err != nil {
		return nil
	}
	defer clear(mk)
	// Each field with its length, so that no two sets of fields run into
	// the same info.
	var info []byte
	for _, f := range [][]byte{[]byte(ticketKDFLabel), []byte(h.Identity().Serial), []byte(u.String()), boot, record} {
		info = binary.BigEndian.AppendUint32(info, uint32(len(f)))
		info = append(info, f...)
	}
	kt, err := hkdf.Key(sha256.New, mk, nil, string(info), sha256.Size)
	if err != nil {
		return nil
	}
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	life := cfg.Lifetime
	if life <= 0 {
		life = DefaultPINTicketLifetime
	}
	t := &pinTicket{path: h.ticketPath(u), key: kt, boot: boot, now: now()}
	t.expiry = t.now.Add(life)
	return t
}

// ticketPath names u's ticket of this HSM: its serial and the user.
func (h *HSM) ticketPath(u hsmapi.User) string {
	return filepath.Join(h.opts.PINTickets.Dir, h.Identity().Serial+"-"+u.String()+ticketFileExt)
}

// ticketDirOK makes the tickets' directory if it is missing, and checks
// that it is a directory (not a link to one) of this user's only.
func ticketDirOK(dir string) bool {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if os.Mkdir(dir, ticketDirPerm) != nil {
			return false
		}
		fi, err = os.Lstat(dir)
	}
	return err == nil && fi.IsDir() && mineAlone(fi)
}

// body is the ticket's bytes before its MAC.
func (t *pinTicket) body(expiry time.Time) []byte {
	b := append([]byte(ticketMagic), byte(len(t.boot)))
	b = append(b, t.boot...)
	return binary.BigEndian.AppendUint64(b, uint64(expiry.Unix()))
}

func (t *pinTicket) mac(body, pin []byte) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write(body)
	m.Write(pin)
	return m.Sum(nil)
}

// check reads the ticket and compares its MAC with pin's in constant time.
func (t *pinTicket) check(pin []byte) ticketState {
	data, ok := readTicket(t.path)
	if !ok {
		return ticketStale
	}
	defer clear(data)
	n := len(ticketMagic)
	if len(data) < n+1 || string(data[:n]) != ticketMagic {
		return ticketStale
	}
	bl := int(data[n])
	if len(data) != n+1+bl+8+sha256.Size || !bytes.Equal(data[n+1:n+1+bl], t.boot) {
		return ticketStale
	}
	body := data[:n+1+bl+8]
	expiry := time.Unix(int64(binary.BigEndian.Uint64(body[n+1+bl:])), 0)
	// A ticket past its expiry, or dated further ahead than a ticket
	// written now would be (the clock went back), is over.
	if !t.now.Before(expiry) || expiry.After(t.expiry) {
		return ticketStale
	}
	got := t.mac(body, pin)
	defer clear(got)
	if !hmac.Equal(got, data[len(body):]) {
		return ticketMismatch
	}
	return ticketPasses
}

// readTicket reads a ticket that is a regular file of this user's alone,
// not a link, and no larger than a ticket.
func readTicket(path string) ([]byte, bool) {
	f, err := openNoFollow(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || !mineAlone(fi) || fi.Size() > int64(maxTicketSize) {
		return nil, false
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(maxTicketSize)+1))
	if err != nil {
		clear(data)
		return nil, false
	}
	return data, true
}

// write stores a ticket for pin, which just passed the full check. A
// ticket that cannot be written is no error: the next login pays in full.
func (t *pinTicket) write(pin []byte) {
	body := t.body(t.expiry)
	data := append(body, t.mac(body, pin)...)
	defer clear(data)
	atomicfile.Write(t.path, data, atomicfile.Options{Secret: true})
}

// removeTickets deletes the tickets of these users of this HSM, best
// effort, in a ticket directory that passes ticketDirOK (a directory others
// could have swapped for a link is not touched).
func (h *HSM) removeTickets(users ...hsmapi.User) {
	cfg := h.opts.PINTickets
	if cfg == nil || cfg.Dir == "" || !ticketDirOK(cfg.Dir) {
		return
	}
	for _, u := range users {
		os.Remove(h.ticketPath(u))
	}
}

// remove deletes a ticket that can pass nothing any more.
func (t *pinTicket) remove() {
	os.Remove(t.path)
}

// wipe clears the ticket's key.
func (t *pinTicket) wipe() { clear(t.key) }

// PINTicketsEnv names the environment variable that turns PIN tickets off
// ("off") or puts them in a directory of the operator's choosing.
const PINTicketsEnv = "CRYPTECH_PIN_TICKETS"

// PINTicketsFromEnv is where the programs that open emulated HSMs (the CLI
// and the PKCS#11 module) keep PIN tickets, so that the next process of
// this boot is spared the PIN's PBKDF2: $CRYPTECH_PIN_TICKETS (off: none),
// else cryptech-backup in the user's runtime directory ($XDG_RUNTIME_DIR,
// else /run/user/UID if it exists: a tmpfs of the user's alone, emptied at
// logout or reboot), else none (nil).
func PINTicketsFromEnv(getenv func(string) string) *PINTickets {
	switch v := getenv(PINTicketsEnv); v {
	case "off":
		return nil
	case "":
	default:
		return &PINTickets{Dir: v}
	}
	run := getenv("XDG_RUNTIME_DIR")
	if run == "" {
		run = fmt.Sprintf("/run/user/%d", os.Geteuid())
		if fi, err := os.Stat(run); err != nil || !fi.IsDir() {
			return nil
		}
	}
	return &PINTickets{Dir: filepath.Join(run, "cryptech-backup")}
}
