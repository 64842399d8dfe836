package backup

import (
	"context"
	"errors"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// ImportOptions tune Import.
type ImportOptions struct {
	// LegacyKEK accepts KEKs encrypted with RSA PKCS#1 v1.5, and with them
	// bundles written by cryptech_backup, which carry no tags.
	LegacyKEK bool
	// Passphrase is asked for the passphrase of a bundle made for a soft
	// KEKEK, and only then; Import wipes what it returns.
	Passphrase func(ctx context.Context) ([]byte, error)
}

// ImportedKey reports what happened to one key of a bundle.
type ImportedKey struct {
	UUID hsmapi.UUID
	// Present: the same key was already there and was left alone.
	Present bool
	// Warnings are the token's, of the key's arrival (hsmapi.ImportResult).
	Warnings []string
}

// Import stores the keys of a bundle in tok, all of them or none. Everything
// that can be checked without the HSM is checked before anything is stored.
// A key already present under its UUID with the same public key is reported
// as Present; a different key under that UUID fails the whole import.
//
// A bundle made for a soft KEKEK has its private half: Import opens it with
// the passphrase, loads it into tok as a volatile key, imports, and deletes
// it again, whether the import succeeded or not.
func Import(ctx context.Context, tok hsmapi.Token, b *Bundle, opts ImportOptions) ([]ImportedKey, error) {
	res, err := importBundle(ctx, tok, b, opts)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return res, nil
}

func importBundle(ctx context.Context, tok hsmapi.Token, b *Bundle, opts ImportOptions) (res []ImportedKey, err error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	legacy := b.Version == 0
	enc := b.KEKEncryption
	if legacy {
		enc = hsmapi.KEKPKCS1v15
	}
	if enc == hsmapi.KEKPKCS1v15 && !opts.LegacyKEK {
		what := "its KEKs are encrypted with PKCS#1 v1.5"
		if legacy {
			what = "it has no version, so it comes from cryptech_backup: PKCS#1 v1.5 KEKs and no tags"
		}
		return nil, fmt.Errorf("%w: %s", ErrLegacy, what)
	}
	var kekek hsmapi.UUID
	if b.IsSoft() {
		var remove func() error
		if kekek, remove, err = loadSoftKEKEK(ctx, tok, b.soft(), opts.Passphrase); err != nil {
			return nil, err
		}
		defer func() {
			rmErr := remove()
			switch {
			case rmErr == nil:
			case err == nil:
				res, err = nil, fmt.Errorf("the keys were imported, but: %w", rmErr)
			default:
				err = errors.Join(err, rmErr)
			}
		}()
	} else if kekek, err = checkBundleKEKEK(ctx, tok, b); err != nil {
		return nil, err
	}

	results := make([]ImportedKey, len(b.Keys))
	var reqs []hsmapi.ImportRequest
	var idx []int
	digest := b.metadataDigest()
	for i := range b.Keys {
		k := &b.Keys[i]
		id, _ := hsmapi.ParseUUID(k.UUID) // checked by b.check
		results[i].UUID = id
		present, err := alreadyPresent(ctx, tok, k, id)
		if err != nil {
			return nil, &KeyError{i, k.UUID, err}
		}
		// A public key already there is left alone. A private key always
		// goes to the token, which reports it present only after its KEK,
		// wrapping and tag have been checked: so a bundle whose keys are all
		// present is still refused if it was changed.
		if present && !k.IsPrivate() {
			results[i].Present = true
			continue
		}
		// Keys arrive in the keystore whatever the source did with them:
		// a volatile key would vanish at the end of the import.
		label, _ := k.label() // checked by b.check
		req := hsmapi.ImportRequest{UUID: id, Label: label, Flags: k.Flags | hsmapi.FlagToken, PublicKey: k.SPKI, Attributes: k.Attributes}
		if k.IsPrivate() {
			req.KEKEKUUID, req.Encryption = kekek, enc
			req.Wrapped = hsmapi.WrappedKey{EncryptedKey: k.PKCS8, EncryptedKEK: k.KEK, Tag: k.Tag}
			if !legacy {
				req.Binding = binding(digest, i)
			}
		}
		reqs = append(reqs, req)
		idx = append(idx, i)
	}
	if len(reqs) == 0 {
		return results, nil
	}
	got, err := importAll(ctx, tok, reqs)
	if err != nil {
		return nil, err
	}
	for j, r := range got {
		results[idx[j]].Present = r.Present
		results[idx[j]].UUID = r.Key.UUID
		results[idx[j]].Warnings = r.Warnings
	}
	return results, nil
}

// checkBundleKEKEK checks that tok holds the KEKEK the bundle was made for.
func checkBundleKEKEK(ctx context.Context, tok hsmapi.Token, b *Bundle) (hsmapi.UUID, error) {
	id, _ := hsmapi.ParseUUID(b.KEKEKUUID) // checked by b.check
	k, err := tok.Key(ctx, id)
	if errors.Is(err, hsmapi.ErrKeyNotFound) {
		return id, fmt.Errorf("%w: this HSM has no key %s", ErrWrongKEKEK, id)
	}
	if err != nil {
		return id, err
	}
	if err := checkKEKEK(k); err != nil {
		return id, err
	}
	if !hsmapi.SamePublicKey(k.PublicKey, b.KEKEKPubkey) {
		return id, fmt.Errorf("%w: key %s here is not the kekek_pubkey of the bundle", ErrWrongKEKEK, id)
	}
	return id, nil
}

// alreadyPresent looks for the entry's UUID in tok: a different key there
// fails the import before anything is decrypted. Entries without a public
// key (cryptech_backup's private keys) are left for the token to judge.
func alreadyPresent(ctx context.Context, tok hsmapi.Token, k *BundleKey, id hsmapi.UUID) (bool, error) {
	if len(k.SPKI) == 0 {
		return false, nil
	}
	have, err := tok.Key(ctx, id)
	if errors.Is(err, hsmapi.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if have.Type.IsPrivate() == k.IsPrivate() && hsmapi.SamePublicKey(have.PublicKey, k.SPKI) {
		return true, nil
	}
	return false, hsmapi.ErrKeyNameInUse
}

// importAll stores every request or none: in one step on a token that can,
// otherwise one by one, deleting what was stored if a later key fails.
func importAll(ctx context.Context, tok hsmapi.Token, reqs []hsmapi.ImportRequest) ([]hsmapi.ImportResult, error) {
	if bi, ok := tok.(hsmapi.BatchImporter); ok {
		res, err := bi.ImportBatch(ctx, reqs)
		if !errors.Is(err, hsmapi.ErrUnsupported) {
			return res, err
		}
	}
	// An HSS key rolled back is burnt: its HSM never takes that part
	// again. So HSS keys go last, when everything else has arrived.
	order := make([]int, 0, len(reqs))
	for _, hssPass := range []bool{false, true} {
		for i, req := range reqs {
			if isHashsig(req.PublicKey) == hssPass {
				order = append(order, i)
			}
		}
	}
	results := make([]hsmapi.ImportResult, len(reqs))
	var done []hsmapi.ImportResult
	for _, i := range order {
		r, err := tok.Import(ctx, reqs[i])
		if err != nil {
			if rbErr := rollback(ctx, tok, done); rbErr != nil {
				err = errors.Join(err, rbErr)
			}
			return nil, fmt.Errorf("key %s: %w", reqs[i].UUID, err)
		}
		results[i] = r
		done = append(done, r)
	}
	return results, nil
}

func isHashsig(spki []byte) bool {
	k, err := hsmapi.DescribePublicKey(spki, false)
	return err == nil && k.Hashsig != nil
}

func rollback(ctx context.Context, tok hsmapi.Token, done []hsmapi.ImportResult) error {
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		if !done[i].Present {
			if err := tok.DeleteKey(ctx, done[i].Key.UUID); err != nil {
				errs = append(errs, fmt.Errorf("roll back %s: %w", done[i].Key.UUID, err))
			}
		}
	}
	return errors.Join(errs...)
}
