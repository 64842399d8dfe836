package backup

import (
	"context"
	"fmt"
	"slices"

	"github.com/hsmkit/cryptech-backup/hsm"
)

// KEKEK key flags: an RSA key that may only encrypt keys, kept in the token.
const kekekFlags = hsm.FlagKeyEncipherment | hsm.FlagToken

// DefaultKEKEKBits is the size of a new KEKEK, as in cryptech_backup.
const DefaultKEKEKBits = 2048

// SetupOptions choose the KEKEK, as cryptech_backup's setup does.
type SetupOptions struct {
	// UUID names an existing KEKEK to use.
	UUID hsm.UUID
	// New forces a new KEKEK even if one exists.
	New bool
	// Bits is the size of a new KEKEK (DefaultKEKEKBits if zero).
	Bits int
}

// Setup prepares tok to receive keys: it finds a usable KEKEK (the one named,
// or any RSA private key with keyencipherment and token) or makes one, and
// describes it.
func Setup(ctx context.Context, tok hsm.Token, opts SetupOptions) (*KEKEKFile, error) {
	kekek, err := findKEKEK(ctx, tok, opts)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	encs, err := tok.KEKEncryptions(ctx)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	// PKCS#1 v1.5 is not offered: it is used only when both sides ask for it.
	encs = slices.DeleteFunc(slices.Clone(encs), func(e hsm.KEKEncryption) bool { return e == hsm.KEKPKCS1v15 })
	return &KEKEKFile{
		Comment:        "KEKEK public key",
		KEKEncryptions: encs,
		KEKEKPubkey:    kekek.PublicKey,
		KEKEKUUID:      kekek.UUID.String(),
		Version:        Version,
	}, nil
}

func findKEKEK(ctx context.Context, tok hsm.Token, opts SetupOptions) (hsm.KeyInfo, error) {
	if !opts.UUID.IsZero() {
		k, err := tok.Key(ctx, opts.UUID)
		if err != nil {
			return hsm.KeyInfo{}, err
		}
		return k, checkKEKEK(k)
	}
	if !opts.New {
		keys, err := tok.Keys(ctx, hsm.Filter{Type: hsm.KeyTypeRSAPrivate, Mask: kekekFlags, Flags: kekekFlags})
		if err != nil {
			return hsm.KeyInfo{}, err
		}
		for _, k := range keys {
			if checkKEKEK(k) == nil {
				return k, nil
			}
		}
	}
	bits := opts.Bits
	if bits == 0 {
		bits = DefaultKEKEKBits
	}
	return tok.GenerateKey(ctx, hsm.GenerateRequest{
		Type: hsm.KeyTypeRSAPrivate, Bits: bits, Flags: kekekFlags, Label: "KEKEK",
	})
}

// checkKEKEK tells why a key cannot serve as a KEKEK.
func checkKEKEK(k hsm.KeyInfo) error {
	if k.Type != hsm.KeyTypeRSAPrivate {
		return fmt.Errorf("%w: KEKEK %s is %v, not an RSA private key", hsm.ErrUnsupportedKey, k.UUID, k.Type)
	}
	if k.Flags&hsm.FlagKeyEncipherment == 0 {
		return fmt.Errorf("%w: KEKEK %s lacks keyencipherment", hsm.ErrForbidden, k.UUID)
	}
	if k.Bits < 2048 {
		return fmt.Errorf("%w: KEKEK %s has %d bits, at least 2048 needed", hsm.ErrUnsupportedKey, k.UUID, k.Bits)
	}
	return nil
}
