//go:build cgo

package p11

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/backup"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/p11module"
	"github.com/hsmkit/cryptech-backup/internal/testtool"
	"github.com/hsmkit/cryptech-backup/internal/transfertest"
)

// newModuleTokens makes n emulated HSMs, slots of the emulated HSM's own
// PKCS#11 module (cmd/cryptech-pkcs11), and returns them opened through
// this package and logged in. The module reads its slots at C_Initialize
// and is finalized when the last of them closes, at the end of t: so all
// the module tokens a test uses are made by one call.
func newModuleTokens(t testing.TB, n int) []*Token {
	t.Helper()
	return newModuleTokensOver(t, make([]bool, n)...)
}

// newModuleTokensOver is newModuleTokens with one slot per element of
// overRPC, whose HSM the module reaches over libhal RPC when it is true.
func newModuleTokensOver(t testing.TB, overRPC ...bool) []*Token {
	t.Helper()
	lib := p11module.Build(t)
	var slots []p11module.Slot
	for i, r := range overRPC {
		slots = append(slots, p11module.Slot{Label: fmt.Sprintf("module-%d", i), RPC: r})
	}
	p11module.ConfigureSlots(t, slots...)
	var toks []*Token
	for _, slot := range slots {
		label := slot.Label
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

// TestToolKeysThroughTheModule: keys made with pkcs11-tool on the emulated
// HSM's module (--id, --label, usages) go to SoftHSM2 and on to a second
// module token, and have there, object by object, every attribute they
// had when pkcs11-tool made them (those a token computes aside: see
// compared); each signs on every hop so that the first token's public key
// verifies. A bundle with a flipped byte stores nothing on the module.
// The EC key is --private: its public object too, which arrives so.
func TestToolKeysThroughTheModule(t *testing.T) {
	tool := testtool.Require(t, "pkcs11-tool", "opensc")
	lib := p11module.Build(t)
	p11module.Configure(t, "module-0", "module-1")
	// Before this process initializes the module: until it finalizes, the
	// module holds the HSMs, and pkcs11-tool could not open them.
	for _, args := range [][]string{
		{"--key-type", "EC:prime256v1", "--id", "0a0b", "--label", "tool-ec", "--usage-sign", "--private"},
		{"--key-type", "rsa:2048", "--id", "0c0d", "--label", "tool-rsa", "--usage-sign", "--usage-decrypt"},
	} {
		cmd := exec.Command(tool, append([]string{"--module", lib, "--token-label", "module-0", "--login", "--pin", string(hsmtest.PIN),
			"--keypairgen", "--extractable", "--sensitive"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pkcs11-tool %v: %v\n%s", args, err, out)
		}
	}
	var mods []*Token
	for _, label := range []string{"module-0", "module-1"} {
		tok, err := Open(Config{Module: lib, TokenLabel: label})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tok.Close() })
		if err := tok.Login(ctx, hsmapi.UserNormal, hsmtest.PIN); err != nil {
			t.Fatal(err)
		}
		mods = append(mods, tok)
	}
	src, soft, dst := mods[0], newToken(t), mods[1]
	keys, err := src.Keys(ctx, hsmapi.Filter{})
	if err != nil || len(keys) != 2 {
		t.Fatalf("pkcs11-tool made %d keys (%v)", len(keys), err)
	}
	for _, k := range keys {
		if k.Label == "tool-ec" && publicAttrs(t, src, k.UUID, pkcs11.CKA_PRIVATE)[pkcs11.CKA_PRIVATE] != "01" {
			t.Fatal("pkcs11-tool --private made a public object that is not private")
		}
	}
	transfer(t, src, soft)
	for _, k := range keys {
		sameObjects(t, src, soft, k.UUID)
		signsAsSource(t, src, soft, k.UUID)
	}
	_, b := transfertest.ExportFor(t, soft, dst)
	before := objectCount(t, dst)
	for i := range b.Keys {
		c := *b
		c.Keys = slices.Clone(b.Keys)
		k := &c.Keys[i]
		k.PKCS8 = append(bytes.Clone(k.PKCS8[:len(k.PKCS8)-1]), k.PKCS8[len(k.PKCS8)-1]^1)
		if _, err := backup.Import(ctx, dst, &c, backup.ImportOptions{}); !errors.Is(err, hsmapi.ErrDecryption) {
			t.Errorf("a bundle with a flipped byte: %v", err)
		}
	}
	if n := objectCount(t, dst); n != before {
		t.Errorf("refused bundles left %d objects on the module, had %d", n, before)
	}
	if _, err := backup.Import(ctx, dst, b, backup.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		sameObjects(t, src, dst, k.UUID)
		signsAsSource(t, src, dst, k.UUID)
	}
}
