package rpc

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/sharetest"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
	"github.com/hsmkit/cryptech-backup/storefile"
)

// The extensions of version 6: the master key's life and keys stored
// outside the HSM.

// inProcess is a session of h logged in as user, beside the server's.
func inProcess(t *testing.T, h *hsm.HSM, user hsmapi.User, pin []byte) *hsm.Session {
	t.Helper()
	s := h.NewSession()
	if err := s.Login(ctx, user, pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Logout(ctx) })
	return s
}

// backupOver backs the master key up k-of-n through mk, cheaply.
var backupOver = sharetest.Backup

// sealFor does what `masterkey submit` does for share i of f.
var sealFor = sharetest.Seal

// sentinels are the errors callers of the master key and stored keys
// branch on.
var sentinels = []error{hsmapi.ErrForbidden, hsmapi.ErrNotLoggedIn, hsmapi.ErrNotThisHSM, hsmapi.ErrMasterKeySet,
	hsmapi.ErrNoRestore, hsmapi.ErrShareRefused, hsmapi.ErrBadArguments, hsmapi.ErrKeyNotFound, hsmapi.ErrTamper}

// sameRefusal fails unless the error over RPC matches the sentinel want
// and every other sentinel exactly as the error in process does, and says
// what the HSM said.
func sameRefusal(t *testing.T, what string, want, inProc, overRPC error) {
	t.Helper()
	if !errors.Is(inProc, want) {
		t.Fatalf("%s in process: %v, want %v", what, inProc, want)
	}
	for _, s := range sentinels {
		if errors.Is(inProc, s) != errors.Is(overRPC, s) {
			t.Errorf("%s: errors.Is(%v) in process %v, over RPC %v (%v)", what, s, errors.Is(inProc, s), !errors.Is(inProc, s), overRPC)
		}
	}
	if words := refusalText(inProc, want); !strings.Contains(overRPC.Error(), words) {
		t.Errorf("%s over RPC: %q, without the HSM's words %q", what, overRPC, words)
	}
}

// TestMasterKeyOverRPC runs the tamper drill over RPC: backup 2-of-3,
// zeroize, a share, refusals that leave the restore as it was, the second
// share, rotation and retirement; each refusal is the error it is in
// process, and serve's log holds no passphrase.
func TestMasterKeyOverRPC(t *testing.T) {
	var log syncBuffer
	addr, _, h, _ := servedHSM(t, testOptions, func(s *Server) { s.log = slog.New(slog.NewTextHandler(&log, nil)) })
	wheel := dialLogin(t, addr)
	user := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	local := inProcess(t, h, hsmapi.UserWheel, wheelPIN)
	localUser := inProcess(t, h, hsmapi.UserNormal, userPIN)
	key, err := user.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken})
	if err != nil {
		t.Fatal(err)
	}

	_, inErr := localUser.MasterKeyStatus(ctx)
	_, rpcErr := user.MasterKeyStatus(ctx)
	sameRefusal(t, "status as the user", hsmapi.ErrForbidden, inErr, rpcErr)

	f := backupOver(t, wheel, 2, 3)
	st, err := wheel.MasterKeyStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := local.MasterKeyStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, want) || !st.Set || st.CheckValue != f.CheckValue {
		t.Fatalf("status over RPC %+v, in process %+v, key file's check value %x", st, want, f.CheckValue)
	}
	_, inErr = local.BeginRestore(ctx)
	_, rpcErr = wheel.BeginRestore(ctx)
	sameRefusal(t, "restore with the key set", hsmapi.ErrMasterKeySet, inErr, rpcErr)
	_, inErr = local.SubmitShare(ctx, []byte("sealed"))
	_, rpcErr = wheel.SubmitShare(ctx, []byte("sealed"))
	sameRefusal(t, "a share with no restore open", hsmapi.ErrNoRestore, inErr, rpcErr)

	if err := wheel.ZeroizeMasterKey(ctx); err != nil {
		t.Fatal(err)
	}
	inErr = hsmapi.SignAndVerify(ctx, localUser, key, []byte("after the restore"))
	rpcErr = hsmapi.SignAndVerify(ctx, user, key, []byte("after the restore"))
	sameRefusal(t, "sign after zeroize", hsmapi.ErrTamper, inErr, rpcErr)

	rs, err := wheel.BeginRestore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rs, err = wheel.SubmitShare(ctx, sealFor(t, f, 3, rs)); err != nil || rs.Received != 1 || rs.Threshold != 2 || rs.Done {
		t.Fatalf("first share: %+v, %v", rs, err)
	}
	again := sealFor(t, f, 3, rs)
	_, inErr = local.SubmitShare(ctx, again)
	_, rpcErr = wheel.SubmitShare(ctx, again)
	sameRefusal(t, "a share twice", hsmapi.ErrShareRefused, inErr, rpcErr)
	if now, err := wheel.MasterKeyStatus(ctx); err != nil || now.Restore == nil || now.Restore.Received != 1 || now.Set {
		t.Fatalf("after a refused share: %+v, %v", now, err)
	}
	if rs, err = wheel.SubmitShare(ctx, sealFor(t, f, 1, rs)); err != nil || !rs.Done {
		t.Fatalf("second share: %+v, %v", rs, err)
	}
	if err := hsmapi.SignAndVerify(ctx, user, key, []byte("after the restore")); err != nil {
		t.Fatalf("sign after the restore: %v", err)
	}

	res, err := wheel.RotateMasterKey(ctx)
	if err != nil || res.OldCheckValue != f.CheckValue || res.CheckValue == f.CheckValue || res.Resealed != 1 {
		t.Fatalf("rotate: %+v, %v", res, err)
	}
	if st, err = wheel.MasterKeyStatus(ctx); err != nil || len(st.OldKeys) != 1 || st.OldKeys[0].CheckValue != f.CheckValue {
		t.Fatalf("status after rotation: %+v, %v", st, err)
	}
	inErr = local.RetireMasterKey(ctx, [8]byte{1})
	rpcErr = wheel.RetireMasterKey(ctx, [8]byte{1})
	sameRefusal(t, "retire an unknown key", hsmapi.ErrKeyNotFound, inErr, rpcErr)
	if err := wheel.RetireMasterKey(ctx, f.CheckValue); err != nil {
		t.Fatal(err)
	}
	if st, err = wheel.MasterKeyStatus(ctx); err != nil || len(st.OldKeys) != 0 {
		t.Fatalf("status after retirement: %+v, %v", st, err)
	}

	// An abort ends a restore; the next share has none to go to.
	if err := wheel.ZeroizeMasterKey(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := wheel.BeginRestore(ctx); err != nil {
		t.Fatal(err)
	}
	if err := wheel.AbortRestore(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err = wheel.MasterKeyStatus(ctx); err != nil || st.Restore != nil || st.Set {
		t.Fatalf("status after abort: %+v, %v", st, err)
	}

	logged := log.String()
	if !strings.Contains(logged, "EXT_RESTORE_SUBMIT") && !strings.Contains(logged, fmt.Sprint(uint32(wire.FuncExtRestoreSubmit))) {
		t.Errorf("the refused share left no line in the log:\n%s", logged)
	}
	for i := 1; i <= 3; i++ {
		if strings.Contains(logged, string(sharetest.Passphrase(i))) {
			t.Errorf("serve's log holds custodian %d's passphrase", i)
		}
	}
}

// TestStoredKeysOverRPC stores 1,100 keys over RPC (their UUIDs take two
// uploads, the file many downloads), checks and restores the file, all
// as in process, and refuses another HSM's file as in process.
func TestStoredKeysOverRPC(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hsm")
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: wheelPIN, SOPIN: []byte("so-pin"), UserPIN: userPIN, Blocks: 1200}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	addr, _ := serveHSM(t, h)
	local := inProcess(t, h, hsmapi.UserNormal, userPIN)
	const n = 1100
	ids := make([]hsmapi.UUID, n)
	for i := range ids {
		k, err := local.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
			Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken, Label: fmt.Sprint("key ", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = k.UUID
	}
	if n*len(hsmapi.UUID{}) <= wire.MaxTransferChunk {
		t.Fatal("the UUIDs fit one upload")
	}
	user := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	file, err := user.StoreKeys(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(file) <= 2*wire.MaxTransferChunk {
		t.Fatalf("a %d-byte file is no test of downloads", len(file))
	}
	t.Logf("%d keys: a %d-byte file, %d downloads", n, len(file), (len(file)+wire.MaxTransferChunk-1)/wire.MaxTransferChunk)
	sf, err := storefile.Parse(file)
	if err != nil || len(sf.Keys) != n {
		t.Fatalf("stored-keys file: %v", err)
	}
	want, err := local.CheckStoredKeys(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	got, err := user.CheckStoredKeys(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("check over RPC describes the keys otherwise than in process")
	}

	// A flipped byte is refused, and nothing stored.
	bad := bytes.Clone(file)
	bad[len(bad)/2] ^= 1
	if _, err := user.RestoreKeys(ctx, bad); err == nil {
		t.Fatal("a file with a flipped byte restored")
	}

	for _, id := range ids[:n-1] {
		if err := local.DeleteKey(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	res, err := user.RestoreKeys(ctx, file)
	if err != nil || len(res) != n {
		t.Fatalf("restore: %d keys, %v", len(res), err)
	}
	for i, r := range res {
		if r.Key.UUID != ids[i] || r.Present != (i == n-1) || r.Key.Label != fmt.Sprint("key ", i) {
			t.Fatalf("restored key %d: %+v", i, r)
		}
	}
	if err := hsmapi.SignAndVerify(ctx, user, want[7], []byte("after the restore")); err != nil {
		t.Fatal(err)
	}

	// Another HSM's file: refused as in process, nothing stored.
	otherAddr, _, other, _ := servedHSM(t, testOptions)
	otherUser := dialAs(t, otherAddr, hsmapi.UserNormal, userPIN)
	_, inErr := inProcess(t, other, hsmapi.UserNormal, userPIN).RestoreKeys(ctx, file)
	_, rpcErr := otherUser.RestoreKeys(ctx, file)
	sameRefusal(t, "another HSM's file", hsmapi.ErrNotThisHSM, inErr, rpcErr)
	if keys, err := otherUser.Keys(ctx, hsmapi.Filter{}); err != nil || len(keys) != 0 {
		t.Fatalf("the other HSM holds %d keys, %v", len(keys), err)
	}
	_, inErr = local.StoreKeys(ctx, []hsmapi.UUID{{1}})
	_, rpcErr = user.StoreKeys(ctx, []hsmapi.UUID{{1}})
	sameRefusal(t, "store a key that is not there", hsmapi.ErrKeyNotFound, inErr, rpcErr)
}

// TestVersion5ServerCannotStore: a client of an older server says the
// master key and stored keys are not supported, and asks nothing.
func TestVersion5ServerCannotStore(t *testing.T) {
	addr, _ := served(t)
	c := dialLogin(t, addr)
	v5 := *c.ext
	v5.Version = 5
	c.ext = &v5
	if _, err := c.MasterKeyStatus(ctx); !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Errorf("status: %v", err)
	}
	if _, err := c.StoreKeys(ctx, []hsmapi.UUID{{1}}); !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Errorf("store: %v", err)
	}
}

// TestTransferBuffersGoWithTheLogin: the client keeps no passphrase it
// sent; the download buffer, which may hold the custodians' sealed shares,
// is dropped at logout; an upload that skips ahead is refused.
func TestTransferBuffersGoWithTheLogin(t *testing.T) {
	addr, _ := served(t)
	c := dialLogin(t, addr)
	req := hsmapi.BackupRequest{ID: "master", Threshold: 1, Shares: 1, Passphrases: [][]byte{sharetest.Passphrase(1)}, KDFTime: 1, KDFMemoryKiB: 64, KDFThreads: 1}
	file, err := c.BackupMasterKey(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(c.out[:cap(c.out)], sharetest.Passphrase(1)) {
		t.Error("a passphrase left in the client's output buffer")
	}
	var r wire.ExtDownloadResponse
	if err := c.call(wire.FuncExtDownload, &wire.ExtDownloadRequest{}, &r); err != nil || !bytes.Equal(r.Data, file) {
		t.Fatalf("the key file is not in the download buffer: %v", err)
	}
	if err := c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.call(wire.FuncExtDownload, &wire.ExtDownloadRequest{}, &r); err != nil || r.Total != 0 || len(r.Data) != 0 {
		t.Fatalf("after logout the download holds %d bytes (%v)", r.Total, err)
	}
	if err := c.call(wire.FuncExtUpload, &wire.ExtUploadRequest{Offset: 0, Data: []byte{1}}, &wire.ExtEmptyResponse{}); err != nil {
		t.Fatal(err)
	}
	err = c.call(wire.FuncExtUpload, &wire.ExtUploadRequest{Offset: 2, Data: []byte{1}}, &wire.ExtEmptyResponse{})
	if !errors.Is(err, hsmapi.ErrBadArguments) || !strings.Contains(err.Error(), "upload at 2, after 1 bytes") {
		t.Fatalf("an upload that skips ahead: %v", err)
	}
}
