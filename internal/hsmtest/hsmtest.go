// Package hsmtest makes emulated HSMs for tests in other packages: quick to
// create, quick to log in to, closed when the test ends.
package hsmtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
)

// Options make PINs cheap to check and a wrong one quick to refuse; tests
// log in far more often than an operator does.
var Options = hsm.Options{WrongPINDelay: time.Millisecond, PINIterations: 1000}

// PIN is the wheel, SO and user PIN of the HSMs this package creates.
var PIN = []byte("test-pin")

// Create creates an emulated HSM in dir with 128 flash blocks and returns a
// wheel session on it. The HSM and the session are closed when t ends.
func Create(t testing.TB, dir string) *hsm.Session {
	t.Helper()
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: PIN, SOPIN: PIN, UserPIN: PIN, Blocks: 128}, Options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	s := h.NewSession()
	if err := s.Login(context.Background(), hsmapi.UserWheel, PIN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// New is Create in a directory of t's own.
func New(t testing.TB) *hsm.Session {
	t.Helper()
	return Create(t, filepath.Join(t.TempDir(), "hsm"))
}

// ImportHSS stores an HSS private key, given as package hashsig's state
// (MarshalBinary), in the HSM of s as a new token key with flags, as an
// import does: wrapped under a transit KEK encrypted to a KEKEK made for the
// purpose. The key is loaded as after a restart, its trees unbuilt, which
// for a tall key its first signature takes seconds to do (generating one
// takes as long).
func ImportHSS(t testing.TB, s *hsm.Session, state []byte, flags hsmapi.Flags) hsmapi.KeyInfo {
	t.Helper()
	ctx := context.Background()
	kekek, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagKeyEncipherment})
	if err != nil {
		t.Fatal(err)
	}
	defer s.DeleteKey(ctx, kekek.UUID)
	pub, err := hsmapi.ParseKEKEK(kekek.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	der, err := hashsig.StatePKCS8(state)
	if err != nil {
		t.Fatal(err)
	}
	defer clear(der)
	kek := make([]byte, hsmapi.KEKSize)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	wrapped, err := keywrap.WrapPad(kek, der)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub.Key(), kek, nil)
	if err != nil {
		t.Fatal(err)
	}
	encKEK, err := hsmapi.MarshalEncryptedKEK(hsmapi.KEKOAEPSHA256, ct)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Import(ctx, hsmapi.ImportRequest{KEKEKUUID: kekek.UUID, Encryption: hsmapi.KEKOAEPSHA256,
		Wrapped: hsmapi.WrappedKey{EncryptedKey: hsmapi.MarshalEncryptedKey(wrapped), EncryptedKEK: encKEK}, Flags: flags | hsmapi.FlagToken})
	if err != nil {
		t.Fatal(err)
	}
	return res.Key
}

// CreateFull creates an emulated HSM in dir holding n keys, quickly: P-256
// public keys imported in batches of 1,000 (public keys need no
// decryption), each with its own label. It returns the HSM and a wheel
// session on it, both closed when t ends. Benchmarks of listing use it.
func CreateFull(t testing.TB, dir string, n int) (*hsm.HSM, *hsm.Session) {
	t.Helper()
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: PIN, SOPIN: PIN, UserPIN: PIN, Blocks: n + 64}, Options)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	s := h.NewSession()
	t.Cleanup(func() { s.Close() })
	if err := s.Login(context.Background(), hsmapi.UserWheel, PIN); err != nil {
		t.Fatal(err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for done := 0; done < n; {
		batch := make([]hsmapi.ImportRequest, min(n-done, 1000))
		for i := range batch {
			batch[i] = hsmapi.ImportRequest{Label: fmt.Sprintf("key %d", done+i), PublicKey: spki,
				Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken}
		}
		if _, err := s.ImportBatch(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		done += len(batch)
	}
	return h, s
}
