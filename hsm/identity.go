package hsm

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/atomicfile"
)

// What the emulated HSM says it is (hsmapi.Identity): the same in-process
// and over RPC, so that a PKCS#11 application sees one token either way.
const (
	Manufacturer = "Cryptech Project (emulated)"
	Model        = "Cryptech HSM"
)

// identityFile holds the HSM's serial number and label, beside its board's
// files: what a real HSM has burnt in and keeps outside its keystore, so
// that it outlives a tamper response and needs no login to read.
const identityFile = "identity.json"

// maxIdentityFile bounds what is read of identityFile: a wrong file is
// refused, not read whole.
const maxIdentityFile = 4 << 10

// serialBytes is the random part of a serial: 16 hex digits, which fill
// CK_TOKEN_INFO's serialNumber.
const serialBytes = 8

// ErrBadIdentity: the HSM's identity file is not one the HSM wrote.
var ErrBadIdentity = errors.New("the HSM's identity file is malformed")

type identity struct {
	Serial string `json:"serial"`
	Label  string `json:"label"`
}

func (id identity) check() error {
	if b, err := hex.DecodeString(id.Serial); err != nil || len(b) != serialBytes || hex.EncodeToString(b) != id.Serial {
		return fmt.Errorf("%w: serial %q", ErrBadIdentity, id.Serial)
	}
	if err := hsmapi.CheckTokenLabel(id.Label); err != nil {
		return fmt.Errorf("%w: %w", ErrBadIdentity, err)
	}
	return nil
}

// defaultLabel is the label of an HSM no one named: its directory's name,
// when it makes a label.
func defaultLabel(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	l := hsmapi.TokenLabelOf(filepath.Base(dir))
	if l == "" || hsmapi.CheckTokenLabel(l) != nil {
		return "emulated HSM"
	}
	return l
}

// newIdentity draws a serial number from the TRNG.
func newIdentity(rand io.Reader, label string) (identity, error) {
	b := make([]byte, serialBytes)
	if _, err := io.ReadFull(rand, b); err != nil {
		return identity{}, fmt.Errorf("serial number: %w", err)
	}
	return identity{Serial: hex.EncodeToString(b), Label: label}, nil
}

func writeIdentity(dir string, id identity) error {
	data, err := json.Marshal(id)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, identityFile), append(data, '\n'), atomicfile.Options{}); err != nil {
		return fmt.Errorf("write %s: %w", identityFile, err)
	}
	return nil
}

// loadIdentity reads the identity of the HSM in dir, and makes one when it
// has none: an HSM made before it had one, or one whose Create a crash cut
// short. Called with the board's lock held, so no one else writes it.
func loadIdentity(dir string, rand io.Reader) (identity, error) {
	path := filepath.Join(dir, identityFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		id, err := newIdentity(rand, defaultLabel(dir))
		if err != nil {
			return identity{}, err
		}
		return id, writeIdentity(dir, id)
	}
	if err != nil {
		return identity{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxIdentityFile+1))
	if err != nil {
		return identity{}, fmt.Errorf("read %s: %w", identityFile, err)
	}
	if len(data) > maxIdentityFile {
		return identity{}, fmt.Errorf("%w: longer than %d bytes", ErrBadIdentity, maxIdentityFile)
	}
	var id identity
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&id); err != nil {
		return identity{}, fmt.Errorf("%w: %v", ErrBadIdentity, err)
	}
	return id, id.check()
}

// Identity is what the HSM says it is: hsmapi.Identity.
func (h *HSM) Identity() hsmapi.Identity {
	h.idMu.Lock()
	defer h.idMu.Unlock()
	return hsmapi.Identity{Manufacturer: Manufacturer, Model: Model, Serial: h.id.Serial, Label: h.id.Label}
}

// SetLabel renames the HSM; its serial number stays. The file is replaced
// whole, so a crash leaves the old label or the new one.
func (h *HSM) SetLabel(label string) error {
	if err := hsmapi.CheckTokenLabel(label); err != nil {
		return fmt.Errorf("set the HSM's label: %w", err)
	}
	h.idMu.Lock()
	defer h.idMu.Unlock()
	id := h.id
	id.Label = label
	if err := writeIdentity(h.board.Dir, id); err != nil {
		return fmt.Errorf("set the HSM's label: %w", err)
	}
	h.id = id
	return nil
}

// Identity is the HSM's; anyone may ask, logged in or not, as anyone may
// read a token's information in PKCS#11.
func (s *Session) Identity(context.Context) (hsmapi.Identity, error) {
	return s.h.Identity(), nil
}

// InitToken re-initializes the HSM as PKCS#11's C_InitToken does, as far
// as an HSM with PINs and a history can: given the SO's PIN (its turn and
// the wrong-PIN delay as for a login), it deletes every key, token and
// volatile of every session, then names the HSM label. The PINs stay (the
// HSM always has all three), and so does the HSS history, which keeps the
// used parts of one-time signature keys from being imported again. The
// keys go one keystore delete at a time, not in one transaction: a crash
// part way leaves the rest, and InitToken again finishes the job.
func (s *Session) InitToken(ctx context.Context, soPIN []byte, label string) error {
	if err := checkPINLength(soPIN); err != nil {
		return fmt.Errorf("initialize token: %w", err)
	}
	if err := hsmapi.CheckTokenLabel(label); err != nil {
		return fmt.Errorf("initialize token: %w", err)
	}
	if err := s.h.checkPINInTurn(ctx, hsmapi.UserSO, soPIN); err != nil {
		return fmt.Errorf("initialize token: %w", err)
	}
	if err := s.h.deleteAllKeys(); err != nil {
		return fmt.Errorf("initialize token: %w", err)
	}
	if err := s.h.SetLabel(label); err != nil {
		return fmt.Errorf("initialize token: %w", err)
	}
	return nil
}

// deleteAllKeys deletes every key of the HSM: the token keys in the
// keystore (also those it cannot unseal, which it deletes unread) and the
// volatile keys of every session. A damaged flash block stays as it is,
// as the keystore leaves every one.
func (h *HSM) deleteAllKeys() error {
	h.mu.Lock()
	var gone []*key
	var err error
	// The caches first, as remove does.
	for _, id := range h.ks.List(kindHSSCache) {
		if err = h.ks.Delete(id); err != nil {
			h.mu.Unlock()
			return fmt.Errorf("delete a tree cache: %w", err)
		}
	}
	for _, id := range h.ks.List(kindKey) {
		if err = h.ks.Delete(id); err != nil {
			err = fmt.Errorf("delete key %s: %w", hsmapi.UUID(id), err)
			break
		}
		if k, ok := h.cache[hsmapi.UUID(id)]; ok {
			delete(h.cache, hsmapi.UUID(id))
			gone = append(gone, k)
		}
	}
	if err == nil {
		for id, k := range h.volatile {
			delete(h.volatile, id)
			gone = append(gone, k)
		}
	}
	h.mu.Unlock()
	retireAll(gone)
	return err
}
