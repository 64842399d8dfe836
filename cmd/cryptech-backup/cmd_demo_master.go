package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/sharefile"
	"github.com/hsmkit/cryptech-backup/sharetransit"
)

// The tamper drill of `demo --master` (issue 12 item 4): make keys, store
// some outside with --delete, back the master key up 3-of-5, zeroize, see
// every key refused; submit two shares (still refused), then a third: every
// key and every stored file works again, and the signatures verify under
// the original public keys.

const (
	drillShares    = 5
	drillThreshold = 3
)

// drillKey is one key of the drill and what became of it at each step.
type drillKey struct {
	info   hsmapi.KeyInfo
	stored bool
	// steps: after zeroize, after two shares, after three (and the
	// restore of the stored file): "refused" or "verified", else the error.
	steps [3]string
}

func runMasterDrill(ctx context.Context, e *env, b *demoBackend, n int) error {
	start := time.Now()
	h, err := newDemoHSM(ctx, e, b, "hsm")
	if err != nil {
		return fmt.Errorf("HSM: %w", err)
	}
	defer h.close()
	if b.keep {
		b.pinNote(e)
	}
	tok := h.tok
	mk, ok1 := tok.(hsmapi.MasterKeyKeeper)
	ks, ok2 := tok.(hsmapi.KeyStorer)
	if !ok1 || !ok2 {
		return fmt.Errorf("demo --master: %w: this HSM's master key cannot be managed from here", hsmapi.ErrUnsupported)
	}

	fmt.Fprintf(e.stderr, "demo: generating %d keys\n", n)
	infos, err := generateDemoKeys(ctx, tok, n, true)
	if err != nil {
		return err
	}
	keys := make([]*drillKey, len(infos))
	var storeIDs []hsmapi.UUID
	for i, k := range infos {
		keys[i] = &drillKey{info: k}
		// Every other key, and the hash-based one, goes outside.
		if i%2 == 1 || k.Hashsig != nil {
			keys[i].stored = true
			storeIDs = append(storeIDs, k.UUID)
		}
	}
	fmt.Fprintf(e.stderr, "demo: storing %d keys outside the HSM and deleting them from its keystore\n", len(storeIDs))
	storedPath := filepath.Join(b.dir, "stored.json")
	stored, err := ks.StoreKeys(ctx, storeIDs)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(storedPath, stored, true, false); err != nil {
		return err
	}
	if _, err := ks.CheckStoredKeys(ctx, stored); err != nil {
		return err
	}
	for _, k := range keys {
		if k.stored && k.info.Hashsig == nil {
			if err := tok.DeleteKey(ctx, k.info.UUID); err != nil {
				return err
			}
		}
	}

	fmt.Fprintf(e.stderr, "demo: backing the master key up %d-of-%d\n", drillThreshold, drillShares)
	passes := make([][]byte, drillShares)
	for i := range passes {
		passes[i] = []byte(fmt.Sprintf("%x", randomBytes(12)))
		defer clear(passes[i])
	}
	data, err := mk.BackupMasterKey(ctx, hsmapi.BackupRequest{ID: "master", Threshold: drillThreshold, Shares: drillShares, Passphrases: passes})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(b.dir, "mkm.keys"), data, true, true); err != nil {
		return err
	}
	if b.keep {
		// The custodians' passphrases, one file each (0600), as the PINs are:
		// `masterkey check -k DIR/mkm.keys --passphrase-file ...` takes them.
		for i, p := range passes {
			line := append(append([]byte(nil), p...), '\n')
			err := writeFileAtomic(filepath.Join(b.dir, fmt.Sprintf("master-%d.passphrase", i+1)), line, false, true)
			clear(line)
			if err != nil {
				return err
			}
		}
	}
	file, err := sharefile.Parse(data)
	if err != nil {
		return err
	}

	fmt.Fprintf(e.stderr, "demo: zeroizing the master key, as tamper does\n")
	if err := mk.ZeroizeMasterKey(ctx); err != nil {
		return err
	}
	drillStep(ctx, tok, ks, keys, stored, 0)

	st, err := mk.BeginRestore(ctx)
	if err != nil {
		return err
	}
	submit := func(i int) error {
		share, err := file.Open(file.Name(i), passes[i-1])
		if err != nil {
			return err
		}
		defer share.Wipe()
		sealed, err := sharetransit.SealFrom(file, share, st.PublicKey, st.ID)
		if err != nil {
			return err
		}
		st, err = mk.SubmitShare(ctx, sealed)
		return err
	}
	fmt.Fprintf(e.stderr, "demo: custodians 2 and 5 submit their shares\n")
	for _, i := range []int{2, 5} {
		if err := submit(i); err != nil {
			return err
		}
	}
	drillStep(ctx, tok, ks, keys, stored, 1)
	fmt.Fprintf(e.stderr, "demo: custodian 4 submits the third share\n")
	if err := submit(4); err != nil {
		return err
	}
	if !st.Done {
		return errors.New("demo: three shares in, and the master key is not restored")
	}
	if _, err := ks.RestoreKeys(ctx, stored); err != nil {
		return err
	}
	drillStep(ctx, tok, ks, keys, stored, 2)

	failed := printDrillTable(e, keys)
	if failed > 0 {
		return fmt.Errorf("demo failed: %d of %d keys did not behave as they should", failed, len(keys))
	}
	fmt.Fprintf(e.stdout, "demo: master key %x backed up %d-of-%d, zeroized, restored from %d shares; %d keys in the keystore and %d stored outside refused while it was gone and verified after (%.1fs)\n",
		file.CheckValue, drillThreshold, drillShares, drillThreshold, len(keys)-len(storeIDs), len(storeIDs), time.Since(start).Seconds())
	return nil
}

// drillStep records what each key does at step i: signs and verifies under
// its original public key, or is refused. A stored key is tried through a
// restore of the stored file (which stores nothing while it is refused).
func drillStep(ctx context.Context, tok hsmapi.Token, ks hsmapi.KeyStorer, keys []*drillKey, stored []byte, i int) {
	var restoreErr error
	if i < 2 {
		_, restoreErr = ks.RestoreKeys(ctx, stored)
	}
	for _, k := range keys {
		err := restoreErr
		if !k.stored || i == 2 {
			err = hsmapi.SignAndVerify(ctx, tok, k.info, []byte("after the tamper drill: "+k.info.UUID.String()))
		}
		switch {
		case err == nil:
			k.steps[i] = "verified"
		case errors.Is(err, hsmapi.ErrTamper):
			k.steps[i] = "refused"
		default:
			k.steps[i] = err.Error()
		}
	}
}

// printDrillTable prints a row per key and returns how many misbehaved:
// anything but refused, refused, verified.
func printDrillTable(e *env, keys []*drillKey) int {
	failed := 0
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tLABEL\tTYPE\tKEPT\tZEROIZED\t2 SHARES\t3 SHARES")
	for _, k := range keys {
		where := "keystore"
		if k.stored {
			where = "stored.json"
		}
		if k.steps != [3]string{"refused", "refused", "verified"} {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.info.UUID, k.info.Label, demoKind(k.info), where, k.steps[0], k.steps[1], k.steps[2])
	}
	tw.Flush()
	return failed
}
