package main

import (
	"bytes"
	"fmt"
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
	// The kept HSMs' PINs are beside them, mode 0600, never on stdout or
	// stderr, and stderr says where.
	for _, hsmName := range []string{"source", "destination"} {
		for _, which := range []string{"wheel", "so", "user"} {
			path := filepath.Join(dir, hsmName+"."+which+"-pin")
			fi, err := os.Stat(path)
			if err != nil {
				t.Errorf("demo --dir wrote no %s PIN for the %s: %v", which, hsmName, err)
				continue
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
			}
			pin, _ := os.ReadFile(path)
			if p := strings.TrimSpace(string(pin)); len(p) < 16 || strings.Contains(out+stderr.String(), p) {
				t.Errorf("%s: PIN %q is short or was printed", path, p)
			}
		}
	}
	if want := "demo: the HSMs' PINs are in " + dir; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr does not say where the PINs are (%q):\n%s", want, stderr)
	}
	e, stdout, stderr = testEnv("")
	if status := run([]string{"list", "--hsm", filepath.Join(dir, "destination"), "--pin-file", filepath.Join(dir, "destination.wheel-pin")}, e); status != 0 ||
		!strings.Contains(stdout.String(), "demo-1") {
		t.Errorf("list with the kept wheel PIN: status %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	e, _, stderr = testEnv("")
	if status := run([]string{"demo", "--dir", dir}, e); status != 1 || !strings.Contains(stderr.String(), "is not empty") {
		t.Errorf("demo into a used directory: status %d, %s", status, stderr)
	}
}

// TestUsage: help goes to stdout with exit status 0; a mistake on the
// command line is one line on stderr with exit status 2.
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		status int
		want   string // in stdout for status 0, else in stderr's one line
	}{
		{nil, 2, "cryptech-backup: error: no command given (cryptech-backup --help lists the commands)"},
		{[]string{"--help"}, 0, "A transfer, destination DST and source SRC"},
		{[]string{"export", "--help"}, 0, "--legacy-kek"},
		{[]string{"keygen", "rsa", "--help"}, 0, "--bits"},
		{[]string{"keygen", "ec", "-h"}, 0, "--curve"},
		{[]string{"hashsig", "--help"}, 0, "Commands:"},
		{[]string{"hashsig", "sign", "-h"}, 0, "--priv"},
		{[]string{"hashsig"}, 2, "name a hashsig command: keygen, sign, verify"},
		{[]string{"list", "--pin"}, 2, "cryptech-backup list: --pin needs a value (cryptech-backup list --help shows the flags)"},
		{[]string{"list", "-p"}, 2, "cryptech-backup list: -p needs a value"},
		{[]string{"setup", "-k", "x"}, 2, `cryptech-backup setup: -k takes a number, not "x"`},
		{[]string{"list", "--json=maybe"}, 2, `--json takes no value, or true or false, not "maybe"`},
		{[]string{"keygen", "dsa"}, 2, `unknown key type "dsa"`},
		{[]string{"keygen"}, 2, "name the key type"},
		{[]string{"demo", "--keys", "0"}, 2, "--keys takes 1 to 500"},
		{[]string{"setup", "--new", "--uuid", "x"}, 2, "exclude each other"},
		{[]string{"list", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"keygen", "rsa", "--bits", "1024"}, 2, "--bits: RSA keys under 2048 bits can be moved and used but not generated"},
		{[]string{"keygen", "ec", "--label", "a\tb"}, 2, "control character"},
		{[]string{"init", "--blocks", "3"}, 2, "--blocks takes 16 to 65536"},
	} {
		e, stdout, stderr := testEnv("")
		status := run(tc.args, e)
		switch {
		case status != tc.status:
			t.Errorf("%v: status %d, want %d; stderr %q", tc.args, status, tc.status, stderr)
		case status == 0 && (!strings.Contains(stdout.String(), tc.want) || stderr.Len() != 0):
			t.Errorf("%v: stdout %q, stderr %q; want %q in stdout", tc.args, stdout, stderr, tc.want)
		case status != 0 && (strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), tc.want) || stdout.Len() != 0):
			t.Errorf("%v: stderr %q; want one line with %q", tc.args, stderr, tc.want)
		}
	}
}

// TestDemoMaster runs the tamper drill: every key, in the keystore or
// stored outside, refused after zeroize and after two shares, verified
// after the third; the kept passphrases open the kept key file.
func TestDemoMaster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "drill")
	e, stdout, stderr := testEnv("")
	if status := run([]string{"demo", "--master", "--dir", dir, "--keys", "4"}, e); status != 0 {
		t.Fatalf("demo --master exited %d\nstdout:\n%s\nstderr:\n%s", status, stdout, stderr)
	}
	out := stdout.String()
	rows := regexp.MustCompile(`(?m)^[0-9a-f-]{36} +\S+ +\S+ +(keystore|stored\.json) +refused +refused +verified$`).FindAllStringSubmatch(out, -1)
	where := map[string]int{}
	for _, r := range rows {
		where[r[1]]++
	}
	if len(rows) != 5 || where["keystore"] == 0 || where["stored.json"] == 0 {
		t.Fatalf("rows %v:\n%s", where, out)
	}
	if !regexp.MustCompile(`stored\.json +refused +refused +verified`).MatchString(out) || !strings.Contains(out, "hss-L2") {
		t.Errorf("no stored HSS key:\n%s", out)
	}
	if !regexp.MustCompile(`demo: master key [0-9a-f]{16} backed up 3-of-5, zeroized, restored from 3 shares`).MatchString(out) {
		t.Errorf("summary missing:\n%s", out)
	}
	var passFile []byte
	for _, i := range []int{1, 3, 5} {
		p, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("master-%d.passphrase", i)))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out+stderr.String(), strings.TrimSpace(string(p))) {
			t.Fatal("a passphrase was printed")
		}
		passFile = append(passFile, p...)
	}
	pf := filepath.Join(dir, "pass135")
	if err := os.WriteFile(pf, passFile, 0o600); err != nil {
		t.Fatal(err)
	}
	e, stdout, stderr = testEnv("")
	if status := run([]string{"masterkey", "check", "-k", filepath.Join(dir, "mkm.keys"), "--passphrase-file", pf, "master-1", "master-3", "master-5"}, e); status != 0 ||
		!strings.Contains(stdout.String(), "recombine to the master key") {
		t.Errorf("check with the kept passphrases: %d, %s %s", status, stdout, stderr)
	}
}
