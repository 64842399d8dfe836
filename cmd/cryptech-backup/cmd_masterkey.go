package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keyshare"
	"github.com/hsmkit/cryptech-backup/sharefile"
	"github.com/hsmkit/cryptech-backup/sharetransit"
)

var masterkeyCommand = &command{
	name:    "masterkey",
	summary: "the master key's life: back it up in k-of-n passphrase-sealed shares, check, change a passphrase, zeroize, restore",
	subcommands: []*command{
		masterkeyBackupCommand,
		masterkeyCheckCommand,
		masterkeyChpassCommand,
		masterkeyStatusCommand,
		masterkeyZeroizeCommand,
		masterkeySubmitCommand,
		masterkeyAbortCommand,
		masterkeyRotateCommand,
		masterkeyRetireCommand,
	},
}

// maxPassphrase bounds a custodian's passphrase.
const maxPassphrase = 1024

const defaultKeyFile = "mkm.keys"

var masterkeyBackupCommand = &command{
	name:     "backup",
	args:     "--shares N --threshold K [-k mkm.keys] [--id NAME] [--passphrase-file FILE] [--min-passphrase N]",
	summary:  "split the master key into N shares, any K of which restore it, each sealed under its custodian's passphrase",
	needsHSM: true,
	examples: `  cryptech-backup masterkey backup --hsm ./hsm --shares 5 --threshold 3 -k mkm.keys
`,
	notes: `The HSM splits its master key (Shamir's scheme) and seals each share under
its passphrase with Argon2id and AES-GCM inside itself: no share leaves it
unsealed. Each passphrase is asked twice without echo, or read from
--passphrase-file, one line per share in order. The key file's layout is in
docs/masterkey-file.md; it is written with mode 0600 and never replaced.
Needs the wheel (or SO) login, as a Cryptech HSM's console does. Over --rpc
the passphrases travel on the connection to serve as PINs do (a Unix
socket, loopback, or TLS 1.3 with client certificates), and the key file
comes back sealed.
`,
	define: defineMasterkeyBackup,
}

func defineMasterkeyBackup(fs *flag.FlagSet) runFunc {
	var keyFile, id, passFile string
	var shares, threshold, minPass int
	addString(fs, &keyFile, "k", "keys", defaultKeyFile, "key file to write")
	fs.StringVar(&id, "id", "master", "name of the backup; its shares are NAME-1 to NAME-N")
	fs.IntVar(&shares, "shares", 0, "number of shares, 1 to 255")
	fs.IntVar(&threshold, "threshold", 0, "shares needed to restore, 1 to --shares")
	fs.StringVar(&passFile, "passphrase-file", "", "read the passphrases from FILE, one line per share in order (for scripted ceremonies)")
	fs.IntVar(&minPass, "min-passphrase", 12, "refuse passphrases shorter than this many bytes")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		switch {
		case threshold < 1 || shares < threshold || shares > keyshare.MaxShares:
			return usageError{fmt.Sprintf("--shares %d --threshold %d: want 1 <= threshold <= shares <= %d", shares, threshold, keyshare.MaxShares)}
		case !sharefile.ValidID(id):
			return usageError{fmt.Sprintf("--id %q: 1 to 64 letters, digits, '_', '.', '-'", id)}
		}
		if err := e.checkOutput(keyFile, false, false); err != nil {
			return err
		}
		var names []string
		for i := 1; i <= shares; i++ {
			names = append(names, fmt.Sprintf("%s-%d", id, i))
		}
		passes, err := sharePassphrases(ctx, e, passFile, names, "", true, minPass)
		if err != nil {
			return err
		}
		defer wipeAll(passes)
		return c.withMasterKey(ctx, e, func(mk hsmapi.MasterKeyKeeper) error {
			data, err := mk.BackupMasterKey(ctx, hsmapi.BackupRequest{ID: id, Threshold: threshold, Shares: shares, Passphrases: passes})
			if err != nil {
				return err
			}
			f, err := sharefile.Parse(data)
			if err != nil {
				return fmt.Errorf("the HSM's key file: %w", err)
			}
			if err := writeFileAtomic(keyFile, data, false, true); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "%s: wrote %s: shares %s-1 to %s-%d, any %d restore the master key with check value %x\n",
				progName, keyFile, id, id, shares, threshold, f.CheckValue)
			return nil
		})
	}
}

var masterkeyCheckCommand = &command{
	name:    "check",
	args:    "-k mkm.keys [--passphrase-file FILE] SHARE...",
	summary: "say whether the named shares recombine to the master key of the key file, without any HSM",
	examples: `  cryptech-backup masterkey check -k mkm.keys master-1 master-3 master-4
`,
	define: defineMasterkeyCheck,
}

func defineMasterkeyCheck(fs *flag.FlagSet) runFunc {
	var keyFile, passFile string
	addString(fs, &keyFile, "k", "keys", defaultKeyFile, "key file")
	fs.StringVar(&passFile, "passphrase-file", "", "read the shares' passphrases from FILE, one line per share in the order named")
	return func(ctx context.Context, e *env, c *call) error {
		names := c.fs.Args()
		if len(names) == 0 {
			return usageError{"name the shares to check (e.g. master-1 master-2)"}
		}
		f, err := readKeyFile(keyFile)
		if err != nil {
			return err
		}
		if len(names) < f.Threshold {
			return fmt.Errorf("%d shares named; %s needs %d of its %d to recombine", len(names), keyFile, f.Threshold, f.Shares)
		}
		shares, err := openShares(ctx, e, f, names, passFile)
		if err != nil {
			return err
		}
		defer wipeShares(shares)
		key, err := keyshare.Combine(f.Threshold, shares)
		if err == nil && !keyshare.Matches(key, f.CheckValue) {
			err = keyshare.ErrMismatch
		}
		clear(key)
		if err != nil {
			return fmt.Errorf("shares %s do not recombine to the master key with check value %x: %w", strings.Join(names, ", "), f.CheckValue, err)
		}
		fmt.Fprintf(e.stdout, "shares %s recombine to the master key with check value %x\n", strings.Join(names, ", "), f.CheckValue)
		return nil
	}
}

var masterkeyChpassCommand = &command{
	name:    "chpass",
	args:    "-k mkm.keys [--passphrase-file FILE] [--min-passphrase N] SHARE",
	summary: "seal one share under a new passphrase; the check values stay",
	examples: `  cryptech-backup masterkey chpass -k mkm.keys master-2
`,
	notes: `With --passphrase-file the first line is the old passphrase, the second the
new one. The key file is replaced atomically.
`,
	define: defineMasterkeyChpass,
}

func defineMasterkeyChpass(fs *flag.FlagSet) runFunc {
	var keyFile, passFile string
	var minPass int
	addString(fs, &keyFile, "k", "keys", defaultKeyFile, "key file")
	fs.StringVar(&passFile, "passphrase-file", "", "read the old passphrase from the first line of FILE and the new one from the second")
	fs.IntVar(&minPass, "min-passphrase", 12, "refuse a new passphrase shorter than this many bytes")
	return func(ctx context.Context, e *env, c *call) error {
		if c.fs.NArg() != 1 {
			return usageError{"name one share (e.g. master-2)"}
		}
		name := c.fs.Arg(0)
		f, err := readKeyFile(keyFile)
		if err != nil {
			return err
		}
		sec, err := f.Section(name)
		if err != nil {
			return err
		}
		passes, err := chpassPassphrases(ctx, e, passFile, name, minPass)
		if err != nil {
			return err
		}
		defer wipeAll(passes)
		share, err := f.Open(name, passes[0])
		if err != nil {
			return err
		}
		defer share.Wipe()
		if err := f.Seal(share, passes[1], sec.KDF); err != nil {
			return err
		}
		if err := writeFileAtomic(keyFile, f.Marshal(), true, true); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "%s: %s: share %s sealed under its new passphrase\n", progName, keyFile, name)
		return nil
	}
}

// chpassPassphrases reads a share's old passphrase and its new one: the
// first two lines of file, else prompts (the old once, the new twice).
func chpassPassphrases(ctx context.Context, e *env, file, name string, min int) ([][]byte, error) {
	if file != "" {
		passes, err := readPassphraseLines(file, 2)
		if err == nil && len(passes[1]) < min {
			wipeAll(passes)
			err = fmt.Errorf("the new passphrase of %s is shorter than %d bytes (--min-passphrase)", name, min)
		}
		return passes, err
	}
	old, err := sharePassphrases(ctx, e, "", []string{name}, "", false, 0)
	if err != nil {
		return nil, err
	}
	fresh, err := sharePassphrases(ctx, e, "", []string{name}, "new ", true, min)
	if err != nil {
		wipeAll(old)
		return nil, err
	}
	return append(old, fresh...), nil
}

var masterkeyStatusCommand = &command{
	name:     "status",
	args:     "[-k mkm.keys]",
	summary:  "show whether the master key is set or wiped, its check value, and a restore in progress",
	needsHSM: true,
	examples: `  cryptech-backup masterkey status --hsm ./hsm
  cryptech-backup masterkey status --hsm ./hsm -k mkm.keys    # also: is this backup of the current key?
`,
	define: defineMasterkeyStatus,
}

func defineMasterkeyStatus(fs *flag.FlagSet) runFunc {
	var keyFile string
	addString(fs, &keyFile, "k", "keys", "", "also say whether this key file backs up the current master key")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		var f *sharefile.File
		if keyFile != "" {
			var err error
			if f, err = readKeyFile(keyFile); err != nil {
				return err
			}
		}
		return c.withMasterKey(ctx, e, func(mk hsmapi.MasterKeyKeeper) error {
			st, err := mk.MasterKeyStatus(ctx)
			if err != nil {
				return err
			}
			state := "wiped (tamper or zeroize): the keystore cannot be read until the key is restored"
			if st.Set {
				state = "set"
			}
			fmt.Fprintf(e.stdout, "master key:  %s\n", state)
			if st.CheckValueKnown {
				fmt.Fprintf(e.stdout, "check value: %x\n", st.CheckValue)
			} else {
				fmt.Fprintf(e.stdout, "check value: unknown (it was never backed up or rotated)\n")
			}
			if len(st.OldKeys) == 0 {
				fmt.Fprintf(e.stdout, "old keys:    none\n")
			}
			for i, k := range st.OldKeys {
				label := "old keys:   "
				if i > 0 {
					label = "           "
				}
				fmt.Fprintf(e.stdout, "%s %x (%d keystore records still under it)\n", label, k.CheckValue, k.Records)
			}
			if r := st.Restore; r != nil {
				if r.Threshold == 0 {
					fmt.Fprintf(e.stdout, "restore:     open, no share received yet\n")
				} else {
					fmt.Fprintf(e.stdout, "restore:     %d of %d shares received (check value %x)\n", r.Received, r.Threshold, r.CheckValue)
				}
			} else {
				fmt.Fprintf(e.stdout, "restore:     none in progress\n")
			}
			if f != nil {
				verdict := "current: it backs up this master key"
				if !st.CheckValueKnown || st.CheckValue != f.CheckValue {
					verdict = fmt.Sprintf("stale: it backs up the key with check value %x, not this one", f.CheckValue)
					for _, k := range st.OldKeys {
						if k.CheckValue == f.CheckValue {
							verdict += " (an old key, replaced by a rotation)"
						}
					}
				}
				fmt.Fprintf(e.stdout, "%s: %s\n", keyFile, verdict)
			}
			return nil
		})
	}
}

var masterkeyZeroizeCommand = &command{
	name:     "zeroize",
	args:     "--yes",
	summary:  "wipe the master key as tamper does: every key is unreadable until the key is restored from shares",
	needsHSM: true,
	examples: `  cryptech-backup masterkey zeroize --hsm ./hsm --yes
`,
	define: defineMasterkeyZeroize,
}

func defineMasterkeyZeroize(fs *flag.FlagSet) runFunc {
	var yes bool
	fs.BoolVar(&yes, "yes", false, "yes, wipe it (without a backup of the master key, every key of the HSM is lost)")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		if !yes {
			return usageError{"zeroize wipes the master key and makes every key of the HSM unreadable until it is restored from shares: give --yes"}
		}
		return c.withMasterKey(ctx, e, func(mk hsmapi.MasterKeyKeeper) error {
			if err := mk.ZeroizeMasterKey(ctx); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "%s: master key zeroized\n", progName)
			return nil
		})
	}
}

var masterkeySubmitCommand = &command{
	name:     "submit",
	args:     "-k mkm.keys [--passphrase-file FILE] SHARE",
	summary:  "give the HSM one share toward restoring its master key, sealed to its restore session",
	needsHSM: true,
	examples: `  cryptech-backup masterkey submit --hsm ./hsm -k mkm.keys master-2
  cryptech-backup masterkey submit --rpc tcp:hsm.example:7000 --tls-ca ca.pem -k mkm.keys master-4
`,
	notes: `The share is opened here with its passphrase and sealed with HPKE to the
HSM's restore session (opened by the first submit), so neither the
connection nor a server in between sees it. When the threshold's worth of
shares is in, the HSM recombines them, checks the key's check value and
writes it.
`,
	define: defineMasterkeySubmit,
}

func defineMasterkeySubmit(fs *flag.FlagSet) runFunc {
	var keyFile, passFile string
	addString(fs, &keyFile, "k", "keys", defaultKeyFile, "key file holding the share")
	fs.StringVar(&passFile, "passphrase-file", "", "read the share's passphrase from the first line of FILE")
	return func(ctx context.Context, e *env, c *call) error {
		if c.fs.NArg() != 1 {
			return usageError{"name one share (e.g. master-2)"}
		}
		name := c.fs.Arg(0)
		f, err := readKeyFile(keyFile)
		if err != nil {
			return err
		}
		shares, err := openShares(ctx, e, f, []string{name}, passFile)
		if err != nil {
			return err
		}
		defer wipeShares(shares)
		return c.withMasterKey(ctx, e, func(mk hsmapi.MasterKeyKeeper) error {
			st, err := mk.BeginRestore(ctx)
			if err != nil {
				return err
			}
			sealed, err := sharetransit.SealFrom(f, shares[0], st.PublicKey, st.ID)
			if err != nil {
				return err
			}
			st, err = mk.SubmitShare(ctx, sealed)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if st.Done {
				fmt.Fprintf(e.stderr, "%s: share %s accepted: master key restored (check value %x)\n", progName, name, f.CheckValue)
			} else {
				fmt.Fprintf(e.stderr, "%s: share %s accepted: %d of %d\n", progName, name, st.Received, st.Threshold)
			}
			return nil
		})
	}
}

var masterkeyAbortCommand = &command{
	name:     "abort",
	summary:  "end the restore in progress; the HSM forgets the shares it received",
	needsHSM: true,
	examples: `  cryptech-backup masterkey abort --hsm ./hsm
`,
	define: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, e *env, c *call) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return c.withMasterKey(ctx, e, func(mk hsmapi.MasterKeyKeeper) error {
				if err := mk.AbortRestore(ctx); err != nil {
					return err
				}
				fmt.Fprintf(e.stderr, "%s: restore aborted\n", progName)
				return nil
			})
		}
	},
}

var masterkeyRotateCommand = &command{
	name:     "rotate",
	summary:  "make a new master key, keep the old one in the old-key ring, and seal every keystore record again",
	needsHSM: true,
	examples: `  cryptech-backup masterkey rotate --hsm ./hsm
`,
	notes: `The old key stays in the HSM's old-key ring (8 keys at most) until retire
drops it. A power cut during the rotation loses nothing: every record opens
under the new key or the old one; rotate again to finish. A master-key
backup made before the rotation is stale: make a new one.
`,
	define: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, e *env, c *call) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return c.withMasterKey(ctx, e, func(mk hsmapi.MasterKeyKeeper) error {
				res, err := mk.RotateMasterKey(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stderr, "%s: master key rotated: check value %x (was %x, now in the old-key ring); %d keystore records sealed again",
					progName, res.CheckValue, res.OldCheckValue, res.Resealed)
				if res.Skipped > 0 {
					fmt.Fprintf(e.stderr, ", %d in damaged flash blocks left as they were", res.Skipped)
				}
				fmt.Fprintf(e.stderr, "; back the new key up (masterkey backup): older backups are stale\n")
				return nil
			})
		}
	},
}

var masterkeyRetireCommand = &command{
	name:     "retire",
	args:     "CHECK-VALUE",
	summary:  "drop an old master key from the old-key ring (refused while keystore records are still under it)",
	needsHSM: true,
	examples: `  cryptech-backup masterkey retire --hsm ./hsm 3fa2c4d1e08b9a77
`,
	define: func(fs *flag.FlagSet) runFunc {
		return func(ctx context.Context, e *env, c *call) error {
			if c.fs.NArg() != 1 {
				return usageError{"give the check value of the old key to retire (masterkey status lists them)"}
			}
			var cv [hsmapi.MasterKeyCheckSize]byte
			b, err := hex.DecodeString(c.fs.Arg(0))
			if err != nil || len(b) != len(cv) {
				return usageError{fmt.Sprintf("%q is not a check value: %d hex digits", c.fs.Arg(0), 2*len(cv))}
			}
			copy(cv[:], b)
			return c.withMasterKey(ctx, e, func(mk hsmapi.MasterKeyKeeper) error {
				if err := mk.RetireMasterKey(ctx, cv); err != nil {
					return err
				}
				fmt.Fprintf(e.stderr, "%s: old master key %x retired: what was stored outside under it can no longer be taken back\n", progName, cv)
				return nil
			})
		}
	},
}

// withMasterKey runs f on the master key of the HSM the common flags name.
func (c *call) withMasterKey(ctx context.Context, e *env, f func(hsmapi.MasterKeyKeeper) error) error {
	return c.withToken(ctx, e, func(tok hsmapi.Token) error {
		mk, ok := tok.(hsmapi.MasterKeyKeeper)
		if !ok {
			return fmt.Errorf("masterkey: %w: this HSM's master key cannot be managed from here (the emulated HSM's can, with --hsm or through serve with --rpc)", hsmapi.ErrUnsupported)
		}
		return f(mk)
	})
}

func readKeyFile(path string) (*sharefile.File, error) {
	data, err := readFileLimited(path, sharefile.MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	f, err := sharefile.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return f, nil
}

// openShares asks for each named share's passphrase and opens it.
func openShares(ctx context.Context, e *env, f *sharefile.File, names []string, passFile string) ([]keyshare.Share, error) {
	for _, n := range names {
		if _, err := f.Section(n); err != nil {
			return nil, err
		}
	}
	passes, err := sharePassphrases(ctx, e, passFile, names, "", false, 0)
	if err != nil {
		return nil, err
	}
	defer wipeAll(passes)
	var shares []keyshare.Share
	for i, n := range names {
		s, err := f.Open(n, passes[i])
		if err != nil {
			wipeShares(shares)
			return nil, err
		}
		shares = append(shares, s)
	}
	return shares, nil
}

// sharePassphrases reads one passphrase per name: the lines of file in
// order, else prompts without echo (twice when confirm).
func sharePassphrases(ctx context.Context, e *env, file string, names []string, adj string, confirm bool, min int) ([][]byte, error) {
	var passes [][]byte
	if file != "" {
		var err error
		if passes, err = readPassphraseLines(file, len(names)); err != nil {
			return nil, err
		}
	} else {
		if e.readSecret == nil {
			return nil, errors.New("no passphrase given and no terminal to ask for one (give them with --passphrase-file FILE)")
		}
		for _, n := range names {
			p, err := e.readSecret(ctx, fmt.Sprintf("%spassphrase of %s: ", adj, n))
			if err == nil && confirm {
				var again []byte
				again, err = e.readSecret(ctx, fmt.Sprintf("%spassphrase of %s again: ", adj, n))
				if err == nil && subtle.ConstantTimeCompare(p, again) != 1 {
					err = fmt.Errorf("the two passphrases of %s differ", n)
				}
				clear(again)
			}
			if err != nil {
				clear(p)
				wipeAll(passes)
				return nil, err
			}
			passes = append(passes, p)
		}
	}
	for i, p := range passes {
		if len(p) < min {
			wipeAll(passes)
			return nil, fmt.Errorf("the passphrase of %s is shorter than %d bytes (--min-passphrase)", names[i], min)
		}
	}
	return passes, nil
}

// readPassphraseLines reads the first n lines of path, each a passphrase.
func readPassphraseLines(path string, n int) ([][]byte, error) {
	data, err := readFileLimited(path, n*(maxPassphrase+2))
	if err != nil {
		return nil, fmt.Errorf("passphrase file: %w", err)
	}
	defer clear(data)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, maxPassphrase+2), maxPassphrase+2)
	var passes [][]byte
	for len(passes) < n && sc.Scan() {
		p := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(p) == 0 {
			wipeAll(passes)
			return nil, fmt.Errorf("passphrase file %s: line %d is empty", path, len(passes)+1)
		}
		passes = append(passes, bytes.Clone(p))
	}
	if len(passes) < n {
		wipeAll(passes)
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("passphrase file %s: %w", path, err)
		}
		return nil, fmt.Errorf("passphrase file %s: %d lines, %d passphrases needed", path, len(passes), n)
	}
	return passes, nil
}

func wipeAll(bufs [][]byte) {
	for _, b := range bufs {
		clear(b)
	}
}

func wipeShares(shares []keyshare.Share) {
	for i := range shares {
		shares[i].Wipe()
	}
}
