package main

import (
	"flag"
	"slices"
	"testing"
)

// TestBackendFlagNamesAreRegistered: the list that commands opening no HSM
// check is the set of flags register registers, so a new backend flag
// cannot be silently ignored by them.
func TestBackendFlagNamesAreRegistered(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var b backendFlags
	b.register(fs)
	var registered []string
	fs.VisitAll(func(f *flag.Flag) { registered = append(registered, f.Name) })
	listed := slices.Clone(backendFlagNames)
	slices.Sort(listed)
	if !slices.Equal(registered, listed) {
		t.Fatalf("register registers %v, backendFlagNames lists %v", registered, listed)
	}
}
