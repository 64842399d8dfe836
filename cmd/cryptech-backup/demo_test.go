package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func testEnv(stdin string) (*env, *bytes.Buffer, *bytes.Buffer) {
	var stdout, stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr,
		getenv: func(string) string { return "" }, hsmOptions: testOptions}
	return e, &stdout, &stderr
}

func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	e, stdout, stderr := testEnv("")
	if status := run([]string{"demo", "--dir", dir, "--keys", "7"}, e); status != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", status, stdout, stderr)
	}
	out := stdout.String()
	rows := regexp.MustCompile(`(?m)^[0-9a-f-]{36} +demo-\d+ +(rsa-\d+|ec-p\d+|hss-L2) +yes +yes +yes$`).FindAllString(out, -1)
	if len(rows) != 7 {
		t.Errorf("%d exportable keys arrived and verified, want 7:\n%s", len(rows), out)
	}
	if !regexp.MustCompile(`(?m)^[0-9a-f-]{36} +stays-home +ec-p256 +no +no +-$`).MatchString(out) {
		t.Errorf("the non-exportable key's row is missing or wrong:\n%s", out)
	}
	for _, kind := range []string{"ec-p256", "rsa-2048", "ec-p384", "rsa-3072", "ec-p521", "rsa-4096", "hss-L2"} {
		if !strings.Contains(out, kind) {
			t.Errorf("the demo's keys have no %s", kind)
		}
	}
	if !strings.Contains(out, "demo: 7 of 7 exportable keys exported, imported and verified with rsa-oaep-sha256; the hash-based key signed on both HSMs with disjoint indexes") {
		t.Errorf("summary missing:\n%s", out)
	}
	// --dir keeps both HSMs and the files; the directory must then be new.
	for _, f := range []string{"source/flash.img", "destination/mkm", "kekek.json", "backup.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("demo --dir left no %s: %v", f, err)
		}
	}
	e, _, stderr = testEnv("")
	if status := run([]string{"demo", "--dir", dir}, e); status != 1 || !strings.Contains(stderr.String(), "is not empty") {
		t.Errorf("demo into a used directory: status %d, %s", status, stderr)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		status int
		stderr string
	}{
		{nil, 2, "Commands:"},
		{[]string{"--help"}, 0, "A transfer, destination DST and source SRC"},
		{[]string{"export", "--help"}, 0, "--legacy-kek"},
		{[]string{"list", "--pin"}, 2, "flag needs an argument"},
		{[]string{"keygen", "dsa"}, 2, `unknown key type "dsa"`},
		{[]string{"keygen"}, 2, "name the key type"},
		{[]string{"demo", "--keys", "0"}, 2, "--keys takes 1 to 500"},
		{[]string{"setup", "--new", "--uuid", "x"}, 2, "exclude each other"},
		{[]string{"list", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"keygen", "rsa", "--bits", "1024"}, 2, "--bits takes 2048, 3072 or 4096"},
		{[]string{"keygen", "ec", "--label", "a\tb"}, 2, "control character"},
		{[]string{"init", "--blocks", "3"}, 2, "--blocks takes 16 to 65536"},
	} {
		e, _, stderr := testEnv("")
		if status := run(tc.args, e); status != tc.status || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%v: status %d, stderr %q; want %d and %q", tc.args, status, stderr, tc.status, tc.stderr)
		}
	}
}
