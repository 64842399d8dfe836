package main

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/testtls"
	"github.com/hsmkit/cryptech-backup/internal/testtool"
	"github.com/hsmkit/cryptech-backup/rpc"
)

// createHSM creates an emulated HSM in dir (PINs hsmtest.PIN, the label
// given or its directory's name) and closes it, returning its identity.
func createHSM(t *testing.T, dir, label string) hsmapi.Identity {
	t.Helper()
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: hsmtest.PIN, SOPIN: hsmtest.PIN, UserPIN: hsmtest.PIN, Blocks: 128, Label: label}, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	id := h.Identity()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	return id
}

// writeConf writes a config file and points $CRYPTECH_PKCS11_CONF at it;
// $CRYPTECH_HSM names another HSM, which the config file takes precedence
// over.
func writeConf(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cryptech-pkcs11.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CRYPTECH_PKCS11_CONF", path)
	t.Setenv("CRYPTECH_HSM", filepath.Join(t.TempDir(), "not-this-one"))
	return path
}

func loadModule(t *testing.T) *pkcs11.Ctx {
	t.Helper()
	p := pkcs11.New(buildModule(t))
	if p == nil {
		t.Fatal("pkcs11.New failed")
	}
	t.Cleanup(p.Destroy)
	return p
}

// Two emulated HSMs, two slots in the config file's order, each token with
// its HSM's serial and its label (the HSM's own, or the config's); each
// has its own login.
func TestModuleTwoSlots(t *testing.T) {
	base := t.TempDir()
	dirA, dirB := filepath.Join(base, "alpha"), filepath.Join(base, "beta")
	idA, idB := createHSM(t, dirA, ""), createHSM(t, dirB, "Beta HSM")
	writeConf(t, "# two HSMs\n[slot]\nhsm = "+dirA+"\n\n[slot]\nlabel = Second\nhsm = "+dirB+"\n")

	tool := testtool.Require(t, "pkcs11-tool", "opensc")
	out, err := exec.Command(tool, "--module", buildModule(t), "--list-slots").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool --list-slots: %v\n%s", err, out)
	}
	for _, w := range []string{"Slot 0 (0x0)", "Slot 1 (0x1)", "token label        : alpha", "token label        : Second",
		"serial num         : " + idA.Serial, "serial num         : " + idB.Serial} {
		if !strings.Contains(string(out), w) {
			t.Errorf("pkcs11-tool --list-slots: no %q in\n%s", w, out)
		}
	}

	p := loadModule(t)
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer p.Finalize()
	for _, present := range []bool{true, false} {
		if slots, err := p.GetSlotList(present); err != nil || len(slots) != 2 || slots[0] != 0 || slots[1] != 1 {
			t.Fatalf("GetSlotList(%v): %v, %v", present, slots, err)
		}
	}
	for slot, want := range []hsmapi.Identity{{Label: "alpha", Serial: idA.Serial}, {Label: "Second", Serial: idB.Serial}} {
		ti, err := p.GetTokenInfo(uint(slot))
		if err != nil || ti.Label != want.Label || ti.SerialNumber != want.Serial || ti.ManufacturerID != hsm.Manufacturer || ti.Model != hsm.Model {
			t.Fatalf("slot %d: %+v, %v; want %+v", slot, ti, err, want)
		}
	}
	_, err = p.GetTokenInfo(2)
	wantErr(t, "GetTokenInfo of slot 2", err, pkcs11.CKR_SLOT_ID_INVALID)

	a, err := p.OpenSession(0, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.OpenSession(1, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two slots' sessions share handle %d", a)
	}
	if err := p.Login(a, pkcs11.CKU_USER, string(hsmtest.PIN)); err != nil {
		t.Fatal(err)
	}
	// The login is slot 0's alone.
	for h, want := range map[pkcs11.SessionHandle][2]uint{a: {0, pkcs11.CKS_RW_USER_FUNCTIONS}, b: {1, pkcs11.CKS_RW_PUBLIC_SESSION}} {
		if si, err := p.GetSessionInfo(h); err != nil || si.SlotID != want[0] || si.State != want[1] {
			t.Fatalf("session %d: %+v, %v; want slot %d, state %d", h, si, err, want[0], want[1])
		}
	}
	if err := p.Login(b, pkcs11.CKU_SO, string(hsmtest.PIN)); err != nil {
		t.Fatalf("SO login on slot 1 beside the user's on slot 0: %v", err)
	}
	// Closing slot 0's sessions logs slot 0 out, not slot 1.
	if err := p.CloseAllSessions(0); err != nil {
		t.Fatal(err)
	}
	_, err = p.GetSessionInfo(a)
	wantErr(t, "a session CloseAllSessions closed", err, pkcs11.CKR_SESSION_HANDLE_INVALID)
	if si, err := p.GetSessionInfo(b); err != nil || si.State != pkcs11.CKS_RW_SO_FUNCTIONS {
		t.Fatalf("slot 1's session after slot 0's were closed: %+v, %v", si, err)
	}
	// Both HSMs are the module's until Finalize.
	for _, dir := range []string{dirA, dirB} {
		if h, err := hsm.Open(dir, hsmtest.Options); !errors.Is(err, hsm.ErrBoardInUse) {
			if err == nil {
				h.Close()
			}
			t.Fatalf("open %s the module holds: %v", dir, err)
		}
	}
}

// C_Initialize opens every HSM of the config file or none: when one
// cannot be opened, those opened before are released, and with
// $CRYPTECH_PKCS11_DEBUG set the module says why on stderr, one line.
func TestModuleAllOrNothing(t *testing.T) {
	base := t.TempDir()
	dirA := filepath.Join(base, "alpha")
	createHSM(t, dirA, "")
	missing := filepath.Join(base, "missing")
	conf := writeConf(t, "[slot]\nhsm = "+dirA+"\n[slot]\nhsm = "+missing+"\n")

	p := loadModule(t)
	wantErr(t, "Initialize with an HSM missing", p.Initialize(), pkcs11.CKR_GENERAL_ERROR)
	h, err := hsm.Open(dirA, hsmtest.Options)
	if err != nil {
		t.Fatalf("the first HSM after a failed Initialize: %v", err)
	}
	// Held elsewhere: the first slot fails now, the second is never tried.
	wantErr(t, "Initialize with an HSM in use", p.Initialize(), pkcs11.CKR_GENERAL_ERROR)
	h.Close()
	_, err = p.GetSlotList(true)
	wantErr(t, "GetSlotList after a failed Initialize", err, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)

	tool := testtool.Require(t, "pkcs11-tool", "opensc")
	for _, c := range []struct {
		name, conf, debug, want string
	}{
		{"an HSM missing", "", "1", "cryptech-pkcs11: C_Initialize: the slot of line 3: open HSM: "},
		{"an unknown key", "[slot]\nhsm = " + dirA + "\nserial = 1\n", "1", "cryptech-pkcs11: C_Initialize: config " + conf + ":3: unknown key serial"},
		{"quiet without the variable", "[slot]\nhsm = " + dirA + "\nserial = 1\n", "", ""},
	} {
		if c.conf != "" {
			if err := os.WriteFile(conf, []byte(c.conf), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(tool, "--module", buildModule(t), "--list-slots")
		cmd.Env = append(os.Environ(), "CRYPTECH_PKCS11_DEBUG="+c.debug)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err == nil {
			t.Fatalf("%s: pkcs11-tool --list-slots succeeded", c.name)
		}
		var ours []string
		for _, l := range strings.Split(stderr.String(), "\n") {
			if strings.HasPrefix(l, "cryptech-pkcs11:") {
				ours = append(ours, l)
			}
		}
		switch {
		case c.want == "" && len(ours) != 0:
			t.Errorf("%s: the module wrote %q", c.name, ours)
		case c.want != "" && (len(ours) != 1 || !strings.HasPrefix(ours[0], c.want)):
			t.Errorf("%s: the module wrote %q, want one line starting %q", c.name, ours, c.want)
		}
	}
}

// A slot on serve over TCP and TLS 1.3 with a client certificate: the
// token is the HSM's, with the serial and label it has in-process.
func TestModuleOverTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "remote")
	id := createHSM(t, dir, "")
	h, err := hsm.Open(dir, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ca, other := testtls.NewCA(t, "test CA"), testtls.NewCA(t, "other CA")
	files := t.TempDir()
	caFile := ca.WriteCA(t, files, "ca.pem")
	otherFile := other.WriteCA(t, files, "other.pem")
	certFile, keyFile := testtls.WriteCert(t, files, "client", ca.Issue(t, "client", false))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(h, nil)
	tl := tls.NewListener(l, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ca.Issue(t, "server", true)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool})
	go srv.Serve(tl)
	defer srv.Shutdown(t.Context())
	addr := "tcp:" + l.Addr().String()

	p := loadModule(t)
	writeConf(t, "[slot]\nrpc = "+addr+"\ntls-ca = "+otherFile+"\ntls-cert = "+certFile+"\ntls-key = "+keyFile+"\n")
	wantErr(t, "Initialize with a CA that did not sign the server's certificate", p.Initialize(), pkcs11.CKR_GENERAL_ERROR)
	writeConf(t, "[slot]\nrpc = "+addr+"\ntls-ca = "+caFile+"\n")
	wantErr(t, "Initialize without a client certificate", p.Initialize(), pkcs11.CKR_GENERAL_ERROR)

	writeConf(t, "[slot]\nrpc = "+addr+"\ntls-ca = "+caFile+"\ntls-cert = "+certFile+"\ntls-key = "+keyFile+"\n")
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer p.Finalize()
	ti, err := p.GetTokenInfo(0)
	if err != nil || ti.SerialNumber != id.Serial || ti.Label != "remote" || ti.Model != hsm.Model {
		t.Fatalf("token info over TLS: %+v, %v; want serial %s, label remote", ti, err, id.Serial)
	}
	remoteLogin(t, p, srv)
}

// pkcs11-tool changes the user's PIN (C_SetPIN), the SO sets it
// (C_InitPIN), and re-initializes the token (C_InitToken): each through the
// built module, each seen on the HSM afterwards.
func TestPKCS11ToolPINs(t *testing.T) {
	tool := testtool.Require(t, "pkcs11-tool", "opensc")
	lib := buildModule(t)
	dir := newHSM(t)
	t.Setenv("CRYPTECH_PKCS11_CONF", "")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tool, append([]string{"--module", lib}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("pkcs11-tool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	pinIs := func(user hsmapi.User, pin string) {
		t.Helper()
		h, err := hsm.Open(dir, hsmtest.Options)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if err := h.NewSession().Login(t.Context(), user, []byte(pin)); err != nil {
			t.Fatalf("%s's PIN is not %q: %v", user, pin, err)
		}
	}
	run("--change-pin", "--pin", string(hsmtest.PIN), "--new-pin", "changed-1")
	pinIs(hsmapi.UserNormal, "changed-1")
	run("--init-pin", "--login", "--login-type", "so", "--so-pin", string(hsmtest.PIN), "--new-pin", "set-by-so")
	pinIs(hsmapi.UserNormal, "set-by-so")
	pinIs(hsmapi.UserSO, string(hsmtest.PIN))

	// A key, which C_InitToken deletes.
	h, err := hsm.Open(dir, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	s := h.NewSession()
	if err := s.Login(t.Context(), hsmapi.UserNormal, []byte("set-by-so")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GenerateKey(t.Context(), hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagToken | hsmapi.FlagDigitalSignature}); err != nil {
		t.Fatal(err)
	}
	h.Close()
	cmd := exec.Command(tool, "--module", lib, "--init-token", "--label", "Renewed", "--so-pin", "wrong-pin")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "CKR_PIN_INCORRECT") {
		t.Fatalf("--init-token with a wrong SO PIN: %v\n%s", err, out)
	}
	run("--init-token", "--label", "Renewed", "--so-pin", string(hsmtest.PIN))
	if out := run("--list-slots"); !strings.Contains(out, "token label        : Renewed") {
		t.Fatalf("--list-slots after --init-token:\n%s", out)
	}
	h, err = hsm.Open(dir, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s = h.NewSession()
	if err := s.Login(t.Context(), hsmapi.UserNormal, []byte("set-by-so")); err != nil {
		t.Fatalf("the user's PIN after --init-token: %v", err)
	}
	if keys, err := s.Keys(t.Context(), hsmapi.Filter{}); err != nil || len(keys) != 0 {
		t.Fatalf("keys after --init-token: %v, %v", keys, err)
	}
}
