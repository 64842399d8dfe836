// Package wiretest reads the golden libhal messages (rpc/testdata/golden.txt)
// for the tests of package rpc and of its wire codec.
package wiretest

import (
	"bufio"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A Golden is one line of the golden file: a case name and a payload.
type Golden struct {
	Name string
	Data []byte
}

// path is the golden file, which stays with package rpc, whose protocol it
// pins down.
func path() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "golden.txt")
}

// Load reads the golden file, failing t on a malformed line or a name that
// appears twice.
func Load(t testing.TB) []Golden {
	t.Helper()
	f, err := os.Open(path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Golden
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) < 2 {
			t.Fatalf("golden.txt:%d: no bytes", line)
		}
		data, err := hex.DecodeString(strings.Join(fields[1:], ""))
		if err != nil {
			t.Fatalf("golden.txt:%d: %v", line, err)
		}
		if seen[fields[0]] {
			t.Fatalf("golden.txt:%d: %s appears twice", line, fields[0])
		}
		seen[fields[0]] = true
		out = append(out, Golden{fields[0], data})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Unhex decodes hex written with spaces and line breaks anywhere.
func Unhex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// IsRequest reports whether a golden case is a request (its name has the
// part ".req").
func IsRequest(name string) bool {
	return strings.Contains(name, ".req")
}
