package main

import (
	"flag"
	"regexp"
	"strings"
	"testing"
)

// Every flag a command defines is in its usage line (under its own name or
// an alias's), so that the first line of --help is the whole command line.
func TestUsageLineNamesEveryFlag(t *testing.T) {
	var all []*command
	for _, c := range commands() {
		all = append(all, c)
		all = append(all, c.subcommands...)
	}
	for _, cmd := range all {
		if cmd.define == nil {
			continue
		}
		fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
		cmd.define(fs)
		alias := map[string]string{} // alias -> the flag it stands for
		fs.VisitAll(func(f *flag.Flag) {
			if long, ok := strings.CutPrefix(f.Usage, "same as --"); ok {
				alias[f.Name] = long
			}
		})
		fs.VisitAll(func(f *flag.Flag) {
			if alias[f.Name] != "" {
				return
			}
			names := []string{f.Name}
			for a, long := range alias {
				if long == f.Name {
					names = append(names, a)
				}
			}
			for _, n := range names {
				if regexp.MustCompile(`(^|[\[ |])` + regexp.QuoteMeta(dashed(n)) + `($|[\] |=])`).MatchString(cmd.args) {
					return
				}
			}
			t.Errorf("%s: the usage line %q lacks %s", cmd.name, cmd.args, dashed(f.Name))
		})
	}
}

// --help writes long flags with two dashes, as the README does, and a
// key type's help shows that type's flags only.
func TestHelpFlags(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		want, not []string
	}{
		{[]string{"import", "--help"}, []string{"\n  --json\n", "\n  -i string\n", "\n  --input string\n", "Usage: cryptech-backup import [-i backup.json] [--legacy-kek] [--passphrase-file FILE] [--json]\n"}, []string{"\n  -json"}},
		{[]string{"keygen", "rsa", "--help"}, []string{"\n  --bits int\n"}, []string{"sha256-m32-h10", "--lms", "--curve string", "LM-OTS"}},
		{[]string{"keygen", "ec", "--help"}, []string{"\n  --curve string\n"}, []string{"sha256-m32", "--bits", "--levels"}},
		{[]string{"keygen", "hashsig", "--help"}, []string{"\n  --lms string\n", "sha256-m32-h25", "shake256-n24-w8"}, []string{"--bits", "--curve"}},
		{[]string{"keygen", "--help"}, []string{"\n  --bits int\n", "\n  --lms string\n"}, []string{"sha256-m32-h25"}},
		{[]string{"hashsig", "keygen", "--help"}, []string{"sha256-m32-h25", "shake256-n24-w8"}, nil},
		{[]string{"demo", "--help"}, []string{"1 to 500"}, nil},
	} {
		e, stdout, stderr := testEnv("")
		if status := run(tc.args, e); status != 0 {
			t.Errorf("%v: exit status %d, stderr %q", tc.args, status, stderr)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%v: help lacks %q:\n%s", tc.args, w, stdout)
			}
		}
		// The flags and notes, without the usage line and examples.
		_, flags, _ := strings.Cut(stdout.String(), "\nFlags:\n")
		flags, _, _ = strings.Cut(flags, "\nExamples:")
		for _, n := range tc.not {
			if strings.Contains(flags, n) {
				t.Errorf("%v: help has %q:\n%s", tc.args, n, stdout)
			}
		}
	}
}
