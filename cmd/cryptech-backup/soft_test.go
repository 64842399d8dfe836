package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// prompter answers the prompts in order and records them.
type prompter struct {
	answers []string
	prompts []string
}

func (p *prompter) read(_ context.Context, prompt string) ([]byte, error) {
	p.prompts = append(p.prompts, prompt)
	a := p.answers[0]
	p.answers = p.answers[1:]
	return []byte(a), nil
}

// TestSoftKEKEKPrompts: setup --soft asks for the passphrase twice without
// echo and refuses two that differ; import asks once, only for a bundle
// made for a soft KEKEK.
func TestSoftKEKEKPrompts(t *testing.T) {
	dir := t.TempDir()
	soft := filepath.Join(dir, "soft.json")
	pass := "a passphrase long enough"

	e, _, stderr := testEnv("")
	p := &prompter{answers: []string{pass, pass + "x"}}
	e.readSecret = p.read
	if status := run([]string{"setup", "--soft", "-o", soft}, e); status != 1 || !strings.Contains(stderr.String(), "the two passphrases differ") {
		t.Fatalf("differing passphrases: exit %d, %s", status, stderr)
	}
	if _, err := os.Stat(soft); !os.IsNotExist(err) {
		t.Fatalf("a KEKEK file was written: %v", err)
	}

	e, _, stderr = testEnv("")
	p = &prompter{answers: []string{pass, pass}}
	e.readSecret = p.read
	if status := run([]string{"setup", "--soft", "-o", soft}, e); status != 0 {
		t.Fatalf("setup --soft: exit %d, %s", status, stderr)
	}
	if want := []string{"KEKEK passphrase: ", "KEKEK passphrase again: "}; !slices.Equal(p.prompts, want) {
		t.Errorf("prompts %q, want %q", p.prompts, want)
	}
	if fi, err := os.Stat(soft); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("KEKEK file: %v %v", fi.Mode(), err)
	}

	pin := "wheel-pin"
	for _, h := range []string{"src", "dst"} {
		e, _, stderr = testEnv("")
		if status := run([]string{"init", "--hsm", filepath.Join(dir, h), "--wheel-pin", pin, "--so-pin", "so-pin-1", "--user-pin", "user-pin"}, e); status != 0 {
			t.Fatal(stderr)
		}
	}
	e, stdout, stderr := testEnv("")
	if status := run([]string{"keygen", "ec", "--hsm", filepath.Join(dir, "src"), "--exportable", "-p", pin}, e); status != 0 {
		t.Fatal(stderr)
	}
	id := strings.TrimSpace(stdout.String())
	bundle := filepath.Join(dir, "backup.json")
	e, _, stderr = testEnv("")
	if status := run([]string{"export", "--hsm", filepath.Join(dir, "src"), "-p", pin, "-i", soft, "-o", bundle}, e); status != 0 {
		t.Fatal(stderr)
	}

	e, stdout, stderr = testEnv("")
	p = &prompter{answers: []string{pin, pass}}
	e.readSecret = p.read
	if status := run([]string{"import", "--hsm", filepath.Join(dir, "dst"), "-i", bundle}, e); status != 0 {
		t.Fatalf("import: exit %d, %s", status, stderr)
	}
	if want := []string{"Wheel PIN: ", "KEKEK passphrase: "}; !slices.Equal(p.prompts, want) {
		t.Errorf("prompts %q, want %q", p.prompts, want)
	}
	if !strings.Contains(stdout.String(), "imported "+id) {
		t.Errorf("import printed %q", stdout)
	}
}
