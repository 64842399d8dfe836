//go:build cgo

package softhsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"strings"
	"testing"

	"github.com/ThalesIgnite/crypto11"
	"github.com/miekg/pkcs11"
)

// These tests need SoftHSM2 (under CI=true they fail without it), change
// SOFTHSM2_CONF for the whole process and share the module with crypto11:
// none of them runs in parallel.

// setup calls Setup in a temporary directory and restores SOFTHSM2_CONF at
// the end of the test.
func setup(t *testing.T) *Env {
	t.Helper()
	Require(t)
	t.Setenv(ConfEnv, os.Getenv(ConfEnv)) // restored by the testing package
	env, err := Setup(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// ecSign configures crypto11 on the token, makes an EC P-256 key, has it sign
// and checks the signature, and returns the open context.
func ecSign(t *testing.T, env *Env, label, pin string) *crypto11.Context {
	t.Helper()
	ctx, err := crypto11.Configure(&crypto11.Config{Path: env.Module(), TokenLabel: label, Pin: pin})
	if err != nil {
		t.Fatalf("crypto11.Configure on %q: %v", label, err)
	}
	key, err := ctx.GenerateECDSAKeyPair([]byte("k-"+label), elliptic.P256())
	if err != nil {
		ctx.Close()
		t.Fatalf("GenerateECDSAKeyPair on %q: %v", label, err)
	}
	digest := sha256.Sum256([]byte("hello " + label))
	sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		ctx.Close()
		t.Fatalf("Sign on %q: %v", label, err)
	}
	if !ecdsa.VerifyASN1(key.Public().(*ecdsa.PublicKey), digest[:], sig) {
		ctx.Close()
		t.Fatalf("signature from %q does not verify", label)
	}
	return ctx
}

func TestTokensWithCrypto11(t *testing.T) {
	env := setup(t)
	if fi, err := os.Stat(env.TokenDir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("token directory: %v, %v; want mode 0700", fi, err)
	}
	conf, err := os.ReadFile(env.Conf())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"directories.tokendir = " + env.TokenDir() + "\n", "objectstore.backend = file\n", "log.level = ERROR\n", "slots.removable = false\n"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("configuration lacks %q:\n%s", want, conf)
		}
	}
	if got := os.Getenv(ConfEnv); got != env.Conf() {
		t.Fatalf("%s = %q, want %q", ConfEnv, got, env.Conf())
	}

	if err := env.InitToken("src", "so-pin-1", "user-pin-1"); err != nil {
		t.Fatal(err)
	}
	if err := env.InitToken("dst", "so-pin-2", "user-pin-2"); err != nil {
		t.Fatal(err)
	}
	if err := env.InitToken("src", "so-pin-3", "user-pin-3"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("InitToken with a label taken: err = %v, want one saying it exists", err)
	}

	src := ecSign(t, env, "src", "user-pin-1")
	dst := ecSign(t, env, "dst", "user-pin-2")

	// While crypto11 holds the module: another token, without finalising it
	// under crypto11, which goes on working.
	if err := env.InitToken("mid", "so-pin-4", "user-pin-4"); err != nil {
		t.Fatalf("InitToken while crypto11 contexts are open: %v", err)
	}
	if _, err := src.FindKeyPair([]byte("k-src"), nil); err != nil {
		t.Fatalf("crypto11 after InitToken: %v", err)
	}
	mid := ecSign(t, env, "mid", "user-pin-4")

	// A new configuration cannot take effect while the module is initialised.
	if _, err := Setup(t.TempDir()); err == nil || !strings.Contains(err.Error(), "already initialised") {
		t.Errorf("Setup while crypto11 contexts are open: err = %v, want one saying the module is initialised", err)
	}
	if got := os.Getenv(ConfEnv); got != env.Conf() {
		t.Fatalf("failed Setup changed %s to %q", ConfEnv, got)
	}

	for _, c := range []*crypto11.Context{src, dst, mid} {
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}

	// After crypto11 contexts came and went (and finalised the module).
	if err := env.InitToken("later", "so-pin-5", "user-pin-5"); err != nil {
		t.Fatalf("InitToken after crypto11 contexts closed: %v", err)
	}
	later := ecSign(t, env, "later", "user-pin-5")
	// The keys made before are still on their tokens.
	if k, err := later.FindKeyPair([]byte("k-src"), nil); err != nil || k != nil {
		t.Errorf("token later has src's key: %v, %v", k, err)
	}
	if err := later.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := crypto11.Configure(&crypto11.Config{Path: env.Module(), TokenLabel: "src", Pin: "user-pin-1"})
	if err != nil {
		t.Fatal(err)
	}
	if k, err := again.FindKeyPair([]byte("k-src"), nil); err != nil || k == nil {
		t.Errorf("src's key after reopening: %v, %v", k, err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}

	// The tokens are files in the token directory.
	ents, err := os.ReadDir(env.TokenDir())
	if err != nil || len(ents) != 4 {
		t.Errorf("token directory has %d entries (%v), want 4", len(ents), err)
	}
}

// With the module finalised again, a second Setup in another directory takes
// effect: the tokens of the first are not there.
func TestSetupAgain(t *testing.T) {
	first := setup(t)
	if err := first.InitToken("one", "so-pin-1", "user-pin-1"); err != nil {
		t.Fatal(err)
	}
	second := setup(t)
	if err := first.InitToken("x", "so-pin-1", "user-pin-1"); err == nil {
		t.Error("InitToken on an Env whose configuration was replaced succeeded")
	}
	if err := second.InitToken("two", "so-pin-2", "user-pin-2"); err != nil {
		t.Fatal(err)
	}
	if labels := tokenLabels(t, second); strings.Join(labels, ",") != "two" {
		t.Errorf("tokens after the second Setup: %q, want [two]", labels)
	}
	if _, err := crypto11.Configure(&crypto11.Config{Path: second.Module(), TokenLabel: "one", Pin: "user-pin-1"}); err == nil {
		t.Error("crypto11 found the first Setup's token after the second Setup")
	}
	ctx := ecSign(t, second, "two", "user-pin-2")
	if err := ctx.Close(); err != nil {
		t.Fatal(err)
	}
}

func tokenLabels(t *testing.T, env *Env) []string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	c, err := ctxFor(env.Module())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Initialize(); err != nil {
		t.Fatal(err)
	}
	defer c.Finalize()
	slots, err := c.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err != nil {
			t.Fatal(err)
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
			labels = append(labels, ti.Label)
		}
	}
	return labels
}

func TestInitTokenBadInput(t *testing.T) {
	env := setup(t)
	for _, c := range []struct{ label, so, user, want string }{
		{"", "so-pin", "user-pin", "empty token label"},
		{strings.Repeat("x", 33), "so-pin", "user-pin", "longer than 32 bytes"},
		{"t", "", "user-pin", "empty SO or user PIN"},
		{"t", "12", "user-pin", "CKR_PIN_INCORRECT"},
	} {
		err := env.InitToken(c.label, c.so, c.user)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("InitToken(%q, %q, %q) = %v, want an error with %q", c.label, c.so, c.user, err, c.want)
		}
	}
}
