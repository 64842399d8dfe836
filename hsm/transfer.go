package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// Export wraps an exportable private key for the holder of the KEKEK: the
// key's PKCS#8 under a fresh transit KEK, the KEK encrypted to the KEKEK.
func (s *Session) Export(_ context.Context, req hsmapi.ExportRequest) (hsmapi.WrappedKey, error) {
	w, err := s.export(req)
	if err != nil {
		return hsmapi.WrappedKey{}, fmt.Errorf("export %s: %w", req.Key, err)
	}
	return w, nil
}

func (s *Session) export(req hsmapi.ExportRequest) (hsmapi.WrappedKey, error) {
	k, err := s.key(req.Key)
	if err != nil {
		return hsmapi.WrappedKey{}, err
	}
	if !k.isPrivate() {
		return hsmapi.WrappedKey{}, fmt.Errorf("%w: only private keys are exported wrapped", hsmapi.ErrUnsupportedKey)
	}
	if k.info.Flags&hsmapi.FlagExportable == 0 {
		return hsmapi.WrappedKey{}, hsmapi.ErrNotExportable
	}
	kekek, err := req.KEKEK()
	if err != nil {
		return hsmapi.WrappedKey{}, err
	}
	if err := s.checkTrustedKEKEK(k, kekek); err != nil {
		return hsmapi.WrappedKey{}, err
	}
	if _, err := hsmapi.ParseKEKEncryption(string(req.Encryption)); err != nil {
		return hsmapi.WrappedKey{}, err
	}
	var der []byte
	err = k.use(func() (err error) {
		der, err = exportablePKCS8(k)
		return err
	})
	if err != nil {
		return hsmapi.WrappedKey{}, err
	}
	defer clear(der)
	trng := s.h.board.TRNG
	kek := make([]byte, hsmapi.KEKSize)
	defer clear(kek)
	if _, err := io.ReadFull(trng, kek); err != nil {
		return hsmapi.WrappedKey{}, fmt.Errorf("transit KEK: %w", err)
	}
	var w hsmapi.WrappedKey
	if w.EncryptedKey, err = wrapPKCS8(kek, der); err != nil {
		return hsmapi.WrappedKey{}, err
	}
	if w.EncryptedKEK, err = encryptKEK(trng, kekek.Key(), req.Encryption, kek); err != nil {
		return hsmapi.WrappedKey{}, err
	}
	if req.Binding != nil {
		if w.Tag, err = makeTag(kek, req.Binding); err != nil {
			return hsmapi.WrappedKey{}, err
		}
	}
	return w, nil
}

// checkTrustedKEKEK refuses to export a key with CKA_WRAP_WITH_TRUSTED
// unless this HSM trusts the KEKEK: a key of this HSM with the KEKEK's
// public key carries CKA_TRUSTED (a public key alone, as the security
// officer stores a destination's, or a key pair's public key object). The
// transfer wraps to a key given by the caller, so without this rule the
// attribute would guard nothing: anyone with the user's PIN could export
// the key to a KEKEK of their own.
func (s *Session) checkTrustedKEKEK(k *key, kekek *hsmapi.PublicKEKEK) error {
	if !isTrue(k.attrs[hsmapi.CKAWrapWithTrusted]) {
		return nil
	}
	keys, err := s.h.visibleKeys(s)
	if err != nil {
		return err
	}
	for _, w := range keys {
		if pub, ok := w.pub.(*rsa.PublicKey); ok && pub.Equal(kekek.Key()) && trustedWrapper(w) {
			return nil
		}
	}
	return fmt.Errorf("%w: key %s (label %q) has CKA_WRAP_WITH_TRUSTED and this HSM does not trust the KEKEK (fingerprint %s): "+
		"store the destination's KEKEK public key on this HSM and have the security officer mark it CKA_TRUSTED (docs/key-policy.md)",
		hsmapi.ErrForbidden, k.info.UUID, k.info.Label, hsmapi.Fingerprint(kekek.SPKI()))
}

// exportablePKCS8 is the PrivateKeyInfo that leaves the HSM. For an HSS key
// it is a new part of the key: the remaining signatures are split, this HSM
// keeping the first half, and its shrunken range is in flash before the
// other half is handed out.
func exportablePKCS8(k *key) ([]byte, error) {
	if k.hss == nil {
		der, err := x509.MarshalPKCS8PrivateKey(k.priv)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", hsmapi.ErrUnsupportedKey, err)
		}
		return der, nil
	}
	part, err := k.hss.Split()
	if errors.Is(err, hashsig.ErrCannotSplit) {
		return nil, fmt.Errorf("%w: %v", hsmapi.ErrKeyExhausted, err)
	}
	if err != nil {
		return nil, err
	}
	defer part.Wipe() // it leaves only as the PKCS#8 the caller wraps
	return part.MarshalPKCS8()
}

// Import stores one key exported to one of this HSM's KEKEKs, or a public
// key. A key already stored under the same UUID with the same public key is
// left alone and reported as Present.
func (s *Session) Import(ctx context.Context, req hsmapi.ImportRequest) (hsmapi.ImportResult, error) {
	res, err := s.ImportBatch(ctx, []hsmapi.ImportRequest{req})
	if err != nil {
		return hsmapi.ImportResult{}, err
	}
	return res[0], nil
}

// ImportBatch imports several keys as one keystore transaction: every key is
// decrypted and checked first, then all are stored or none, even across a
// power cut.
func (s *Session) ImportBatch(ctx context.Context, reqs []hsmapi.ImportRequest) ([]hsmapi.ImportResult, error) {
	if err := s.requireKeyUser(); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	// The slow part, decryption, runs without holding the HSM's lock.
	recs := make([]*keyRecord, len(reqs))
	keys := make([]*key, len(reqs))
	stored := false
	defer func() {
		for i, r := range recs {
			if r != nil {
				r.wipe()
			}
			if !stored && keys[i] != nil {
				keys[i].wipe()
			}
		}
	}()
	seen := map[hsmapi.UUID]bool{}
	progress := progressFrom(ctx)
	for i, req := range reqs {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		if isReserved(req.UUID) {
			return nil, fmt.Errorf("import key %d: %w: UUID %s is reserved", i, hsmapi.ErrBadArguments, req.UUID)
		}
		if !req.UUID.IsZero() {
			if seen[req.UUID] {
				return nil, fmt.Errorf("import key %d: %w: UUID %s given twice", i, hsmapi.ErrBadArguments, req.UUID)
			}
			seen[req.UUID] = true
		}
		var err error
		if recs[i], keys[i], err = s.prepareImport(req); err != nil {
			return nil, fmt.Errorf("import key %d (%s): %w", i, req.UUID, err)
		}
		if progress != nil {
			progress(i+1, len(reqs))
		}
	}

	held, err := s.h.commitImport(s, recs, keys)
	if err != nil {
		return nil, err
	}
	stored = true
	results := make([]hsmapi.ImportResult, len(held))
	for i, k := range held {
		results[i] = hsmapi.ImportResult{Key: k.snapshot(), Present: k != keys[i]}
		if k != keys[i] {
			keys[i].wipe() // the key held already is kept; this copy is not
		}
	}
	return results, nil
}

// commitImport stores the prepared keys, all or none, returning for each the
// key now held: the new one, or the same key already present.
func (h *HSM) commitImport(s *Session, recs []*keyRecord, keys []*key) ([]*key, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	held := make([]*key, len(keys))
	hssSeen := map[[16]byte]int{}
	var newRecs []*keyRecord
	var newKeys []*key
	// Every HSS part of the batch that may not be stored, so that one
	// refusal names them all.
	var conflicts []string
	// The HSS history, read once the batch has an HSS key.
	var book *historyBook
	history := func() (*historyBook, error) {
		if book != nil {
			return book, nil
		}
		b, err := h.historyBook()
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		book = b
		return b, nil
	}
	for i, r := range recs {
		k := keys[i]
		if r.uuid.IsZero() {
			id, err := h.newUUID()
			if err != nil {
				return nil, fmt.Errorf("import: %w", err)
			}
			r.uuid, k.info.UUID = id, id
		} else if taken, err := h.exists(r.uuid); err != nil {
			return nil, fmt.Errorf("import key %d (%s): %w", i, r.uuid, err)
		} else if taken {
			old, err := h.lookup(s, r.uuid)
			if err != nil || old.info.Type != k.info.Type || !bytes.Equal(old.info.PublicKey, k.info.PublicKey) {
				return nil, fmt.Errorf("import key %d (%s): %w", i, r.uuid, hsmapi.ErrKeyNameInUse)
			}
			if k.hss != nil {
				b, err := history()
				if err != nil {
					return nil, err
				}
				same, err := h.hashsigPresent(b, old, k)
				if err != nil {
					return nil, fmt.Errorf("import key %d (%s): %w", i, r.uuid, err)
				}
				if !same {
					conflicts = append(conflicts, fmt.Sprintf("key %d (%s): another part of HSS key %x is here under this UUID", i, r.uuid, k.hss.ID()))
					continue
				}
			}
			held[i] = old
			continue
		}
		if k.hss != nil {
			if first, twice := hssSeen[k.hss.ID()]; twice {
				return nil, fmt.Errorf("import key %d (%s): %w: key %d of the batch is a part of this HSS key too", i, r.uuid, hsmapi.ErrBadArguments, first)
			}
			hssSeen[k.hss.ID()] = i
			b, err := history()
			if err != nil {
				return nil, err
			}
			why, err := h.hashsigConflict(b, k)
			if err != nil {
				return nil, fmt.Errorf("import key %d (%s): %w", i, r.uuid, err)
			}
			if why != "" {
				conflicts = append(conflicts, fmt.Sprintf("key %d (%s): %s", i, r.uuid, why))
				continue
			}
		}
		held[i] = k
		newRecs, newKeys = append(newRecs, r), append(newKeys, k)
	}
	if len(conflicts) > 0 {
		return nil, fmt.Errorf("import: %w: %s", hsmapi.ErrHashsigRangeUsed, strings.Join(conflicts, "; "))
	}
	var records []keystore.Record
	if book != nil {
		var err error
		if records, err = h.historyUpdates(book, newKeys); err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
	}
	if err := h.store(s, newRecs, newKeys, records); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	return held, nil
}

// prepareImport decrypts and checks one key, storing nothing. Its label may
// be any bytes this HSM keeps (CheckRawLabel): a key arrives with the label
// it had, whatever a libhal client set there; the bundle's reader decides
// which labels a file may give as text.
func (s *Session) prepareImport(req hsmapi.ImportRequest) (*keyRecord, *key, error) {
	if err := checkFlags(req.Flags); err != nil {
		return nil, nil, err
	}
	if err := hsmapi.CheckRawLabel(req.Label); err != nil {
		return nil, nil, err
	}
	var priv any
	var pub crypto.PublicKey
	if len(req.Wrapped.EncryptedKey) == 0 {
		p, err := hsmapi.ParsePublicKey(req.PublicKey)
		if err != nil {
			return nil, nil, err
		}
		pub = p
	} else {
		var err error
		if priv, err = s.unwrap(req); err != nil {
			return nil, nil, err
		}
	}
	if err := checkAttributes(req.Attributes); err != nil {
		return nil, nil, err
	}
	if err := checkAttributeChange(s.User(), req.Flags, false, nil, attributeMap(req.Attributes)); err != nil {
		return nil, nil, err
	}
	r, k, err := recordFor(req.UUID, priv, pub, req.Flags, req.Label)
	if err != nil {
		return nil, nil, err
	}
	r.attrs, k.attrs = importedAttributes(req.Attributes), importedAttributes(req.Attributes)
	if err := pairwiseTest(k); err != nil {
		r.wipe()
		return nil, nil, err
	}
	if priv != nil && req.PublicKey != nil && !hsmapi.SamePublicKey(req.PublicKey, k.info.PublicKey) {
		r.wipe()
		return nil, nil, fmt.Errorf("%w: the unwrapped key does not match the public key given with it", hsmapi.ErrBadArguments)
	}
	return r, k, nil
}

// importedAttributes are the attributes an imported key is stored with:
// those it carried, but CKA_LOCAL false whatever they say, as of any key
// that arrives made elsewhere (and so neither always sensitive nor never
// extractable, which the module derives from it).
func importedAttributes(attrs []hsmapi.Attribute) map[uint32][]byte {
	m := attributeMap(attrs)
	if m == nil {
		m = map[uint32][]byte{}
	}
	m[hsmapi.CKALocal] = []byte{0}
	return m
}

// unwrap recovers a private key from an ImportRequest, checking its binding:
// a crypto.Signer or a *hashsig.PrivateKey.
func (s *Session) unwrap(req hsmapi.ImportRequest) (any, error) {
	kekek, err := s.key(req.KEKEKUUID)
	if err != nil {
		return nil, fmt.Errorf("KEKEK: %w", err)
	}
	rsaKEKEK, ok := kekek.priv.(*rsa.PrivateKey)
	if !ok || kekek.info.Type != hsmapi.KeyTypeRSAPrivate {
		return nil, fmt.Errorf("%w: KEKEK %s is %v, not an RSA private key", hsmapi.ErrUnsupportedKey, req.KEKEKUUID, kekek.info.Type)
	}
	if kekek.info.Flags&hsmapi.FlagKeyEncipherment == 0 {
		return nil, fmt.Errorf("%w: KEKEK %s lacks keyencipherment", hsmapi.ErrForbidden, req.KEKEKUUID)
	}
	if err := hsmapi.CheckKEKEKSize(&rsaKEKEK.PublicKey); err != nil {
		return nil, err
	}
	var kek []byte
	err = kekek.use(func() (err error) {
		kek, err = decryptKEK(s.h.board.TRNG, rsaKEKEK, req.Encryption, req.Wrapped.EncryptedKEK)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	der, err := unwrapPKCS8(kek, req.Wrapped.EncryptedKey)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	if req.Binding != nil {
		if err := checkTag(kek, req.Binding, req.Wrapped.Tag); err != nil {
			return nil, err
		}
	}
	signer, hss, err := parsePrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("unwrapped key: %w", err)
	}
	if hss != nil {
		return hss, nil
	}
	return signer, nil
}
