package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/internal/hsskeyfile"
)

var hashsigCommand = &command{
	name:    "hashsig",
	summary: "RFC 8554 hash-based signatures on raw files, for interoperability",
	subcommands: []*command{
		hashsigKeygenCommand,
		hashsigSignCommand,
		hashsigVerifyCommand,
	},
}

// levelFlags are the flags that choose an HSS key's parameters.
type levelFlags struct {
	levels     int
	lms, lmots string
}

func (lf *levelFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&lf.levels, "levels", 1, "number of HSS levels, 1 to 8")
	fs.StringVar(&lf.lms, "lms", "sha256-m32-h10", "LMS type of every level, or a comma-separated list, top first (types below)")
	fs.StringVar(&lf.lmots, "lmots", "sha256-n32-w4", "LM-OTS type of every level, or a comma-separated list (types below)")
}

// hashsigTypes lists the LMS and LM-OTS types, for the help of the commands
// that make HSS keys.
func hashsigTypes() string {
	var lmsNames, otsNames []string
	for _, t := range hashsig.LMSTypes() {
		lmsNames = append(lmsNames, t.String())
	}
	for _, t := range hashsig.LMOTSTypes() {
		otsNames = append(otsNames, t.String())
	}
	return "LMS types (--lms): " + strings.Join(lmsNames, ", ") + "\n\nLM-OTS types (--lmots): " + strings.Join(otsNames, ", ") + "\n"
}

// parse turns the flags into levels, top first.
func (lf *levelFlags) parse() ([]hashsig.Level, error) {
	if lf.levels < 1 || lf.levels > hashsig.MaxLevels {
		return nil, usageError{fmt.Sprintf("--levels takes 1 to %d", hashsig.MaxLevels)}
	}
	lmsList, otsList := strings.Split(lf.lms, ","), strings.Split(lf.lmots, ",")
	for _, list := range [][]string{lmsList, otsList} {
		if len(list) != 1 && len(list) != lf.levels {
			return nil, usageError{fmt.Sprintf("--lms and --lmots take one type or %d", lf.levels)}
		}
	}
	levels := make([]hashsig.Level, lf.levels)
	for i := range levels {
		lmsName, otsName := pick(lmsList, i), pick(otsList, i)
		var err error
		if levels[i].LMS, err = hashsig.ParseLMSType(lmsName); err != nil {
			return nil, usageError{err.Error()}
		}
		if levels[i].LMOTS, err = hashsig.ParseLMOTSType(otsName); err != nil {
			return nil, usageError{err.Error()}
		}
	}
	if err := hashsig.CheckLevels(levels); err != nil {
		return nil, usageError{strings.TrimPrefix(err.Error(), "hashsig: bad parameters: ")}
	}
	return levels, nil
}

// pick is list[i], or list[0] when the list has one entry for all levels.
func pick(list []string, i int) string {
	if len(list) == 1 {
		return strings.TrimSpace(list[0])
	}
	return strings.TrimSpace(list[i])
}

var hashsigKeygenCommand = &command{
	name:    "keygen",
	args:    "--levels L --lms TYPE --lmots TYPE --priv FILE --pub FILE [--force]",
	summary: "generate an HSS key: the private key file (seed, identifier, parameters, range), its tree cache FILE.cache and the RFC 8554 public key",
	notes:   hashsigTypes(),
	examples: `  cryptech-backup hashsig keygen --levels 2 --lms sha256-m32-h5 --lmots sha256-n32-w8 --priv key.prv --pub key.pub
`,
	define: defineHashsigKeygen,
}

// defineHashsigKeygen registers the flags of hashsigKeygen and returns what runs it.
func defineHashsigKeygen(fs *flag.FlagSet) runFunc {
	var lf levelFlags
	var priv, pub string
	var force bool
	lf.register(fs)
	fs.StringVar(&priv, "priv", "", "private key file to write (mode 0600)")
	fs.StringVar(&pub, "pub", "", "public key file to write: the raw RFC 8554 public key")
	fs.BoolVar(&force, "force", false, "replace existing files (a replaced private key's remaining signatures are lost)")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		levels, err := lf.parse()
		if err != nil {
			return err
		}
		if priv == "" || pub == "" {
			return usageError{"--priv FILE and --pub FILE are required"}
		}
		if priv == "-" {
			return usageError{"--priv takes a file: a private key is never written to stdout"}
		}
		if sameFile(priv, pub) {
			return usageError{"--priv and --pub name the same file"}
		}
		// Both files can be written before minutes go into the trees.
		if fi, err := os.Stat(priv); err == nil && !fi.Mode().IsRegular() && !fi.IsDir() {
			return fmt.Errorf("%s: not a regular file", priv)
		}
		if err := e.checkOutput(priv, force, false); err != nil {
			return err
		}
		if err := e.checkOutput(pub, force, true); err != nil {
			return err
		}
		report, endProgress := e.progress("hashsig keygen"+buildingTrees, "leaves")
		sk, err := hashsig.GenerateKeyProgress(nil, levels, nil, report)
		endProgress()
		if errors.Is(err, hashsig.ErrBadParameters) {
			return usageError{err.Error()}
		}
		if err != nil {
			return err
		}
		defer sk.Wipe()
		state, _ := sk.MarshalBinary()
		defer clear(state)
		if err := hsskeyfile.Create(priv, state, force); err != nil {
			return fmt.Errorf("write %s: %w", priv, existsError(err))
		}
		if err := e.output(pub, sk.Public().Bytes(), force, true); err != nil {
			// A private key without its public key is of no use.
			return errors.Join(err, hsskeyfile.Remove(priv, state))
		}
		if err := hsskeyfile.WriteCache(priv, sk); err != nil {
			e.warn("%s: %v; the first signature builds the trees", hsskeyfile.CachePath(priv), err)
		}
		fmt.Fprintf(e.stderr, "%s: HSS key with %d signatures; keep %s secret and never copy it to sign elsewhere\n", progName, sk.Remaining(), priv)
		return nil
	}
}

var hashsigSignCommand = &command{
	name:    "sign",
	args:    "--priv FILE [-i FILE] [-o FILE] [--force]",
	summary: "sign a file; the key file is advanced and written back before the signature is released; FILE.cache spares rebuilding the trees",
	examples: `  cryptech-backup hashsig sign --priv key.prv -i msg -o msg.sig
`,
	define: defineHashsigSign,
}

// defineHashsigSign registers the flags of hashsigSign and returns what runs it.
func defineHashsigSign(fs *flag.FlagSet) runFunc {
	var priv, in, out string
	var force bool
	fs.StringVar(&priv, "priv", "", "private key file")
	addString(fs, &in, "i", "input", "", "file to sign (default stdin)")
	addString(fs, &out, "o", "output", "", "signature file (default stdout)")
	fs.BoolVar(&force, "force", false, "replace the output file if it exists")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		if priv == "" {
			return usageError{"--priv FILE is required"}
		}
		// A signature written over the key would destroy it; over the
		// message, lose it.
		if out != "" && out != "-" && sameFile(out, priv) {
			return usageError{"-o and --priv name the same file: the signature would replace the key"}
		}
		if err := checkOutputIsNotInput(out, in); err != nil {
			return err
		}
		// The key advances before the signature is written: make sure
		// it can be.
		if err := e.checkOutput(out, force, true); err != nil {
			return err
		}
		msg, err := e.readInput(in, maxInput)
		if err != nil {
			return err
		}
		report, endProgress := e.progress("hashsig sign"+buildingTrees, "leaves")
		sig, err := hsskeyfile.Signer{Progress: report, Warn: func(w string) { e.warn("%s", w) }}.Sign(priv, msg)
		endProgress()
		if err != nil {
			return err
		}
		return e.output(out, sig, force, true)
	}
}

var hashsigVerifyCommand = &command{
	name:    "verify",
	args:    "--pub FILE --sig FILE [-i FILE]",
	summary: "check an RFC 8554 signature; exit 0 if it verifies, 1 if not",
	examples: `  cryptech-backup hashsig verify --pub key.pub --sig msg.sig -i msg
`,
	define: defineHashsigVerify,
}

// defineHashsigVerify registers the flags of hashsigVerify and returns what runs it.
func defineHashsigVerify(fs *flag.FlagSet) runFunc {
	var pub, sigFile, in string
	fs.StringVar(&pub, "pub", "", "public key: raw RFC 8554, or a SubjectPublicKeyInfo (DER or PEM)")
	fs.StringVar(&sigFile, "sig", "", "signature file")
	addString(fs, &in, "i", "input", "", "signed file (default stdin)")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		if pub == "" || sigFile == "" {
			return usageError{"--pub FILE and --sig FILE are required"}
		}
		pkData, err := readFileLimited(pub, maxPublicKey)
		if err != nil {
			return err
		}
		pk, err := parseHashsigPublicKey(pkData)
		if err != nil {
			return fmt.Errorf("%s: %w", pub, err)
		}
		sig, err := e.readInput(sigFile, maxSmallFile)
		if err != nil {
			return err
		}
		msg, err := e.readInput(in, maxInput)
		if err != nil {
			return err
		}
		if err := pk.Verify(msg, sig); err != nil {
			return invalidSignature(err)
		}
		fmt.Fprintln(e.stdout, "OK")
		return nil
	}
}

// invalidSignature says why a signature was refused, without repeating
// "invalid signature".
func invalidSignature(err error) error {
	why := strings.TrimPrefix(err.Error(), "hashsig: ")
	why = strings.TrimPrefix(strings.TrimPrefix(why, "invalid signature"), ": ")
	if why == "" {
		return errInvalidSignature
	}
	return fmt.Errorf("%w: %s", errInvalidSignature, why)
}

// parseHashsigPublicKey accepts the raw RFC 8554 public key or a
// SubjectPublicKeyInfo, DER or PEM.
func parseHashsigPublicKey(data []byte) (*hashsig.PublicKey, error) {
	if block, _ := pem.Decode(data); block != nil && bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		data = block.Bytes
	}
	if pk, err := hashsig.ParsePublicKey(data); err == nil {
		return pk, nil
	}
	return hashsig.ParsePKIXPublicKey(data)
}
