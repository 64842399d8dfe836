package hsm

import (
	"bytes"
	"crypto"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/testkeys"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// The first signature of an HSS key after the HSM opens builds its trees:
// seconds for the h15/w8 test key, minutes under the race detector. These
// tests check that nothing but other signatures of that key waits for it.
// Like the lock order tests, they close their HSMs by hand: on a build that
// blocked everything, cleanup would wait for it too.

// prompt bounds what must not wait for a tree build: far under the build
// (seconds; minutes under the race detector), far over what it takes on a
// loaded machine (under 200 ms seen under the race detector in a CI run on
// 2 busy cores). What proves that nothing waited is that each call ends
// while the signature is still building (see timed); the bound only stops a
// call that waits from passing unseen.
const prompt = time.Second

// slowHSSKey makes an HSM holding the h15/w8 test key as a token key, and
// opens it again: the key is loaded, its trees unbuilt, as after a restart.
// It returns the key's UUID and its keystore record.
func slowHSSKey(t *testing.T) (*HSM, hsmapi.UUID, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hsm")
	h, err := Create(dir, InitConfig{WheelPIN: wheelPIN, SOPIN: soPIN, UserPIN: userPIN, Blocks: 64}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	state, _ := testkeys.HSSH15W8()
	sk, err := hashsig.ParsePrivateKey(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := raceSession(t, h)
	k, err := h.storeNew(s, sk, signFlags, "slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if h, err = Open(dir, testOptions); err != nil {
		t.Fatal(err)
	}
	rec, err := h.ks.Get(keystore.ID(k.info.UUID))
	if err != nil {
		t.Fatal(err)
	}
	return h, k.info.UUID, rec.Data
}

// startFirstSignature signs with key id in a session of its own, and
// returns once the signature is building the key's trees, with what Sign
// will return.
func startFirstSignature(t *testing.T, h *HSM, id hsmapi.UUID) <-chan error {
	t.Helper()
	s := raceSession(t, h)
	signed := make(chan error, 1)
	go func() {
		_, err := s.Sign(ctx, id, []byte("first"), crypto.Hash(0))
		signed <- err
	}()
	time.Sleep(100 * time.Millisecond)
	building(t, signed)
	return signed
}

// building fails the test if the signature already returned.
func building(t *testing.T, signed <-chan error) {
	t.Helper()
	select {
	case err := <-signed:
		t.Fatalf("the first signature ended (%v) too soon: the test proves nothing", err)
	default:
	}
}

// timed runs f and fails the test if it took longer than d.
func timed(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	start := time.Now()
	err := f()
	took := time.Since(start)
	if err != nil {
		t.Errorf("%s: %v", what, err)
	}
	if took > d {
		t.Errorf("%s took %v during a first signature, want under %v", what, took.Round(time.Millisecond), d)
	}
}

// timedWhileBuilding is timed, and then checks that the signature is still
// building: f ended before the build did, so it did not wait for it.
func timedWhileBuilding(t *testing.T, signed <-chan error, what string, f func() error) {
	t.Helper()
	timed(t, prompt, what, f)
	building(t, signed)
}

// While one session makes a key's first signature, others describe it,
// list and match keys and sign with other keys without waiting.
func TestHashsigBuildBlocksOnlyItsSignatures(t *testing.T) {
	h, id, _ := slowHSSKey(t)
	other := raceSession(t, h)
	ec := generate(t, other, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	signed := startFirstSignature(t, h, id)
	for range 5 {
		timedWhileBuilding(t, signed, "Key", func() error {
			k, err := other.Key(ctx, id)
			if err == nil && k.Hashsig.Remaining != 1<<15 {
				t.Errorf("the key has %d signatures left, want %d", k.Hashsig.Remaining, 1<<15)
			}
			return err
		})
		timedWhileBuilding(t, signed, "Keys", func() error {
			keys, err := other.Keys(ctx, hsmapi.Filter{})
			if err == nil && len(keys) != 2 {
				t.Errorf("%d keys listed, want 2", len(keys))
			}
			return err
		})
		timedWhileBuilding(t, signed, "Keys by attribute", func() error {
			_, err := other.Keys(ctx, hsmapi.Filter{Attributes: []hsmapi.Attribute{{Type: 0x101, Value: []byte{1}}}})
			return err
		})
		timedWhileBuilding(t, signed, "Sign with another key", func() error {
			_, err := other.Sign(ctx, ec.UUID, make([]byte, 32), crypto.SHA256)
			return err
		})
		time.Sleep(100 * time.Millisecond)
	}
	building(t, signed)
	timed(t, time.Second, "Close", h.Close)
	if err := <-signed; !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("the signature building when the HSM closed: %v, want ErrKeyNotFound", err)
	}
}

// Closing the HSM, a tamper response and deleting the key each end a first
// signature's tree build promptly; the signature is not made, no index is
// used (the key's record is as it was), the key's seed is cleared from
// memory and it signs no more.
func TestRetiringAKeyAbandonsItsTreeBuild(t *testing.T) {
	for _, how := range []string{"close", "tamper", "delete"} {
		t.Run(how, func(t *testing.T) {
			h, id, record := slowHSSKey(t)
			s := raceSession(t, h)
			signed := startFirstSignature(t, h, id)
			h.mu.Lock()
			sk := h.cache[id].hss
			h.mu.Unlock()
			timed(t, time.Second, how, func() error {
				switch how {
				case "close":
					return h.Close()
				case "tamper":
					return h.Tamper()
				}
				return s.DeleteKey(ctx, id)
			})
			select {
			case err := <-signed:
				if !errors.Is(err, hsmapi.ErrKeyNotFound) {
					t.Errorf("the signature building during %s: %v, want ErrKeyNotFound", how, err)
				}
			case <-time.After(time.Second):
				t.Fatalf("the signature was still building a second after %s returned", how)
			}
			if _, err := sk.Sign([]byte("after")); !errors.Is(err, hashsig.ErrWiped) {
				t.Errorf("the key's object signs after %s: %v", how, err)
			}
			wiped, _ := sk.MarshalBinary()
			at := 8 + 8 + hashsig.IDSize // header, one level, I
			if !bytes.Equal(wiped[at:at+32], make([]byte, 32)) {
				t.Errorf("the seed is still in memory after %s", how)
			}
			if how != "close" {
				if _, err := s.Sign(ctx, id, []byte("after"), crypto.Hash(0)); err == nil {
					t.Errorf("the key signs after %s", how)
				}
			}
			s.Close()
			dir := h.board.Dir
			if how != "close" {
				h.Close()
			}
			h, err := Open(dir, testOptions)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			rec, err := h.ks.Get(keystore.ID(id))
			if how == "delete" {
				if !errors.Is(err, keystore.ErrNotFound) {
					t.Errorf("the deleted key is back in flash: %v", err)
				}
				return
			}
			if err != nil || !bytes.Equal(rec.Data, record) {
				t.Errorf("the key's record changed: %v", err)
			}
		})
	}
}
