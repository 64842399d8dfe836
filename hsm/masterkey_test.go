package hsm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/sharetest"
	"github.com/hsmkit/cryptech-backup/keystore"
	"github.com/hsmkit/cryptech-backup/sharefile"
	"github.com/hsmkit/cryptech-backup/sharetransit"
)

var custodian = sharetest.Passphrase

// backupMasterKey backs the master key of s's HSM up k-of-n, cheaply.
func backupMasterKey(t *testing.T, s *Session, k, n int) *sharefile.File {
	return sharetest.Backup(t, s, k, n)
}

// sealShare does what `masterkey submit` does for share i of f.
var sealShare = sharetest.Seal

// The tamper drill of issue 12 item 4, in the HSM: back up 3-of-5,
// zeroize, two shares are not enough, refusals leave the session as it
// was, the third share brings every key back.
func TestMasterKeyDrill(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	f := backupMasterKey(t, s, 3, 5)
	if f.HSM != h.Identity().Serial || f.Threshold != 3 || len(f.Sections) != 5 {
		t.Fatalf("file header %+v, %d sections", f.Header, len(f.Sections))
	}
	before, err := s.MasterKeyStatus(ctx)
	if err != nil || !before.Set || before.CheckValue != f.CheckValue {
		t.Fatalf("status %+v, %v; file's check value %x", before, err, f.CheckValue)
	}
	if _, err := s.BeginRestore(ctx); !errors.Is(err, hsmapi.ErrMasterKeySet) {
		t.Fatalf("restore with the key set: %v", err)
	}
	// Another HSM's backup, for a share of another master key.
	h2, _ := newTestHSM(t)
	other := backupMasterKey(t, login(t, h2), 3, 5)

	if err := s.ZeroizeMasterKey(ctx); err != nil {
		t.Fatal(err)
	}
	if err := signsAndVerifies(s, k); !errors.Is(err, hsmapi.ErrTamper) {
		t.Fatalf("sign after zeroize: %v", err)
	}
	st, err := s.BeginRestore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.BeginRestore(ctx)
	if err != nil || again.ID != st.ID {
		t.Fatal("a second BeginRestore opened another session")
	}
	for _, i := range []int{4, 1} {
		if st, err = s.SubmitShare(ctx, sealShare(t, f, i, st)); err != nil {
			t.Fatal(err)
		}
	}
	if st.Received != 2 || st.Threshold != 3 || st.Done {
		t.Fatalf("after two shares: %+v", st)
	}
	if err := signsAndVerifies(s, k); !errors.Is(err, hsmapi.ErrTamper) {
		t.Fatalf("sign with two shares in: %v", err)
	}
	status, _ := s.MasterKeyStatus(ctx)
	if status.Set || !status.CheckValueKnown || status.CheckValue != f.CheckValue || status.Restore == nil || status.Restore.Received != 2 {
		t.Fatalf("status during the restore: %+v", status)
	}

	// Refusals: each leaves the session at two shares.
	stranger, _ := sharetransit.NewSessionKey(make([]byte, sharetransit.SeedSize))
	for name, sealed := range map[string][]byte{
		"sent twice":         sealShare(t, f, 1, st),
		"another master key": sealShare(t, other, 2, st),
		"another session":    sealShare(t, f, 2, hsmapi.RestoreStatus{ID: st.ID, PublicKey: stranger.Public}),
		"garbage":            []byte("not a share"),
	} {
		got, err := s.SubmitShare(ctx, sealed)
		if !errors.Is(err, hsmapi.ErrShareRefused) || got.Received != 2 {
			t.Errorf("%s: %v, %d received", name, err, got.Received)
		}
	}

	// Not the SO: refused, whoever it is.
	user := userSession(t, h, hsmapi.UserNormal, userPIN)
	if _, err := user.SubmitShare(ctx, sealShare(t, f, 2, st)); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Fatalf("user submits: %v", err)
	}

	st, err = s.SubmitShare(ctx, sealShare(t, f, 5, st))
	if err != nil || !st.Done {
		t.Fatalf("third share: %+v, %v", st, err)
	}
	if err := signsAndVerifies(s, k); err != nil {
		t.Fatalf("sign after the restore: %v", err)
	}
	after, _ := s.MasterKeyStatus(ctx)
	if !after.Set || after.CheckValue != f.CheckValue || after.Restore != nil {
		t.Fatalf("status after the restore: %+v", after)
	}

	// The restored key is in the master key memory: it survives a restart.
	s.Close()
	if _, s3 := restarted(t, h); signsAndVerifies(s3, k) != nil {
		t.Fatalf("sign after a restart: %v", err)
	}
}

// Damaged shares that still open (a custodian's file edited, resealed)
// recombine to a wrong key: refused at the threshold, the session keeps
// the shares before it, and an abort starts over.
func TestRestoreRefusesWrongKey(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	f := backupMasterKey(t, s, 2, 3)
	if err := s.ZeroizeMasterKey(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.BeginRestore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st, err = s.SubmitShare(ctx, sealShare(t, f, 1, st)); err != nil {
		t.Fatal(err)
	}
	bad, err := f.Open(f.Name(2), custodian(2))
	if err != nil {
		t.Fatal(err)
	}
	bad.Value[0] ^= 1
	sealed, err := sharetransit.SealFrom(f, bad, st.PublicKey, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.SubmitShare(ctx, sealed); !errors.Is(err, hsmapi.ErrShareRefused) || got.Received != 1 {
		t.Fatalf("damaged share: %+v, %v", got, err)
	}
	if status, _ := s.MasterKeyStatus(ctx); status.Set {
		t.Fatal("a wrong key was written")
	}
	if err := s.AbortRestore(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SubmitShare(ctx, sealShare(t, f, 2, st)); !errors.Is(err, hsmapi.ErrNoRestore) {
		t.Fatalf("submit after abort: %v", err)
	}
	st, _ = s.BeginRestore(ctx)
	for _, i := range []int{3, 2} {
		if st, err = s.SubmitShare(ctx, sealShare(t, f, i, st)); err != nil {
			t.Fatal(err)
		}
	}
	if !st.Done {
		t.Fatalf("not done: %+v", st)
	}
}

func TestMasterKeyNeedsOfficer(t *testing.T) {
	h, _ := newTestHSM(t)
	user := userSession(t, h, hsmapi.UserNormal, userPIN)
	req := hsmapi.BackupRequest{ID: "m", Threshold: 1, Shares: 1, Passphrases: [][]byte{[]byte("p")}}
	if _, err := user.BackupMasterKey(ctx, req); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("backup: %v", err)
	}
	if err := user.ZeroizeMasterKey(ctx); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("zeroize: %v", err)
	}
	if _, err := user.MasterKeyStatus(ctx); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("status: %v", err)
	}
	if _, err := user.BeginRestore(ctx); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("restore: %v", err)
	}
	so := h.NewSession()
	if err := so.Login(ctx, hsmapi.UserSO, soPIN); err != nil {
		t.Fatal(err)
	}
	defer so.Close()
	for name, r := range map[string]hsmapi.BackupRequest{
		"passphrases short": {ID: "m", Threshold: 2, Shares: 3, Passphrases: [][]byte{[]byte("a"), []byte("b")}},
		"empty passphrase":  {ID: "m", Threshold: 1, Shares: 2, Passphrases: [][]byte{[]byte("a"), nil}},
		"k > n":             {ID: "m", Threshold: 3, Shares: 2, Passphrases: [][]byte{[]byte("a"), []byte("b")}},
		"bad id":            {ID: "a b", Threshold: 1, Shares: 1, Passphrases: [][]byte{[]byte("a")}},
	} {
		if _, err := so.BackupMasterKey(ctx, r); !errors.Is(err, hsmapi.ErrBadArguments) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, ok, _ := h.recordedCheckValue(); ok {
		t.Error("a refused backup recorded the check value")
	}
}

var _ hsmapi.MasterKeyKeeper = (*Session)(nil)

// A restore survives the board's power cycles (every CLI command is one),
// in a 0600 file that is gone once the key is back.
func TestRestoreSurvivesRestart(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	f := backupMasterKey(t, s, 2, 2)
	if err := s.ZeroizeMasterKey(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := s.BeginRestore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SubmitShare(ctx, sealShare(t, f, 2, st)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	h.Close()
	path := filepath.Join(h.board.Dir, restoreFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("restore file: %v, %v", fi, err)
	}

	_, s2 := restarted(t, h)
	again, err := s2.BeginRestore(ctx)
	if err != nil || again.ID != st.ID || again.Received != 1 {
		t.Fatalf("after a restart: %+v, %v", again, err)
	}
	if st, err = s2.SubmitShare(ctx, sealShare(t, f, 1, again)); err != nil || !st.Done {
		t.Fatalf("%+v, %v", st, err)
	}
	if err := signsAndVerifies(s2, k); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the restore file is still there: %v", err)
	}
}

func keystoreRecordOf(cv [8]byte) keystore.Record {
	return keystore.Record{ID: masterKeyCheckID, Kind: kindMasterKeyCheck, Data: cv[:]}
}
