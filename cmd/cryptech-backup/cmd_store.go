package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/storefile"
)

var storeCommand = &command{
	name:     "store",
	args:     "[--key UUID|LABEL]... [--all] [--delete] [-o stored.json] [--force]",
	summary:  "wrap keys under this HSM's master key (a token's storage key) for storage outside it; only this HSM takes them back",
	needsHSM: true,
	examples: `  cryptech-backup store --hsm ./hsm --key signer-2019 -o stored.json --delete
  cryptech-backup store --hsm ./hsm --all -o all.json
`,
	notes: `The keys are wrapped (RFC 5649) under a storage key the HSM derives from
its master key, and the file (docs/stored-keys.md) is authenticated as a
whole. With --delete the keys leave the keystore only after the file is
written, read back and checked by the HSM. An HSS key, as on a Cryptech HSM,
is disabled in the HSM when stored (it gives away every signature it has
left and stays in the keystore unable to sign) until the file is restored;
--delete leaves it there, as the HSM's memory of the first signature it never
released. After a restore and more signatures it must be stored again: the
older file is refused. Over --rpc (serve of this version) the file travels
in as many packets as it takes.

On a PKCS#11 token (--module) the keys are wrapped under a storage key
object on the token (AES-256, wrap and unwrap only, never extractable; made
on the first store). A key must be extractable (CKA_EXTRACTABLE true): one
that is not cannot leave a token in any form. HSS keys are not stored from
a token.
`,
	define: defineStore,
}

func defineStore(fs *flag.FlagSet) runFunc {
	var refs repeated
	var out string
	var all, del, force bool
	fs.Var(&refs, "key", "a key to store, by UUID or label (repeat for more)")
	fs.BoolVar(&all, "all", false, "store every key in the keystore")
	fs.BoolVar(&del, "delete", false, "delete the stored keys from the keystore once the file is written and checked (needs -o)")
	addString(fs, &out, "o", "output", "", "stored-keys file to write (default stdout)")
	fs.BoolVar(&force, "force", false, "replace the output file if it exists")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		switch {
		case all == (len(refs) > 0):
			return usageError{"name the keys to store with --key, or give --all"}
		case del && (out == "" || out == "-"):
			return usageError{"--delete needs -o FILE: the keys leave the keystore only once the file is written and read back"}
		}
		if err := e.checkOutput(out, force, false); err != nil {
			return err
		}
		return c.withToken(ctx, e, func(tok hsmapi.Token) error {
			ks, err := keyStorer(tok)
			if err != nil {
				return err
			}
			ids, err := storeList(ctx, tok, refs, all)
			if err != nil {
				return err
			}
			pctx, endProgress := e.hsmProgress(ctx, "store", "keys")
			data, err := ks.StoreKeys(pctx, ids)
			endProgress()
			if err != nil {
				return err
			}
			f, err := storefile.Parse(data)
			if err != nil {
				return fmt.Errorf("the HSM's stored-keys file: %w", err)
			}
			if err := e.output(out, data, force, false); err != nil {
				return err
			}
			under := fmt.Sprintf("master key %x", f.CheckValue)
			if f.Token {
				under = fmt.Sprintf("storage key %x of token %s", f.CheckValue, f.HSM)
			}
			fmt.Fprintf(e.stderr, "%s: stored %d keys under %s\n", progName, len(ids), under)
			if !del {
				return nil
			}
			return deleteStored(ctx, e, tok, ks, out, data, f)
		})
	}
}

// storeList resolves --key flags, or lists every keystore key for --all.
func storeList(ctx context.Context, tok hsmapi.Token, refs []string, all bool) ([]hsmapi.UUID, error) {
	var ids []hsmapi.UUID
	if !all {
		for _, ref := range refs {
			id, err := findKey(ctx, tok, ref)
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
		return ids, nil
	}
	for _, f := range []hsmapi.Filter{{}, {Type: hsmapi.KeyTypeAES}} {
		keys, err := tok.Keys(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("list keys: %w", err)
		}
		for _, k := range keys {
			if k.Flags&hsmapi.FlagToken != 0 {
				ids = append(ids, k.UUID)
			}
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("store --all: the keystore holds no keys")
	}
	return ids, nil
}

// deleteStored reads the file back, has the HSM check it, and only then
// deletes the stored keys (not HSS keys, which stay disabled).
func deleteStored(ctx context.Context, e *env, tok hsmapi.Token, ks hsmapi.KeyStorer, path string, want []byte, f *storefile.File) error {
	got, err := readFileLimited(path, storefile.MaxFileSize)
	if err == nil && !bytes.Equal(got, want) {
		err = fmt.Errorf("%s does not read back as written", path)
	}
	if err == nil {
		pctx, endProgress := e.hsmProgress(ctx, "store --delete: checking", "keys")
		_, err = ks.CheckStoredKeys(pctx, got)
		endProgress()
	}
	if err != nil {
		return fmt.Errorf("--delete: no key deleted: %w", err)
	}
	deleted := 0
	for _, k := range f.Keys {
		if k.Type == hsmapi.KeyTypeHashsigPrivate {
			continue
		}
		if err := tok.DeleteKey(ctx, k.UUID); err != nil {
			return fmt.Errorf("--delete: %d keys deleted, then %s: %w (the file holds them all)", deleted, k.UUID, err)
		}
		deleted++
	}
	fmt.Fprintf(e.stderr, "%s: %s read back and checked; %d keys deleted from the keystore", progName, path, deleted)
	if hss := len(f.Keys) - deleted; hss > 0 {
		fmt.Fprintf(e.stderr, ", %d HSS keys left disabled in it", hss)
	}
	fmt.Fprintln(e.stderr)
	return nil
}

var restoreCommand = &command{
	name:     "restore",
	args:     "[-i stored.json] [--json]",
	summary:  "take keys stored with store back into the HSM that stored them, all or none",
	needsHSM: true,
	examples: `  cryptech-backup restore --hsm ./hsm -i stored.json
`,
	define: defineRestore,
}

func defineRestore(fs *flag.FlagSet) runFunc {
	var in string
	var asJSON bool
	addString(fs, &in, "i", "input", "", "stored-keys file from store (default stdin)")
	fs.BoolVar(&asJSON, "json", false, "print a JSON array of {uuid, status} instead of lines")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		data, err := e.readInput(in, storefile.MaxFileSize)
		if err != nil {
			return err
		}
		if _, err := storefile.Parse(data); err != nil {
			return err
		}
		return c.withToken(ctx, e, func(tok hsmapi.Token) error {
			ks, err := keyStorer(tok)
			if err != nil {
				return err
			}
			pctx, endProgress := e.hsmProgress(ctx, "restore", "keys")
			res, err := ks.RestoreKeys(pctx, data)
			endProgress()
			if err != nil {
				return err
			}
			lines := []statusLine{}
			for _, r := range res {
				lines = append(lines, newStatusLine(r.Key.UUID, r.Present, "restored"))
			}
			return printStatusLines(e, lines, asJSON)
		})
	}
}

func keyStorer(tok hsmapi.Token) (hsmapi.KeyStorer, error) {
	ks, ok := tok.(hsmapi.KeyStorer)
	if !ok {
		return nil, fmt.Errorf("%w: this HSM cannot store keys outside it from here (the emulated HSM can, with --hsm or through serve with --rpc, and a PKCS#11 token, with --module)", hsmapi.ErrUnsupported)
	}
	return ks, nil
}
