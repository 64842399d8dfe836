package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/p11module"
	"github.com/hsmkit/cryptech-backup/internal/sigder"
	"github.com/hsmkit/cryptech-backup/internal/testtool"
	"github.com/hsmkit/cryptech-backup/rpc"
)

// buildModule builds the module once per test binary, as its README says.
func buildModule(t testing.TB) string {
	t.Helper()
	return p11module.Build(t)
}

func TestMain(m *testing.M) {
	code := m.Run()
	p11module.Cleanup()
	os.Exit(code)
}

// newHSM creates an emulated HSM (PINs hsmtest.PIN), closed again so that
// the module can open it, and points $CRYPTECH_HSM at it.
func newHSM(t testing.TB) string {
	t.Helper()
	dir := p11module.NewHSM(t)
	t.Setenv("CRYPTECH_HSM", dir)
	return dir
}

func wantErr(t *testing.T, what string, err error, want uint) {
	t.Helper()
	var e pkcs11.Error
	if !errors.As(err, &e) || uint(e) != want {
		t.Fatalf("%s: got %v, want %s", what, err, pkcs11.Error(want))
	}
}

func TestModuleLoginCycle(t *testing.T) {
	lib := buildModule(t)
	dir := newHSM(t)
	p := pkcs11.New(lib)
	if p == nil {
		t.Fatalf("pkcs11.New(%s) failed", lib)
	}
	defer p.Destroy()

	if _, err := p.GetSlotList(true); err == nil {
		t.Fatal("GetSlotList before Initialize succeeded")
	} else {
		wantErr(t, "GetSlotList before Initialize", err, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
	}
	for round := 0; round < 2; round++ {
		if err := p.Initialize(); err != nil {
			t.Fatalf("round %d: Initialize: %v", round, err)
		}
		wantErr(t, "second Initialize", p.Initialize(), pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)
		// The HSM is the module's until Finalize: its directory is locked.
		if h, err := hsm.Open(dir, hsmtest.Options); err == nil {
			h.Close()
			t.Fatal("the HSM opened while the module holds it")
		} else if !errors.Is(err, hsm.ErrBoardInUse) {
			t.Fatalf("open the HSM the module holds: %v", err)
		}

		info, err := p.GetInfo()
		if err != nil || !strings.HasPrefix(info.ManufacturerID, "Cryptech") {
			t.Fatalf("GetInfo: %+v, %v", info, err)
		}
		slots, err := p.GetSlotList(true)
		if err != nil || len(slots) != 1 {
			t.Fatalf("GetSlotList: %v, %v", slots, err)
		}
		slot := slots[0]
		ti, err := p.GetTokenInfo(slot)
		if err != nil {
			t.Fatal(err)
		}
		if ti.Label != "hsm" || ti.Model != "Cryptech HSM" || len(ti.SerialNumber) != 16 || ti.Flags&pkcs11.CKF_LOGIN_REQUIRED == 0 {
			t.Fatalf("token info %+v", ti)
		}
		_, err = p.GetTokenInfo(slot + 1)
		wantErr(t, "GetTokenInfo of a slot that is not", err, pkcs11.CKR_SLOT_ID_INVALID)

		ro, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		rw, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.OpenSession(slot, 0)
		wantErr(t, "OpenSession without CKF_SERIAL_SESSION", err, pkcs11.CKR_SESSION_PARALLEL_NOT_SUPPORTED)
		if ti, _ := p.GetTokenInfo(slot); ti.SessionCount != 2 || ti.RwSessionCount != 1 {
			t.Fatalf("session counts %d, %d; want 2, 1", ti.SessionCount, ti.RwSessionCount)
		}

		// A wrong PIN is refused after the HSM's delay (once: it is long);
		// no one is logged in.
		if round == 0 {
			start := time.Now()
			wantErr(t, "Login with a wrong PIN", p.Login(ro, pkcs11.CKU_USER, "wrong-pin"), pkcs11.CKR_PIN_INCORRECT)
			if d := time.Since(start); d < hsm.DefaultWrongPINDelay {
				t.Errorf("a wrong PIN was refused after %v, before the HSM's delay of %v", d, hsm.DefaultWrongPINDelay)
			}
		}
		if si, _ := p.GetSessionInfo(ro); si.State != pkcs11.CKS_RO_PUBLIC_SESSION {
			t.Fatalf("state after a wrong PIN: %d", si.State)
		}
		wantErr(t, "SO login with a read-only session open", p.Login(rw, pkcs11.CKU_SO, string(hsmtest.PIN)), pkcs11.CKR_SESSION_READ_ONLY_EXISTS)
		wantErr(t, "Login of an unknown user type", p.Login(rw, 7, string(hsmtest.PIN)), pkcs11.CKR_USER_TYPE_INVALID)
		wantErr(t, "Login with a PIN too long", p.Login(rw, pkcs11.CKU_USER, strings.Repeat("x", hsm.MaxPINLength+1)), pkcs11.CKR_PIN_LEN_RANGE)
		wantErr(t, "Login with a PIN too short", p.Login(rw, pkcs11.CKU_USER, "abc"), pkcs11.CKR_PIN_LEN_RANGE)

		if err := p.Login(ro, pkcs11.CKU_USER, string(hsmtest.PIN)); err != nil {
			t.Fatalf("Login: %v", err)
		}
		// Login is the application's: every session has it.
		for h, want := range map[pkcs11.SessionHandle]uint{ro: pkcs11.CKS_RO_USER_FUNCTIONS, rw: pkcs11.CKS_RW_USER_FUNCTIONS} {
			if si, err := p.GetSessionInfo(h); err != nil || si.State != want || si.SlotID != slot {
				t.Fatalf("session %d: %+v, %v; want state %d", h, si, err, want)
			}
		}
		wantErr(t, "Login again", p.Login(rw, pkcs11.CKU_USER, string(hsmtest.PIN)), pkcs11.CKR_USER_ALREADY_LOGGED_IN)
		wantErr(t, "SO login over the user's", p.Login(rw, pkcs11.CKU_SO, string(hsmtest.PIN)), pkcs11.CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
		if err := p.Logout(rw); err != nil {
			t.Fatal(err)
		}
		wantErr(t, "Logout again", p.Logout(rw), pkcs11.CKR_USER_NOT_LOGGED_IN)

		// The SO, once the read-only session is gone.
		if err := p.CloseSession(ro); err != nil {
			t.Fatal(err)
		}
		wantErr(t, "CloseSession of a closed session", p.CloseSession(ro), pkcs11.CKR_SESSION_HANDLE_INVALID)
		_, err = p.GetSessionInfo(ro)
		wantErr(t, "GetSessionInfo of a closed session", err, pkcs11.CKR_SESSION_HANDLE_INVALID)
		if err := p.Login(rw, pkcs11.CKU_SO, string(hsmtest.PIN)); err != nil {
			t.Fatalf("SO Login: %v", err)
		}
		if si, _ := p.GetSessionInfo(rw); si.State != pkcs11.CKS_RW_SO_FUNCTIONS {
			t.Fatalf("SO session state %d", si.State)
		}
		_, err = p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		wantErr(t, "read-only session beside the SO's", err, pkcs11.CKR_SESSION_READ_WRITE_SO_EXISTS)

		// Closing the last session logs the application out.
		if err := p.CloseAllSessions(slot); err != nil {
			t.Fatal(err)
		}
		s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		if si, _ := p.GetSessionInfo(s); si.State != pkcs11.CKS_RO_PUBLIC_SESSION {
			t.Fatalf("state after CloseAllSessions: %d", si.State)
		}
		mechs, err := p.GetMechanismList(slot)
		if err != nil {
			t.Fatalf("GetMechanismList: %v", err)
		}
		for _, want := range []uint{pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.CKM_EC_KEY_PAIR_GEN, 0x4032} {
			if !hasMechanism(mechs, want) {
				t.Errorf("GetMechanismList lacks 0x%x", want)
			}
		}
		if !hasMechanism(mechs, pkcs11.CKM_ECDSA_SHA256) || !hasMechanism(mechs, pkcs11.CKM_SHA256_RSA_PKCS_PSS) {
			t.Fatalf("GetMechanismList: no signature mechanisms in %d", len(mechs))
		}

		if err := p.Finalize(); err != nil {
			t.Fatalf("round %d: Finalize: %v", round, err)
		}
		wantErr(t, "Finalize again", p.Finalize(), pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
		_, err = p.GetSessionInfo(s)
		wantErr(t, "GetSessionInfo after Finalize", err, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)
		// Finalize released the HSM.
		h, err := hsm.Open(dir, hsmtest.Options)
		if err != nil {
			t.Fatalf("open the HSM after Finalize: %v", err)
		}
		h.Close()
	}
}

func hasMechanism(ms []*pkcs11.Mechanism, typ uint) bool {
	for _, m := range ms {
		if m.Mechanism == typ {
			return true
		}
	}
	return false
}

func TestModuleWithoutHSM(t *testing.T) {
	lib := buildModule(t)
	t.Setenv("CRYPTECH_HSM", filepath.Join(t.TempDir(), "none"))
	p := pkcs11.New(lib)
	if p == nil {
		t.Fatal("pkcs11.New failed")
	}
	defer p.Destroy()
	if err := p.Initialize(); err == nil {
		p.Finalize()
		t.Fatal("Initialize succeeded with no HSM in $CRYPTECH_HSM")
	}
}

func TestPKCS11Tool(t *testing.T) {
	tool := testtool.Require(t, "pkcs11-tool", "opensc")
	lib := buildModule(t)
	newHSM(t)
	for _, c := range []struct {
		arg  string
		want []string
	}{
		{"--show-info", []string{"Cryptech emulated HSM PKCS#11", "Cryptech Project (emulated)"}},
		{"--list-slots", []string{"token label        : hsm", "token model        : Cryptech HSM"}},
		{"--list-mechanisms", []string{"ECDSA-SHA256, keySize={256,521}, hw, sign, verify", "SHA256-RSA-PKCS-PSS, keySize={1024,8192}, hw, sign, verify", "SHA256, digest"}},
	} {
		out, err := exec.Command(tool, "--module", lib, c.arg).CombinedOutput()
		if err != nil {
			t.Fatalf("pkcs11-tool %s: %v\n%s", c.arg, err, out)
		}
		t.Logf("pkcs11-tool %s:\n%s", c.arg, out)
		for _, w := range c.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("pkcs11-tool %s: no %q in\n%s", c.arg, w, out)
			}
		}
	}
}

// A login through the module leaves a PIN ticket, as the CLI's do, so the
// next pkcs11-tool of this boot skips the PIN's PBKDF2; a wrong PIN is
// still refused beside it.
func TestPKCS11ToolLeavesAPINTicket(t *testing.T) {
	tool := testtool.Require(t, "pkcs11-tool", "opensc")
	lib := buildModule(t)
	newHSM(t)
	tickets := filepath.Join(t.TempDir(), "tickets")
	t.Setenv(hsm.PINTicketsEnv, tickets)
	pkcs11Tool(t, tool, lib, "--list-objects")
	found, err := filepath.Glob(filepath.Join(tickets, "*-user.pin-ticket"))
	if err != nil || len(found) != 1 {
		t.Fatalf("tickets after a login: %v, %v", found, err)
	}
	fi, err := os.Stat(found[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("ticket mode %v, want 0600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(found[0])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, hsmtest.PIN) {
		t.Error("the ticket holds the PIN")
	}
	pkcs11Tool(t, tool, lib, "--list-objects")
	out, err := exec.Command(tool, "--module", lib, "--login", "--pin", "wrong PIN 1", "--list-objects").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "CKR_PIN_INCORRECT") {
		t.Errorf("pkcs11-tool with a wrong PIN beside a ticket: %v\n%s", err, out)
	}
}

func TestFromC(t *testing.T) { fromC(t, "fromc.py") }

// Bad input through every function from C: the specification's codes.
func TestBadInputFromC(t *testing.T) { fromC(t, "badinput.py") }

// The module from C's threads and in a fork()ed child.
func TestThreadsFromC(t *testing.T) { fromC(t, "threads.py") }

// TestForkOverRPCFromC: threads.py over the libhal socket. After fork()
// the parent finalizes while the child lives on, and the server then holds
// no connection of the module: the child closed its copies of the
// module's sockets at once (shim.c), which would otherwise keep them open
// until it exits.
func TestForkOverRPCFromC(t *testing.T) {
	python := testtool.Require(t, "python3", "python3")
	lib := buildModule(t)
	_, srv := serveHSM(t, newHSM(t))
	cmd := exec.Command(python, filepath.Join("testdata", "threads.py"), lib, "hold")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "finalized" {
		in.Close()
		cmd.Wait()
		t.Fatalf("threads.py: %q before finalizing\n%s", lines.Text(), stderr.Bytes())
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().Conns != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := srv.Stats(); st.Conns != 0 {
		t.Errorf("the parent finalized, the child lives: the server still has %d connections", st.Conns)
	}
	in.Write([]byte("\n"))
	in.Close()
	var rest []string
	for lines.Scan() {
		rest = append(rest, lines.Text())
	}
	if err := cmd.Wait(); err != nil || !slices.Equal(rest, []string{"ok"}) {
		t.Fatalf("threads.py: %v\n%s\n%s", err, strings.Join(rest, "\n"), stderr.Bytes())
	}
}

// fromC runs testdata/script with python3 (ctypes) on the module and a
// new emulated HSM; the script prints "ok" or fails.
func fromC(t *testing.T, script string) {
	t.Helper()
	python := testtool.Require(t, "python3", "python3")
	lib := buildModule(t)
	newHSM(t)
	out, err := exec.Command(python, filepath.Join("testdata", script), lib).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// Without $CRYPTECH_HSM the module talks libhal RPC on the socket, as
// Cryptech's own library talks to its multiplexer: here the project's
// server on an emulated HSM.
func TestModuleOverSocket(t *testing.T) {
	lib := buildModule(t)
	h, srv := serveHSM(t, newHSM(t))

	p := pkcs11.New(lib)
	if p == nil {
		t.Fatal("pkcs11.New failed")
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	// The HSM tells its identity over RPC (EXT_IDENTITY): the token is
	// the one the module shows in-process.
	ti, err := p.GetTokenInfo(0)
	if want := h.Identity(); err != nil || ti.Model != want.Model || ti.SerialNumber != want.Serial || ti.Label != want.Label {
		t.Fatalf("token info %+v, %v; want %+v", ti, err, want)
	}
	remoteLogin(t, p, srv)
	remoteKeyPair(t, p, h)
	if err := p.Finalize(); err != nil {
		t.Fatal(err)
	}
	// Finalize closed the connection, which logs its client out.
	deadline := time.Now().Add(5 * time.Second)
	for srv.Stats().Conns != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the module's connection is still open after Finalize: %+v", srv.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// No server: Initialize fails and says so.
	t.Setenv("CRYPTECH_RPC_CLIENT_SOCKET_NAME", filepath.Join(t.TempDir(), "none"))
	wantErr(t, "Initialize with no server", p.Initialize(), pkcs11.CKR_GENERAL_ERROR)
}

// remoteLogin logs in on slot 0, on an HSM behind srv: a wrong PIN is
// refused, the right one logs the module's one connection in.
func remoteLogin(t *testing.T, p *pkcs11.Ctx, srv *rpc.Server) {
	t.Helper()
	s, err := p.OpenSession(0, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Login with a wrong PIN", p.Login(s, pkcs11.CKU_USER, "wrong-pin"), pkcs11.CKR_PIN_INCORRECT)
	if err := p.Login(s, pkcs11.CKU_USER, string(hsmtest.PIN)); err != nil {
		t.Fatal(err)
	}
	if st := srv.Stats(); st.LoggedIn != 1 {
		t.Fatalf("the server has %d clients logged in, want 1", st.LoggedIn)
	}
}

// remoteKeyPair makes a key pair with C_GenerateKeyPair through the module
// over RPC, with a label and a CKA_ID (stored by PKEY_SET_ATTRIBUTES after
// the key is made), and signs with it: the HSM holds the key with both, and
// the signature verifies under the key's public half as the HSM tells it.
func remoteKeyPair(t *testing.T, p *pkcs11.Ctx, h *hsm.HSM) {
	t.Helper()
	s, err := p.OpenSession(0, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer p.CloseSession(s)
	const label = "made over RPC"
	id := []byte{0xC0, 0xFF, 0xEE}
	p256 := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	_, priv, err := p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, p256), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label), pkcs11.NewAttribute(pkcs11.CKA_ID, id)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label), pkcs11.NewAttribute(pkcs11.CKA_ID, id)})
	if err != nil {
		t.Fatalf("C_GenerateKeyPair over RPC: %v", err)
	}
	digest := sha256.Sum256([]byte("signed over RPC"))
	if err := p.SignInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}, priv); err != nil {
		t.Fatal(err)
	}
	sig, err := p.Sign(s, digest[:])
	if err != nil {
		t.Fatal(err)
	}

	hs := h.NewSession()
	defer hs.Close()
	ctx := context.Background()
	if err := hs.Login(ctx, hsmapi.UserNormal, hsmtest.PIN); err != nil {
		t.Fatal(err)
	}
	keys, err := hs.Keys(ctx, hsmapi.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var k hsmapi.KeyInfo
	for _, c := range keys {
		if c.Label == label {
			k = c
		}
	}
	if k.Label != label {
		t.Fatalf("no key labelled %q on the HSM: %+v", label, keys)
	}
	attrs, err := hs.KeyAttributes(ctx, k.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(attrs, func(a hsmapi.Attribute) bool { return a.Type == hsmapi.CKAID && bytes.Equal(a.Value, id) }) {
		t.Errorf("the key made over RPC lacks its CKA_ID: %+v", attrs)
	}
	der, err := sigder.ECDSARawToDER(sig, 32)
	if err != nil {
		t.Fatal(err)
	}
	if err := hsmapi.VerifySignature(k.PublicKey, digest[:], der, crypto.SHA256); err != nil {
		t.Errorf("the signature made over RPC: %v", err)
	}
}

func TestLengthsFromC(t *testing.T) { fromC(t, "lengths.py") }
