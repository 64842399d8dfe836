//go:build cgo

package p11

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"testing"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/testkeys"
)

// TestLegacyRSASizes moves RSA keys of 1024 and 8192 bits, and one with
// e = 3, from an emulated HSM to SoftHSM2 and back, as libhal would hold
// them: each signs on SoftHSM2 and again on the emulated HSM it returns
// to, and the original public key verifies every signature.
func TestLegacyRSASizes(t *testing.T) {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	legacy := map[string]*rsa.PrivateKey{"rsa-1024": rsa1024, "rsa-1024-e3": testkeys.RSA1024E3(t), "rsa-8192": testkeys.RSA8192(t)}
	emulated, tok, back := hsmtest.New(t), newToken(t), hsmtest.New(t)
	for label, key := range legacy {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := emulated.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: exportable, Label: label}); err != nil {
			t.Fatalf("%s: %v", label, err)
		}
	}
	hops := []struct {
		name     string
		src, dst hsmapi.Token
	}{{"emulated-to-softhsm", emulated, tok}, {"softhsm-to-emulated", tok, back}}
	for _, hop := range hops {
		kekek, err := backup.Setup(ctx, hop.dst, backup.SetupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := backup.Export(ctx, hop.src, kekek, backup.ExportOptions{})
		if err != nil {
			t.Fatalf("%s: export: %v", hop.name, err)
		}
		if _, err := backup.Import(ctx, hop.dst, b, backup.ImportOptions{}); err != nil {
			t.Fatalf("%s: import: %v", hop.name, err)
		}
		keys, err := hop.dst.Keys(ctx, hsmapi.Filter{Type: hsmapi.KeyTypeRSAPrivate})
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, k := range keys {
			key, ok := legacy[k.Label]
			if !ok {
				continue
			}
			seen++
			if k.Bits != key.N.BitLen() {
				t.Errorf("%s: %s arrived with %d bits", hop.name, k.Label, k.Bits)
			}
			digest := sha256.Sum256([]byte(hop.name + k.Label))
			sig, err := hop.dst.Sign(ctx, k.UUID, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatalf("%s: sign with %s: %v", hop.name, k.Label, err)
			}
			if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
				t.Errorf("%s: %s's signature fails under the original key: %v", hop.name, k.Label, err)
			}
			if err := hop.dst.Verify(ctx, k.UUID, digest[:], sig, crypto.SHA256); err != nil {
				t.Errorf("%s: verify with %s: %v", hop.name, k.Label, err)
			}
		}
		if seen != len(legacy) {
			t.Fatalf("%s: %d of the %d legacy keys arrived", hop.name, seen, len(legacy))
		}
	}
}
