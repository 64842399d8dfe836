package hsmapi_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/hsmkit/cryptech-backup/"

// emulator is what only the emulated HSM and its tools may link: the HSM,
// its keystore and its board.
var emulator = []string{"hsm", "keystore", "sim"}

// backends implement the contract; none may import another.
var backends = []string{"hsm", "rpc", "p11"}

// knownBackendImports are backend imports still in the tree, each with the
// item that removes it. The RPC server sits on *hsm.HSM until it runs on
// the front end, over any Token (issue 10, item 2): remove the entry then.
var knownBackendImports = map[[2]string]bool{{"rpc", "hsm"}: true}

// deps lists the module's packages that pkg depends on, pkg excluded.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", mod+pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	var ds []string
	for _, l := range strings.Fields(string(out)) {
		if p, ok := strings.CutPrefix(l, mod); ok && p != pkg {
			ds = append(ds, p)
		}
	}
	if len(ds) == 0 && pkg != "hsmapi" {
		t.Fatalf("go list -deps %s named no package of the module", pkg)
	}
	return ds
}

// The contract and what is written against it link nothing of the
// emulator: a PKCS#11 client or a backup tool carries no emulated board,
// and the PKCS#11 face's logic (cryptoki) works on any front end.
func TestContractUsersLinkNoEmulator(t *testing.T) {
	for _, pkg := range []string{"hsmapi", "backup", "p11", "cmd/cryptech-pkcs11/internal/cryptoki"} {
		for _, d := range deps(t, pkg) {
			if slices.Contains(emulator, d) {
				t.Errorf("%s depends on %s", pkg, d)
			}
		}
	}
}

// Each backend stands on the contract alone.
func TestNoBackendImportsAnother(t *testing.T) {
	for _, b := range backends {
		for _, d := range deps(t, b) {
			if slices.Contains(backends, d) && !knownBackendImports[[2]string{b, d}] {
				t.Errorf("backend %s depends on backend %s", b, d)
			}
		}
	}
}

// The command line opens the emulated HSM through package hsm alone: the
// keystore's and the board's errors and bounds reach it as hsm's.
func TestCommandLineReachesNoFurtherThanTheHSM(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, mod+"cmd/cryptech-backup").Output()
	if err != nil {
		t.Fatalf("go list cmd/cryptech-backup: %v", err)
	}
	imports := strings.Fields(string(out))
	if !slices.Contains(imports, mod+"hsm") {
		t.Fatalf("cmd/cryptech-backup imports %v, not hsm: is this the right package?", imports)
	}
	for _, p := range []string{"keystore", "sim"} {
		if slices.Contains(imports, mod+p) {
			t.Errorf("cmd/cryptech-backup imports %s", p)
		}
	}
}
