package backup

import (
	"context"
	"errors"
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

// kekekGenerator is a token that makes a better KEKEK than GenerateKey
// with the KEKEK's flags can: a PKCS#11 token, whose KEKEK then cannot be
// changed and keeps what it unwraps from being read.
type kekekGenerator interface {
	GenerateKEKEK(ctx context.Context, bits int, label string) (hsm.KeyInfo, error)
}

func findKEKEK(ctx context.Context, tok hsm.Token, opts SetupOptions) (hsm.KeyInfo, error) {
	if !opts.UUID.IsZero() {
		k, err := tok.Key(ctx, opts.UUID)
		if err != nil {
			return hsm.KeyInfo{}, err
		}
		if err := checkKEKEK(k); err != nil {
			return hsm.KeyInfo{}, err
		}
		return k, checkKEKEKUses(ctx, tok, k)
	}
	if !opts.New {
		keys, err := tok.Keys(ctx, hsm.Filter{Type: hsm.KeyTypeRSAPrivate, Mask: kekekFlags, Flags: kekekFlags})
		if err != nil {
			return hsm.KeyInfo{}, err
		}
		// A KEKEK that does more than unwrap is refused, not passed over:
		// the operator must know of it.
		var refused error
		for _, k := range keys {
			if checkKEKEK(k) != nil {
				continue
			}
			if err := checkKEKEKUses(ctx, tok, k); err != nil {
				refused = err
				continue
			}
			return k, nil
		}
		if refused != nil {
			return hsm.KeyInfo{}, refused
		}
	}
	bits := opts.Bits
	if bits == 0 {
		bits = DefaultKEKEKBits
	}
	if g, ok := tok.(kekekGenerator); ok {
		return g.GenerateKEKEK(ctx, bits, "KEKEK")
	}
	return tok.GenerateKey(ctx, hsm.GenerateRequest{
		Type: hsm.KeyTypeRSAPrivate, Bits: bits, Flags: kekekFlags, Label: "KEKEK",
	})
}

// checkKEKEKUses refuses a KEKEK that does more than unwrap, where its
// token tells (in its PKCS#11 attributes): with CKA_DECRYPT anyone who has
// the token's user PIN decrypts a bundle's KEK (C_Decrypt) and with it the
// bundle's keys (openssl enc -d -id-aes256-wrap-pad); a KEKEK that is
// extractable, or not sensitive, can itself be read.
func checkKEKEKUses(ctx context.Context, tok hsm.Token, k hsm.KeyInfo) error {
	ar, ok := tok.(hsm.AttributeReader)
	if !ok {
		return nil
	}
	attrs, err := ar.KeyAttributes(ctx, k.UUID)
	if errors.Is(err, hsm.ErrUnsupported) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, a := range attrs {
		var why string
		on := len(a.Value) == 1 && a.Value[0] != 0
		switch {
		case a.Type == hsm.CKADecrypt && on:
			why = "has CKA_DECRYPT: anyone with the token's user PIN can decrypt a bundle's KEK with it (C_Decrypt) and so read the bundle's keys"
		case a.Type == hsm.CKAExtractable && on:
			why = "is extractable (CKA_EXTRACTABLE): anyone with the token's user PIN can wrap it out and read it"
		case a.Type == hsm.CKASensitive && !on:
			why = "is not sensitive (CKA_SENSITIVE false): anyone with the token's user PIN can read it"
		default:
			continue
		}
		return fmt.Errorf("%w: KEKEK %s %s; run setup with --new to make a KEKEK that only unwraps, and delete this one once every bundle made for it is imported", hsm.ErrForbidden, k.UUID, why)
	}
	return nil
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
