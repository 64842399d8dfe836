package rpc

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// importsOf returns what the non-test files of the package in dir import,
// and the names they use of package hsm.
func importsOf(t *testing.T, dir string) (imports, hsmNames map[string]bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	imports, hsmNames = map[string]bool{}, map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			imports[p] = true
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "hsm" {
					hsmNames[sel.Sel.Name] = true
				}
			}
			return true
		})
	}
	return imports, hsmNames
}

// rpc and the front end reach the emulator's storage and board only
// through the Token contract's errors and types, and never the emulator
// itself (its HSM or Session): any token can be put on a socket. The wire
// codec depends on nothing of the project.
func TestLayering(t *testing.T) {
	const mod = "github.com/hsmkit/cryptech-backup/"
	for _, dir := range []string{".", filepath.Join("..", "frontend")} {
		imports, hsmNames := importsOf(t, dir)
		for p := range imports {
			if p == mod+"keystore" || p == mod+"sim" {
				t.Errorf("%s imports %s", dir, p)
			}
		}
		for _, n := range []string{"HSM", "Session", "Open", "Create", "NewSession"} {
			if hsmNames[n] {
				t.Errorf("%s uses the emulator's hsm.%s", dir, n)
			}
		}
	}
	imports, _ := importsOf(t, filepath.Join("internal", "wire"))
	for p := range imports {
		if strings.HasPrefix(p, mod) {
			t.Errorf("rpc/internal/wire imports %s", p)
		}
	}
}
