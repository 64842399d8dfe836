package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/hsmkit/cryptech-backup/hsm"
)

var signCommand = &command{
	name:     "sign",
	args:     "--key UUID [-i FILE] [-o FILE]",
	summary:  "sign the SHA-256 of a file (RSA PKCS#1 v1.5, ECDSA DER: what openssl dgst -verify checks), or with an HSS key the file itself (RFC 8554)",
	needsHSM: true,
	examples: `  cryptech-backup sign --key 6f1c... -i message.txt -o message.sig
  openssl dgst -sha256 -verify pub.pem -signature message.sig message.txt
`,
	define: func(fs *flag.FlagSet) runFunc {
		var keyID, in, out string
		var force bool
		fs.StringVar(&keyID, "key", "", "UUID of the signing key")
		addString(fs, &in, "i", "input", "", "file to sign (default stdin)")
		addString(fs, &out, "o", "output", "", "signature file (default stdout)")
		fs.BoolVar(&force, "force", false, "replace the output file if it exists")
		return func(ctx context.Context, e *env, c *call) error {
			id, err := keyFlag(c, keyID)
			if err != nil {
				return err
			}
			if err := checkOutputIsNotInput(out, in); err != nil {
				return err
			}
			// An HSS key spends a signature, which a refused output would lose.
			if err := e.checkOutput(out, force, true); err != nil {
				return err
			}
			return c.withToken(ctx, e, func(tok hsm.Token) error {
				data, opts, err := signedData(ctx, e, tok, id, in)
				if err != nil {
					return err
				}
				sig, err := tok.Sign(ctx, id, data, opts)
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
	},
}

var verifyCommand = &command{
	name:     "verify",
	args:     "--key UUID --sig FILE [-i FILE]",
	summary:  "check a signature made by sign; exit 0 if it verifies, 1 if not",
	needsHSM: true,
	define: func(fs *flag.FlagSet) runFunc {
		var keyID, in, sigFile string
		fs.StringVar(&keyID, "key", "", "UUID of the key")
		fs.StringVar(&sigFile, "sig", "", "signature file")
		addString(fs, &in, "i", "input", "", "signed file (default stdin)")
		return func(ctx context.Context, e *env, c *call) error {
			id, err := keyFlag(c, keyID)
			if err != nil {
				return err
			}
			if sigFile == "" {
				return usageError{"--sig FILE is required"}
			}
			sig, err := e.readInput(sigFile, maxSmallFile)
			if err != nil {
				return err
			}
			return c.withToken(ctx, e, func(tok hsm.Token) error {
				data, opts, err := signedData(ctx, e, tok, id, in)
				if err != nil {
					return err
				}
				err = tok.Verify(ctx, id, data, sig, opts)
				if errors.Is(err, hsm.ErrInvalidSignature) {
					return errInvalidSignature
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, "OK")
				return nil
			})
		}
	},
}

func keyFlag(c *call, keyID string) (hsm.UUID, error) {
	if err := noArgs(c); err != nil {
		return hsm.UUID{}, err
	}
	if keyID == "" {
		return hsm.UUID{}, usageError{"--key UUID is required"}
	}
	id, err := hsm.ParseUUID(keyID)
	if err != nil {
		return hsm.UUID{}, usageError{err.Error()}
	}
	return id, nil
}

// spentSignature says, on the line of an HSS signature's failed write (a
// full disk, a closed pipe), that the key used one of its signatures for
// it: the operator counts on them.
func spentSignature(ctx context.Context, tok hsm.Token, id hsm.UUID, err error) error {
	left := ""
	if k, kerr := tok.Key(ctx, id); kerr == nil && k.Hashsig != nil && !k.Hashsig.RemainingUnknown {
		left = fmt.Sprintf(" (%d left)", k.Hashsig.Remaining)
	}
	return fmt.Errorf("%w; the signature was made and lost: one signature of HSS key %s was used%s", err, id, left)
}

// signedData reads what a key signs: the SHA-256 of the input, or for an HSS
// key the input itself, which RFC 8554 signs whole.
func signedData(ctx context.Context, e *env, tok hsm.Token, id hsm.UUID, in string) ([]byte, crypto.SignerOpts, error) {
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

// checkOutputIsNotInput refuses an -o that names the -i file (a device such
// as /dev/null aside): the signature would replace the message.
func checkOutputIsNotInput(out, in string) error {
	if out != "" && out != "-" && in != "" && in != "-" && sameFile(out, in) && !isSpecialFile(out) {
		return usageError{"-o and -i name the same file: the signature would replace the message"}
	}
	return nil
}
