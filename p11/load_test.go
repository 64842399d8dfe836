//go:build cgo

package p11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// unwrappers lists the private key objects on tok that can unwrap.
func unwrappers(t *testing.T, tok *Token) []pkcs11.ObjectHandle {
	t.Helper()
	tok.mu.Lock()
	defer tok.mu.Unlock()
	hs, err := tok.find(pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true))
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// rsaPKCS8 is a new RSA-2048 key and its PrivateKeyInfo.
func rsaPKCS8(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, der
}

// TestLoadPrivateKey: a key loaded in the clear is a session object that
// only unwraps, sensitive, not extractable, not modifiable, not local.
func TestLoadPrivateKey(t *testing.T) {
	tok := newToken(t)
	priv, der := rsaPKCS8(t)
	k, err := tok.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: hsmapi.FlagKeyEncipherment})
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if k.Type != hsmapi.KeyTypeRSAPrivate || k.Flags != hsmapi.FlagKeyEncipherment || !hsmapi.SamePublicKey(k.PublicKey, spki) {
		t.Errorf("loaded as %+v", k)
	}
	hs := unwrappers(t, tok)
	if len(hs) != 1 {
		t.Fatalf("%d objects unwrap", len(hs))
	}
	tok.mu.Lock()
	a, err := tok.attrs(hs[0], pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE,
		pkcs11.CKA_MODIFIABLE, pkcs11.CKA_LOCAL, pkcs11.CKA_DECRYPT, pkcs11.CKA_SIGN, pkcs11.CKA_DERIVE, pkcs11.CKA_ID)
	tok.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint]bool{pkcs11.CKA_TOKEN: false, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_SENSITIVE: true, pkcs11.CKA_EXTRACTABLE: false,
		pkcs11.CKA_MODIFIABLE: false, pkcs11.CKA_LOCAL: false, pkcs11.CKA_DECRYPT: false, pkcs11.CKA_SIGN: false, pkcs11.CKA_DERIVE: false}
	for typ, v := range want {
		if boolAttr(a[typ]) != v {
			t.Errorf("attribute 0x%x is %v, want %v", typ, boolAttr(a[typ]), v)
		}
	}
	if !bytes.Equal(a[pkcs11.CKA_ID], k.UUID[:]) {
		t.Errorf("CKA_ID % x does not name %s", a[pkcs11.CKA_ID], k.UUID)
	}
	if err := tok.DeleteKey(ctx, k.UUID); err != nil {
		t.Fatal(err)
	}
	if n := len(unwrappers(t, tok)); n != 0 {
		t.Errorf("%d objects left after delete", n)
	}

	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	if _, err := tok.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: ecDER, Flags: hsmapi.FlagDigitalSignature}); !errors.Is(err, hsmapi.ErrUnsupportedKey) {
		t.Errorf("EC key: %v", err)
	}
	if _, err := tok.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der[:len(der)-1]}); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("cut PKCS#8: %v", err)
	}
}

// TestSoftKEKEKIntoSoftHSM restores bundles made for soft KEKEKs into a
// SoftHSM2 token that never saw the KEKEK: the keys arrive and sign, and
// the loaded KEKEK is gone afterwards. SoftHSM2 2.6 does OAEP with SHA-1
// only, so the source is a SoftHSM2 token too (or the bundle legacy).
func TestSoftKEKEKIntoSoftHSM(t *testing.T) {
	const pass = "a passphrase of some length"
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy %v", legacy), func(t *testing.T) {
			src, dst := newToken(t), newToken(t)
			var moved []hsmapi.KeyInfo
			for _, req := range testKeys {
				moved = append(moved, generate(t, src, req))
			}
			f, err := backup.NewSoftKEKEK([]byte(pass), backup.SoftOptions{Legacy: legacy,
				KDF: &backup.KDF{Name: "argon2id", Time: 1, Memory: 64, Threads: 1}})
			if err != nil {
				t.Fatal(err)
			}
			b, err := backup.Export(ctx, src, f, backup.ExportOptions{LegacyKEK: legacy})
			if err != nil {
				t.Fatal(err)
			}
			w := &loadWatcher{Token: dst}
			res, err := backup.Import(ctx, w, b, backup.ImportOptions{LegacyKEK: legacy,
				Passphrase: func(context.Context) ([]byte, error) { return []byte(pass), nil }})
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != len(moved) {
				t.Fatalf("%d keys imported", len(res))
			}
			for _, k := range moved {
				digest := sha256.Sum256([]byte(k.Label))
				sig, err := dst.Sign(ctx, k.UUID, digest[:], crypto.SHA256)
				if err != nil {
					t.Fatal(err)
				}
				if err := hsmapi.VerifySignature(k.PublicKey, digest[:], sig, crypto.SHA256); err != nil {
					t.Errorf("%s: the destination's signature fails under the source's key: %v", k.Label, err)
				}
			}
			if n := len(unwrappers(t, dst)); n != 0 {
				t.Errorf("%d objects that unwrap left on the destination", n)
			}
			// Loaded to unwrap only: CKA_TOKEN false (a session object, gone
			// with the session whatever happens), CKA_EXTRACTABLE false.
			if len(w.held) != 1 || w.held[0] != hsmapi.FlagKeyEncipherment {
				t.Errorf("the soft KEKEK was held with flags %v, want only %v", w.held, hsmapi.FlagKeyEncipherment)
			}
		})
	}
}

// TestLoadGrantsWhatFlagsGrant: a loaded key's private object has, for
// every combination of flags, the usage and policy attributes a key made on
// the token with those flags has (flagTemplates), and reads back with those
// flags.
func TestLoadGrantsWhatFlagsGrant(t *testing.T) {
	tok := newToken(t)
	_, der := rsaPKCS8(t)
	usages := []hsmapi.Flags{hsmapi.FlagDigitalSignature, hsmapi.FlagKeyEncipherment, hsmapi.FlagDataEncipherment, hsmapi.FlagExportable}
	for n := range 1 << len(usages) {
		var flags hsmapi.Flags
		for i, f := range usages {
			if n&(1<<i) != 0 {
				flags |= f
			}
		}
		k, err := tok.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: flags})
		if err != nil {
			t.Fatalf("load with %v: %v", flags, err)
		}
		if k.Flags != flags {
			t.Errorf("loaded with %v, reads back as %v", flags, k.Flags)
		}
		want, _ := flagTemplates(flags)
		func() {
			tok.mu.Lock()
			defer tok.mu.Unlock()
			o, err := tok.object(k.UUID)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range want {
				got, err := tok.attrs(o.priv, a.Type)
				if err != nil || !bytes.Equal(got[a.Type], a.Value) {
					t.Errorf("loaded with %v: attribute 0x%x is %x, a key made with those flags has %x", flags, a.Type, got[a.Type], a.Value)
				}
			}
		}()
		if err := tok.DeleteKey(ctx, k.UUID); err != nil {
			t.Fatal(err)
		}
	}
}

// loadWatcher records the flags of each private key loaded into the token,
// as the token then holds it (token is CKA_TOKEN, exportable
// CKA_EXTRACTABLE).
type loadWatcher struct {
	*Token
	held []hsmapi.Flags
}

func (w *loadWatcher) LoadPrivateKey(ctx context.Context, req hsmapi.LoadRequest) (hsmapi.KeyInfo, error) {
	k, err := w.Token.LoadPrivateKey(ctx, req)
	if err == nil {
		held, _ := w.Token.Key(ctx, k.UUID)
		w.held = append(w.held, held.Flags)
	}
	return k, err
}
