package lockassert

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	// calledWith is how a function documents the lock it needs.
	calledWith = regexp.MustCompile(`\bCalled with ([\w.]+) held\b`)
	// otherWording is a lock requirement said another way, which the
	// check would miss.
	otherWording = regexp.MustCompile(`\b[\w.]+ (is|must be) held\b`)
)

// TestDisciplineDocumented checks, across the module, that the documented
// lock requirements and the assertions agree: a function whose doc says
// "Called with X held" starts with lockassert.Held(&X), Held appears only
// so, a function named *Locked says what it needs, and no doc states a
// requirement in words this check does not read.
func TestDisciplineDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (name == "testdata" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			checked += checkFunc(t, fset, fn)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatal("found no function documented \"Called with ... held\": is the walk looking at the module?")
	}
}

// checkFunc reports fn's disagreements and returns how many lock
// requirements it documents.
func checkFunc(t *testing.T, fset *token.FileSet, fn *ast.FuncDecl) int {
	at := fset.Position(fn.Pos())
	where := filepath.ToSlash(at.Filename[len(filepath.Join("..", ".."))+1:]) + ":" + fn.Name.Name
	doc := ""
	if fn.Doc != nil {
		doc = strings.Join(strings.Fields(fn.Doc.Text()), " ")
	}
	want := map[string]bool{}
	for _, m := range calledWith.FindAllStringSubmatch(doc, -1) {
		want["&"+strings.TrimSuffix(m[1], ".")] = true
	}
	if w := otherWording.FindString(doc); w != "" {
		t.Errorf("%s: doc says %q: write \"Called with X held.\" so that it is checked", where, w)
	}
	if strings.HasSuffix(fn.Name.Name, "Locked") && len(want) == 0 {
		t.Errorf("%s: named *Locked, but its doc does not say \"Called with X held.\"", where)
	}
	// The leading statements that are Held calls.
	got := map[string]bool{}
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || !isHeld(call) {
			return true
		}
		arg := types.ExprString(call.Args[0])
		if !leading(fn.Body, call) {
			t.Errorf("%s: lockassert.Held(%s) is not among the function's first statements", where, arg)
		}
		got[arg] = true
		return true
	})
	for m := range want {
		if !got[m] {
			t.Errorf("%s: documented \"Called with %s held\" but does not start with lockassert.Held(%s)", where, m[1:], m)
		}
	}
	for m := range got {
		if !want[m] {
			t.Errorf("%s: asserts lockassert.Held(%s) but its doc does not say \"Called with %s held.\"", where, m, m[1:])
		}
	}
	return len(want)
}

func isHeld(call *ast.CallExpr) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Held" || len(call.Args) != 1 {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "lockassert"
}

// leading reports whether call is one of the body's first statements, all
// of them Held calls.
func leading(body *ast.BlockStmt, call *ast.CallExpr) bool {
	for _, s := range body.List {
		es, ok := s.(*ast.ExprStmt)
		if !ok {
			return false
		}
		c, ok := es.X.(*ast.CallExpr)
		if !ok || !isHeld(c) {
			return false
		}
		if c == call {
			return true
		}
	}
	return false
}
