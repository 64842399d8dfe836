package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// ExportOptions tune Export.
type ExportOptions struct {
	// LegacyKEK encrypts KEKs with RSA PKCS#1 v1.5, as libhal does, so that a
	// real Cryptech HSM can import the bundle.
	LegacyKEK bool
	// Progress, if set, is called after each key.
	Progress func(done, total int)
	// SkipDamaged exports the keys that can be read from a token that
	// reports damaged storage, or exportable keys it cannot use. Without it
	// such an export fails before anything is done: a bundle that silently
	// lacks keys is no backup.
	SkipDamaged bool
	// SkipExhausted leaves out HSS keys with fewer than two signatures left,
	// which cannot be split. Without it such a key makes the export fail
	// before anything is done.
	SkipExhausted bool
	// SkipHSS leaves every HSS key out.
	SkipHSS bool
	// HSSSingleRestore exports HSS keys for a soft KEKEK: the caller
	// promises that the bundle will be imported into one HSM only. Without
	// it, or SkipHSS, such an export fails with ErrHSSSoftKEKEK before
	// anything is done.
	HSSSingleRestore bool
	// Skipped, if set, is told of each key SkipExhausted or SkipHSS leaves
	// out.
	Skipped func(k hsmapi.KeyInfo, why error)
}

// ErrHSSSoftKEKEK reports HSS keys to export for a soft KEKEK. A KEKEK in
// an HSM stays there, so a bundle for it is imported into that HSM only,
// whose HSS history sees a second import. A soft KEKEK's private half can
// be loaded into any HSM: each that imports the bundle would hold the same
// half of each HSS key and sign with the same one-time indexes, and none
// can see what the others used.
var ErrHSSSoftKEKEK = errors.New("HSS keys in a bundle for a soft KEKEK")

// ErrDamagedSource refuses an export from a token that holds keys it cannot
// read ([hsmapi.ErrDamaged]): the bundle would silently lack them, unless
// ExportOptions.SkipDamaged says to take what can be read.
var ErrDamagedSource = fmt.Errorf("%w", hsmapi.ErrDamaged)

// KeyError reports which key of a bundle an error is about.
type KeyError struct {
	Index int
	UUID  string
	Err   error
}

func (e *KeyError) Error() string { return fmt.Sprintf("key %d (%s): %v", e.Index, e.UUID, e.Err) }
func (e *KeyError) Unwrap() error { return e.Err }

// Export wraps every exportable key of tok for the KEKEK described by f:
// private keys as PKCS#8 under a fresh KEK each, public keys as they are.
// It returns a whole bundle or an error, never part of one.
//
// Exporting an HSS key gives away half of its remaining signatures (the
// source keeps the other half); a bundle that is then lost or not imported
// takes that half with it. HSS keys are exported last, after every check.
func Export(ctx context.Context, tok hsmapi.Token, f *KEKEKFile, opts ExportOptions) (*Bundle, error) {
	b, err := export(ctx, tok, f, opts)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return b, nil
}

func export(ctx context.Context, tok hsmapi.Token, f *KEKEKFile, opts ExportOptions) (*Bundle, error) {
	// Parsed once, for every key of the export.
	kekek, err := hsmapi.ParseKEKEK(f.KEKEKPubkey)
	if err != nil {
		return nil, err
	}
	enc, err := chooseKEKEncryption(ctx, tok, f, opts.LegacyKEK)
	if err != nil {
		return nil, err
	}
	if dr, ok := tok.(hsmapi.DamageReporter); ok && !opts.SkipDamaged {
		blocks, err := dr.DamagedBlocks(ctx)
		if err != nil {
			return nil, err
		}
		if len(blocks) > 0 {
			return nil, fmt.Errorf("%w: flash blocks %v of the HSM failed their CRC, and the keys in them would be left out", ErrDamagedSource, blocks)
		}
	}
	if ur, ok := tok.(hsmapi.UnreadableReporter); ok && !opts.SkipDamaged {
		bad, err := ur.UnreadableKeys(ctx)
		if err != nil {
			return nil, err
		}
		if len(bad) > 0 {
			return nil, fmt.Errorf("%w: %d exportable keys of the token cannot be exported and would be left out (%s)", ErrDamagedSource, len(bad), strings.Join(bad, "; "))
		}
	}
	keys, err := tok.Keys(ctx, hsmapi.Filter{Mask: hsmapi.FlagExportable, Flags: hsmapi.FlagExportable})
	if err != nil {
		return nil, err
	}
	if keys, err = leaveOutHSS(keys, f, opts); err != nil {
		return nil, err
	}
	// Exporting an HSS key splits it for good, so every one must be able to
	// split before anything is done.
	kept := keys[:0]
	for i, k := range keys {
		if hi := k.Hashsig; k.Type == hsmapi.KeyTypeHashsigPrivate && hi != nil && !hi.RemainingUnknown && hi.Remaining < 2 {
			why := fmt.Errorf("%w: %d signatures left, too few to split", hsmapi.ErrKeyExhausted, hi.Remaining)
			if !opts.SkipExhausted {
				return nil, &KeyError{i, k.UUID.String(), why}
			}
			if opts.Skipped != nil {
				opts.Skipped(k, why)
			}
			continue
		}
		kept = append(kept, k)
	}
	keys = kept
	b := &Bundle{
		Comment:       "Cryptech Alpha encrypted key backup",
		KEKEncryption: enc,
		KEKEKKDF:      f.KEKEKKDF,
		KEKEKPKCS8:    f.KEKEKPKCS8,
		KEKEKPubkey:   f.KEKEKPubkey,
		KEKEKSalt:     f.KEKEKSalt,
		KEKEKUUID:     f.KEKEKUUID,
		Keys:          make([]BundleKey, len(keys)),
		Version:       Version,
	}
	// All metadata first: each key's tag binds all of it.
	for i, k := range keys {
		b.Keys[i] = BundleKey{Comment: "Public key", Flags: k.Flags, SPKI: k.PublicKey, UUID: k.UUID.String()}
		if k.Type.IsPrivate() {
			b.Keys[i].Comment = "Encrypted private key"
		}
		// A label no HSM could take back fails here, not at import.
		if err := b.Keys[i].setLabel(k.Label); err != nil {
			return nil, &KeyError{i, k.UUID.String(), err}
		}
	}
	if err := readAttributes(ctx, tok, keys, b); err != nil {
		return nil, err
	}
	err = exportKeys(ctx, tok, kekek, keys, b, enc, opts)
	if errors.Is(err, hsmapi.ErrUnsupported) && opts.LegacyKEK && b.Version != 0 {
		// A source that speaks libhal's RPC only cannot bind metadata: with
		// --legacy-kek, write what cryptech_backup writes. Nothing has been
		// exported yet (such a source refuses before it exports).
		b.toLegacy()
		err = exportKeys(ctx, tok, kekek, keys, b, enc, opts)
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// leaveOutHSS removes the HSS keys from keys when asked to, and refuses
// them for a soft KEKEK unless the caller promised a single restore.
func leaveOutHSS(keys []hsmapi.KeyInfo, f *KEKEKFile, opts ExportOptions) ([]hsmapi.KeyInfo, error) {
	why := errors.New("HSS keys left out as asked")
	if f.IsSoft() {
		why = fmt.Errorf("%w: every HSM that imported the bundle could sign with the same one-time indexes", ErrHSSSoftKEKEK)
	}
	var hss []hsmapi.KeyInfo
	kept := make([]hsmapi.KeyInfo, 0, len(keys))
	for _, k := range keys {
		if k.Type == hsmapi.KeyTypeHashsigPrivate {
			hss = append(hss, k)
		} else {
			kept = append(kept, k)
		}
	}
	switch {
	case len(hss) == 0 || !opts.SkipHSS && (!f.IsSoft() || opts.HSSSingleRestore):
		return keys, nil
	case !opts.SkipHSS:
		return nil, fmt.Errorf("%w: a soft KEKEK can be loaded into any number of HSMs, and each that imported the bundle would sign with the same one-time indexes of its %d HSS keys", ErrHSSSoftKEKEK, len(hss))
	}
	for _, k := range hss {
		if opts.Skipped != nil {
			opts.Skipped(k, why)
		}
	}
	return kept, nil
}

// exportKeys wraps the private keys of b, binding each to the bundle's
// metadata unless b is in cryptech_backup's format. HSS keys go last, so
// that a failure on any other key leaves them whole, and once the first is
// split the rest are too, cancelled or not: halves given to a bundle that
// is then thrown away are lost, and splitting takes a flash write each.
func exportKeys(ctx context.Context, tok hsmapi.Token, kekek *hsmapi.PublicKEKEK, keys []hsmapi.KeyInfo, b *Bundle, enc hsmapi.KEKEncryption, opts ExportOptions) error {
	digest := b.metadataDigest()
	done := 0
	for _, hssPass := range []bool{false, true} {
		if err := ctx.Err(); err != nil {
			return err
		}
		if hssPass {
			ctx = context.WithoutCancel(ctx)
		}
		for i, k := range keys {
			if (k.Type == hsmapi.KeyTypeHashsigPrivate) != hssPass {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if k.Type.IsPrivate() {
				req := hsmapi.ExportRequest{Key: k.UUID, KEKEKPublicKey: kekek, Encryption: enc}
				if b.Version != 0 {
					req.Binding = binding(digest, i)
				}
				w, err := tok.Export(ctx, req)
				if err != nil {
					return &KeyError{i, k.UUID.String(), err}
				}
				b.Keys[i].PKCS8, b.Keys[i].KEK, b.Keys[i].Tag = w.EncryptedKey, w.EncryptedKEK, w.Tag
			}
			done++
			if opts.Progress != nil {
				opts.Progress(done, len(keys))
			}
		}
	}
	return nil
}

// computedAttributes are what a destination says of a key's history itself
// (an imported key is never CKA_LOCAL): not carried, as bundle-format.md
// has it, whatever the source stored.
var computedAttributes = []uint32{hsmapi.CKALocal, hsmapi.CKAAlwaysSensitive, hsmapi.CKANeverExtractable, hsmapi.CKAKeyGenMechanism}

// readAttributes puts each key's attributes in its entry, from a token
// whose keys have them. A source that cannot tell (a libhal HSM that
// answers ErrUnsupported) gives none, as cryptech_backup's bundles have
// none.
func readAttributes(ctx context.Context, tok hsmapi.Token, keys []hsmapi.KeyInfo, b *Bundle) error {
	ar, ok := tok.(hsmapi.AttributeReader)
	if !ok {
		return nil
	}
	for i, k := range keys {
		attrs, err := ar.KeyAttributes(ctx, k.UUID)
		if errors.Is(err, hsmapi.ErrUnsupported) {
			return nil
		}
		if err != nil {
			return &KeyError{i, k.UUID.String(), err}
		}
		attrs = slices.DeleteFunc(attrs, func(a hsmapi.Attribute) bool { return slices.Contains(computedAttributes, a.Type) })
		b.Keys[i].Attributes = sortedAttributes(attrs)
		// What the destination could not read back fails here, not there.
		if err := b.Keys[i].Attributes.check(); err != nil {
			return &KeyError{i, k.UUID.String(), err}
		}
	}
	return nil
}

// toLegacy turns b into cryptech_backup's format: no version, no KEK
// encryption named, no labels, tags, attributes or public keys of private
// keys.
func (b *Bundle) toLegacy() {
	b.Version, b.KEKEncryption = 0, ""
	for i := range b.Keys {
		k := &b.Keys[i]
		k.Label, k.LabelHex, k.Tag, k.Attributes = "", "", nil, nil
		if k.Comment == "Encrypted private key" {
			k.SPKI = nil
		}
	}
}

// chooseKEKEncryption picks the strongest KEK encryption that the source can
// make and the destination can undo. A KEKEK file without a list comes from
// cryptech_backup, whose HSM undoes PKCS#1 v1.5 only.
func chooseKEKEncryption(ctx context.Context, tok hsmapi.Token, f *KEKEKFile, legacy bool) (hsmapi.KEKEncryption, error) {
	mine, err := tok.KEKEncryptions(ctx)
	if err != nil {
		return "", err
	}
	if legacy {
		if !slices.Contains(mine, hsmapi.KEKPKCS1v15) {
			return "", fmt.Errorf("%w: this HSM cannot do PKCS#1 v1.5", hsmapi.ErrUnsupported)
		}
		return hsmapi.KEKPKCS1v15, nil
	}
	theirs := f.KEKEncryptions
	if theirs == nil {
		return "", fmt.Errorf("%w: the KEKEK file names no KEK encryption, so it comes from cryptech_backup, whose HSM undoes only PKCS#1 v1.5", ErrLegacy)
	}
	for _, e := range hsmapi.KEKEncryptions {
		if e != hsmapi.KEKPKCS1v15 && slices.Contains(mine, e) && slices.Contains(theirs, e) {
			return e, nil
		}
	}
	return "", fmt.Errorf("%w: no KEK encryption both HSMs can do (this one: %v; the destination: %v)", hsmapi.ErrUnsupported, mine, theirs)
}
