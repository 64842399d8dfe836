package testvectors

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a testing.TB that records failures and skips instead of acting
// on them, so that the helpers' own verdicts can be tested.
type recorder struct {
	testing.TB
	errors, fatals, skips []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skips = append(r.skips, fmt.Sprintf(format, args...))
}

func TestExpect(t *testing.T) {
	verdicts := map[string]bool{"ShortKey": false, "SmallKey": true}
	tests := []struct {
		result  string
		flags   []string
		want    bool
		wantErr string // substring of the recorded error; "" for none
	}{
		{"valid", nil, true, ""},
		{"valid", []string{"Normal"}, true, ""},
		{"invalid", []string{"ModifiedIv"}, false, ""},
		{"acceptable", []string{"ShortKey"}, false, ""},
		{"acceptable", []string{"SmallKey"}, true, ""},
		{"acceptable", []string{"Unknown", "SmallKey"}, true, ""},
		{"acceptable", []string{"ShortKey", "ShortKey"}, false, ""},
		{"acceptable", []string{"Unknown"}, false, `"Unknown"`},
		{"acceptable", nil, false, "no verdict"},
		{"acceptable", []string{"ShortKey", "SmallKey"}, false, "different verdicts"},
		{"Valid", nil, false, "unknown result"},
		{"", nil, false, "unknown result"},
	}
	for i, tt := range tests {
		r := &recorder{TB: t}
		got := Expect(r, tt.result, tt.flags, verdicts)
		if got != tt.want {
			t.Errorf("#%d Expect(%q, %q) = %v, want %v", i, tt.result, tt.flags, got, tt.want)
		}
		switch {
		case tt.wantErr == "" && len(r.errors) != 0:
			t.Errorf("#%d Expect(%q, %q) failed the test: %q", i, tt.result, tt.flags, r.errors)
		case tt.wantErr != "" && (len(r.errors) != 1 || !strings.Contains(r.errors[0], tt.wantErr)):
			t.Errorf("#%d Expect(%q, %q) errors = %q, want one containing %q", i, tt.result, tt.flags, r.errors, tt.wantErr)
		}
	}
}

func TestPath(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "wycheproof"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "wycheproof", "x.json")
	if err := os.WriteFile(file, []byte(`{"algorithm":"X"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvVar, dir)

	r := &recorder{TB: t}
	if got := Path(r, "wycheproof/x.json"); got != file || len(r.skips)+len(r.fatals) != 0 {
		t.Errorf("Path(existing) = %q (skips %q, fatals %q), want %q", got, r.skips, r.fatals, file)
	}
	var v struct{ Algorithm string }
	LoadWycheproof(r, "wycheproof/x.json", &v)
	if v.Algorithm != "X" || len(r.fatals) != 0 {
		t.Errorf("LoadWycheproof = %+v (fatals %q)", v, r.fatals)
	}

	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		r := &recorder{TB: t}
		Path(r, "wycheproof/missing.json")
		got, other := r.skips, r.fatals
		if ci == "true" {
			got, other = r.fatals, r.skips
		}
		if len(got) != 1 || len(other) != 0 {
			t.Fatalf("CI=%q: skips %q, fatals %q; want exactly one %s", ci, r.skips, r.fatals,
				map[string]string{"": "skip", "true": "fatal"}[ci])
		}
		for _, want := range []string{"missing.json", EnvVar, "C2SP/wycheproof", "RFC 8554"} {
			if !strings.Contains(got[0], want) {
				t.Errorf("CI=%q: message %q does not mention %q", ci, got[0], want)
			}
		}
	}

	r = &recorder{TB: t}
	Path(r, "../escape.json")
	if len(r.fatals) != 1 {
		t.Errorf("Path(../escape.json): fatals %q, want one", r.fatals)
	}
}
