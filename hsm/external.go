package hsm

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/keyshare"
	"github.com/hsmkit/cryptech-backup/keystore"
	"github.com/hsmkit/cryptech-backup/storefile"
)

// External storage: keys kept outside the keystore, wrapped under a storage
// key that the HSM derives from its master key, so that only this HSM (or
// one given its master key from shares) takes them back.
//
// A stored key is its keystore record, sealed with AES key wrap with
// padding (RFC 5649) under the storage wrap key, and the file as a whole is
// authenticated with HMAC-SHA-256 under the storage MAC key; both keys come
// from the master key by HKDF-SHA-256 with labels of their own, so neither
// is the key that seals the keystore. The file names the master key by its
// check value: after a rotation the old key, kept in the ring, still takes
// its files back; once it is retired, they are gone.
//
// HSS keys, as on a Cryptech HSM, are disabled in the HSM when stored: the
// key gives away every signature it has left (hashsig.Detach), persisting
// its emptied range first, and stays in the keystore unable to sign. That
// record is the HSM's memory of the first index it never released: a
// restore must start at or beyond it, so an older file, stored before the
// key signed again, is refused (Cryptech leaves this hole open). A stored
// HSS key restores only over that record; one deleted since is not taken
// back (failing closed).

var (
	storageWrapInfo = "cryptech-backup external storage wrap v1"
	storageMACInfo  = "cryptech-backup external storage mac v1"
)

// storageKeys derives the storage wrap and MAC keys from a master key.
func storageKeys(mk []byte) (wrap, mac []byte, err error) {
	if wrap, err = hkdf.Key(sha256.New, mk, nil, storageWrapInfo, 32); err != nil {
		return nil, nil, err
	}
	if mac, err = hkdf.Key(sha256.New, mk, nil, storageMACInfo, 32); err != nil {
		clear(wrap)
		return nil, nil, err
	}
	return wrap, mac, nil
}

func storageTag(mac []byte, f *storefile.File) []byte {
	m := hmac.New(sha256.New, mac)
	m.Write(f.Binding())
	return m.Sum(nil)
}

// StoreKeys wraps the keys for storage outside the HSM and returns the
// stored-keys file. HSS keys among them are disabled here first.
func (s *Session) StoreKeys(ctx context.Context, ids []hsmapi.UUID) ([]byte, error) {
	out, err := s.storeKeys(ids, progressFrom(ctx))
	if err != nil {
		return nil, fmt.Errorf("store keys: %w", err)
	}
	return out, nil
}

func (s *Session) storeKeys(ids []hsmapi.UUID, progress hashsig.Progress) ([]byte, error) {
	if err := s.requireKeyUser(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: no keys to store", hsmapi.ErrBadArguments)
	}
	h := s.h
	mk, err := h.masterKey()
	if err != nil {
		return nil, err
	}
	wrapKey, macKey, err := storageKeys(mk)
	f := &storefile.File{HSM: h.Identity().Serial, CheckValue: keyshare.CheckValue(mk), Created: time.Now().UTC().Truncate(time.Second)}
	clear(mk)
	if err != nil {
		return nil, err
	}
	defer clear(wrapKey)
	defer clear(macKey)

	keys := make([]*key, len(ids))
	seen := map[hsmapi.UUID]bool{}
	for i, id := range ids {
		if seen[id] {
			return nil, fmt.Errorf("%w: key %s named twice", hsmapi.ErrBadArguments, id)
		}
		seen[id] = true
		if keys[i], err = s.key(id); err != nil {
			return nil, err
		}
		if keys[i].info.Flags&hsmapi.FlagToken == 0 {
			return nil, fmt.Errorf("%w: key %s is volatile: only keys in the keystore are stored", hsmapi.ErrBadArguments, id)
		}
	}
	// Every other key first, the HSS keys last: once an HSS key gave its
	// signatures away, only this file can bring them back, so nothing that
	// can fail should come after.
	wrapped := make([][]byte, len(keys))
	done := 0
	for pass := range 2 {
		for i, k := range keys {
			if (k.hss != nil) != (pass == 1) {
				continue
			}
			r, err := s.storedRecord(k)
			if err != nil {
				return nil, fmt.Errorf("key %s: %w", k.info.UUID, err)
			}
			plain := r.marshal()
			r.wipe()
			wrapped[i], err = keywrap.WrapPad(wrapKey, plain)
			clear(plain)
			if err != nil {
				return nil, err
			}
			if done++; progress != nil {
				progress(done, len(keys))
			}
		}
	}
	for i, k := range keys {
		f.Keys = append(f.Keys, storefile.Key{UUID: k.info.UUID, Type: k.info.Type, Label: k.info.Label, Wrapped: wrapped[i]})
	}
	f.Tag = storageTag(macKey, f)
	return f.Marshal()
}

// storedRecord is the keystore record to store for k: as it is in flash,
// or, for an HSS key, with every signature it has left, which it gives
// away here.
func (s *Session) storedRecord(k *key) (*keyRecord, error) {
	h := s.h
	if k.hss == nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		rec, err := h.ks.Get(keystore.ID(k.info.UUID))
		if err != nil {
			return nil, err
		}
		return h.unseal(k.info.UUID, rec.Data)
	}
	var r *keyRecord
	err := k.use(func() error {
		part, err := k.hss.Detach()
		if err != nil {
			return err
		}
		defer part.Wipe()
		state, err := part.MarshalBinary()
		if err != nil {
			return err
		}
		// The keystore's encoding of an HSS key, as attachPersist writes it.
		der, err := hashsig.StatePKCS8(state)
		clear(state)
		if err != nil {
			return err
		}
		h.mu.Lock()
		r = k.record(der) // der is the record's now: its wipe clears it
		// Disabled, the key signs no more here: its cache is of no use.
		// A cache left by a failed delete costs flash only: it is this
		// key's, checked like any other when the key, restored, is
		// loaded again, and overwritten by the key's next store.
		_ = h.dropTreeCache(k.info.UUID)
		h.mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("disable the HSS key: %w", err)
	}
	return r, nil
}

// storedKey is one key of a stored-keys file, opened.
type storedKey struct {
	rec *keyRecord
	key *key
}

// openStored checks a stored-keys file against this HSM and opens every
// key in it, telling progress, if not nil, after each.
func (h *HSM) openStored(data []byte, progress hashsig.Progress) ([]storedKey, error) {
	f, err := storefile.Parse(data)
	if err != nil {
		return nil, err
	}
	if f.Token {
		return nil, fmt.Errorf("%w: PKCS#11 token %s stored the keys under a storage key of its own, and only it takes them back (with --module)", hsmapi.ErrNotThisHSM, f.HSM)
	}
	if serial := h.Identity().Serial; f.HSM != serial {
		return nil, fmt.Errorf("%w: the keys were stored by HSM %s; this is HSM %s", hsmapi.ErrNotThisHSM, f.HSM, serial)
	}
	mk, err := h.storageMasterKey(f.CheckValue)
	if err != nil {
		return nil, err
	}
	wrapKey, macKey, err := storageKeys(mk)
	clear(mk)
	if err != nil {
		return nil, err
	}
	defer clear(wrapKey)
	defer clear(macKey)
	if !hmac.Equal(storageTag(macKey, f), f.Tag) {
		return nil, fmt.Errorf("%w: its tag does not match: the file was edited or damaged", hsmapi.ErrDecryption)
	}
	var out []storedKey
	wipe := func() {
		for _, sk := range out {
			sk.rec.wipe()
			sk.key.wipe()
		}
	}
	for _, fk := range f.Keys {
		plain, err := keywrap.UnwrapPad(wrapKey, fk.Wrapped)
		if err != nil {
			wipe()
			return nil, fmt.Errorf("key %s: %w", fk.UUID, hsmapi.ErrDecryption)
		}
		r, err := parseKeyRecord(plain)
		clear(plain)
		if err == nil && (r.uuid != fk.UUID || r.typ != fk.Type || r.label != fk.Label || r.flags&hsmapi.FlagToken == 0) {
			r.wipe()
			err = errors.New("the wrapped key is not the one the file names")
		}
		if err != nil {
			wipe()
			return nil, fmt.Errorf("key %s: %w: %v", fk.UUID, hsmapi.ErrDecryption, err)
		}
		k, err := newKey(r)
		if err != nil {
			r.wipe()
			wipe()
			return nil, fmt.Errorf("key %s: %w", fk.UUID, err)
		}
		out = append(out, storedKey{rec: r, key: k})
		if progress != nil {
			progress(len(out), len(f.Keys))
		}
	}
	return out, nil
}

// storageMasterKey finds the master key with check value cv: the current
// one or one of the ring. The caller clears it.
func (h *HSM) storageMasterKey(cv [hsmapi.MasterKeyCheckSize]byte) ([]byte, error) {
	mk, err := h.masterKey()
	if err != nil {
		return nil, err
	}
	if keyshare.Matches(mk, cv) {
		return mk, nil
	}
	cur := keyshare.CheckValue(mk)
	clear(mk)
	old := h.board.MKM.OldKeys()
	defer wipeKeys(old)
	for _, k := range old {
		if keyshare.Matches(k, cv) {
			return bytes.Clone(k), nil
		}
	}
	return nil, fmt.Errorf("%w: the keys were stored under master key %x, which this HSM no longer holds (its key is %x; %d old keys in its ring)",
		hsmapi.ErrNotThisHSM, cv, cur, len(old))
}

// CheckStoredKeys checks that a stored-keys file is this HSM's, whole, and
// that every key in it opens; it stores nothing.
func (s *Session) CheckStoredKeys(ctx context.Context, data []byte) ([]hsmapi.KeyInfo, error) {
	if err := s.requireKeyUser(); err != nil {
		return nil, fmt.Errorf("check stored keys: %w", err)
	}
	keys, err := s.h.openStored(data, progressFrom(ctx))
	if err != nil {
		return nil, fmt.Errorf("check stored keys: %w", err)
	}
	var out []hsmapi.KeyInfo
	for _, sk := range keys {
		out = append(out, sk.key.snapshot())
		sk.rec.wipe()
		sk.key.wipe()
	}
	return out, nil
}

// RestoreKeys takes stored keys back, all or none, in one keystore
// transaction, with their UUIDs, labels and attributes. A key present with
// the same public key is left alone (Present), but for an HSS key, whose
// disabled record here the file's state replaces.
func (s *Session) RestoreKeys(ctx context.Context, data []byte) ([]hsmapi.ImportResult, error) {
	if err := s.requireKeyUser(); err != nil {
		return nil, fmt.Errorf("restore keys: %w", err)
	}
	keys, err := s.h.openStored(data, progressFrom(ctx))
	if err != nil {
		return nil, fmt.Errorf("restore keys: %w", err)
	}
	res, err := s.h.commitRestore(keys)
	if err != nil {
		return nil, fmt.Errorf("restore keys: %w", err)
	}
	return res, nil
}

func (h *HSM) commitRestore(keys []storedKey) ([]hsmapi.ImportResult, error) {
	stored := false
	present := make([]bool, len(keys))
	defer func() {
		for i, sk := range keys {
			sk.rec.wipe()
			// A key present here already is kept; the file's copy is not.
			if !stored || present[i] {
				sk.key.wipe()
			}
		}
	}()
	h.mu.Lock()
	res, replaced, err := h.storeRestored(keys, present)
	h.mu.Unlock()
	if err != nil {
		return nil, err
	}
	stored = true
	retireAll(replaced)
	return res, nil
}

// storeRestored stores the keys that are not here, and the HSS keys whose
// disabled records they replace, in one transaction (h.store), marking
// in present the keys left alone; it returns the keys replaced, for the
// caller to retire once h.mu is released. Called with h.mu held.
func (h *HSM) storeRestored(keys []storedKey, present []bool) ([]hsmapi.ImportResult, []*key, error) {
	lockassert.Held(&h.mu)
	var created []*keyRecord
	var put []keystore.Record
	var fresh, replaced []*key
	res := make([]hsmapi.ImportResult, len(keys))
	for i, sk := range keys {
		k, id := sk.key, sk.rec.uuid
		taken, err := h.exists(id)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case taken:
			old, err := h.lookup(nil, id)
			if err == nil && (old.info.Type != k.info.Type || !bytes.Equal(old.info.PublicKey, k.info.PublicKey)) {
				err = fmt.Errorf("%w: another key has UUID %s here", hsmapi.ErrKeyNameInUse, id)
			}
			if err == nil && k.hss != nil {
				err = hssRestorable(old, k)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("key %s: %w", id, err)
			}
			if k.hss == nil {
				res[i] = hsmapi.ImportResult{Key: old.snapshot(), Present: true}
				present[i] = true
				continue
			}
			sealed, err := h.seal(sk.rec)
			if err != nil {
				return nil, nil, err
			}
			put = append(put, keystore.Record{ID: keystore.ID(id), Kind: kindKey, Data: sealed})
			replaced = append(replaced, old)
		case k.hss != nil:
			return nil, nil, fmt.Errorf("key %s: %w: an HSS key restores only over the disabled key it was stored from, which is no longer here", id, hsmapi.ErrHashsigRangeUsed)
		default:
			created = append(created, sk.rec)
		}
		fresh = append(fresh, k)
		res[i] = hsmapi.ImportResult{Key: k.snapshot()}
	}
	// The replaced records go in as the transaction's other writes: the
	// new keys take their places in the cache, and the old ones' persist
	// functions, finding another key there, write nothing more.
	if err := h.store(nil, created, fresh, put); err != nil {
		return nil, nil, err
	}
	return res, replaced, nil
}

// hssRestorable checks a stored HSS key against the disabled key here: the
// same key, and a state that starts at or beyond the first index this HSM
// never released. The caller holds h.mu (the HSM of both keys).
func hssRestorable(here, stored *key) error {
	if here.hss == nil || here.hss.ID() != stored.hss.ID() {
		return fmt.Errorf("%w: not the HSS key stored", hsmapi.ErrKeyNameInUse)
	}
	next, end := here.hss.Range()
	if next != end {
		return fmt.Errorf("%w: the key here is not disabled (%d signatures left): it was restored already, and the file is older than its state", hsmapi.ErrHashsigRangeUsed, end-next)
	}
	if first, _ := stored.hss.Range(); first < next {
		return fmt.Errorf("%w: the file's state starts at signature %d, below %d, the first this HSM never released: an older file, stored before the key signed again", hsmapi.ErrHashsigRangeUsed, first, next)
	}
	return nil
}
