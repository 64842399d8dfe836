package testtool

import (
	"fmt"
	"testing"
)

type fakeT struct{ skipped, failed string }

func (f *fakeT) Helper()                           {}
func (f *fakeT) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestRequire(t *testing.T) {
	const missing = "no-such-tool-cryptech"
	t.Setenv("CI", "")
	var f fakeT
	if p := Require(&f, missing, "pkg"); p != "" || f.skipped == "" || f.failed != "" {
		t.Fatalf("without CI: path %q, skipped %q, failed %q", p, f.skipped, f.failed)
	}
	t.Setenv("CI", "true")
	f = fakeT{}
	if p := Require(&f, missing, "pkg"); p != "" || f.failed == "" || f.skipped != "" {
		t.Fatalf("under CI: path %q, skipped %q, failed %q", p, f.skipped, f.failed)
	}
	f = fakeT{}
	if p := Require(&f, "sh", "dash"); p == "" || f.failed != "" || f.skipped != "" {
		t.Fatalf("sh: path %q, skipped %q, failed %q", p, f.skipped, f.failed)
	}
}
