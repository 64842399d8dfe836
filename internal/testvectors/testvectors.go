// Package testvectors gives the tests of this module the public test vectors
// that a plain clone can get without anything beside it.
//
// Wycheproof (https://github.com/C2SP/wycheproof) is a Go module on the
// module proxy. [WycheproofDir] fetches the pinned version the way Go's own
// crypto tests fetch theirs (crypto/internal/cryptotest.FetchModule): it runs
// `go mod download -json MODULE@VERSION` and uses the directory the go
// command prints. The module cache keeps the download, so only the first run
// on a machine fetches anything. [Load] reads a file of its testvectors_v1.
//
// The LMS vectors of RFC 8554 and draft-fluhrer-lms-more-parm-sets are a few
// kilobytes: they are committed in hashsig/testdata, each file naming its
// source.
//
// # How the download is verified
//
// The go command checks what it downloads against the checksum database
// (sum.golang.org) when go.sum does not already pin it. Wycheproof cannot be
// pinned in go.sum: go.sum lines without a requirement in go.mod are dropped
// by `go mod tidy`, and it cannot be a requirement, because the proxy serves
// it as github.com/C2SP/wycheproof while its go.mod declares the path
// github.com/c2sp/wycheproof, and a requirement whose go.mod declares another
// path breaks every build of this module ("module declares its path as").
// So the module's h1: hash, as the checksum database records it, is
// committed here instead, and the Sum that `go mod download -json` prints,
// which the go command computes from the bytes it downloaded, must equal it.
// That holds even where GONOSUMDB, GOPRIVATE, GOSUMDB=off or GOINSECURE turn
// the checksum database off. Like every build, the tests then trust the tree
// the go command extracted into the module cache; TestWycheproofTree hashes
// that tree and compares it with the pin, as `go mod verify` would.
//
// # When the vectors cannot be had
//
// Without the go command, or with neither the module cache nor the network,
// a test that needs Wycheproof is skipped with the reason, or fails when $CI
// is "true", so that a CI run can never pass by silently testing nothing.
//
// # Verdicts
//
// [Expect] honours each case's result: "valid" must succeed and "invalid"
// must fail. Like ShouldPass in Go's Wycheproof tests it refuses to guess on
// "acceptable": the caller gives a verdict for each flag such cases carry,
// and a flag without one fails the test.
package testvectors

import (
	"bytes"
	"crypto"
	_ "crypto/sha1" // the hashes Hash names, for Digest
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The pinned Wycheproof module: Sum is its h1: hash as sum.golang.org
// records it (the line `github.com/C2SP/wycheproof VERSION h1:...`).
const (
	WycheproofModule  = "github.com/C2SP/wycheproof"
	WycheproofVersion = "v0.0.0-20250901140545-b51abcfb8daf"
	WycheproofSum     = "h1:5BKKVVVj676FUWirLcouEEL6GCYR9X0opkMlEUck8FY="
)

// The Wycheproof files of ECDSA verification on the HSM's curves (P-256,
// P-384 and P-521), with every SHA-2 hash Wycheproof pairs each with:
// signatures in ASN.1 DER, as Token.Sign makes them, and as r || s (IEEE
// P1363), as libhal's RPC carries them.
var (
	ECDSAFiles = []string{
		"ecdsa_secp256r1_sha256_test.json",
		"ecdsa_secp256r1_sha512_test.json",
		"ecdsa_secp384r1_sha256_test.json",
		"ecdsa_secp384r1_sha384_test.json",
		"ecdsa_secp384r1_sha512_test.json",
		"ecdsa_secp521r1_sha512_test.json",
	}
	ECDSAP1363Files = []string{
		"ecdsa_secp256r1_sha256_p1363_test.json",
		"ecdsa_secp256r1_sha512_p1363_test.json",
		"ecdsa_secp384r1_sha384_p1363_test.json",
		"ecdsa_secp384r1_sha512_p1363_test.json",
		"ecdsa_secp521r1_sha512_p1363_test.json",
	}
)

// module is a version of a Go module and the h1: hash it must have.
type module struct{ path, version, sum string }

var wycheproof = module{WycheproofModule, WycheproofVersion, WycheproofSum}

// fetched is the outcome of the one download of Wycheproof a test process
// attempts.
var fetched struct {
	once sync.Once
	dir  string
	err  error
}

// WycheproofDir returns the directory of the pinned Wycheproof module,
// downloading it into the module cache if it is not there yet. If it cannot
// be had, the test is skipped (failed when $CI is "true").
func WycheproofDir(t testing.TB) string {
	t.Helper()
	fetched.once.Do(func() { fetched.dir, fetched.err = wycheproof.fetch(nil) })
	if fetched.err != nil {
		unavailable(t, "testvectors: %v", fetched.err)
		return ""
	}
	return fetched.dir
}

// fetch downloads m with `go mod download -json`, in the environment of the
// test plus env, and returns the directory of its tree once the go command
// has vouched for the hash m pins.
func (m module) fetch(env []string) (string, error) {
	at := m.path + "@" + m.version
	cmd := exec.Command("go", "mod", "download", "-json", at)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var j struct{ Dir, Sum, Error string }
	if err := json.Unmarshal(out, &j); err != nil || runErr != nil || j.Error != "" {
		reason := strings.TrimSpace(j.Error)
		if reason == "" {
			reason = strings.TrimSpace(stderr.String())
		}
		if reason == "" && runErr != nil {
			reason = runErr.Error()
		}
		if reason == "" {
			reason = fmt.Sprintf("cannot read its answer %q: %v", out, err)
		}
		return "", fmt.Errorf("go mod download %s: %s", at, strings.TrimPrefix(reason, at+": "))
	}
	if j.Sum != m.sum {
		return "", fmt.Errorf("go mod download %s: checksum %s, but %s is pinned: the module is not the one these tests were written for", at, j.Sum, m.sum)
	}
	if j.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no directory in its answer %q", at, out)
	}
	return j.Dir, nil
}

// unavailable skips the test, or fails it when $CI is "true".
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
		return
	}
	t.Skipf(format+" (under CI=true this fails)", args...)
}

// File is the outline every Wycheproof file shares; G is the type of its
// test groups, which each test declares with the fields it reads.
type File[G any] struct {
	Algorithm     string
	Schema        string
	NumberOfTests int
	TestGroups    []G
}

// Case holds the fields every Wycheproof test case has. Test types embed it.
type Case struct {
	TcID    int
	Comment string
	Flags   []string
	Result  string
}

func (c Case) String() string {
	return fmt.Sprintf("tcId %d (%s, %q, flags %q)", c.TcID, c.Result, c.Comment, c.Flags)
}

// Load reads testvectors_v1/name of the pinned Wycheproof module, which
// must follow the given schema (its "schema" field, such as
// "ecdsa_verify_schema_v1.json"): a test that read a file of another shape
// would see zero values and could pass on nothing.
func Load[G any](t testing.TB, name, schema string) *File[G] {
	t.Helper()
	if path.Base(name) != name {
		t.Fatalf("testvectors: %q is not a file name", name)
		return nil
	}
	dir := WycheproofDir(t)
	if dir == "" {
		return nil // skipped
	}
	data, err := os.ReadFile(filepath.Join(dir, "testvectors_v1", name))
	if err != nil {
		t.Fatalf("testvectors: %v", err)
		return nil
	}
	var f File[G]
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("testvectors: %s: %v", name, err)
		return nil
	}
	if f.Schema != schema {
		t.Fatalf("testvectors: %s follows %q, not %q", name, f.Schema, schema)
		return nil
	}
	return &f
}

// Hex is a byte string written in hex, as Wycheproof writes them. Spaces,
// which vectors typed from an RFC keep between groups of digits, are
// ignored.
type Hex []byte

func (h *Hex) UnmarshalText(text []byte) error {
	b, err := hex.DecodeString(strings.ReplaceAll(string(text), " ", ""))
	*h = b
	return err
}

// Hash returns the hash function a Wycheproof file names: one of the SHA-1
// and SHA-2 functions that libhal, and so the HSM, knows. Any other name
// fails the test.
func Hash(t testing.TB, name string) crypto.Hash {
	t.Helper()
	h, ok := map[string]crypto.Hash{
		"SHA-1":       crypto.SHA1,
		"SHA-224":     crypto.SHA224,
		"SHA-256":     crypto.SHA256,
		"SHA-384":     crypto.SHA384,
		"SHA-512":     crypto.SHA512,
		"SHA-512/224": crypto.SHA512_224,
		"SHA-512/256": crypto.SHA512_256,
	}[name]
	if !ok {
		t.Fatalf("testvectors: hash %q is not one the HSM knows", name)
	}
	return h
}

// Digest hashes msg with h.
func Digest(h crypto.Hash, msg []byte) []byte {
	d := h.New()
	d.Write(msg)
	return d.Sum(nil)
}

// Expect reports whether a Wycheproof case with the given result and flags
// must succeed. "valid" must, "invalid" must not. For "acceptable" the caller
// decides: acceptable maps each flag such cases carry to whether a case with
// it must succeed, and a case must succeed only if all its flags say so. A
// flag without a verdict, an acceptable case without flags, or an unknown
// result fails the test.
func Expect(t testing.TB, result string, flags []string, acceptable map[string]bool) (pass bool) {
	t.Helper()
	switch result {
	case "valid":
		return true
	case "invalid":
		return false
	case "acceptable":
		if len(flags) == 0 {
			t.Errorf("testvectors: acceptable case without flags: no verdict can be given")
			return false
		}
		pass = true
		for _, f := range flags {
			v, ok := acceptable[f]
			if !ok {
				t.Errorf("testvectors: acceptable case with flag %q: no verdict for it; add one to the acceptable map", f)
				return false
			}
			pass = pass && v
		}
		return pass
	default:
		t.Errorf("testvectors: unknown result %q", result)
		return false
	}
}

// Tally counts the cases a test ran, by result.
type Tally struct{ Valid, Invalid, Acceptable int }

// Add counts c.
func (n *Tally) Add(c Case) {
	switch c.Result {
	case "valid":
		n.Valid++
	case "invalid":
		n.Invalid++
	case "acceptable":
		n.Acceptable++
	}
}

// Total is the number of cases counted.
func (n Tally) Total() int { return n.Valid + n.Invalid + n.Acceptable }

func (n Tally) String() string {
	return fmt.Sprintf("%d cases: %d valid, %d invalid, %d acceptable", n.Total(), n.Valid, n.Invalid, n.Acceptable)
}

// Check fails the test unless it ran want cases, at least one, and logs the
// count. Want is the file's numberOfTests when a test runs all of a file.
func (n Tally) Check(t testing.TB, what string, want int) {
	t.Helper()
	if n.Total() == 0 || n.Total() != want {
		t.Errorf("%s: ran %d cases, want %d", what, n.Total(), want)
	}
	t.Logf("%s: %v", what, n)
}
