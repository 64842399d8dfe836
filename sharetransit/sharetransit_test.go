package sharetransit

import (
	"crypto/rand"
	"errors"
	"testing"

	"github.com/hsmkit/cryptech-backup/keyshare"
)

func submission(t *testing.T) *Submission {
	t.Helper()
	key := make([]byte, keyshare.KeySize)
	rand.Read(key)
	shares, err := keyshare.Split(key, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	return &Submission{CheckValue: keyshare.CheckValue(key), Threshold: 2, Shares: 3, Share: shares[1]}
}

func newKey(t *testing.T) *SessionKey {
	t.Helper()
	seed := make([]byte, SeedSize)
	rand.Read(seed)
	k, err := NewSessionKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := newKey(t)
	again, err := NewSessionKey(nil)
	if err == nil || again != nil {
		t.Fatal("a key from no seed")
	}
	var id [SessionIDSize]byte
	rand.Read(id[:])
	sub := submission(t)
	sealed, err := Seal(k.Public, id, sub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Open(id, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *sub {
		t.Fatalf("opened %+v, sealed %+v", got, sub)
	}

	// Another session (other ID, or other key), a flipped byte, a cut: no.
	other := id
	other[0] ^= 1
	k2 := newKey(t)
	for name, open := range map[string]func() (*Submission, error){
		"other id":  func() (*Submission, error) { return k.Open(other, sealed) },
		"other key": func() (*Submission, error) { return k2.Open(id, sealed) },
		"truncated": func() (*Submission, error) { return k.Open(id, sealed[:len(sealed)-1]) },
		"short":     func() (*Submission, error) { return k.Open(id, sealed[:10]) },
	} {
		if _, err := open(); !errors.Is(err, ErrNotForSession) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for i := range sealed {
		b := append([]byte(nil), sealed...)
		b[i] ^= 0x80
		if _, err := k.Open(id, b); !errors.Is(err, ErrNotForSession) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
}

func TestSealRefusesNonsense(t *testing.T) {
	k := newKey(t)
	sub := submission(t)
	sub.Threshold = 4
	if _, err := Seal(k.Public, [SessionIDSize]byte{}, sub); err == nil {
		t.Fatal("sealed a 4-of-3 share")
	}
	if _, err := Seal([]byte("short"), [SessionIDSize]byte{}, submission(t)); err == nil {
		t.Fatal("sealed to a malformed key")
	}
}
