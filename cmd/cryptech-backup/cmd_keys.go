package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

var keygenCommand = &command{
	name:     "keygen",
	args:     "rsa|ec|hashsig [--bits N] [--curve C] [--levels L --lms T --lmots T] [--exportable] [--label L]",
	summary:  "generate a key pair in the HSM; prints its UUID",
	needsHSM: true,
	examples: `  cryptech-backup keygen rsa --bits 3072 --exportable --label web-1
  cryptech-backup keygen ec --curve p384
  cryptech-backup keygen hashsig --levels 2 --lms sha256-m32-h10 --lmots sha256-n32-w4 --exportable
`,
	define: defineKeygen,
}

// defineKeygen registers the flags of keygen and returns what runs it.
func defineKeygen(fs *flag.FlagSet) runFunc {
	var bits int
	var curve, label string
	var exportable bool
	var lf levelFlags
	fs.IntVar(&bits, "bits", 2048, "RSA modulus size: 2048, 3072 or 4096")
	fs.StringVar(&curve, "curve", "p256", "EC curve: p256, p384 or p521")
	lf.register(fs)
	fs.BoolVar(&exportable, "exportable", false, "allow the key to be exported (wrapped) to another HSM")
	fs.StringVar(&label, "label", "", "a label for the key")
	return func(ctx context.Context, e *env, c *call) error {
		// The key type comes first, then its flags.
		args := c.fs.Args()
		if len(args) == 0 {
			return usageError{"name the key type: rsa, ec or hashsig"}
		}
		kind := args[0]
		// The help of one key type shows its flags only.
		switch kind {
		case "rsa":
			c.helpHidden = map[string]bool{"curve": true, "levels": true, "lms": true, "lmots": true}
		case "ec":
			c.helpHidden = map[string]bool{"bits": true, "levels": true, "lms": true, "lmots": true}
		case "hashsig":
			c.helpHidden = map[string]bool{"bits": true, "curve": true}
			c.helpNotes = hashsigTypes()
		}
		if err := c.parse(args[1:]); err != nil {
			return err
		}
		if c.fs.NArg() != 0 {
			return usageError{fmt.Sprintf("unexpected argument %q", c.fs.Arg(0))}
		}
		req := hsmapi.GenerateRequest{Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken, Label: label}
		if exportable {
			req.Flags |= hsmapi.FlagExportable
		}
		if err := hsmapi.CheckLabel(label); err != nil {
			return usageError{err.Error()}
		}
		// Flags of another key type would be silently ignored.
		own := map[string]string{"bits": "rsa", "curve": "ec", "levels": "hashsig", "lms": "hashsig", "lmots": "hashsig"}
		if kind == "rsa" || kind == "ec" || kind == "hashsig" {
			for _, name := range []string{"bits", "curve", "levels", "lms", "lmots"} {
				if own[name] != kind && c.given(name) {
					return usageError{fmt.Sprintf("--%s does not apply to %s keys", name, kind)}
				}
			}
		}
		switch kind {
		case "rsa":
			if err := hsmapi.CheckGeneratedRSABits(bits); err != nil {
				return usageError{"--bits: " + strings.TrimPrefix(err.Error(), hsmapi.ErrBadArguments.Error()+": ")}
			}
			req.Type, req.Bits = hsmapi.KeyTypeRSAPrivate, bits
		case "ec":
			cv, err := hsmapi.ParseCurve(curve)
			if err != nil {
				return usageError{err.Error()}
			}
			req.Type, req.Curve = hsmapi.KeyTypeECPrivate, cv
		case "hashsig":
			levels, err := lf.parse()
			if err != nil {
				return err
			}
			req.Type, req.Levels = hsmapi.KeyTypeHashsigPrivate, levels
		default:
			return usageError{fmt.Sprintf("unknown key type %q: want rsa, ec or hashsig", kind)}
		}
		return c.withToken(ctx, e, func(tok hsmapi.Token) error {
			pctx, endProgress := e.hsmProgress(ctx, "keygen"+buildingTrees, "leaves")
			k, err := tok.GenerateKey(pctx, req)
			endProgress()
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, k.UUID)
			return nil
		})
	}
}

var listCommand = &command{
	name:     "list",
	args:     "[--json]",
	summary:  "list the keys in the HSM",
	needsHSM: true,
	define:   defineList,
}

// defineList registers the flags of list and returns what runs it.
func defineList(fs *flag.FlagSet) runFunc {
	var asJSON bool
	fs.BoolVar(&asJSON, "json", false, "print a JSON array instead of a table")
	return func(ctx context.Context, e *env, c *call) error {
		if c.fs.NArg() != 0 {
			return usageError{fmt.Sprintf("unexpected argument %q", c.fs.Arg(0))}
		}
		return c.withToken(ctx, e, func(tok hsmapi.Token) error {
			keys, err := tok.Keys(ctx, hsmapi.Filter{})
			if err != nil {
				return err
			}
			if ul, ok := tok.(hsmapi.UnusableLister); ok {
				bad, err := ul.UnusableKeys(ctx)
				if err != nil {
					return err
				}
				for _, b := range bad {
					e.warn("not listed, this tool cannot use it: %s", b)
				}
			}
			if asJSON {
				return writeKeysJSON(e, keys)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "UUID\tTYPE\tSIZE\tSIGNATURES LEFT\tFLAGS\tLABEL")
			for _, k := range keys {
				left := "-"
				switch {
				case k.Type != hsmapi.KeyTypeHashsigPrivate:
				case k.Hashsig.RemainingUnknown:
					left = "unknown"
				default:
					left = fmt.Sprint(k.Hashsig.Remaining)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.UUID, k.Type, keySize(k), left, k.Flags, shownLabel(k.Label))
			}
			return tw.Flush()
		})
	}
}

// shownLabel is a label as list shows it: as it is when it is a label a file
// or the command line could give, otherwise quoted with Go's escapes. A
// libhal client may set any bytes as a label, and printed raw they could
// move the cursor, recolour the terminal or pass for another key's label.
func shownLabel(label string) string {
	if hsmapi.CheckLabel(label) == nil && !strings.HasPrefix(label, `"`) {
		return label
	}
	return strconv.Quote(label)
}

// keySize is what the SIZE column shows: the curve, the RSA modulus bits,
// or an HSS key's levels ("L2 sha256-m32-h5/sha256-n32-w4" names the top).
func keySize(k hsmapi.KeyInfo) string {
	switch {
	case k.Hashsig != nil:
		top := k.Hashsig.Levels[0]
		return fmt.Sprintf("L%d %v/%v", k.Hashsig.L, top.LMS, top.LMOTS)
	case k.Curve != hsmapi.CurveNone:
		return k.Curve.String()
	}
	return fmt.Sprint(k.Bits)
}

// keyJSON is one key in list --json.
type keyJSON struct {
	UUID      string   `json:"uuid"`
	Type      string   `json:"type"`
	Curve     string   `json:"curve,omitempty"`
	Bits      int      `json:"bits"`
	Flags     uint32   `json:"flags"`
	FlagNames []string `json:"flag_names"`
	Label     string   `json:"label"`
	// LabelHex is the label's bytes when Label had to be quoted (see
	// shownLabel).
	LabelHex  string `json:"label_hex,omitempty"`
	PublicKey string `json:"public_key"`
	// Hashsig describes HSS keys.
	Hashsig *hashsigJSON `json:"hashsig,omitempty"`
}

type hashsigJSON struct {
	Levels int      `json:"levels"`
	LMS    []string `json:"lms"`
	LMOTS  []string `json:"lmots"`
	// Remaining is omitted for public keys, which sign nothing.
	Remaining *uint64 `json:"remaining,omitempty"`
}

func writeKeysJSON(e *env, keys []hsmapi.KeyInfo) error {
	out := []keyJSON{}
	for _, k := range keys {
		j := keyJSON{
			UUID: k.UUID.String(), Type: k.Type.String(), Bits: k.Bits, Flags: uint32(k.Flags),
			FlagNames: strings.Split(k.Flags.String(), ","), Label: shownLabel(k.Label),
			PublicKey: base64.StdEncoding.EncodeToString(k.PublicKey),
		}
		if k.Flags == 0 {
			j.FlagNames = []string{}
		}
		if j.Label != k.Label {
			j.LabelHex = hex.EncodeToString([]byte(k.Label))
		}
		if k.Curve != hsmapi.CurveNone {
			j.Curve = k.Curve.String()
		}
		if hi := k.Hashsig; hi != nil {
			j.Hashsig = &hashsigJSON{Levels: hi.L}
			for _, l := range hi.Levels {
				j.Hashsig.LMS = append(j.Hashsig.LMS, l.LMS.String())
				j.Hashsig.LMOTS = append(j.Hashsig.LMOTS, l.LMOTS.String())
			}
			if k.Type == hsmapi.KeyTypeHashsigPrivate && !hi.RemainingUnknown {
				j.Hashsig.Remaining = &hi.Remaining
			}
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

var pubkeyCommand = &command{
	name:     "pubkey",
	args:     "--key UUID|LABEL [-o FILE] [--force]",
	summary:  "write a key's public half as PEM (for openssl and other tools)",
	needsHSM: true,
	examples: `  cryptech-backup pubkey --key web -o pub.pem
`,
	define: definePubkey,
}

// definePubkey registers the flags of pubkey and returns what runs it.
func definePubkey(fs *flag.FlagSet) runFunc {
	var keyID, out string
	var force bool
	fs.StringVar(&keyID, "key", "", keyUsage)
	addString(fs, &out, "o", "output", "", "output file (default stdout)")
	fs.BoolVar(&force, "force", false, "replace the output file if it exists")
	return func(ctx context.Context, e *env, c *call) error {
		if err := keyFlag(c, keyID); err != nil {
			return err
		}
		if err := e.checkOutput(out, force, false); err != nil {
			return err
		}
		return c.withToken(ctx, e, func(tok hsmapi.Token) error {
			id, err := findKey(ctx, tok, keyID)
			if err != nil {
				return err
			}
			k, err := tok.Key(ctx, id)
			if err != nil {
				return err
			}
			return e.output(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: k.PublicKey}), force, false)
		})
	}
}
