//go:build cgo

package p11

import (
	"fmt"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/p11module"
)

// newModuleTokens makes n emulated HSMs, slots of the emulated HSM's own
// PKCS#11 module (cmd/cryptech-pkcs11), and returns them opened through
// this package and logged in. The module reads its slots at C_Initialize
// and is finalized when the last of them closes, at the end of t: so all
// the module tokens a test uses are made by one call.
func newModuleTokens(t testing.TB, n int) []*Token {
	t.Helper()
	lib := p11module.Build(t)
	var labels []string
	for i := range n {
		labels = append(labels, fmt.Sprintf("module-%d", i))
	}
	p11module.Configure(t, labels...)
	var toks []*Token
	for _, label := range labels {
		tok, err := Open(Config{Module: lib, TokenLabel: label})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tok.Close() })
		if err := tok.Login(ctx, hsmapi.UserNormal, hsmtest.PIN); err != nil {
			t.Fatalf("log in to module token %s: %v", label, err)
		}
		toks = append(toks, tok)
	}
	return toks
}
