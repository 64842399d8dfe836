// Package p11module builds the emulated HSM's PKCS#11 module
// (cmd/cryptech-pkcs11) for tests, once per test binary, and makes HSMs
// for it: the module loads in the test's own process (beside SoftHSM2, if
// need be) or in the tools a test runs (pkcs11-tool, cryptech-backup).
package p11module

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/rpc"
)

// Package is the module's import path.
const Package = "github.com/hsmkit/cryptech-backup/cmd/cryptech-pkcs11"

// FileName is the name the README gives the built module.
const FileName = "libcryptech-pkcs11.so"

var (
	mu       sync.Mutex
	built    string
	buildErr error
)

// Build builds the module once per test binary and returns its path. The
// module needs cgo: without it the test skips, or fails under CI=true.
// Call Cleanup from TestMain to remove it.
func Build(t testing.TB) string {
	t.Helper()
	// The module's HSMs, in this process and in the tools it runs, leave no
	// PIN tickets in the user's runtime directory; a test that wants them
	// names a directory of its own.
	if _, set := os.LookupEnv(hsm.PINTicketsEnv); !set {
		os.Setenv(hsm.PINTicketsEnv, "off")
	}
	if os.Getenv("CGO_ENABLED") == "0" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CGO_ENABLED=0 (CI=true: the PKCS#11 module needs cgo)")
		}
		t.Skip("CGO_ENABLED=0: the PKCS#11 module needs cgo")
	}
	mu.Lock()
	defer mu.Unlock()
	if built == "" && buildErr == nil {
		built, buildErr = build()
	}
	if buildErr != nil {
		t.Fatalf("build the module: %v", buildErr)
	}
	return built
}

func build() (string, error) {
	dir, err := os.MkdirTemp("", "cryptech-pkcs11-")
	if err != nil {
		return "", err
	}
	lib := filepath.Join(dir, FileName)
	out, err := exec.Command("go", "build", "-buildmode=c-shared", "-o", lib, Package).CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("%w: %s", err, out)
	}
	return lib, nil
}

// Cleanup removes the module Build built, if any.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if built != "" {
		os.RemoveAll(filepath.Dir(built))
		built = ""
	}
}

// NewHSM creates an emulated HSM in a directory of t's own (PINs
// hsmtest.PIN), closed again so that the module can open it, and returns
// the directory.
func NewHSM(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hsm")
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: hsmtest.PIN, SOPIN: hsmtest.PIN, UserPIN: hsmtest.PIN, Blocks: 128}, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Configure writes a config file with one slot per label, each a new HSM
// (NewHSM), points $CRYPTECH_PKCS11_CONF at it for the rest of t, and
// returns the HSMs' directories. The module reads the file at
// C_Initialize: call this before anything in the process initializes it.
func Configure(t testing.TB, labels ...string) []string {
	t.Helper()
	slots := make([]Slot, len(labels))
	for i, l := range labels {
		slots[i] = Slot{Label: l}
	}
	return ConfigureSlots(t, slots...)
}

// Slot is one slot of the module's config file, a new HSM (NewHSM): opened
// by the module in its process, or with RPC served over libhal RPC by this
// process on a Unix socket until the end of t, as `serve` would.
type Slot struct {
	Label string
	RPC   bool
}

// ConfigureSlots is Configure for slots of either kind.
func ConfigureSlots(t testing.TB, slots ...Slot) []string {
	t.Helper()
	var conf strings.Builder
	var dirs []string
	for _, s := range slots {
		dir := NewHSM(t)
		dirs = append(dirs, dir)
		if s.RPC {
			addr, _, _ := Serve(t, dir)
			fmt.Fprintf(&conf, "[slot]\nlabel = %s\nrpc = %s\n\n", s.Label, addr)
		} else {
			fmt.Fprintf(&conf, "[slot]\nlabel = %s\nhsm = %s\n\n", s.Label, dir)
		}
	}
	path := filepath.Join(t.TempDir(), "cryptech-pkcs11.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CRYPTECH_PKCS11_CONF", path)
	return dirs
}

// Serve serves the HSM in dir over libhal RPC on a Unix socket until the
// end of t, as `serve` would, and returns the socket's address (unix:PATH),
// the HSM and the server.
func Serve(t testing.TB, dir string) (string, *hsm.HSM, *rpc.Server) {
	t.Helper()
	h, err := hsm.Open(dir, hsmtest.Options)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "rpc.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	srv := rpc.NewServer(h, nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	return "unix:" + sock, h, srv
}
