package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

var signCommand = &command{
	name:     "sign",
	args:     "--key UUID|LABEL [-i FILE] [-o FILE] [--force]",
	summary:  "sign the SHA-256 of a file (RSA PKCS#1 v1.5, ECDSA DER: what openssl dgst -verify checks), or with an HSS key the file itself (RFC 8554)",
	needsHSM: true,
	examples: `  cryptech-backup sign --key web -i message.txt -o message.sig
  cryptech-backup pubkey --key web -o pub.pem
  openssl dgst -sha256 -verify pub.pem -signature message.sig message.txt
`,
	define: defineSign,
}

// defineSign registers the flags of sign and returns what runs it.
func defineSign(fs *flag.FlagSet) runFunc {
	var keyID, in, out string
	var force bool
	fs.StringVar(&keyID, "key", "", keyUsage)
	addString(fs, &in, "i", "input", "", "file to sign (default stdin)")
	addString(fs, &out, "o", "output", "", "signature file (default stdout)")
	fs.BoolVar(&force, "force", false, "replace the output file if it exists")
	return func(ctx context.Context, e *env, c *call) error {
		if err := keyFlag(c, keyID); err != nil {
			return err
		}
		if err := checkOutputIsNotInput(out, in); err != nil {
			return err
		}
		// An HSS key spends a signature, which a refused output would lose.
		if err := e.checkOutput(out, force, true); err != nil {
			return err
		}
		return c.withToken(ctx, e, func(tok hsmapi.Token) error {
			id, err := findKey(ctx, tok, keyID)
			if err != nil {
				return err
			}
			data, opts, err := signedData(ctx, e, tok, id, in)
			if err != nil {
				return err
			}
			pctx, endProgress := e.hsmProgress(ctx, "sign"+buildingTrees, "leaves")
			sig, err := tok.Sign(pctx, id, data, opts)
			endProgress()
			if err != nil {
				return err
			}
			if err := e.output(out, sig, force, true); err != nil {
				// Only HSS keys sign the input itself, and only they spend.
				if opts.HashFunc() == 0 {
					return spentSignature(ctx, tok, id, err)
				}
				return err
			}
			return nil
		})
	}
}

var verifyCommand = &command{
	name:     "verify",
	args:     "--key UUID|LABEL --sig FILE [-i FILE]",
	summary:  "check a signature made by sign; exit 0 if it verifies, 1 if not",
	needsHSM: true,
	define:   defineVerify,
}

// defineVerify registers the flags of verify and returns what runs it.
func defineVerify(fs *flag.FlagSet) runFunc {
	var keyID, in, sigFile string
	fs.StringVar(&keyID, "key", "", keyUsage)
	fs.StringVar(&sigFile, "sig", "", "signature file")
	addString(fs, &in, "i", "input", "", "signed file (default stdin)")
	return func(ctx context.Context, e *env, c *call) error {
		if err := keyFlag(c, keyID); err != nil {
			return err
		}
		if sigFile == "" {
			return usageError{"--sig FILE is required"}
		}
		sig, err := e.readInput(sigFile, maxSmallFile)
		if err != nil {
			return err
		}
		return c.withToken(ctx, e, func(tok hsmapi.Token) error {
			id, err := findKey(ctx, tok, keyID)
			if err != nil {
				return err
			}
			data, opts, err := signedData(ctx, e, tok, id, in)
			if err != nil {
				return err
			}
			err = tok.Verify(ctx, id, data, sig, opts)
			if errors.Is(err, hsmapi.ErrInvalidSignature) {
				return errInvalidSignature
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "OK")
			return nil
		})
	}
}

// keyUsage is the help of every --key flag.
const keyUsage = "the key: its UUID (the last line keygen printed), or its label if no other key has it"

// keyFlag checks that --key was given, and nothing else on the line.
func keyFlag(c *call, keyID string) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if keyID == "" {
		return usageError{"--key UUID or --key LABEL is required"}
	}
	return nil
}

// findKey finds the key that --key names: by UUID, or else by label, when
// exactly one key has it.
func findKey(ctx context.Context, tok hsmapi.Token, ref string) (hsmapi.UUID, error) {
	if id, err := hsmapi.ParseUUID(ref); err == nil {
		return id, nil
	}
	keys, err := tok.Keys(ctx, hsmapi.Filter{})
	if err != nil {
		return hsmapi.UUID{}, err
	}
	var found []hsmapi.UUID
	for _, k := range keys {
		if k.Label == ref {
			found = append(found, k.UUID)
		}
	}
	if len(found) != 1 {
		return hsmapi.UUID{}, keyRefError{ref, found}
	}
	return found[0], nil
}

// keyRefError: --key is neither a UUID nor the label of exactly one key.
type keyRefError struct {
	ref     string
	matches []hsmapi.UUID
}

func (k keyRefError) Error() string {
	if len(k.matches) == 0 {
		return fmt.Sprintf("--key %q: no key has this label, and it is not a UUID", k.ref)
	}
	ids := make([]string, len(k.matches))
	for i, id := range k.matches {
		ids[i] = id.String()
	}
	return fmt.Sprintf("--key %q: %d keys have this label: %s", k.ref, len(k.matches), strings.Join(ids, ", "))
}

// hint says what to do instead.
func (k keyRefError) hint() string {
	if len(k.matches) == 0 {
		return progName + " list shows each key's UUID and label"
	}
	return "name one by its UUID: --key UUID"
}

// spentSignature says, on the line of an HSS signature's failed write (a
// full disk, a closed pipe), that the key used one of its signatures for
// it: the operator counts on them.
func spentSignature(ctx context.Context, tok hsmapi.Token, id hsmapi.UUID, err error) error {
	left := ""
	if k, kerr := tok.Key(ctx, id); kerr == nil && k.Hashsig != nil && !k.Hashsig.RemainingUnknown {
		left = fmt.Sprintf(" (%d left)", k.Hashsig.Remaining)
	}
	return fmt.Errorf("%w; the signature was made and lost: one signature of HSS key %s was used%s", err, id, left)
}

// signedData reads what a key signs: the SHA-256 of the input, or for an HSS
// key the input itself, which RFC 8554 signs whole.
func signedData(ctx context.Context, e *env, tok hsmapi.Token, id hsmapi.UUID, in string) ([]byte, crypto.SignerOpts, error) {
	k, err := tok.Key(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if k.Hashsig != nil {
		msg, err := e.readInput(in, maxInput)
		return msg, crypto.Hash(0), err
	}
	digest, err := digestOf(e, in)
	return digest, crypto.SHA256, err
}

func digestOf(e *env, path string) ([]byte, error) {
	r, _, done, err := e.input(path)
	if err != nil {
		return nil, err
	}
	defer done()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, unwrapPathError(err))
	}
	return h.Sum(nil), nil
}
