package testvectors

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// recorder is a testing.TB that records failures and skips instead of acting
// on them, so that the helpers' own verdicts can be tested.
type recorder struct {
	testing.TB
	errors, fatals, skips []string
}

func (r *recorder) Helper()             {}
func (r *recorder) Logf(string, ...any) {}
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
	verdicts := map[string]bool{"MissingNull": false, "SmallKey": true, "EncryptionWithLabel": true}
	tests := []struct {
		result  string
		flags   []string
		want    bool
		wantErr string // substring of the recorded error; "" for none
	}{
		{"valid", nil, true, ""},
		{"valid", []string{"Normal"}, true, ""},
		{"invalid", []string{"ModifiedIv"}, false, ""},
		{"acceptable", []string{"MissingNull"}, false, ""},
		{"acceptable", []string{"SmallKey"}, true, ""},
		{"acceptable", []string{"SmallKey", "EncryptionWithLabel"}, true, ""},
		{"acceptable", []string{"EncryptionWithLabel", "MissingNull"}, false, ""},
		{"acceptable", []string{"SmallKey", "SmallKey"}, true, ""},
		{"acceptable", []string{"Unknown"}, false, `"Unknown"`},
		{"acceptable", []string{"SmallKey", "Unknown"}, false, `"Unknown"`},
		{"acceptable", nil, false, "without flags"},
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

func TestUnavailable(t *testing.T) {
	for _, ci := range []string{"", "false", "true"} {
		t.Setenv("CI", ci)
		r := &recorder{TB: t}
		unavailable(r, "testvectors: %s", "no network")
		got, other := r.skips, r.fatals
		if ci == "true" {
			got, other = r.fatals, r.skips
		}
		if len(got) != 1 || len(other) != 0 || len(r.errors) != 0 || !strings.Contains(got[0], "no network") {
			t.Errorf("CI=%q: skips %q, fatals %q, errors %q; want one %s naming the reason", ci, r.skips, r.fatals, r.errors,
				map[bool]string{false: "skip", true: "fatal"}[ci == "true"])
		}
	}
}

func TestWycheproofDir(t *testing.T) {
	dir := WycheproofDir(t)
	if _, err := os.Stat(filepath.Join(dir, "testvectors_v1", "aes_kwp_test.json")); err != nil {
		t.Fatal(err)
	}
	if again := WycheproofDir(t); again != dir {
		t.Errorf("second call: %q, first %q", again, dir)
	}
}

// TestFetchChecksSum: a download whose hash is not the pinned one is
// refused, even though the go command (and the checksum database) accepted
// it.
func TestFetchChecksSum(t *testing.T) {
	dir := WycheproofDir(t)
	wrong := "h1:" + base64.StdEncoding.EncodeToString(make([]byte, sha256.Size))
	got, err := module{WycheproofModule, WycheproofVersion, wrong}.fetch(nil)
	if err == nil || got != "" || !strings.Contains(err.Error(), WycheproofSum) || !strings.Contains(err.Error(), wrong) {
		t.Errorf("fetch with a wrong pin = %q, %v; want an error naming both hashes", got, err)
	}
	if got, err := wycheproof.fetch(nil); err != nil || got != dir {
		t.Errorf("fetch = %q, %v; want %q", got, err, dir)
	}
}

// TestFetchFailure: a version that cannot be had gives an error naming it
// and the go command's reason, not a directory.
func TestFetchFailure(t *testing.T) {
	const version = "v0.0.0-20000101000000-000000000000"
	got, err := module{WycheproofModule, version, WycheproofSum}.fetch([]string{"GOPROXY=off"})
	if err == nil || got != "" || !strings.Contains(err.Error(), WycheproofModule+"@"+version) || !strings.Contains(err.Error(), "GOPROXY=off") {
		t.Errorf("fetch of a version the go command may not look up = %q, %v", got, err)
	}
}

func TestLoad(t *testing.T) {
	type group struct {
		KeySize int
		Tests   []struct {
			Case
			Key, Msg, Ct Hex
		}
	}
	f := Load[group](t, "aes_wrap_test.json", "keywrap_test_schema_v1.json")
	if f == nil {
		t.Fatal("Load returned nothing")
	}
	var n Tally
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			n.Add(tc.Case)
			if 8*len(tc.Key) != g.KeySize || tc.TcID == 0 || tc.Result == "" {
				t.Fatalf("%v: %d-byte key in a group of %d-bit keys", tc.Case, len(tc.Key), g.KeySize)
			}
		}
	}
	if f.Algorithm != "AES-WRAP" || n.Total() != f.NumberOfTests || n.Valid == 0 || n.Invalid == 0 {
		t.Errorf("aes_wrap_test.json: algorithm %q, %v of %d", f.Algorithm, n, f.NumberOfTests)
	}

	for _, bad := range []struct{ name, schema, want string }{
		{"aes_wrap_test.json", "ecdsa_verify_schema_v1.json", "keywrap_test_schema_v1.json"},
		{"no_such_test.json", "keywrap_test_schema_v1.json", "no_such_test.json"},
		{"../go.mod", "keywrap_test_schema_v1.json", "not a file name"},
	} {
		r := &recorder{TB: t}
		if f := Load[group](r, bad.name, bad.schema); f != nil || len(r.fatals) != 1 || !strings.Contains(r.fatals[0], bad.want) {
			t.Errorf("Load(%q, %q) = %v; fatals %q, want one containing %q", bad.name, bad.schema, f, r.fatals, bad.want)
		}
	}
}

func TestTally(t *testing.T) {
	var n Tally
	for _, result := range []string{"valid", "invalid", "invalid", "acceptable"} {
		n.Add(Case{Result: result})
	}
	if n != (Tally{1, 2, 1}) || n.Total() != 4 {
		t.Fatalf("tally %+v", n)
	}
	for _, c := range []struct {
		n    Tally
		want int
		fail bool
	}{{n, 4, false}, {n, 5, true}, {Tally{}, 0, true}} {
		r := &recorder{TB: t}
		c.n.Check(r, "file.json", c.want)
		if (len(r.errors) != 0) != c.fail {
			t.Errorf("%+v.Check(%d): errors %q, want failure %v", c.n, c.want, r.errors, c.fail)
		}
	}
}

func TestHash(t *testing.T) {
	if h := Hash(t, "SHA-512/256"); h != crypto.SHA512_256 || len(Digest(h, nil)) != 32 {
		t.Errorf("SHA-512/256: %v", h)
	}
	for _, name := range []string{"SHA3-256", "SHAKE128", "sha-256", ""} {
		r := &recorder{TB: t}
		Hash(r, name)
		if len(r.fatals) != 1 {
			t.Errorf("Hash(%q): fatals %q, want one", name, r.fatals)
		}
	}
}

func TestHex(t *testing.T) {
	var h Hex
	if err := h.UnmarshalText([]byte("00ff 10")); err != nil || string(h) != "\x00\xff\x10" {
		t.Errorf("Hex = %x, %v", []byte(h), err)
	}
	if err := h.UnmarshalText([]byte("0g")); err == nil {
		t.Error("bad hex accepted")
	}
}

// TestWycheproofTree hashes the tree the go command extracted, as `go mod
// verify` does (the h1: hash of golang.org/x/mod/sumdb/dirhash), and
// compares it with the pin: the files the tests read are the ones the
// checksum database vouches for, not a copy changed in the module cache.
func TestWycheproofTree(t *testing.T) {
	dir := WycheproofDir(t)
	if testing.Short() {
		t.Skip("hashes 130 MB")
	}
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		files = append(files, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	summary := sha256.New()
	for _, rel := range files {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(summary, "%x  %s@%s/%s\n", h.Sum(nil), WycheproofModule, WycheproofVersion, rel)
	}
	if got := "h1:" + base64.StdEncoding.EncodeToString(summary.Sum(nil)); got != WycheproofSum {
		t.Errorf("the tree in %s hashes to %s, want %s", dir, got, WycheproofSum)
	}
	t.Logf("%d files", len(files))
}
