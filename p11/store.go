//go:build cgo

package p11

import (
	"context"
	"crypto/subtle"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/storefile"
)

// External storage on a token (docs/stored-keys.md, "On a PKCS#11 token"):
// a token has no master key to derive a storage key from, so it keeps one
// as an object: an AES-256 secret key, on the token, that only wraps and
// unwraps and never leaves it (storageKeyTemplate), made on the first
// store. A stored key is its private key object wrapped under it
// (CKM_AES_KEY_WRAP_PAD, as a transfer wraps it under its KEK), with its
// public key, flags and the attributes of both its objects beside it in
// the file; the file's tag is the digest of its binding wrapped under the
// same key, as a transfer's tag is under the KEK (RFC 5649 wrap is
// deterministic, so the token checks a tag by making it again). The
// storage key is named in the file by a check value that a key which only
// wraps can give: the first 8 bytes of 32 zero bytes wrapped under it.

var _ hsmapi.KeyStorer = (*Token)(nil)

// The storage key is found by its label and CKA_ID.
const (
	storageKeyLabel = "cryptech-backup storage key"
	storageKeyID    = "cryptech-backup storage v1"
)

// storageKeyTemplate is the storage key's whole policy: a token key that
// wraps and unwraps, sensitive and never extractable, and does nothing
// else.
func storageKeyTemplate() []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, storageKeyLabel),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(storageKeyID)),
	}
}

// storageKeys finds the storage key objects. Called with t.mu held.
func (t *Token) storageKeys() ([]pkcs11.ObjectHandle, error) {
	lockassert.Held(&t.mu)
	return t.find(pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, storageKeyLabel), pkcs11.NewAttribute(pkcs11.CKA_ID, []byte(storageKeyID)))
}

// storageKeyCheck is the storage key's check value. Called with t.mu held.
func (t *Token) storageKeyCheck(h pkcs11.ObjectHandle) ([hsmapi.MasterKeyCheckSize]byte, error) {
	lockassert.Held(&t.mu)
	var cv [hsmapi.MasterKeyCheckSize]byte
	w, err := t.wrapValue(h, make([]byte, 32))
	if err != nil {
		return cv, fmt.Errorf("storage key check value: %w", err)
	}
	copy(cv[:], w)
	return cv, nil
}

// storageKeyToStore returns the storage key, made on first use, and its
// check value. Called with t.mu held.
func (t *Token) storageKeyToStore() (pkcs11.ObjectHandle, [hsmapi.MasterKeyCheckSize]byte, error) {
	lockassert.Held(&t.mu)
	hs, err := t.storageKeys()
	if err != nil {
		return 0, [hsmapi.MasterKeyCheckSize]byte{}, err
	}
	var h pkcs11.ObjectHandle
	switch len(hs) {
	case 0:
		if h, err = t.raw.GenerateKey(t.sess, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, storageKeyTemplate()); err != nil {
			return 0, [hsmapi.MasterKeyCheckSize]byte{}, fmt.Errorf("make the storage key: %w", err)
		}
	case 1:
		h = hs[0]
	default:
		// Each file names its key; which one a new file should use is
		// the operator's to say, by deleting the others' objects.
		return 0, [hsmapi.MasterKeyCheckSize]byte{}, fmt.Errorf("%w: %d storage key objects (label %q) on the token; keep one", hsmapi.ErrBadArguments, len(hs), storageKeyLabel)
	}
	cv, err := t.storageKeyCheck(h)
	return h, cv, err
}

// tokenSerial is the token's serial number, its name in a file.
// Called with t.mu held.
func (t *Token) tokenSerial() (string, error) {
	lockassert.Held(&t.mu)
	info, err := t.raw.GetTokenInfo(t.slot)
	if err != nil {
		return "", fmt.Errorf("token info: %w", err)
	}
	if s := strings.TrimRight(info.SerialNumber, " \x00"); s != "" {
		return s, nil
	}
	return "", fmt.Errorf("%w: the token has no serial number to name it by", hsmapi.ErrUnsupported)
}

// StoreKeys wraps the keys under the token's storage key and returns the
// stored-keys file. The token must let each key out (CKA_EXTRACTABLE).
func (t *Token) StoreKeys(_ context.Context, ids []hsmapi.UUID) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out, err := t.storeKeys(ids)
	if err != nil {
		return nil, fmt.Errorf("store keys: %w", err)
	}
	return out, nil
}

// storeKeys is StoreKeys. Called with t.mu held.
func (t *Token) storeKeys(ids []hsmapi.UUID) ([]byte, error) {
	lockassert.Held(&t.mu)
	if _, err := t.session(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: no keys to store", hsmapi.ErrBadArguments)
	}
	if err := t.require(pkcs11.CKM_AES_KEY_GEN, pkcs11.CKM_AES_KEY_WRAP_PAD); err != nil {
		return nil, err
	}
	serial, err := t.tokenSerial()
	if err != nil {
		return nil, err
	}
	// Every key is checked before the storage key is made or used.
	objs := make([]*object, len(ids))
	attrs := make([][]byte, len(ids))
	seen := map[hsmapi.UUID]bool{}
	for i, id := range ids {
		if seen[id] {
			return nil, fmt.Errorf("%w: key %s named twice", hsmapi.ErrBadArguments, id)
		}
		seen[id] = true
		o, err := t.object(id)
		if err == nil {
			err = storable(o)
		}
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", id, err)
		}
		a, err := t.keyAttributes(id)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", id, err)
		}
		objs[i], attrs[i] = o, hsmapi.EncodeAttributes(a)
	}
	storage, cv, err := t.storageKeyToStore()
	if err != nil {
		return nil, err
	}
	f := &storefile.File{Token: true, HSM: serial, CheckValue: cv, Created: time.Now().UTC().Truncate(time.Second)}
	for i, o := range objs {
		wrapped, err := t.wrapPrivate(storage, o.priv)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", o.info.UUID, err)
		}
		f.Keys = append(f.Keys, storefile.Key{UUID: o.info.UUID, Type: o.info.Type, Label: o.info.Label, Wrapped: wrapped,
			PublicKey: o.info.PublicKey, Flags: o.info.Flags, Attributes: attrs[i]})
	}
	if f.Tag, err = t.tag(storage, f.Binding()); err != nil {
		return nil, fmt.Errorf("tag: %w", err)
	}
	return f.Marshal()
}

// storable says why a key cannot be stored from a token, if it cannot.
func storable(o *object) error {
	switch {
	case !o.hasPriv:
		return fmt.Errorf("%w: a public key alone: there is nothing secret to store", hsmapi.ErrUnsupportedKey)
	case o.info.Type == hsmapi.KeyTypeHashsigPrivate:
		// Wrapping an HSS key gives away the signatures it wraps; the
		// emulated HSM keeps the record that stops an older file from
		// signing again (docs/stored-keys.md), a token keeps none.
		return fmt.Errorf("%w: HSS keys are stored only on the emulated HSM itself (--hsm), which remembers the signatures they gave away", hsmapi.ErrUnsupported)
	case o.info.Flags&hsmapi.FlagToken == 0:
		return fmt.Errorf("%w: a session object: only keys on the token are stored", hsmapi.ErrBadArguments)
	case o.info.Flags&hsmapi.FlagExportable == 0:
		return fmt.Errorf("%w: CKA_EXTRACTABLE is false, and a key that is not extractable cannot leave a PKCS#11 token in any form, not even wrapped under the token's own storage key", hsmapi.ErrNotExportable)
	}
	return nil
}

// storedKey is one key of a stored-keys file, checked: what it describes
// and the import that restores it.
type storedKey struct {
	info hsmapi.KeyInfo
	req  hsmapi.ImportRequest
}

// openStored checks a stored-keys file against this token (its kind, the
// token's serial, the storage key, the tag) and that every key in it
// unwraps and matches its public key; it stores nothing. Called with t.mu
// held.
func (t *Token) openStored(data []byte) (pkcs11.ObjectHandle, []storedKey, error) {
	lockassert.Held(&t.mu)
	if _, err := t.session(); err != nil {
		return 0, nil, err
	}
	f, err := storefile.Parse(data)
	if err != nil {
		return 0, nil, err
	}
	if !f.Token {
		return 0, nil, fmt.Errorf("%w: HSM %s stored the keys under its master key, and only it takes them back (with --hsm)", hsmapi.ErrNotThisHSM, f.HSM)
	}
	serial, err := t.tokenSerial()
	if err != nil {
		return 0, nil, err
	}
	if f.HSM != serial {
		return 0, nil, fmt.Errorf("%w: the keys were stored by token %s; this is token %s", hsmapi.ErrNotThisHSM, f.HSM, serial)
	}
	if err := t.require(pkcs11.CKM_AES_KEY_WRAP_PAD); err != nil {
		return 0, nil, err
	}
	hs, err := t.storageKeys()
	if err != nil {
		return 0, nil, err
	}
	var storage pkcs11.ObjectHandle
	for _, h := range hs {
		if cv, err := t.storageKeyCheck(h); err == nil && cv == f.CheckValue {
			storage = h
			break
		}
	}
	if storage == 0 {
		return 0, nil, fmt.Errorf("%w: the keys were stored under storage key %x, which is not on this token (%d storage keys here)", hsmapi.ErrNotThisHSM, f.CheckValue, len(hs))
	}
	if tag, err := t.tag(storage, f.Binding()); err != nil || subtle.ConstantTimeCompare(tag, f.Tag) != 1 {
		return 0, nil, fmt.Errorf("%w: its tag does not match: the file was edited or damaged", hsmapi.ErrDecryption)
	}
	out := make([]storedKey, 0, len(f.Keys))
	for _, fk := range f.Keys {
		sk, err := t.openStoredKey(storage, fk)
		if err != nil {
			return 0, nil, fmt.Errorf("key %s: %w", fk.UUID, err)
		}
		out = append(out, sk)
	}
	return storage, out, nil
}

// openStoredKey checks one key of an authenticated file. Called with t.mu
// held.
func (t *Token) openStoredKey(storage pkcs11.ObjectHandle, fk storefile.Key) (storedKey, error) {
	lockassert.Held(&t.mu)
	if fk.Type == hsmapi.KeyTypeHashsigPrivate {
		return storedKey{}, fmt.Errorf("%w: an HSS key in a token's file", hsmapi.ErrUnsupported)
	}
	info, err := hsmapi.DescribePublicKey(fk.PublicKey, true)
	if err != nil {
		return storedKey{}, err
	}
	if info.Type != fk.Type {
		return storedKey{}, fmt.Errorf("%w: a %s key with a %s public key", hsmapi.ErrBadArguments, fk.Type, info.Type)
	}
	attrs, err := hsmapi.DecodeAttributes(fk.Attributes)
	if err != nil {
		return storedKey{}, err
	}
	pub, err := hsmapi.ParsePublicKey(fk.PublicKey)
	if err != nil {
		return storedKey{}, err
	}
	req := hsmapi.ImportRequest{UUID: fk.UUID, Label: fk.Label, Flags: fk.Flags, PublicKey: fk.PublicKey, Attributes: attrs,
		Wrapped: hsmapi.WrappedKey{EncryptedKey: hsmapi.MarshalEncryptedKey(fk.Wrapped)}}
	if err := t.unwrapCheck(req, storage, fk.Type, pub); err != nil {
		return storedKey{}, err
	}
	info.UUID, info.Label, info.Flags = fk.UUID, fk.Label, fk.Flags
	return storedKey{info: info, req: req}, nil
}

// CheckStoredKeys checks that a stored-keys file is this token's, whole,
// and that every key in it opens; it stores nothing.
func (t *Token) CheckStoredKeys(_ context.Context, data []byte) ([]hsmapi.KeyInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, keys, err := t.openStored(data)
	if err != nil {
		return nil, fmt.Errorf("check stored keys: %w", err)
	}
	out := make([]hsmapi.KeyInfo, len(keys))
	for i, sk := range keys {
		out[i] = sk.info
	}
	return out, nil
}

// RestoreKeys takes stored keys back with every attribute they left with,
// all or none: every key is checked first, and should one fail to be
// stored, those stored before it are destroyed again. A token has no
// transactions, so a crash in between can leave some of them on it (as an
// import can); the file still holds them all. A key already on the token
// is reported present and left alone.
func (t *Token) RestoreKeys(_ context.Context, data []byte) ([]hsmapi.ImportResult, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	res, err := t.restoreKeys(data)
	if err != nil {
		return nil, fmt.Errorf("restore keys: %w", err)
	}
	return res, nil
}

// restoreKeys is RestoreKeys. Called with t.mu held.
func (t *Token) restoreKeys(data []byte) ([]hsmapi.ImportResult, error) {
	lockassert.Held(&t.mu)
	storage, keys, err := t.openStored(data)
	if err != nil {
		return nil, err
	}
	var res []hsmapi.ImportResult
	var made []hsmapi.UUID
	for _, sk := range keys {
		r, err := t.importUnder(sk.req, storage)
		if err != nil {
			for _, id := range made {
				if o, e := t.object(id); e == nil {
					t.destroy(o)
				}
			}
			return nil, fmt.Errorf("key %s: %w (nothing restored)", sk.req.UUID, err)
		}
		if !r.Present {
			made = append(made, r.Key.UUID)
		}
		res = append(res, r)
	}
	return res, nil
}
