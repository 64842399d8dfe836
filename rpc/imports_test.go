package rpc

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// importsOf returns what the non-test files of the package in dir import.
func importsOf(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			out[p] = true
		}
	}
	return out
}

// rpc reaches the emulator's storage and board only through the HSM's
// errors and types, and the wire codec depends on nothing of the project.
func TestLayering(t *testing.T) {
	const mod = "github.com/hsmkit/cryptech-backup/"
	for p := range importsOf(t, ".") {
		if p == mod+"keystore" || p == mod+"sim" {
			t.Errorf("rpc imports %s", p)
		}
	}
	for p := range importsOf(t, filepath.Join("internal", "wire")) {
		if strings.HasPrefix(p, mod) {
			t.Errorf("rpc/internal/wire imports %s", p)
		}
	}
}
