package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/quote"
)

// KEKEK key flags: an RSA key that may only encrypt keys, kept in the token.
const kekekFlags = hsmapi.FlagKeyEncipherment | hsmapi.FlagToken

// DefaultKEKEKBits is the size of a new KEKEK, as in cryptech_backup.
const DefaultKEKEKBits = 2048

// SetupOptions choose the KEKEK, as cryptech_backup's setup does.
type SetupOptions struct {
	// UUID names an existing KEKEK to use.
	UUID hsmapi.UUID
	// New forces a new KEKEK even if one exists.
	New bool
	// Bits is the size of a new KEKEK (DefaultKEKEKBits if zero).
	Bits int
}

// Setup prepares tok to receive keys: it finds a usable KEKEK (the one named,
// or an RSA private key with keyencipherment and token that only unwraps, see
// hsmapi.KEKEKVetter) or makes one, and describes it.
func Setup(ctx context.Context, tok hsmapi.Token, opts SetupOptions) (*KEKEKFile, error) {
	kekek, err := findKEKEK(ctx, tok, opts)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	encs, err := tok.KEKEncryptions(ctx)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	// PKCS#1 v1.5 is not offered: it is used only when both sides ask for it.
	// Each once, as a reader takes them.
	var offered []hsmapi.KEKEncryption
	for _, e := range encs {
		if e != hsmapi.KEKPKCS1v15 && !slices.Contains(offered, e) {
			offered = append(offered, e)
		}
	}
	encs = offered
	return &KEKEKFile{
		Comment:        "KEKEK public key",
		KEKEncryptions: encs,
		KEKEKPubkey:    kekek.PublicKey,
		KEKEKUUID:      kekek.UUID.String(),
		Version:        Version,
	}, nil
}

// kekekLabel is the label of the KEKEKs setup makes.
const kekekLabel = "KEKEK"

func findKEKEK(ctx context.Context, tok hsmapi.Token, opts SetupOptions) (hsmapi.KeyInfo, error) {
	vet, _ := tok.(hsmapi.KEKEKVetter)
	if !opts.UUID.IsZero() {
		k, err := tok.Key(ctx, opts.UUID)
		if err != nil {
			return hsmapi.KeyInfo{}, err
		}
		if err := checkKEKEK(k); err != nil {
			return hsmapi.KeyInfo{}, err
		}
		return k, refuseFlawed(ctx, vet, k)
	}
	if !opts.New {
		keys, err := tok.Keys(ctx, hsmapi.Filter{Type: hsmapi.KeyTypeRSAPrivate, Mask: kekekFlags, Flags: kekekFlags})
		if err != nil {
			return hsmapi.KeyInfo{}, err
		}
		// A KEKEK of this tool that does more than unwrap (as setup made
		// them before) is refused, not passed over: the operator must know
		// of it. Any other key, an application's that also unwraps, is
		// none of setup's business.
		var refused error
		for _, k := range keys {
			if checkKEKEK(k) != nil {
				continue
			}
			err := refuseFlawed(ctx, vet, k)
			switch {
			case err == nil:
				return k, nil
			case !errors.Is(err, hsmapi.ErrForbidden):
				return hsmapi.KeyInfo{}, err
			case looksLikeKEKEK(k):
				refused = err
			}
		}
		if refused != nil {
			return hsmapi.KeyInfo{}, refused
		}
	}
	bits := opts.Bits
	if bits == 0 {
		bits = DefaultKEKEKBits
	}
	if g, ok := tok.(hsmapi.KEKEKGenerator); ok {
		return g.GenerateKEKEK(ctx, bits, kekekLabel)
	}
	return tok.GenerateKey(ctx, hsmapi.GenerateRequest{
		Type: hsmapi.KeyTypeRSAPrivate, Bits: bits, Flags: kekekFlags, Label: kekekLabel,
	})
}

// looksLikeKEKEK tells a KEKEK that setup made (label KEKEK, unwraps, does
// not sign) from an application's key that unwraps too.
func looksLikeKEKEK(k hsmapi.KeyInfo) bool {
	return k.Label == kekekLabel && k.Flags&hsmapi.FlagKeyEncipherment != 0 && k.Flags&hsmapi.FlagDigitalSignature == 0
}

// refuseFlawed refuses a key whose token tells (hsmapi.KEKEKVetter) that it would
// give a bundle's KEK away, saying how, and what to do.
func refuseFlawed(ctx context.Context, vet hsmapi.KEKEKVetter, k hsmapi.KeyInfo) error {
	if vet == nil {
		return nil
	}
	flaws, err := vet.KEKEKFlaws(ctx, k.UUID)
	if err != nil || len(flaws) == 0 {
		return err
	}
	advice := "run setup with --new to make a KEKEK that only unwraps"
	if looksLikeKEKEK(k) {
		advice += ", and delete this one once every bundle made for it is imported"
	}
	return fmt.Errorf("%w: key %s (label %s) cannot serve as a KEKEK: anyone with the token's user PIN could read the keys of a bundle made for it, as it %s; %s",
		hsmapi.ErrForbidden, k.UUID, quote.Short(k.Label), strings.Join(flaws, ", "), advice)
}

// checkKEKEK tells why a key cannot serve as a KEKEK.
func checkKEKEK(k hsmapi.KeyInfo) error {
	if k.Type != hsmapi.KeyTypeRSAPrivate {
		return fmt.Errorf("%w: KEKEK %s is %v, not an RSA private key", hsmapi.ErrUnsupportedKey, k.UUID, k.Type)
	}
	if k.Flags&hsmapi.FlagKeyEncipherment == 0 {
		return fmt.Errorf("%w: KEKEK %s lacks keyencipherment", hsmapi.ErrForbidden, k.UUID)
	}
	if k.Bits < 2048 {
		return fmt.Errorf("%w: KEKEK %s has %d bits, at least 2048 needed", hsmapi.ErrUnsupportedKey, k.UUID, k.Bits)
	}
	return nil
}
