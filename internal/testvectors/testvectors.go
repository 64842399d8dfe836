// Package testvectors finds the shared public test vectors for the tests of
// this module. The vectors are never copied into the repository: they live
// in a directory of their own, found as follows.
//
//   - $CRYPTECH_TESTVECTORS, when set, names the directory.
//   - Otherwise the first shared/testvectors directory found walking up from
//     the working directory of the test is used.
//
// The directory holds wycheproof/*.json, from testvectors_v1 of the
// Wycheproof project (https://github.com/C2SP/wycheproof), and
// lms/hss_lms_verify.vec, the test cases of RFC 8554 Appendix F and
// draft-fluhrer-lms-more-parm-sets.
//
// A test that needs a missing file is skipped, or fails when $CI is "true",
// so that a CI run can never pass by silently testing nothing.
//
// [LoadWycheproof] and [Expect] read Wycheproof files. Expect, like
// ShouldPass in Go's crypto/internal/cryptotest/wycheproof, refuses to guess
// on "acceptable" cases: the caller decides per flag.
package testvectors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// EnvVar names the environment variable that points at the vectors directory.
const EnvVar = "CRYPTECH_TESTVECTORS"

// Path returns the absolute path of rel, a slash-separated path inside the
// vectors directory such as "wycheproof/aes_kwp_test.json". If the file
// cannot be found, the test is skipped (failed when $CI is "true").
func Path(t testing.TB, rel string) string {
	t.Helper()
	if !filepath.IsLocal(filepath.FromSlash(rel)) {
		t.Fatalf("testvectors: %q is not a path inside the vectors directory", rel)
		return ""
	}
	dir, where := vectorsDir()
	if dir != "" {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if _, err := os.Stat(p); err == nil {
			return p
		}
		where = dir
	}
	missing := t.Skipf
	if os.Getenv("CI") == "true" {
		missing = t.Fatalf
	}
	missing("testvectors: %s not found in %s; set %s to the vectors directory. "+
		"wycheproof/*.json come from testvectors_v1 of github.com/C2SP/wycheproof; "+
		"lms/hss_lms_verify.vec is RFC 8554 Appendix F plus draft-fluhrer-lms-more-parm-sets",
		rel, where, EnvVar)
	return ""
}

// vectorsDir returns the vectors directory, or "" and a description of where
// it looked.
func vectorsDir() (dir, where string) {
	if d := os.Getenv(EnvVar); d != "" {
		abs, err := filepath.Abs(d)
		if err != nil {
			return "", "$" + EnvVar + " (" + d + ")"
		}
		return abs, ""
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", "shared/testvectors above the working directory (" + err.Error() + ")"
	}
	for d := wd; ; {
		cand := filepath.Join(d, "shared", "testvectors")
		if fi, err := os.Stat(cand); err == nil && fi.IsDir() {
			return cand, ""
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", "any shared/testvectors above " + wd
		}
		d = parent
	}
}

// LoadWycheproof reads the Wycheproof file rel (see [Path]) and decodes its
// JSON into v, failing the test if it cannot.
func LoadWycheproof(t testing.TB, rel string, v any) {
	t.Helper()
	data, err := os.ReadFile(Path(t, rel))
	if err != nil {
		t.Fatalf("testvectors: %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("testvectors: %s: %v", rel, err)
	}
}

// Expect reports whether a Wycheproof case with the given result and flags
// must succeed. "valid" must, "invalid" must not. For "acceptable" the caller
// decides: acceptable maps a flag to the verdict for cases carrying it, and at
// least one of the case's flags must be in it (all that are must agree),
// otherwise the test fails. An unknown result also fails the test.
func Expect(t testing.TB, result string, flags []string, acceptable map[string]bool) (pass bool) {
	t.Helper()
	switch result {
	case "valid":
		return true
	case "invalid":
		return false
	case "acceptable":
		decided := ""
		for _, f := range flags {
			v, ok := acceptable[f]
			switch {
			case !ok:
			case decided == "":
				decided, pass = f, v
			case v != pass:
				t.Errorf("testvectors: acceptable case: flags %q and %q have different verdicts", decided, f)
				return false
			}
		}
		if decided == "" {
			t.Errorf("testvectors: acceptable case with flags %q: no verdict for any of them; add one to the acceptable map", flags)
		}
		return pass
	default:
		t.Errorf("testvectors: unknown result %q", result)
		return false
	}
}
