package hsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/keystore"
	"github.com/hsmkit/cryptech-backup/sim"
)

// Record kinds in the keystore.
const (
	kindKey   keystore.Kind = 1
	kindPIN   keystore.Kind = 2
	kindFlash keystore.Kind = 4 // the flash's size, from Create
)

// MaxVolatileKeys bounds the keys without FlagToken the HSM holds in
// memory, for all sessions together, as libhal's volatile keystore has a
// fixed size: no client can make the HSM's memory grow without end.
const MaxVolatileKeys = 4096

// flashID names the record of the flash's size: a reserved UUID (see
// isReserved) no user has.
var flashID = keystore.ID{15: 0xF0}

// ErrFlashSize reports a flash image whose size is not the one the HSM was
// created with: cut short (keys lost) or grown.
var ErrFlashSize = errors.New("the flash image is not the size the HSM was made with")

// DefaultWrongPINDelay is how long Login waits before it reports a wrong PIN,
// as libhal does, to slow down guessing.
const DefaultWrongPINDelay = 5 * time.Second

// Options tune an HSM. The zero value gives the defaults.
type Options struct {
	// WrongPINDelay is the pause after a wrong PIN (DefaultWrongPINDelay if
	// zero).
	WrongPINDelay time.Duration
	// PINIterations is the PBKDF2 work factor for PINs set from now on
	// (DefaultPINIterations if zero).
	PINIterations int
	// PINTickets, if set, lets one process's login spare the next ones
	// the PBKDF2 of the PIN record (pinticket.go); nil: none.
	PINTickets *PINTickets
}

func (o Options) withDefaults() Options {
	if o.WrongPINDelay == 0 {
		o.WrongPINDelay = DefaultWrongPINDelay
	}
	if o.PINIterations == 0 {
		o.PINIterations = DefaultPINIterations
	}
	return o
}

// MinBlocks is the smallest flash an HSM is created with: room for the PINs,
// a transaction and a few keys.
const MinBlocks = 16

// MaxBlocks is the largest flash an HSM is created with: 512 MiB.
const MaxBlocks = sim.MaxBlocks

// The state directory's errors, which Open and Create wrap. They are the
// board's, named here so that a caller of the HSM need not reach past it
// to its board.
var (
	// ErrNoBoard: the directory holds no HSM.
	ErrNoBoard = sim.ErrNoBoard
	// ErrBoardExists: Create was pointed at a directory that holds one.
	ErrBoardExists = sim.ErrBoardExists
	// ErrBoardInUse: another process has the HSM open.
	ErrBoardInUse = sim.ErrBoardInUse
)

// InitConfig holds what a new HSM is created with.
type InitConfig struct {
	WheelPIN, SOPIN, UserPIN []byte
	// Blocks is the flash size in 8 KiB blocks (sim.DefaultBlocks if zero).
	Blocks int
	// Label names the HSM (hsmapi.CheckTokenLabel); empty, its
	// directory's name.
	Label string
}

// HSM is one emulated HSM, open on its state directory. It is safe for
// concurrent use; each client talks to it through its own [Session].
type HSM struct {
	board *sim.Board
	ks    store
	opts  Options
	// loginTurn is the HSM-wide turn at checking a PIN (checkPINInTurn): a
	// channel with room for one, taken by sending and given back by
	// receiving, so that waiting for it can give up. It is taken with no
	// other lock held; under it are taken only the keystore's, and the
	// leaves a PIN shortcut reads: pins.mu, idMu (the serial) and the
	// master key memory's (a ticket's key).
	loginTurn chan struct{}
	// pins holds the in-memory PIN verifiers (pinfast.go). Its mu is a
	// leaf.
	pins pinVerifiers

	// mu guards the maps below and the HSM's view of the keystore (a lookup
	// and the write that depends on it happen under one hold).
	//
	// Lock order. A goroutine takes these locks in this order only, never
	// waiting for one while it holds one that comes later:
	//
	//  1. key.life.mu (per key, shared with its copies): held for reading
	//     while the key's private half is used (key.use), for writing while
	//     the key is retired.
	//     Then treeCache.load (per token HSS key, a sync.Once): held by
	//     the first signature of a key loaded from flash while it reads
	//     the key's cache under h.mu, then, h.mu released, installs it
	//     (hashsig's locks). Only other signatures of that key wait for it.
	//  2. hashsig.PrivateKey's locks (per HSS key; their own order is
	//     documented there): its signing lock, held while the key signs,
	//     including while it builds its trees, and by Wipe; then its state
	//     lock, held to read or change its range (Remaining, Range, Split,
	//     MarshalBinary) and across its PersistFunc, which takes h.mu. No
	//     one waits for a build but another signature with that key:
	//     key.retire wipes the key before it waits for key.life.mu, and a
	//     build gives up when its key is wiped.
	//  3. HSM.mu.
	//  4. keystore.Store.mu: taken inside each keystore call, under h.mu or
	//     not; then sim.Flash.mu, under it.
	//  5. sim.MasterKeyMemory.mu: taken alone or under h.mu (the master key
	//     is read to seal and unseal records); nothing is taken under it.
	//
	// HSM.restoreMu (masterkey.go) comes before all of these: it is taken
	// with no other lock held, and h.mu under it.
	//
	// Session.mu is a leaf: nothing is taken under it. (A front end may
	// take it under its own locks.)
	//
	// So while h.mu is held, nothing waits for 1 or 2 of a key that another
	// goroutine can reach (one in cache or volatile, or handed to a caller):
	// keys leave the maps under h.mu and are retired (key.retire) after it
	// is released, and key.snapshot is called outside it. The one exception
	// is a key still being built under h.mu (loaded by lookup, generated or
	// imported by store): no one else has it, so its locks are free. The
	// functions documented "Called with h.mu held" assert it under the
	// debug build tag (go test -tags debug).
	mu sync.Mutex
	// cache holds token keys already loaded from the keystore.
	cache map[hsmapi.UUID]*key
	// volatile holds the keys without FlagToken, each owned by a session.
	volatile map[hsmapi.UUID]*key

	// idMu guards id, and orders the writes of its file. It is a leaf:
	// nothing is taken under it.
	idMu sync.Mutex
	id   identity

	masterKeyState
}

// ErrNotInitialized: the board exists but holds no PINs, e.g. after a crash
// during Create.
var ErrNotInitialized = errors.New("HSM has no PINs; it was never fully initialized (remove its directory and create it again)")

// Create makes a new HSM in dir: a fresh board, a master key from its TRNG,
// and the three PINs (all of them, or the HSM refuses to open). It refuses a
// directory that already holds an HSM.
func Create(dir string, cfg InitConfig, opts Options) (*HSM, error) {
	opts = opts.withDefaults()
	for _, pin := range [][]byte{cfg.WheelPIN, cfg.SOPIN, cfg.UserPIN} {
		if err := checkPINLength(pin); err != nil {
			return nil, fmt.Errorf("create HSM: %w", err)
		}
	}
	if cfg.Blocks != 0 && (cfg.Blocks < MinBlocks || cfg.Blocks > MaxBlocks) {
		return nil, fmt.Errorf("create HSM: %w: the flash has %d to %d blocks", hsmapi.ErrBadArguments, MinBlocks, sim.MaxBlocks)
	}
	label := cfg.Label
	if label == "" {
		label = defaultLabel(dir)
	}
	if err := hsmapi.CheckTokenLabel(label); err != nil {
		return nil, fmt.Errorf("create HSM: %w", err)
	}
	board, err := sim.CreateBoard(dir, cfg.Blocks)
	if err != nil {
		return nil, fmt.Errorf("create HSM: %w", err)
	}
	h, err := initialize(board, cfg, opts)
	if err == nil {
		h.id, err = newIdentity(board.TRNG, label)
		if err == nil {
			err = writeIdentity(dir, h.id)
		}
	}
	if err != nil {
		// Leave nothing half made that a second init would refuse. (An
		// identity file left behind is replaced by the next Create.)
		os.Remove(filepath.Join(dir, identityFile))
		return nil, errors.Join(fmt.Errorf("create HSM in %s: %w", dir, err), board.Destroy())
	}
	return h, nil
}

func initialize(board *sim.Board, cfg InitConfig, opts Options) (*HSM, error) {
	mk := make([]byte, sim.MasterKeySize)
	defer clear(mk)
	if _, err := board.TRNG.Read(mk); err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if err := board.MKM.Set(mk); err != nil {
		return nil, err
	}
	ks, err := keystore.Open(board.Flash)
	if err != nil {
		return nil, err
	}
	var recs []keystore.Record
	for _, u := range []struct {
		user hsmapi.User
		pin  []byte
	}{{hsmapi.UserWheel, cfg.WheelPIN}, {hsmapi.UserSO, cfg.SOPIN}, {hsmapi.UserNormal, cfg.UserPIN}} {
		r, err := newPINRecord(board.TRNG, u.pin, opts.PINIterations)
		if err != nil {
			return nil, err
		}
		recs = append(recs, keystore.Record{ID: pinID(u.user), Kind: kindPIN, Data: r.marshal()})
	}
	// With the PINs, in one transaction, so that an HSM with its PINs has it.
	recs = append(recs, keystore.Record{ID: flashID, Kind: kindFlash,
		Data: binary.BigEndian.AppendUint32(nil, uint32(board.Flash.Blocks()))})
	if err := ks.PutAll(recs); err != nil {
		return nil, fmt.Errorf("store PINs: %w", err)
	}
	return newHSM(board, ks, opts), nil
}

// Open powers on the HSM in dir. A tampered HSM (master key zeroized) opens,
// and its users can log in, but its keys stay unreadable (ErrTamper).
func Open(dir string, opts Options) (*HSM, error) {
	board, err := sim.OpenBoard(dir)
	if err != nil {
		return nil, fmt.Errorf("open HSM: %w", err)
	}
	ks, err := keystore.Open(board.Flash)
	if err != nil {
		board.Close()
		return nil, fmt.Errorf("open HSM in %s: keystore: %w", dir, err)
	}
	if len(ks.List(kindPIN)) == 0 {
		board.Close()
		return nil, fmt.Errorf("open HSM in %s: %w", dir, ErrNotInitialized)
	}
	if err := checkFlashSize(board.Flash.Blocks(), ks); err != nil {
		board.Close()
		return nil, fmt.Errorf("open HSM in %s: %w", dir, err)
	}
	id, err := loadIdentity(dir, board.TRNG)
	if err != nil {
		board.Close()
		return nil, fmt.Errorf("open HSM in %s: %w", dir, err)
	}
	h := newHSM(board, ks, opts.withDefaults())
	h.id = id
	if err := h.healCheckValue(); err != nil {
		board.Close()
		return nil, fmt.Errorf("open HSM in %s: %w", dir, err)
	}
	if err := h.reclaimKeygenHistory(); err != nil {
		board.Close()
		return nil, fmt.Errorf("open HSM in %s: %w", dir, err)
	}
	return h, nil
}

// checkFlashSize refuses a flash image cut short or grown since Create: a
// truncated image would otherwise open as an HSM that merely has fewer keys.
// HSMs made before the size was recorded are checked for their PINs and the
// smallest size only.
func checkFlashSize(blocks int, ks *keystore.Store) error {
	// A PIN record in a damaged block still counts: it was there, the image
	// was not cut short (DamagedBlocks reports it, and that user cannot log
	// in).
	left := 0
	for _, u := range []hsmapi.User{hsmapi.UserWheel, hsmapi.UserSO, hsmapi.UserNormal} {
		if _, err := ks.Get(pinID(u)); err == nil || errors.Is(err, keystore.ErrDamaged) {
			left++
		}
	}
	if left != 3 {
		return fmt.Errorf("%w: %d of the 3 PIN records are left", ErrFlashSize, left)
	}
	if blocks < MinBlocks {
		return fmt.Errorf("%w: %d blocks, fewer than any HSM has", ErrFlashSize, blocks)
	}
	rec, err := ks.Get(flashID)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the flash size: %w", err)
	}
	if len(rec.Data) != 4 {
		return fmt.Errorf("%w: its size record is malformed", ErrFlashSize)
	}
	if made := int(binary.BigEndian.Uint32(rec.Data)); made != blocks {
		return fmt.Errorf("%w: %d blocks, made with %d", ErrFlashSize, blocks, made)
	}
	return nil
}

func newHSM(board *sim.Board, ks *keystore.Store, opts Options) *HSM {
	return &HSM{board: board, ks: newStore(ks), opts: opts, loginTurn: make(chan struct{}, 1),
		cache: map[hsmapi.UUID]*key{}, volatile: map[hsmapi.UUID]*key{}}
}

// Close powers the HSM off. Volatile keys are gone; token keys stay in flash.
// A signature in progress whose state is stored finishes first; one still
// building its key's trees is abandoned (see key.retire), so Close returns
// promptly.
func (h *HSM) Close() error {
	h.pins.forgetAll()
	h.mu.Lock()
	gone := h.forgetAll()
	err := h.board.Close()
	h.mu.Unlock()
	retireAll(gone)
	return err
}

// forgetAll drops every key held in memory, returning them for the caller
// to retire once it has released h.mu. Called with h.mu held.
func (h *HSM) forgetAll() []*key {
	lockassert.Held(&h.mu)
	var gone []*key
	for _, m := range []map[hsmapi.UUID]*key{h.cache, h.volatile} {
		for _, k := range m {
			gone = append(gone, k)
		}
	}
	h.cache, h.volatile = map[hsmapi.UUID]*key{}, map[hsmapi.UUID]*key{}
	return gone
}

// retireAll retires keys dropped from the HSM's maps. Never called with h.mu
// held (see HSM.mu).
func retireAll(keys []*key) {
	for _, k := range keys {
		k.retire()
	}
}

// Tamper is the board's tamper response: the master key is zeroized and every
// key held in memory is forgotten, so the keystore stays unreadable until the
// master key is restored.
func (h *HSM) Tamper() error {
	h.pins.forgetAll()
	// A master key restored from its shares is the same key, so a ticket
	// kept through a zeroize would pass again after the restore.
	h.removeTickets(hsmapi.UserWheel, hsmapi.UserSO, hsmapi.UserNormal)
	h.mu.Lock()
	gone := h.forgetAll()
	err := h.board.MKM.Zeroize()
	h.mu.Unlock()
	retireAll(gone)
	return err
}

// Random fills p from the board's TRNG (libhal's GET_RANDOM).
func (h *HSM) Random(p []byte) error {
	_, err := h.board.TRNG.Read(p)
	return err
}

// NewSession opens a client session, not logged in.
func (h *HSM) NewSession() *Session { return &Session{h: h} }

// Open starts a session: the token a front end (package frontend) puts
// behind each of its clients.
func (h *HSM) Open(context.Context) (hsmapi.Token, error) { return h.NewSession(), nil }

// pinID is the keystore name of a user's PIN record: a reserved UUID, see
// isReserved.
func pinID(u hsmapi.User) keystore.ID {
	var id keystore.ID
	id[15] = byte(u)
	return id
}

// isReserved reports whether id is one of the UUIDs the HSM keeps for its
// own records: fifteen zero bytes, then anything but zero (the PIN and flash
// size records), and the namespaces of the HSS history records
// (isHistoryID) and tree caches (isCacheID). New keys get version 4 UUIDs,
// which are never reserved; imports may not use them.
func isReserved(id hsmapi.UUID) bool {
	var zero [15]byte
	return [15]byte(id[:15]) == zero && id[15] != 0 || isHistoryID(id) || isCacheID(id)
}

// checkPIN verifies a user's PIN, waiting before it reports a wrong one.
// A PIN that passed the full check before, in this HSM object or (with PIN
// tickets) in an earlier process of this boot, passes on a MAC instead of
// the PBKDF2 (pinfast.go); any other PIN takes the full check, and a wrong
// one the delay, as if there were no shortcut.
func (h *HSM) checkPIN(u hsmapi.User, pin []byte) error {
	rec, err := h.ks.Get(pinID(u))
	if errors.Is(err, keystore.ErrNotFound) {
		return fmt.Errorf("%w: no PIN set for %s", hsmapi.ErrPINIncorrect, u)
	}
	if err != nil {
		return fmt.Errorf("read PIN: %w", err)
	}
	r, err := parsePINRecord(rec.Data)
	if err != nil {
		return err
	}
	if h.pins.matches(u, rec.Data, pin) {
		h.pins.verifier.Add(1)
		return nil
	}
	t := h.ticketFor(u, rec.Data)
	if t != nil {
		defer t.wipe()
		switch t.check(pin) {
		case ticketPasses:
			h.pins.ticket.Add(1)
			h.pins.remember(h.board.TRNG, u, rec.Data, pin)
			return nil
		case ticketStale:
			t.remove()
		}
	}
	h.pins.full.Add(1)
	if !r.verify(pin) {
		time.Sleep(h.opts.WrongPINDelay)
		h.pins.delayed.Add(1)
		return hsmapi.ErrPINIncorrect
	}
	h.pins.remember(h.board.TRNG, u, rec.Data, pin)
	if t != nil {
		t.write(pin)
	}
	return nil
}

// setPIN stores u's new PIN record. The old PIN's verifier and ticket go:
// neither would pass the new record (both are bound to the record), but
// nothing keyed to a PIN no longer valid is kept.
func (h *HSM) setPIN(u hsmapi.User, pin []byte) error {
	r, err := newPINRecord(h.board.TRNG, pin, h.opts.PINIterations)
	if err != nil {
		return err
	}
	h.pins.forget(u)
	h.removeTickets(u)
	return h.ks.Put(keystore.Record{ID: pinID(u), Kind: kindPIN, Data: r.marshal()})
}

// seal wraps a key record under the master key for the keystore.
func (h *HSM) seal(r *keyRecord) ([]byte, error) {
	mk, err := h.masterKey()
	if err != nil {
		return nil, err
	}
	defer clear(mk)
	plain := r.marshal()
	defer clear(plain)
	return keywrap.WrapPad(mk, plain)
}

// unseal reverses seal, checking that the record names the UUID it is
// stored under.
func (h *HSM) unseal(id hsmapi.UUID, data []byte) (*keyRecord, error) {
	mk, err := h.masterKey()
	if err != nil {
		return nil, err
	}
	defer clear(mk)
	plain, err := h.openRecord(mk, data)
	if err != nil {
		return nil, fmt.Errorf("keystore record %s: does not open under the master key", id)
	}
	defer clear(plain)
	r, err := parseKeyRecord(plain)
	if err != nil {
		return nil, fmt.Errorf("keystore record %s: %w", id, err)
	}
	if r.uuid != id {
		r.wipe()
		return nil, fmt.Errorf("keystore record %s: %w", id, errBadKeyRecord)
	}
	return r, nil
}

func (h *HSM) masterKey() ([]byte, error) {
	mk, err := h.board.MKM.Get()
	if errors.Is(err, sim.ErrMasterKeyNotSet) {
		return nil, hsmapi.ErrTamper
	}
	return mk, err
}

// lookup finds a key visible to session s: a token key or one of s's
// volatile keys. Called with h.mu held.
func (h *HSM) lookup(s *Session, id hsmapi.UUID) (*key, error) {
	lockassert.Held(&h.mu)
	if k, ok := h.volatile[id]; ok && k.owner == s {
		return k, nil
	}
	if k, ok := h.cache[id]; ok {
		return k, nil
	}
	rec, err := h.ks.Get(keystore.ID(id))
	if errors.Is(err, keystore.ErrNotFound) || err == nil && rec.Kind != kindKey {
		return nil, fmt.Errorf("%w: %s", hsmapi.ErrKeyNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", id, err)
	}
	r, err := h.unseal(id, rec.Data)
	if err != nil {
		return nil, err
	}
	defer r.wipe()
	k, err := newKey(r)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", id, err)
	}
	h.attachPersist(k)
	h.attachTreeCache(k, true)
	h.cache[id] = k
	return k, nil
}

// attachPersist makes a token HSS key store its advanced state in its
// keystore record, under the master key, before each signature it releases.
// Volatile HSS keys keep their state in memory only. Called with h.mu held,
// on a key no other goroutine has yet.
func (h *HSM) attachPersist(k *key) {
	lockassert.Held(&h.mu)
	if k.hss == nil || k.info.Flags&hsmapi.FlagToken == 0 {
		return
	}
	sk, id := k.hss, k.info.UUID
	sk.SetPersist(func(state []byte) error {
		der, err := hashsig.StatePKCS8(state)
		if err != nil {
			return err
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		// The key as it is now: its label or attributes may have changed.
		cur := h.cache[id]
		if cur == nil || cur.hss != sk {
			// Deleted (or forgotten on tamper): never write it back.
			return fmt.Errorf("%w: %s", hsmapi.ErrKeyNotFound, id)
		}
		r := cur.record(der)
		defer r.wipe()
		data, err := h.seal(r)
		if err != nil {
			return err
		}
		err = h.ks.Put(keystore.Record{ID: keystore.ID(id), Kind: kindKey, Data: data})
		if errors.Is(err, keystore.ErrFull) {
			return fmt.Errorf("%w: no free flash block to store the key's state; delete a key", hsmapi.ErrKeystoreFull)
		}
		return err
	})
}

// visibleKeys returns the token keys and s's volatile keys, ordered by UUID.
func (h *HSM) visibleKeys(s *Session) ([]*key, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []hsmapi.UUID
	for _, id := range h.ks.List(kindKey) {
		ids = append(ids, hsmapi.UUID(id))
	}
	for id, k := range h.volatile {
		if k.owner == s {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b hsmapi.UUID) int { return bytes.Compare(a[:], b[:]) })
	keys := make([]*key, 0, len(ids))
	for _, id := range ids {
		k, err := h.lookup(s, id)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// exists reports whether any key, token or volatile of any session, holds
// id. A damaged keystore record still holds its UUID. Called with h.mu held.
func (h *HSM) exists(id hsmapi.UUID) (bool, error) {
	lockassert.Held(&h.mu)
	if _, ok := h.volatile[id]; ok {
		return true, nil
	}
	_, err := h.ks.Get(keystore.ID(id))
	switch {
	case err == nil, errors.Is(err, hsmapi.ErrDamaged):
		return true, nil
	case errors.Is(err, keystore.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("key %s: %w", id, err)
}

// newUUID draws a UUID that names no key yet. Called with h.mu held.
func (h *HSM) newUUID() (hsmapi.UUID, error) {
	lockassert.Held(&h.mu)
	for {
		id, err := hsmapi.NewUUID(h.board.TRNG)
		if err != nil {
			return id, err
		}
		if isReserved(id) {
			continue // never, for a version 4 UUID; kept should NewUUID change
		}
		taken, err := h.exists(id)
		if err != nil || !taken {
			return id, err
		}
	}
}

// DamagedBlocks lists the flash blocks that failed their CRC at power-on.
// The keystore leaves them as they are rather than lose what they held; the
// keys in them cannot be used.
func (h *HSM) DamagedBlocks() []int { return h.ks.Damaged() }

// DamagedBlocks is the HSM's DamagedBlocks, for a session's user (an export
// that would leave keys out asks first).
func (s *Session) DamagedBlocks(context.Context) ([]int, error) { return s.h.DamagedBlocks(), nil }

// store keeps new keys, all or none: token keys in one keystore transaction
// with the given other records, new or replacing (the HSS history records
// of historyUpdates, or the disabled HSS keys a restore replaces), volatile
// keys in memory. keys are the keys the HSM holds afterwards, cached under
// their UUIDs. Called with h.mu held, the keys not yet shared.
func (h *HSM) store(s *Session, recs []*keyRecord, keys []*key, history []keystore.Record) error {
	lockassert.Held(&h.mu)
	var batch []keystore.Record
	volatile := 0
	for _, r := range recs {
		if r.flags&hsmapi.FlagToken == 0 {
			volatile++
			continue
		}
		data, err := h.seal(r)
		if err != nil {
			return err
		}
		batch = append(batch, keystore.Record{ID: keystore.ID(r.uuid), Kind: kindKey, Data: data})
	}
	// Every write is counted before the first: the keys, the history
	// records (each takes a block until the one it replaces is freed), the
	// commit block, and one block kept free so that an HSS key can always
	// store its state after a signature.
	writes := len(batch) + len(history)
	need := writes + 1
	if writes > 0 {
		need++
	}
	if h.ks.Free() < need {
		h.ks.makeRoom(need) // tree caches give way to keys
	}
	if h.ks.Free() < need {
		return fmt.Errorf("%w: %d keys need %d of the flash's %d free blocks (one stays free for updates)", hsmapi.ErrKeystoreFull, len(keys), need, h.ks.Free())
	}
	if len(h.volatile)+volatile > MaxVolatileKeys {
		return fmt.Errorf("%w: the HSM holds %d volatile keys, at most %d", hsmapi.ErrKeystoreFull, len(h.volatile), MaxVolatileKeys)
	}
	// One transaction: the keys are new (Commit refuses to replace one),
	// the history records new or replacing, and a power cut leaves all of
	// them or none. Even one record goes in a transaction: a record Commit
	// wrote is never taken for a torn write and erased, whatever one
	// damaged byte makes it read (see package keystore), and a history
	// record lost so would let a deleted part be imported again.
	err := h.ks.Commit(batch, history)
	if errors.Is(err, keystore.ErrFull) {
		return fmt.Errorf("%w: %d keys need more than the %d free flash blocks", hsmapi.ErrKeystoreFull, len(batch), h.ks.Free())
	}
	if err != nil {
		return fmt.Errorf("store keys: %w", err)
	}
	for _, k := range keys {
		if k.info.Flags&hsmapi.FlagToken == 0 {
			k.owner = s
			h.volatile[k.info.UUID] = k
		} else {
			h.attachPersist(k)
			h.attachTreeCache(k, false)
			h.cache[k.info.UUID] = k
		}
	}
	return nil
}

// remove deletes a key from flash and from the HSM's maps; the caller
// retires it once it has released h.mu. Called with h.mu held.
func (h *HSM) remove(k *key) error {
	lockassert.Held(&h.mu)
	id := k.info.UUID
	if k.owner != nil {
		delete(h.volatile, id)
		return nil
	}
	// The cache first: a power cut in between leaves a key without one,
	// never a cache without its key.
	if k.hss != nil {
		if err := h.dropTreeCache(id); err != nil {
			return fmt.Errorf("delete key %s: %w", id, err)
		}
	}
	if err := h.ks.Delete(keystore.ID(id)); err != nil {
		return fmt.Errorf("delete key %s: %w", id, err)
	}
	delete(h.cache, id)
	return nil
}

// dropVolatile forgets every volatile key of a session.
func (h *HSM) dropVolatile(s *Session) {
	h.mu.Lock()
	var gone []*key
	for id, k := range h.volatile {
		if k.owner == s {
			delete(h.volatile, id)
			gone = append(gone, k)
		}
	}
	h.mu.Unlock()
	retireAll(gone)
}
