package softhsm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// These tests change environment variables (t.Setenv) and the package's list
// of places: none of them runs in parallel. The ones that need SoftHSM2 are in
// tokens_test.go.

func TestFindModuleFromEnv(t *testing.T) {
	lib := filepath.Join(t.TempDir(), "libsofthsm2.so")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ModuleEnv, lib)
	got, err := FindModule()
	if err != nil || got != lib {
		t.Fatalf("FindModule() = %q, %v; want %q", got, err, lib)
	}

	missing := filepath.Join(t.TempDir(), "nope.so")
	t.Setenv(ModuleEnv, missing)
	if _, err := FindModule(); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("FindModule() with %s=%s: err = %v, want one naming it", ModuleEnv, missing, err)
	}
}

func withoutModule(t *testing.T) {
	t.Helper()
	t.Setenv(ModuleEnv, "")
	saved := candidates
	candidates = []string{filepath.Join(t.TempDir(), "a", "libsofthsm2.so"), filepath.Join(t.TempDir(), "b", "libsofthsm2.so")}
	t.Cleanup(func() { candidates = saved })
}

func TestFindModuleMissing(t *testing.T) {
	withoutModule(t)
	_, err := FindModule()
	if err == nil {
		t.Fatal("FindModule() found a module where there is none")
	}
	for _, want := range append([]string{"apt-get install softhsm2", ModuleEnv}, candidates...) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

type fakeT struct{ skipped, failed string }

func (f *fakeT) Helper()                           {}
func (f *fakeT) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestRequireMissing(t *testing.T) {
	withoutModule(t)

	t.Setenv("CI", "true")
	var ci fakeT
	if got := Require(&ci); got != "" || ci.failed == "" || ci.skipped != "" {
		t.Errorf("CI=true: Require = %q, failed %q, skipped %q; want a failure", got, ci.failed, ci.skipped)
	}
	if !strings.Contains(ci.failed, "apt-get install softhsm2") {
		t.Errorf("CI=true: message %q does not say how to install SoftHSM2", ci.failed)
	}

	t.Setenv("CI", "")
	var dev fakeT
	if got := Require(&dev); got != "" || dev.skipped == "" || dev.failed != "" {
		t.Errorf("CI unset: Require = %q, failed %q, skipped %q; want a skip", got, dev.failed, dev.skipped)
	}
	if !strings.Contains(dev.skipped, "apt-get install softhsm2") {
		t.Errorf("CI unset: message %q does not say how to install SoftHSM2", dev.skipped)
	}
}

func TestSetupModuleMissing(t *testing.T) {
	if _, err := SetupModule(t.TempDir(), filepath.Join(t.TempDir(), "nope.so")); err == nil || !strings.Contains(err.Error(), "nope.so") {
		t.Errorf("SetupModule with a missing module: err = %v", err)
	}
}
