package main

import (
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/internal/softhsm"
	"github.com/hsmkit/cryptech-backup/internal/testtool"
)

// BenchmarkOneShotSign times what an operator's or a CI job's loop of sign
// calls waits for (issue 13 item 2): one process per signature with a
// P-256 key, as built for use (go build, the default PIN work factor), not
// this test binary. The cases:
//
//   - hsm: sign --hsm DIR, PIN tickets on (the second and later calls pass
//     on the ticket the first left);
//   - hsm-no-tickets: the same with CRYPTECH_PIN_TICKETS=off, every call
//     paying the PIN record's PBKDF2 (what every call paid before);
//   - rpc: sign --rpc against one serve the benchmark starts;
//   - softhsm2-pkcs11-tool: pkcs11-tool --sign -m ECDSA on a SoftHSM2
//     token's P-256 key (a SHA-256 digest as its input), the anchor.
//
// Besides the wall time, cpu-ms/op is the CPU time (user and system) of
// the process per signature, which a loaded machine disturbs less; for rpc
// it leaves out serve's. Run them in one go so that the ratio is read from
// one run (docs/PERFORMANCE.md, "One-shot sign").
func BenchmarkOneShotSign(b *testing.B) {
	tool := testtool.Require(b, "pkcs11-tool", "opensc")
	util := testtool.Require(b, "softhsm2-util", "softhsm2")
	module := softhsm.Require(b)
	work := b.TempDir()
	bin := filepath.Join(work, "cryptech-backup")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	const pin = "bench-wheel-pin"
	tickets := filepath.Join(work, "tickets")
	env := append(os.Environ(), "CRYPTECH_PIN="+pin, "CRYPTECH_PIN_TICKETS="+tickets)
	// run runs a command and returns the CPU time it took.
	run := func(b *testing.B, env []string, name string, args ...string) time.Duration {
		cmd := exec.Command(name, args...)
		cmd.Env, cmd.Dir = env, work
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	msg := filepath.Join(work, "msg")
	digest := sha256.Sum256([]byte("signed in a loop\n"))
	if err := os.WriteFile(msg, []byte("signed in a loop\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(msg+".sha256", digest[:], 0o600); err != nil {
		b.Fatal(err)
	}
	run(b, env, bin, "init", "--hsm", "hsm", "--so-pin", "bench-so-pin", "--user-pin", "bench-user-pin")
	run(b, env, bin, "keygen", "ec", "--hsm", "hsm", "--curve", "p256", "--label", "k")
	// The SoftHSM2 token, made by softhsm2-util and pkcs11-tool: this
	// process never loads the module, so that -count runs set it up again.
	sh, err := softhsm.SetupModule(filepath.Join(work, "softhsm"), module)
	if err != nil {
		b.Fatal(err)
	}
	shEnv := append(os.Environ(), "SOFTHSM2_CONF="+sh.Conf())
	run(b, shEnv, util, "--init-token", "--free", "--label", "bench", "--so-pin", "bench-so-pin", "--pin", "bench-user-pin")
	p11 := []string{"--module", module, "--token-label", "bench", "--login", "--pin", "bench-user-pin"}
	run(b, shEnv, tool, append(p11, "--keypairgen", "--key-type", "EC:prime256v1", "--id", "01", "--label", "k")...)

	sign := []string{"sign", "--key", "k", "-i", msg, "-o", filepath.Join(work, "sig"), "--force"}

	loop := func(b *testing.B, env []string, name string, args ...string) {
		run(b, env, name, args...) // a ticket, a warm page cache
		var cpu time.Duration
		for b.Loop() {
			cpu += run(b, env, name, args...)
		}
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
	}
	b.Run("hsm", func(b *testing.B) {
		loop(b, env, bin, append(sign, "--hsm", "hsm")...)
	})
	b.Run("hsm-no-tickets", func(b *testing.B) {
		loop(b, append(env, "CRYPTECH_PIN_TICKETS=off"), bin, append(sign, "--hsm", "hsm")...)
	})
	b.Run("rpc", func(b *testing.B) {
		sock := filepath.Join(work, "hsm.sock")
		serve := exec.Command(bin, "serve", "--hsm", "hsm", "--listen", "unix:"+sock)
		serve.Env, serve.Dir = env, work
		if err := serve.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() {
			serve.Process.Signal(syscall.SIGINT)
			serve.Wait()
		}()
		if err := dialUnixWithin(sock, 15*time.Second); err != nil {
			b.Fatal(err)
		}
		loop(b, env, bin, append(sign, "--rpc", "unix:"+sock)...)
	})
	b.Run("softhsm2-pkcs11-tool", func(b *testing.B) {
		loop(b, shEnv, tool, append(p11, "--sign", "-m", "ECDSA", "--id", "01",
			"-i", msg+".sha256", "-o", filepath.Join(work, "p11.sig"))...)
	})
}
