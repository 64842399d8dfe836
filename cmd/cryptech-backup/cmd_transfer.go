package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

var setupCommand = &command{
	name:     "setup",
	args:     "[-n|--new] [-u|--uuid UUID] [-k|--keylen 2048] [-o FILE] [--force] | -s|--soft [--legacy-kek] [--passphrase-file FILE] [-k|--keylen 2048] [-o FILE] [--force]",
	summary:  "on the destination: find or make a KEKEK and write its public half",
	needsHSM: true,
	examples: `  cryptech-backup setup --hsm ./dst -o kekek.json
  cryptech-backup setup --soft -o kekek.json       # no HSM: the KEKEK's private half goes in the file, under a passphrase
`,
	define: defineSetup,
}

// defineSetup registers the flags of setup and returns what runs it.
func defineSetup(fs *flag.FlagSet) runFunc {
	var newKEKEK, force, soft, legacy bool
	var uuid, out, passFile string
	var bits int
	addBool(fs, &newKEKEK, "n", "new", "make a new KEKEK even if one exists")
	addString(fs, &uuid, "u", "uuid", "", "UUID of an existing KEKEK to use")
	fs.IntVar(&bits, "keylen", backup.DefaultKEKEKBits, "size of a new KEKEK: 2048, 3072 or 4096")
	fs.IntVar(&bits, "k", backup.DefaultKEKEKBits, "same as --keylen")
	addString(fs, &out, "o", "output", "", "output file (default stdout)")
	fs.BoolVar(&force, "force", false, "replace the output file if it exists")
	addBool(fs, &soft, "s", "soft", "make the KEKEK in software, with no HSM, and put its private half in the file under a passphrase (cryptech_backup's --soft-backup)")
	fs.BoolVar(&legacy, "legacy-kek", false, "with --soft: cryptech_backup's file and KDF (PBKDF2, 8000 iterations), which it can restore; weak against guessing")
	fs.StringVar(&passFile, "passphrase-file", "", "with --soft: read the passphrase from the first line of this file (else it is prompted for, twice)")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		opts := backup.SetupOptions{New: newKEKEK, Bits: bits}
		keylen := c.given("keylen") || c.given("k")
		if keylen && bits != 2048 && bits != 3072 && bits != 4096 {
			return usageError{"--keylen takes 2048, 3072 or 4096"}
		}
		if soft {
			return setupSoft(ctx, e, c, backup.SoftOptions{Bits: bits, Legacy: legacy}, passFile, out, force)
		}
		for _, f := range []string{"legacy-kek", "passphrase-file"} {
			if c.given(f) {
				return usageError{fmt.Sprintf("--%s only means something with --soft", f)}
			}
		}
		if uuid != "" {
			if keylen {
				return usageError{"--keylen sizes a new KEKEK; --uuid names an existing one"}
			}
			if newKEKEK {
				return usageError{"--new and --uuid exclude each other"}
			}
			id, err := hsmapi.ParseUUID(uuid)
			if err != nil {
				return usageError{err.Error()}
			}
			opts.UUID = id
		}
		// Setup may generate a KEKEK.
		if err := e.checkOutput(out, force, false); err != nil {
			return err
		}
		return c.withToken(ctx, e, func(tok hsmapi.Token) error {
			f, err := backup.Setup(ctx, tok, opts)
			if err != nil {
				return err
			}
			// Without --new an existing KEKEK is kept: a --keylen it
			// does not have would be silently ignored.
			if keylen && !newKEKEK {
				if pub, err := hsmapi.ParseKEKEK(f.KEKEKPubkey); err == nil && pub.Key().N.BitLen() != bits {
					return usageError{fmt.Sprintf("--keylen %d: the HSM's KEKEK %s has %d bits and is kept; add --new to make a %d-bit one", bits, f.KEKEKUUID, pub.Key().N.BitLen(), bits)}
				}
			}
			if err := writeJSON(e, out, f, force); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "%s: KEKEK %s ready, fingerprint %s; it can undo %v\n",
				progName, f.KEKEKUUID, backup.Fingerprint(f.KEKEKPubkey), f.KEKEncryptions)
			return nil
		})
	}
}

var exportCommand = &command{
	name:     "export",
	args:     "[-i kekek.json] [-o backup.json] [--force] [--legacy-kek] [--skip-damaged] [--skip-exhausted] [--skip-hss | --hss-single-restore]",
	summary:  "on the source: wrap every exportable key for the KEKEK",
	needsHSM: true,
	examples: `  cryptech-backup export --hsm ./src -i kekek.json -o backup.json
`,
	define: defineExport,
}

// defineExport registers the flags of export and returns what runs it.
func defineExport(fs *flag.FlagSet) runFunc {
	var in, out string
	var legacy, force, skipDamaged, skipExhausted, skipHSS, singleRestore bool
	addString(fs, &in, "i", "input", "", "KEKEK file from setup (default stdin)")
	addString(fs, &out, "o", "output", "", "bundle to write (default stdout)")
	fs.BoolVar(&legacy, "legacy-kek", false, "encrypt KEKs with RSA PKCS#1 v1.5 as libhal does, for real Cryptech HSMs (weak: padding oracles)")
	fs.BoolVar(&skipDamaged, "skip-damaged", false, "export the keys that can be read from an HSM with damaged flash blocks, or from a token whose private keys this tool cannot read whole (without it, such an export fails)")
	fs.BoolVar(&skipExhausted, "skip-exhausted", false, "leave out HSS keys with fewer than 2 signatures left, which cannot be split (without it, such an export fails)")
	fs.BoolVar(&skipHSS, "skip-hss", false, "leave out every HSS key (a warning names each)")
	fs.BoolVar(&singleRestore, "hss-single-restore", false, "for a soft KEKEK: export HSS keys, for a bundle that will be imported into ONE HSM only (each HSM that imports it signs with the same one-time indexes)")
	fs.BoolVar(&force, "force", false, "replace the output file if it exists")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		if skipHSS && singleRestore {
			return usageError{"--skip-hss leaves HSS keys out; --hss-single-restore exports them: give one"}
		}
		f, err := parseInput(e, in, kekekFileKind, backup.ReadKEKEKFile)
		if err != nil {
			return err
		}
		if singleRestore && !f.IsSoft() {
			return usageError{"--hss-single-restore: the KEKEK file is not for a soft KEKEK, whose bundles alone can be imported into more than one HSM"}
		}
		// Export splits every HSS key and keeps half: a bundle that
		// cannot be written would take the other half with it.
		if err := e.checkOutput(out, force, false); err != nil {
			return err
		}
		report, endProgress := e.progress("export", "keys")
		defer endProgress()
		opts := backup.ExportOptions{LegacyKEK: legacy, SkipDamaged: skipDamaged, SkipExhausted: skipExhausted,
			SkipHSS: skipHSS, HSSSingleRestore: singleRestore, Progress: report,
			Skipped: func(k hsmapi.KeyInfo, why error) {
				e.warn("HSS key %s left out: %v", k.UUID, why)
			}}
		return c.withToken(ctx, e, func(tok hsmapi.Token) error {
			// Once Export splits an HSS key it finishes, interrupted or
			// not, and the bundle holding the halves must be written:
			// an interrupt does not cut this short.
			release := e.hold()
			defer release()
			b, err := backup.Export(ctx, tok, f, opts)
			endProgress()
			if b == nil {
				if err == nil {
					err = errors.New("export returned no bundle")
				}
				return err
			}
			// A bundle Export returned is written even if the context
			// was cancelled meanwhile (writeJSON does not look at it).
			if err := writeJSON(e, out, b, force); err != nil {
				if n := countHashsig(b); n > 0 {
					// The halves were given away before the write: they are
					// lost, never used twice.
					return fmt.Errorf("%w; the %d HSS keys were split for this bundle: the source keeps its half of each, the other halves are lost", err, n)
				}
				return err
			}
			release()
			if err != nil {
				return err
			}
			if n := countHashsig(b); n > 0 && b.IsSoft() {
				e.warn("the bundle holds %d HSS keys for a soft KEKEK: import it into one HSM only, ever; a second HSM that imported it would sign with the same one-time indexes", n)
			}
			private := 0
			for i := range b.Keys {
				if b.Keys[i].IsPrivate() {
					private++
				}
			}
			kekek := "KEKEK " + b.KEKEKUUID
			if b.IsSoft() {
				kekek = "the soft KEKEK"
			}
			enc := b.KEKEncryption
			if enc == "" {
				enc = hsmapi.KEKPKCS1v15
			}
			fmt.Fprintf(e.stderr, "%s: exported %d keys (%d private, %d public) for %s, fingerprint %s; KEKs encrypted with %s\n",
				progName, len(b.Keys), private, len(b.Keys)-private, kekek, backup.Fingerprint(b.KEKEKPubkey), enc)
			return nil
		})
	}
}

var importCommand = &command{
	name:     "import",
	args:     "[-i backup.json] [--legacy-kek] [--passphrase-file FILE] [--json]",
	summary:  "on the destination: unwrap a bundle's keys into the keystore, all or none",
	needsHSM: true,
	examples: `  cryptech-backup import --hsm ./dst -i backup.json
  cryptech-backup import --hsm ./dst -i backup.json --passphrase-file pass.txt   # a bundle for a soft KEKEK
`,
	define: defineImport,
}

// defineImport registers the flags of import and returns what runs it.
func defineImport(fs *flag.FlagSet) runFunc {
	var in, passFile string
	var legacy, asJSON bool
	addString(fs, &in, "i", "input", "", "bundle from export (default stdin)")
	fs.BoolVar(&legacy, "legacy-kek", false, "accept RSA PKCS#1 v1.5 KEKs and bundles written by cryptech_backup (weak: padding oracles, no tags)")
	fs.BoolVar(&asJSON, "json", false, "print a JSON array of {uuid, status} instead of lines")
	fs.StringVar(&passFile, "passphrase-file", "", "for a bundle made for a soft KEKEK: read its passphrase from the first line of this file (else it is prompted for)")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		b, err := parseInput(e, in, bundleKind, backup.ReadBundle)
		if err != nil {
			return err
		}
		if passFile != "" && !b.IsSoft() {
			return usageError{"--passphrase-file: the bundle was not made for a soft KEKEK, so it needs no passphrase"}
		}
		opts := backup.ImportOptions{LegacyKEK: legacy, Passphrase: func(ctx context.Context) ([]byte, error) {
			return readPassphrase(ctx, e, passFile, false)
		}}
		return c.withToken(ctx, e, func(tok hsmapi.Token) error {
			pctx, endProgress := e.hsmProgress(ctx, "import", "keys")
			res, err := backup.Import(pctx, tok, b, opts)
			endProgress()
			if err != nil {
				return err
			}
			lines := []statusLine{}
			for _, r := range res {
				for _, w := range r.Warnings {
					e.warn("%s", w)
				}
				lines = append(lines, newStatusLine(r.UUID, r.Present, "imported"))
			}
			return printStatusLines(e, lines, asJSON)
		})
	}
}

// setupSoft writes a soft KEKEK file. No HSM takes part, so the flags
// that choose one are refused rather than ignored.
func setupSoft(ctx context.Context, e *env, c *call, opts backup.SoftOptions, passFile, out string, force bool) error {
	const why = "--soft makes the KEKEK in software and opens no HSM"
	for _, f := range []string{"new", "n", "uuid", "u"} {
		if c.given(f) {
			return usageError{fmt.Sprintf("%s: %s", dashed(f), why)}
		}
	}
	if err := c.noBackendFlag(why); err != nil {
		return err
	}
	if err := e.checkOutput(out, force, false); err != nil {
		return err
	}
	pass, err := readPassphrase(ctx, e, passFile, true)
	if err != nil {
		return err
	}
	defer clear(pass)
	f, err := backup.NewSoftKEKEK(pass, opts)
	if err != nil {
		return err
	}
	if err := writeJSON(e, out, f, force); err != nil {
		return err
	}
	kdf := "Argon2id"
	if opts.Legacy {
		kdf = "cryptech_backup's PBKDF2, 8000 iterations: keep the passphrase long"
	}
	fmt.Fprintf(e.stderr, "%s: soft KEKEK made in software, fingerprint %s; its private half is in the file under the passphrase (%s): keep both safe, apart\n",
		progName, backup.Fingerprint(f.KEKEKPubkey), kdf)
	return nil
}

// countHashsig counts a bundle's HSS private keys.
func countHashsig(b *backup.Bundle) int {
	n := 0
	for i := range b.Keys {
		if k, err := hsmapi.DescribePublicKey(b.Keys[i].SPKI, b.Keys[i].IsPrivate()); err == nil && k.Type == hsmapi.KeyTypeHashsigPrivate {
			n++
		}
	}
	return n
}

// statusLine is what import and restore print per key.
type statusLine struct {
	UUID   string `json:"uuid"`
	Status string `json:"status"`
}

func newStatusLine(id hsmapi.UUID, present bool, done string) statusLine {
	if present {
		done = "present"
	}
	return statusLine{id.String(), done}
}

// printStatusLines prints "STATUS UUID" lines, or a JSON array.
func printStatusLines(e *env, lines []statusLine, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(lines)
	}
	for _, l := range lines {
		fmt.Fprintln(e.stdout, l.Status, l.UUID)
	}
	return nil
}
