package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/p11module"
	"github.com/hsmkit/cryptech-backup/internal/testtool"
	"github.com/hsmkit/cryptech-backup/rpc"
)

// serveHSM serves the emulated HSM in dir over libhal RPC on a Unix
// socket until the test ends, and points the module at that socket
// (with $CRYPTECH_HSM unset).
func serveHSM(t *testing.T, dir string) (*hsm.HSM, *rpc.Server) {
	t.Helper()
	addr, h, srv := p11module.Serve(t, dir)
	t.Setenv("CRYPTECH_HSM", "")
	t.Setenv("CRYPTECH_RPC_CLIENT_SOCKET_NAME", strings.TrimPrefix(addr, "unix:"))
	return h, srv
}

var (
	testedKey  = regexp.MustCompile(`testing key \d \(rsa\) \n  testing signature mechanisms`)
	skippedKey = regexp.MustCompile(`testing key \d \(ec\) .*-- non-RSA, skipping`)
)

// pkcs11-tool --test on a token with an RSA, an EC and an AES key that
// pkcs11-tool made, in-process and over RPC. What OpenSC 0.23's --test
// does: random numbers, digests (with the length protocol), signatures
// and verification with the RSA key (the EC key it names and skips),
// RSA-OAEP decryption; it has no test of secret keys. SoftHSM2 2.6.1
// fails the same run (C_DecryptInit of OAEP with a label:
// CKR_ARGUMENTS_BAD).
func TestPKCS11ToolTest(t *testing.T) {
	tool := testtool.Require(t, "pkcs11-tool", "opensc")
	lib := buildModule(t)
	dir := newHSM(t)
	p11 := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := exec.Command(tool, append([]string{"--module", lib, "--login", "--pin", string(hsmtest.PIN)}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("pkcs11-tool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	p11(t, "--keypairgen", "--key-type", "rsa:2048", "--id", "01", "--label", "rsa")
	p11(t, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "02", "--label", "ec")
	// pkcs11-tool's default AES key (encrypt and decrypt, not sensitive)
	// is against the key policy: the HSM's AES keys are sensitive and
	// only wrap.
	p11(t, "--keygen", "--key-type", "AES:32", "--id", "03", "--label", "aes", "--sensitive", "--usage-wrap")
	list := p11(t, "--list-objects")
	for _, want := range []string{"Private Key Object; RSA", "Private Key Object; EC", "Secret Key Object; AES length 32"} {
		if !strings.Contains(list, want) {
			t.Fatalf("pkcs11-tool --list-objects: no %q in\n%s", want, list)
		}
	}
	check := func(t *testing.T) {
		out := p11(t, "--test")
		t.Logf("pkcs11-tool --test:\n%s", out)
		for _, want := range []string{
			"C_GenerateRandom():\n  seeding (C_SeedRandom) not supported\n  seems to be OK",
			"all 4 digest functions seem to work", "SHA256: OK",
			"SHA256-RSA-PKCS: OK",
			"Verify (currently only for RSA)", "SHA1-RSA-PKCS: OK",
			"Decryption (currently only for RSA)", "RSA-PKCS-OAEP",
			"No errors",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("pkcs11-tool --test: no %q", want)
			}
		}
		// The keys' order is the HSM's (by UUID).
		if !testedKey.MatchString(out) || !skippedKey.MatchString(out) {
			t.Errorf("pkcs11-tool --test did not test the RSA key and skip the EC key")
		}
		if strings.Contains(out, "ERR") {
			t.Errorf("pkcs11-tool --test reports an error")
		}
	}
	t.Run("in-process", check)
	t.Run("rpc", func(t *testing.T) {
		serveHSM(t, dir)
		check(t)
	})
}

// OpenSSL signs through libengine-pkcs11-openssl (libp11) with keys on
// the module, named by PKCS#11 URIs: ECDSA, RSA PKCS#1 v1.5 and RSA-PSS.
// Each signature verifies under the public key OpenSSL reads off the
// module through the same engine, and under the key's public half as
// pkcs11-tool reads it; a flipped byte is refused.
func TestOpenSSLEngineSigns(t *testing.T) {
	tool := testtool.Require(t, "pkcs11-tool", "opensc")
	openssl := testtool.Require(t, "openssl", "openssl")
	lib := buildModule(t)
	newHSM(t)
	if out, err := exec.Command(openssl, "engine", "-t", "pkcs11").CombinedOutput(); err != nil || !strings.Contains(string(out), "[ available ]") {
		testtool.Missing(t, "OpenSSL's pkcs11 engine ("+strings.TrimSpace(string(out))+")", "libengine-pkcs11-openssl")
	}
	dir := t.TempDir()
	pin := string(hsmtest.PIN)
	run := func(t *testing.T, env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// The engine finds the module by $PKCS11_MODULE_PATH.
	engine := []string{"PKCS11_MODULE_PATH=" + lib}
	p11 := []string{"--module", lib, "--login", "--pin", pin}
	run(t, nil, tool, append(p11, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "11", "--label", "ec-key")...)
	run(t, nil, tool, append(p11, "--keypairgen", "--key-type", "rsa:2048", "--id", "12", "--label", "rsa-key")...)

	msg := filepath.Join(dir, "msg")
	if err := os.WriteFile(msg, []byte("signed by OpenSSL through the pkcs11 engine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	digest := filepath.Join(dir, "msg.sha256")
	run(t, nil, openssl, "dgst", "-sha256", "-binary", "-out", digest, msg)

	for _, c := range []struct {
		name, label string
		opts        []string
	}{
		{"ECDSA", "ec-key", nil},
		{"RSA-PKCS", "rsa-key", []string{"-pkeyopt", "digest:sha256"}},
		{"RSA-PSS", "rsa-key", []string{"-pkeyopt", "digest:sha256", "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:32"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			uri := "pkcs11:token=hsm;object=" + c.label
			sig := filepath.Join(dir, c.name+".sig")
			run(t, engine, openssl, append([]string{"pkeyutl", "-engine", "pkcs11", "-keyform", "engine", "-sign",
				"-inkey", uri + ";type=private;pin-value=" + pin, "-in", digest, "-out", sig}, c.opts...)...)

			// The public key off the module, once through the engine and
			// once as pkcs11-tool reads it.
			fromEngine := filepath.Join(dir, c.name+".engine.pem")
			run(t, engine, openssl, "pkey", "-engine", "pkcs11", "-inform", "engine", "-pubin",
				"-in", uri+";type=public;pin-value="+pin, "-pubout", "-out", fromEngine)
			der := filepath.Join(dir, c.name+".der")
			run(t, nil, tool, append(p11, "--read-object", "--type", "pubkey", "--label", c.label, "--output-file", der)...)
			fromTool := filepath.Join(dir, c.name+".tool.pem")
			run(t, nil, openssl, "pkey", "-pubin", "-inform", "DER", "-in", der, "-out", fromTool)

			verify := func(pub, sigFile string) (string, error) {
				out, err := exec.Command(openssl, append([]string{"pkeyutl", "-verify", "-pubin", "-inkey", pub,
					"-in", digest, "-sigfile", sigFile}, c.opts...)...).CombinedOutput()
				return string(out), err
			}
			for _, pub := range []string{fromEngine, fromTool} {
				if out, err := verify(pub, sig); err != nil || !strings.Contains(out, "Signature Verified Successfully") {
					t.Fatalf("the engine's signature does not verify under %s: %v\n%s", filepath.Base(pub), err, out)
				}
			}
			b, err := os.ReadFile(sig)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 1
			bad := filepath.Join(dir, c.name+".bad")
			if err := os.WriteFile(bad, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := verify(fromTool, bad); err == nil {
				t.Fatalf("a flipped signature verifies:\n%s", out)
			}
		})
	}
}

// GnuTLS loads the module through p11-kit (which initializes it with
// CKF_LIBRARY_CANT_CREATE_OS_THREADS, as NSS does): p11tool lists the
// keys, and certtool signs a self-signed certificate with each key on the
// module, named by a PKCS#11 URI. OpenSSL verifies each certificate's
// signature, and its public key is the one p11tool reads off the module.
func TestGnuTLSSigns(t *testing.T) {
	tool := testtool.Require(t, "pkcs11-tool", "opensc")
	certtool := testtool.Require(t, "certtool", "gnutls-bin")
	p11tool := testtool.Require(t, "p11tool", "gnutls-bin")
	openssl := testtool.Require(t, "openssl", "openssl")
	lib := buildModule(t)
	newHSM(t)
	dir := t.TempDir()
	pin := string(hsmtest.PIN)
	run := func(t *testing.T, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "GNUTLS_PIN="+pin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	p11 := []string{"--module", lib, "--login", "--pin", pin}
	run(t, tool, append(p11, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "21", "--label", "gnutls-ec")...)
	run(t, tool, append(p11, "--keypairgen", "--key-type", "rsa:2048", "--id", "22", "--label", "gnutls-rsa")...)
	list := run(t, p11tool, "--provider", lib, "--login", "--list-all-privkeys")
	for _, want := range []string{"Private key (EC/ECDSA-SECP256R1)", "Label: gnutls-ec", "Private key (RSA-2048)", "Label: gnutls-rsa"} {
		if !strings.Contains(list, want) {
			t.Fatalf("p11tool --list-all-privkeys: no %q in\n%s", want, list)
		}
	}
	template := filepath.Join(dir, "template")
	if err := os.WriteFile(template, []byte("cn = cryptech-pkcs11 test\nexpiration_days = 1\nsigning_key\nca\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, label := range []string{"gnutls-ec", "gnutls-rsa"} {
		t.Run(label, func(t *testing.T) {
			uri := "pkcs11:token=hsm;object=" + label
			cert := filepath.Join(dir, label+".crt")
			run(t, certtool, "--provider", lib, "--generate-self-signed", "--load-privkey", uri+";type=private",
				"--template", template, "--outfile", cert)
			if out := run(t, openssl, "verify", "-CAfile", cert, cert); !strings.Contains(out, ": OK") {
				t.Fatalf("openssl verify:\n%s", out)
			}
			certPub := run(t, openssl, "x509", "-in", cert, "-noout", "-pubkey")
			pubFile := filepath.Join(dir, label+".pub")
			run(t, p11tool, "--provider", lib, "--login", "--export-pubkey", "--outfile", pubFile, uri+";type=public")
			modulePub, err := os.ReadFile(pubFile)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(certPub) != strings.TrimSpace(string(modulePub)) {
				t.Fatalf("the certificate's public key\n%s\nis not the module's\n%s", certPub, modulePub)
			}
		})
	}
}
