package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/p11module"
	"github.com/hsmkit/cryptech-backup/internal/softhsm"
	"github.com/hsmkit/cryptech-backup/internal/testtool"
)

// testOptions keep the CLI fast under test: a cheap PIN hash and a short
// wrong-PIN delay. The defaults are tested in package hsm.
var testOptions = hsm.Options{WrongPINDelay: 10 * time.Millisecond, PINIterations: 1000}

func TestMain(m *testing.M) {
	// The in-process tests leave no PIN tickets in the user's runtime
	// directory; the scripts keep theirs in $WORK (scriptParams).
	if _, set := os.LookupEnv(hsm.PINTicketsEnv); !set {
		os.Setenv(hsm.PINTicketsEnv, "off")
	}
	testscript.Main(m, map[string]func(){
		"cryptech-backup": func() {
			ignoreSIGPIPE()
			e := newEnv()
			e.readSecret = nil // tests never prompt, even when run from a terminal
			e.hsmOptions = testOptions
			os.Exit(run(os.Args[1:], e))
		},
	})
}

func TestScripts(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil && os.Getenv("CI") == "true" {
		t.Fatal("openssl is missing: the scripts check signatures with it (apt-get install openssl)")
	}
	if _, err := exec.LookPath("pkcs11-tool"); err != nil && os.Getenv("CI") == "true" {
		t.Fatal("pkcs11-tool is missing: the PKCS#11 scripts make keys with it (apt-get install opensc)")
	}
	testscript.Run(t, scriptParams(t, "testdata/script"))
}

// TestModuleScripts runs the scripts of testdata/module, which use the
// emulated HSM's own PKCS#11 module ($CRYPTECH_MODULE), built once, beside
// SoftHSM2.
func TestModuleScripts(t *testing.T) {
	testtool.Require(t, "pkcs11-tool", "opensc")
	softhsm.Require(t)
	lib := p11module.Build(t)
	t.Cleanup(p11module.Cleanup)
	p := scriptParams(t, "testdata/module")
	setup := p.Setup
	p.Setup = func(e *testscript.Env) error {
		e.Setenv("CRYPTECH_MODULE", lib)
		return setup(e)
	}
	testscript.Run(t, p)
}

// scriptParams are the scripts' of dir: each with a SoftHSM2 token
// directory of its own, and the commands of this file.
func scriptParams(t *testing.T, dir string) testscript.Params {
	module, softhsmErr := softhsm.FindModule()
	if softhsmErr != nil && os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: the PKCS#11 scripts need SoftHSM2)", softhsmErr)
	}
	// Scripts that build the PKCS#11 module use this machine's Go caches,
	// not empty ones under the script's HOME.
	goEnv, err := exec.Command("go", "env", "GOMODCACHE", "GOCACHE").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	goCaches := strings.Fields(string(goEnv))
	return testscript.Params{
		Dir: dir,
		Setup: func(e *testscript.Env) error {
			if len(goCaches) == 2 {
				e.Setenv("GOMODCACHE", goCaches[0])
				e.Setenv("GOCACHE", goCaches[1])
			}
			// Each script's HSMs keep their PIN tickets in its $WORK, as
			// an operator's do in the runtime directory.
			e.Setenv(hsm.PINTicketsEnv, filepath.Join(e.WorkDir, ".pin-tickets"))
			// Each script has a SoftHSM2 token directory of its own.
			e.Setenv("SOFTHSM2_MODULE", module)
			tokens := filepath.Join(e.WorkDir, "softhsm-tokens")
			conf := filepath.Join(e.WorkDir, "softhsm2.conf")
			e.Setenv("SOFTHSM2_CONF", conf)
			if err := os.Mkdir(tokens, 0o700); err != nil {
				return err
			}
			if err := writeReadmeBlocks(e.WorkDir); err != nil {
				return err
			}
			return os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600)
		},
		// [softhsm]: SoftHSM2 is installed (always so under CI=true).
		// [root]: the tests run as root, whom file modes do not stop.
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "softhsm":
				_, err := exec.LookPath("softhsm2-util")
				return softhsmErr == nil && err == nil, nil
			case "root":
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"setlast":     setLast,
			"setmatch":    setMatch,
			"replace":     replace,
			"truncate":    truncate,
			"waitsock":    waitSock,
			"exits":       exits,
			"flipbyte":    flipByte,
			"buildmodule": buildModule,
			"wraptrusted": wrapTrusted,
		},
	}
}

// buildmodule: build the PKCS#11 module into $WORK as the README says,
// and set $CRYPTECH_PKCS11_MODULE to it.
func buildModule(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: buildmodule")
	}
	path := filepath.Join(ts.Getenv("WORK"), "libcryptech-pkcs11.so")
	if out, err := exec.Command("go", "build", "-buildmode=c-shared", "-o", path, "../cryptech-pkcs11").CombinedOutput(); err != nil {
		ts.Fatalf("build the PKCS#11 module: %v: %s", err, out)
	}
	ts.Setenv("CRYPTECH_PKCS11_MODULE", path)
}

// wraptrusted DIR UUID PIN: give key UUID of the emulated HSM in DIR
// CKA_WRAP_WITH_TRUSTED, as its user (PIN) may, in-process: the command
// line sets no PKCS#11 attributes, and the module would need a build.
func wrapTrusted(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: wraptrusted DIR UUID PIN")
	}
	id, err := hsmapi.ParseUUID(args[1])
	ts.Check(err)
	h, err := hsm.Open(ts.MkAbs(args[0]), testOptions)
	ts.Check(err)
	defer h.Close()
	s := h.NewSession()
	defer s.Close()
	ctx := context.Background()
	ts.Check(s.Login(ctx, hsmapi.UserNormal, []byte(args[2])))
	ts.Check(s.SetAttributes(ctx, id, []hsmapi.Attribute{{Type: hsmapi.CKAWrapWithTrusted, Value: []byte{1}}}))
}

// setlast NAME: set $NAME to the last line of the previous command's stdout.
func setLast(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: setlast NAME")
	}
	lines := strings.Split(strings.TrimSpace(ts.ReadFile("stdout")), "\n")
	ts.Setenv(args[0], strings.TrimSpace(lines[len(lines)-1]))
}

// setmatch NAME FILE REGEXP: set NAME to the first group of REGEXP's first
// match in FILE (stdout, stderr or a file); it must match.
func setMatch(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: setmatch NAME FILE REGEXP")
	}
	m := regexp.MustCompile(args[2]).FindStringSubmatch(ts.ReadFile(args[1]))
	if len(m) < 2 {
		ts.Fatalf("%s: no match for %q", args[1], args[2])
	}
	ts.Setenv(args[0], m[1])
}

// replace FILE OLD NEW: replace the first OLD in FILE by NEW; OLD must be there.
func replace(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: replace FILE OLD NEW")
	}
	data := ts.ReadFile(args[0])
	if !strings.Contains(data, args[1]) {
		ts.Fatalf("%s does not contain %q", args[0], args[1])
	}
	err := os.WriteFile(ts.MkAbs(args[0]), []byte(strings.Replace(data, args[1], args[2], 1)), 0o600)
	ts.Check(err)
}

// waitsock PATH: wait until a daemon answers on the Unix socket PATH.
func waitSock(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitsock PATH")
	}
	if err := dialUnixWithin(ts.MkAbs(args[0]), 15*time.Second); err != nil {
		ts.Fatalf("%v", err)
	}
}

// dialUnixWithin waits until a daemon answers on the Unix socket path.
func dialUnixWithin(path string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing answers on %s: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exits N PROGRAM [ARGS...]: run PROGRAM as exec does, and require that it
// exits with status N; stdout and stderr are then checked as after exec.
func exits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits N PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if ee, ok := err.(*exec.ExitError); ok {
		got = ee.ExitCode()
	} else {
		ts.Check(err)
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}

// flipbyte FILE OFFSET: invert the bits of the byte at OFFSET in FILE.
func flipByte(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: flipbyte FILE OFFSET")
	}
	off, err := strconv.Atoi(args[1])
	ts.Check(err)
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	if off < 0 || off >= len(data) {
		ts.Fatalf("%s has no byte at %d", args[0], off)
	}
	data[off] ^= 0xff
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), data, 0o600))
}

// truncate FILE N: keep the first N bytes of FILE.
func truncate(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: truncate FILE N")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	ts.Check(os.Truncate(ts.MkAbs(args[0]), int64(n)))
}

// writeReadmeBlocks writes the README's shell examples that a newcomer
// pastes into $WORK, for readme.txtar to run as they are written: the
// walkthrough (walkthrough.sh), the PKCS#11 transfer (pkcs11.sh, with
// the module this machine has) and the emulated HSM as a PKCS#11 token
// (module.sh, its module built from this source tree).
func writeReadmeBlocks(dir string) error {
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return err
	}
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		return err
	}
	for _, b := range []struct{ heading, file string }{
		{"## A transfer, step by step", "walkthrough.sh"},
		{"## PKCS#11 tokens", "pkcs11.sh"},
		{"## The emulated HSM as a PKCS#11 token", "module.sh"},
	} {
		_, rest, ok := strings.Cut(string(readme), "\n"+b.heading)
		if ok {
			_, rest, ok = strings.Cut(rest, "```sh\n")
		}
		block, _, closed := strings.Cut(rest, "\n```")
		if !ok || !closed {
			return fmt.Errorf("README.md: no sh block under %q", b.heading)
		}
		block = strings.Replace(block, "M=/usr/lib/softhsm/libsofthsm2.so", `M="$SOFTHSM2_MODULE"`, 1)
		// The module is built from this source tree, not from $WORK.
		block = strings.Replace(block, "go build -buildmode=c-shared -o libcryptech-pkcs11.so ./cmd/cryptech-pkcs11",
			`go -C `+shellQuote(repo)+` build -buildmode=c-shared -o "$PWD/libcryptech-pkcs11.so" ./cmd/cryptech-pkcs11`, 1)
		if err := os.WriteFile(filepath.Join(dir, b.file), []byte(block+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}
