package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

var trustCommand = &command{
	name:     "trust",
	args:     "[-i kekek.json] [--untrust]",
	summary:  "on the source: trust a destination's KEKEK, so that keys with CKA_WRAP_WITH_TRUSTED can be exported to it",
	needsHSM: true,
	examples: `  cryptech-backup trust --hsm ./src -i kekek.json
  cryptech-backup trust --hsm ./src -i kekek.json --untrust
`,
	notes: `trust stores the KEKEK's public key on this HSM (if no key here has it)
and marks it CKA_TRUSTED, logged in as wheel: the HSM's key policy lets
the security officer or wheel set CKA_TRUSTED (docs/key-policy.md). A
PKCS#11 token's (--module) is set by its SO, not by this command.
`,
	define: defineTrust,
}

// defineTrust registers the flags of trust and returns what runs it.
func defineTrust(fs *flag.FlagSet) runFunc {
	var in string
	var untrust bool
	addString(fs, &in, "i", "input", "", "KEKEK file from setup on the destination (default stdin)")
	fs.BoolVar(&untrust, "untrust", false, "take the trust back: clear CKA_TRUSTED on every key of this HSM with the KEKEK's public key")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		if c.module != "" {
			return usageError{"trust: a PKCS#11 token's CKA_TRUSTED is set by its security officer (C_SetAttributeValue in an SO session), not with --module"}
		}
		f, err := parseInput(e, in, kekekFileKind, backup.ReadKEKEKFile)
		if err != nil {
			return err
		}
		kekek, err := hsmapi.ParseKEKEK(f.KEKEKPubkey)
		if err != nil {
			return fmt.Errorf("KEKEK file: %w", err)
		}
		fp := backup.Fingerprint(f.KEKEKPubkey)
		return c.withToken(ctx, e, func(tok hsmapi.Token) error {
			ts, ok := tok.(hsmapi.TrustSetter)
			if !ok {
				return fmt.Errorf("trust: %w: this HSM cannot mark a key trusted", hsmapi.ErrUnsupported)
			}
			keys, err := kekekKeys(ctx, tok, kekek)
			if err != nil {
				return err
			}
			if untrust {
				for _, id := range keys {
					if err := ts.SetTrusted(ctx, id, false); err != nil {
						return fmt.Errorf("untrust %s: %w", id, err)
					}
				}
				fmt.Fprintf(e.stderr, "%s: KEKEK fingerprint %s untrusted (%d keys of this HSM had its public key)\n", progName, fp, len(keys))
				return nil
			}
			if len(keys) == 0 {
				res, err := tok.Import(ctx, hsmapi.ImportRequest{PublicKey: kekek.SPKI(), Label: "kekek " + fp,
					Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken})
				if err != nil {
					return fmt.Errorf("store the KEKEK's public key: %w", err)
				}
				keys = []hsmapi.UUID{res.Key.UUID}
			}
			if err := ts.SetTrusted(ctx, keys[0], true); err != nil {
				return fmt.Errorf("trust %s: %w", keys[0], err)
			}
			fmt.Fprintf(e.stderr, "%s: KEKEK fingerprint %s trusted: key %s\n", progName, fp, keys[0])
			return nil
		})
	}
}

// kekekKeys lists the keys of tok whose public key is the KEKEK's: a
// public key alone stored for it, or a key pair.
func kekekKeys(ctx context.Context, tok hsmapi.Token, kekek *hsmapi.PublicKEKEK) ([]hsmapi.UUID, error) {
	var out []hsmapi.UUID
	for _, t := range []hsmapi.KeyType{hsmapi.KeyTypeRSAPublic, hsmapi.KeyTypeRSAPrivate} {
		keys, err := tok.Keys(ctx, hsmapi.Filter{Type: t})
		if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		for _, k := range keys {
			pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
			if err == nil && kekek.Key().Equal(pub) {
				out = append(out, k.UUID)
			}
		}
	}
	return out, nil
}
