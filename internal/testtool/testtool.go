// Package testtool finds the command line tools tests run (pkcs11-tool,
// python3): a test skips without one, but under CI=true, where .ci/run
// installs them, it fails instead, so that no skip passes for green.
package testtool

import (
	"os"
	"os/exec"
)

// TB is the part of testing.TB that Require uses.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Require returns the path of the program name, which the distribution
// package pkg installs.
func Require(t TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	Missing(t, name, pkg)
	return ""
}

// Missing ends the test for want of what (a tool, or a part of one that
// the package pkg installs, such as an OpenSSL engine): a skip, or under
// CI=true a failure.
func Missing(t TB, what, pkg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (CI=true: it is required; apt-get install %s)", what, pkg)
	} else {
		t.Skipf("%s not found (apt-get install %s)", what, pkg)
	}
}
