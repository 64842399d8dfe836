// Package sharetest makes master-key backups cheaply for tests of the
// packages that keep a master key (hsm) or carry its calls (rpc).
package sharetest

import (
	"fmt"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/sharefile"
	"github.com/hsmkit/cryptech-backup/sharetransit"
)

// Passphrase is custodian i's passphrase.
func Passphrase(i int) []byte { return fmt.Appendf(nil, "passphrase of custodian %d", i) }

// Backup backs the master key up k-of-n through mk, share i under
// Passphrase(i), with Argon2id at its cheapest (the layout and checks are
// the same), and returns the parsed key file.
func Backup(t testing.TB, mk hsmapi.MasterKeyKeeper, k, n int) *sharefile.File {
	t.Helper()
	req := hsmapi.BackupRequest{ID: "master", Threshold: k, Shares: n, KDFTime: 1, KDFMemoryKiB: 64, KDFThreads: 1}
	for i := 1; i <= n; i++ {
		req.Passphrases = append(req.Passphrases, Passphrase(i))
	}
	data, err := mk.BackupMasterKey(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	f, err := sharefile.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Seal does what `masterkey submit` does for share i of f: opens it with
// Passphrase(i) and seals it to the restore session st.
func Seal(t testing.TB, f *sharefile.File, i int, st hsmapi.RestoreStatus) []byte {
	t.Helper()
	share, err := f.Open(f.Name(i), Passphrase(i))
	if err != nil {
		t.Fatal(err)
	}
	defer share.Wipe()
	sealed, err := sharetransit.SealFrom(f, share, st.PublicKey, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

// Restore does what custodians do after a zeroize: opens a restore session
// on mk and submits the given shares of f, failing the test unless the
// master key is back once they are in.
func Restore(t testing.TB, mk hsmapi.MasterKeyKeeper, f *sharefile.File, shares ...int) {
	t.Helper()
	st, err := mk.BeginRestore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range shares {
		if st, err = mk.SubmitShare(t.Context(), Seal(t, f, i, st)); err != nil {
			t.Fatal(err)
		}
	}
	if !st.Done {
		t.Fatalf("restore not done after shares %v: %+v", shares, st)
	}
}
