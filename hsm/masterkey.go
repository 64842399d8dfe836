package hsm

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/atomicfile"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/keyshare"
	"github.com/hsmkit/cryptech-backup/keystore"
	"github.com/hsmkit/cryptech-backup/sharefile"
	"github.com/hsmkit/cryptech-backup/sharetransit"
	"github.com/hsmkit/cryptech-backup/sim"
)

// The master key's life beyond init: split into k-of-n shares for the
// custodians (BackupMasterKey), wiped as tamper does (ZeroizeMasterKey), and
// put back from k shares that reach the HSM sealed to a restore session
// (BeginRestore, SubmitShare). Only the security officer and wheel may,
// as only they may at a Cryptech HSM's console.
//
// The HSM records the check value of its master key in flash when it first
// backs it up (kindMasterKeyCheck), since flash survives tamper and the
// master key memory does not: after a wipe it knows which key its keystore
// needs, and refuses shares of any other. A restore into an HSM that never
// recorded one takes the shares' check value, and also requires the key
// they recombine to to open a keystore record, if there is one.
//
// A restore session lives as long as the board is powered: in the HSM's
// memory and, because every command of the CLI powers the emulated board
// up anew, in a file of the board's directory (restoreFile, 0600, written
// atomically, scrubbed when the session ends), which stands for the
// battery-backed memory a real HSM would keep it in. The shares it holds
// are the master key's and there is no key left to seal them under; the
// directory is the HSM's inside, where the master key memory lies too.

// kindMasterKeyCheck is the record of the master key's check value.
const kindMasterKeyCheck keystore.Kind = 7

// masterKeyCheckID names it: a reserved UUID (see isReserved).
var masterKeyCheckID = keystore.ID{15: 0xF1}

// officer reports whether u may manage the master key.
func officer(u hsmapi.User) bool { return u == hsmapi.UserSO || u == hsmapi.UserWheel }

// restoreFile holds the restore session in the board's directory.
const restoreFile = "restore-session"

// restoreSession is a restore in progress. Guarded by HSM.restoreMu.
type restoreSession struct {
	id     [sharetransit.SessionIDSize]byte
	seed   [sharetransit.SeedSize]byte
	key    *sharetransit.SessionKey
	shares []keyshare.Share
	// threshold and checkValue come from the first share accepted.
	threshold  int
	checkValue [keyshare.CheckValueSize]byte
}

func (r *restoreSession) status() hsmapi.RestoreStatus {
	return hsmapi.RestoreStatus{ID: r.id, PublicKey: append([]byte(nil), r.key.Public...),
		Received: len(r.shares), Threshold: r.threshold, CheckValue: r.checkValue}
}

func (r *restoreSession) wipe() {
	for i := range r.shares {
		r.shares[i].Wipe()
	}
	r.shares = nil
	clear(r.seed[:])
}

// The restore file: magic "CRST", id, seed, threshold (1), check value,
// n (1), n x (index (1), value), then a CRC-32 of all before it.
const restoreMagic = "CRST"

func (r *restoreSession) marshal() []byte {
	b := append([]byte(restoreMagic), r.id[:]...)
	b = append(b, r.seed[:]...)
	b = append(b, byte(r.threshold))
	b = append(b, r.checkValue[:]...)
	b = append(b, byte(len(r.shares)))
	for _, s := range r.shares {
		b = append(b, s.Index)
		b = append(b, s.Value[:]...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

func parseRestoreSession(b []byte) (*restoreSession, error) {
	const head = len(restoreMagic) + sharetransit.SessionIDSize + sharetransit.SeedSize + 1 + keyshare.CheckValueSize + 1
	const entry = 1 + keyshare.ValueSize
	if len(b) < head+4 || string(b[:4]) != restoreMagic ||
		crc32.ChecksumIEEE(b[:len(b)-4]) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return nil, errors.New("the restore session file is corrupt")
	}
	r := &restoreSession{}
	p := b[4:]
	p = p[copy(r.id[:], p):]
	p = p[copy(r.seed[:], p):]
	r.threshold = int(p[0])
	p = p[1:]
	p = p[copy(r.checkValue[:], p):]
	n := int(p[0])
	p = p[1 : len(p)-4]
	if len(p) != n*entry {
		return nil, errors.New("the restore session file is corrupt")
	}
	for i := range n {
		s := keyshare.Share{Index: p[i*entry]}
		copy(s.Value[:], p[i*entry+1:(i+1)*entry])
		r.shares = append(r.shares, s)
	}
	key, err := sharetransit.NewSessionKey(r.seed[:])
	if err != nil {
		r.wipe()
		return nil, err
	}
	r.key = key
	return r, nil
}

// currentRestore is the restore session, loaded from its file after a
// power-up. A session left behind by a restore that wrote the master key
// and crashed before it removed the file is over. Called with h.restoreMu
// held.
func (h *HSM) currentRestore() (*restoreSession, error) {
	lockassert.Held(&h.restoreMu)
	if h.restore != nil {
		return h.restore, nil
	}
	path := filepath.Join(h.board.Dir, restoreFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the restore session: %w", err)
	}
	defer clear(data)
	if mk, err := h.board.MKM.Get(); err == nil {
		clear(mk)
		return nil, h.endRestore(nil)
	}
	r, err := parseRestoreSession(data)
	if err != nil {
		return nil, err
	}
	h.restore = r
	return r, nil
}

// saveRestore writes r to its file before the caller reports the change.
func (h *HSM) saveRestore(r *restoreSession) error {
	data := r.marshal()
	defer clear(data)
	if err := atomicfile.Write(filepath.Join(h.board.Dir, restoreFile), data, atomicfile.Options{Secret: true}); err != nil {
		return fmt.Errorf("store the restore session: %w", err)
	}
	return nil
}

// endRestore wipes r and scrubs the file. Called with h.restoreMu held.
func (h *HSM) endRestore(r *restoreSession) error {
	lockassert.Held(&h.restoreMu)
	if r != nil {
		r.wipe()
	}
	h.restore = nil
	path := filepath.Join(h.board.Dir, restoreFile)
	atomicfile.RemoveTemps(path)
	if err := atomicfile.Scrub(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the restore session: %w", err)
	}
	return nil
}

// masterKeyState is the HSM's part in this: its restore session.
type masterKeyState struct {
	// restoreMu guards restore. It is taken with no other lock held, and
	// h.mu (with what comes after it) is taken under it.
	restoreMu sync.Mutex
	restore   *restoreSession
}

func (s *Session) requireOfficer(what string) error {
	if u := s.User(); !officer(u) {
		return fmt.Errorf("%s: %w: only the security officer or wheel may (logged in as %s)", what, hsmapi.ErrForbidden, u)
	}
	return nil
}

// MasterKeyStatus says whether the master key is set, its check value, and
// the restore in progress.
func (s *Session) MasterKeyStatus(context.Context) (hsmapi.MasterKeyStatus, error) {
	if err := s.requireOfficer("master key status"); err != nil {
		return hsmapi.MasterKeyStatus{}, err
	}
	h := s.h
	var st hsmapi.MasterKeyStatus
	mk, err := h.board.MKM.Get()
	switch {
	case err == nil:
		st.Set, st.CheckValue, st.CheckValueKnown = true, keyshare.CheckValue(mk), true
		clear(mk)
	case errors.Is(err, sim.ErrMasterKeyNotSet):
		st.CheckValue, st.CheckValueKnown, err = h.recordedCheckValue()
		if err != nil {
			return st, err
		}
	default:
		return st, err
	}
	h.mu.Lock()
	st.OldKeys, err = h.oldKeyRecords()
	h.mu.Unlock()
	if err != nil {
		return st, err
	}
	h.restoreMu.Lock()
	defer h.restoreMu.Unlock()
	r, err := h.currentRestore()
	if err != nil {
		return st, err
	}
	if r != nil {
		rs := r.status()
		st.Restore = &rs
	}
	return st, nil
}

// recordedCheckValue reads the check value recorded in flash.
func (h *HSM) recordedCheckValue() (cv [keyshare.CheckValueSize]byte, ok bool, err error) {
	rec, err := h.ks.Get(masterKeyCheckID)
	if errors.Is(err, keystore.ErrNotFound) {
		return cv, false, nil
	}
	if err != nil {
		return cv, false, fmt.Errorf("read the master key's check value: %w", err)
	}
	if rec.Kind != kindMasterKeyCheck || len(rec.Data) != len(cv) {
		return cv, false, fmt.Errorf("the master key's check value record is malformed")
	}
	copy(cv[:], rec.Data)
	return cv, true, nil
}

// recordCheckValue writes cv to flash unless it is there already.
func (h *HSM) recordCheckValue(cv [keyshare.CheckValueSize]byte) error {
	old, ok, err := h.recordedCheckValue()
	if err != nil || ok && old == cv {
		return err
	}
	return h.ks.Put(keystore.Record{ID: masterKeyCheckID, Kind: kindMasterKeyCheck, Data: cv[:]})
}

// BackupMasterKey splits the master key and seals each share under its
// passphrase, all inside the HSM; it returns the key file.
func (s *Session) BackupMasterKey(_ context.Context, req hsmapi.BackupRequest) ([]byte, error) {
	out, err := s.backupMasterKey(req)
	if err != nil {
		return nil, fmt.Errorf("back up the master key: %w", err)
	}
	return out, nil
}

func (s *Session) backupMasterKey(req hsmapi.BackupRequest) ([]byte, error) {
	if err := s.requireOfficer("back up the master key"); err != nil {
		return nil, err
	}
	if len(req.Passphrases) != req.Shares {
		return nil, fmt.Errorf("%w: %d passphrases for %d shares", hsmapi.ErrBadArguments, len(req.Passphrases), req.Shares)
	}
	for i, p := range req.Passphrases {
		if len(p) == 0 {
			return nil, fmt.Errorf("%w: share %d has an empty passphrase", hsmapi.ErrBadArguments, i+1)
		}
	}
	kdf := sharefile.DefaultKDF
	if req.KDFTime != 0 {
		kdf.Time = req.KDFTime
	}
	if req.KDFMemoryKiB != 0 {
		kdf.MemoryKiB = req.KDFMemoryKiB
	}
	if req.KDFThreads != 0 {
		kdf.Threads = req.KDFThreads
	}
	h := s.h
	mk, err := h.masterKey()
	if err != nil {
		return nil, err
	}
	defer clear(mk)
	cv := keyshare.CheckValue(mk)
	f, err := sharefile.New(sharefile.Header{ID: req.ID, HSM: h.Identity().Serial, CheckValue: cv,
		Threshold: req.Threshold, Shares: req.Shares, Created: time.Now()})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", hsmapi.ErrBadArguments, err)
	}
	shares, err := keyshare.Split(mk, req.Threshold, req.Shares)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", hsmapi.ErrBadArguments, err)
	}
	defer wipeShareList(shares)
	for i := range shares {
		if err := f.Seal(shares[i], req.Passphrases[i], kdf); err != nil {
			return nil, fmt.Errorf("%w: %v", hsmapi.ErrBadArguments, err)
		}
	}
	// Recorded before the file is handed out: once custodians hold shares,
	// a wipe must find the check value they will be checked against.
	if err := h.recordCheckValue(cv); err != nil {
		return nil, err
	}
	return f.Marshal(), nil
}

// ZeroizeMasterKey wipes the master key as tamper does: every key becomes
// unreadable until the key is restored; PINs, flash and files stay.
func (s *Session) ZeroizeMasterKey(context.Context) error {
	if err := s.requireOfficer("zeroize the master key"); err != nil {
		return err
	}
	return s.h.Tamper()
}

// BeginRestore opens a restore session with a fresh HPKE key pair from the
// TRNG, or returns the one already open.
func (s *Session) BeginRestore(context.Context) (hsmapi.RestoreStatus, error) {
	if err := s.requireOfficer("restore the master key"); err != nil {
		return hsmapi.RestoreStatus{}, err
	}
	h := s.h
	h.restoreMu.Lock()
	defer h.restoreMu.Unlock()
	if r, err := h.currentRestore(); r != nil || err != nil {
		if err != nil {
			return hsmapi.RestoreStatus{}, err
		}
		return r.status(), nil
	}
	if mk, err := h.board.MKM.Get(); err == nil {
		clear(mk)
		return hsmapi.RestoreStatus{}, hsmapi.ErrMasterKeySet
	} else if !errors.Is(err, sim.ErrMasterKeyNotSet) {
		return hsmapi.RestoreStatus{}, err
	}
	r := &restoreSession{}
	if _, err := h.board.TRNG.Read(r.id[:]); err != nil {
		return hsmapi.RestoreStatus{}, err
	}
	if _, err := h.board.TRNG.Read(r.seed[:]); err != nil {
		return hsmapi.RestoreStatus{}, err
	}
	key, err := sharetransit.NewSessionKey(r.seed[:])
	if err != nil {
		return hsmapi.RestoreStatus{}, err
	}
	r.key = key
	if err := h.saveRestore(r); err != nil {
		r.wipe()
		return hsmapi.RestoreStatus{}, err
	}
	h.restore = r
	return r.status(), nil
}

// AbortRestore ends the restore session and wipes its shares.
func (s *Session) AbortRestore(context.Context) error {
	if err := s.requireOfficer("abort the restore"); err != nil {
		return err
	}
	h := s.h
	h.restoreMu.Lock()
	defer h.restoreMu.Unlock()
	r, err := h.currentRestore()
	if err != nil {
		return err
	}
	if r == nil {
		return hsmapi.ErrNoRestore
	}
	return h.endRestore(r)
}

// SubmitShare takes one share sealed to the restore session. With the
// threshold's worth of shares it recombines them, checks the key against
// the check value, writes it to the master key memory and ends the session.
// A refused share leaves the session as it was.
func (s *Session) SubmitShare(_ context.Context, sealed []byte) (hsmapi.RestoreStatus, error) {
	if err := s.requireOfficer("submit a share"); err != nil {
		return hsmapi.RestoreStatus{}, err
	}
	h := s.h
	h.restoreMu.Lock()
	defer h.restoreMu.Unlock()
	r, err := h.currentRestore()
	if err != nil {
		return hsmapi.RestoreStatus{}, err
	}
	if r == nil {
		return hsmapi.RestoreStatus{}, hsmapi.ErrNoRestore
	}
	sub, err := r.key.Open(r.id, sealed)
	if err != nil {
		return r.status(), fmt.Errorf("%w: %w", hsmapi.ErrShareRefused, err)
	}
	defer sub.Wipe()
	if err := h.acceptable(r, sub); err != nil {
		return r.status(), fmt.Errorf("%w: %w", hsmapi.ErrShareRefused, err)
	}
	if len(r.shares)+1 < sub.Threshold {
		next := *r
		next.shares = append(append([]keyshare.Share(nil), r.shares...), sub.Share)
		if len(r.shares) == 0 {
			next.threshold, next.checkValue = sub.Threshold, sub.CheckValue
		}
		// Stored before it counts: a crash keeps the share or never took it.
		if err := h.saveRestore(&next); err != nil {
			wipeShareList(next.shares)
			return r.status(), err
		}
		wipeShareList(r.shares)
		*r = next
		return r.status(), nil
	}
	shares := append(append([]keyshare.Share(nil), r.shares...), sub.Share)
	defer wipeShareList(shares)
	mk, err := keyshare.Combine(sub.Threshold, shares)
	if err == nil && !keyshare.Matches(mk, sub.CheckValue) {
		err = errors.New("they recombine to a key of another check value")
	}
	if err == nil {
		err = h.opensKeystore(mk)
	}
	if err != nil {
		clear(mk)
		return r.status(), fmt.Errorf("%w: %w: one of the %d shares is damaged or not of this key; abort the restore and start again",
			hsmapi.ErrShareRefused, err, len(shares))
	}
	defer clear(mk)
	h.mu.Lock()
	err = h.board.MKM.Set(mk)
	h.mu.Unlock()
	if err != nil {
		return r.status(), err
	}
	if err := h.recordCheckValue(sub.CheckValue); err != nil {
		return r.status(), err
	}
	st := r.status()
	st.Received, st.Done = len(shares), true
	return st, h.endRestore(r)
}

func wipeShareList(shares []keyshare.Share) {
	for i := range shares {
		shares[i].Wipe()
	}
}

// acceptable checks a share against the session before it is kept: the
// same key as the HSM's record and as the shares before it, the same
// threshold, an index not seen yet. Called with h.restoreMu held.
func (h *HSM) acceptable(r *restoreSession, sub *sharetransit.Submission) error {
	lockassert.Held(&h.restoreMu)
	want, known, err := h.recordedCheckValue()
	if err != nil {
		return err
	}
	if len(r.shares) > 0 {
		want, known = r.checkValue, true
	}
	if known && subtle.ConstantTimeCompare(want[:], sub.CheckValue[:]) != 1 {
		return fmt.Errorf("a share of another master key (check value %x, this HSM's is %x)", sub.CheckValue, want)
	}
	if len(r.shares) > 0 && sub.Threshold != r.threshold {
		return fmt.Errorf("a share of a %d-of-%d backup; the shares so far need %d", sub.Threshold, sub.Shares, r.threshold)
	}
	for _, have := range r.shares {
		if have.Index == sub.Share.Index {
			return fmt.Errorf("share %d was sent already", sub.Share.Index)
		}
	}
	return nil
}

// opensKeystore checks a recombined key against the keystore: the first
// key record must open under it. An empty keystore proves nothing and
// refuses nothing.
func (h *HSM) opensKeystore(mk []byte) error {
	ids := h.ks.List(kindKey)
	if len(ids) == 0 {
		return nil
	}
	rec, err := h.ks.Get(ids[0])
	if err != nil {
		return nil // a damaged block says nothing about the key
	}
	plain, err := keywrap.UnwrapPad(mk, rec.Data)
	if err != nil {
		return errors.New("the keystore's records do not open under the key they recombine to")
	}
	clear(plain)
	return nil
}
