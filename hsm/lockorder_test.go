package hsm

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// These tests run key operations against each other on one key. A deadlock
// fails them after a deadline with every goroutine's stack; their HSMs and
// sessions are closed by hand, not at cleanup, so that a wedged HSM does not
// hang the rest of the suite too.

// raceDeadline is how long one round may take: a round takes well under a
// second, a deadlock forever.
const raceDeadline = 60 * time.Second

// raceHSM creates an HSM that only the test closes (see above).
func raceHSM(t *testing.T) *HSM {
	t.Helper()
	h, err := Create(filepath.Join(t.TempDir(), "hsm"), InitConfig{WheelPIN: wheelPIN, SOPIN: soPIN, UserPIN: userPIN, Blocks: 64}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func raceSession(t *testing.T, h *HSM) *Session {
	t.Helper()
	s := h.NewSession()
	if err := s.Login(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
		t.Fatal(err)
	}
	return s
}

// finishOrDump waits for wg, or fails the test with a goroutine dump.
func finishOrDump(t *testing.T, wg *sync.WaitGroup, what string) bool {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(raceDeadline):
		buf := make([]byte, 1<<22)
		buf = buf[:runtime.Stack(buf, true)]
		t.Errorf("%s did not finish in %v: deadlock? Goroutines:\n%s", what, raceDeadline, buf)
		return false
	}
}

// TestKeyOperationsRaceDelete deletes a key while other sessions sign with
// it, export it (an HSS key splits), set its attributes, match it by
// attribute and describe it, many times over. Every round must finish; no
// signature may be made by a Sign that began after the delete returned;
// every signature made verifies, an HSS key never uses an index twice; and
// the deleted key's state is never written back to flash.
func TestKeyOperationsRaceDelete(t *testing.T) {
	rounds := 25
	if testing.Short() {
		rounds = 5
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"hss", "rsa"} {
		t.Run(kind, func(t *testing.T) {
			h := raceHSM(t)
			kekekHSM := raceHSM(t)
			sessions := make([]*Session, 7)
			for i := range sessions {
				sessions[i] = raceSession(t, h)
			}
			ks := raceSession(t, kekekHSM)
			kekek, err := ks.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: kekekFlags})
			if err != nil {
				t.Fatal(err)
			}
			flags := signFlags | hsmapi.FlagExportable
			signed := 0
			for round := range rounds {
				var k hsmapi.KeyInfo
				if kind == "hss" {
					k, err = sessions[0].GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: flags})
				} else {
					k, err = sessions[0].LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: rsaDER, Flags: flags})
				}
				if err != nil {
					t.Fatal(err)
				}
				if kind == "hss" {
					// Keygen builds the top tree only; a first signature
					// builds the lower tree, as keygen did before, so that
					// the round's signatures overlap the delete instead of
					// all waiting for that build, which the delete abandons.
					if _, err := sessions[0].Sign(ctx, k.UUID, []byte("ready"), crypto.Hash(0)); err != nil {
						t.Fatal(err)
					}
				}
				n, ok := raceRound(t, sessions, k, parseKEKEK(t, kekek.PublicKey), round)
				if !ok {
					return // wedged: leave the HSMs as they are
				}
				signed += n
			}
			// The rounds must overlap the delete with signing: some
			// signatures made, some refused.
			t.Logf("%d of %d signatures made before the deletes", signed, rounds*18)
			if signed == 0 || signed == rounds*18 {
				t.Errorf("%d of %d signatures made: the operations did not overlap the delete", signed, rounds*18)
			}
			for _, s := range append(sessions, ks) {
				s.Close()
			}
			h.Close()
			kekekHSM.Close()
		})
	}
}

// raceRound runs one round on key k, returning the number of signatures
// made, and false if the round hung.
func raceRound(t *testing.T, sessions []*Session, k hsmapi.KeyInfo, kekek *hsmapi.PublicKEKEK, round int) (int, bool) {
	t.Helper()
	h := sessions[0].h
	keysBefore := len(h.ks.List(kindKey))
	var (
		deleted atomic.Bool
		mu      sync.Mutex
		sigs    [][]byte
		msgs    [][]byte
		wg      sync.WaitGroup
	)
	tag := []byte{0x52, byte(round)}
	run := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	for i := 1; i <= 3; i++ {
		s := sessions[i]
		run(func() {
			for j := range 6 {
				msg := fmt.Appendf(nil, "round %d signer %d message %d", round, i, j)
				signed := msg
				opts := crypto.SignerOpts(crypto.Hash(0))
				if k.Type == hsmapi.KeyTypeRSAPrivate {
					d := sha256.Sum256(msg)
					signed, opts = d[:], crypto.SHA256
				}
				after := deleted.Load()
				sig, err := s.Sign(ctx, k.UUID, signed, opts)
				if err != nil {
					return
				}
				if after {
					t.Errorf("round %d: a Sign that began after the delete returned signed", round)
				}
				mu.Lock()
				sigs, msgs = append(sigs, sig), append(msgs, signed)
				mu.Unlock()
			}
		})
	}
	run(func() {
		for range 2 {
			if _, err := sessions[4].Export(ctx, hsmapi.ExportRequest{Key: k.UUID, KEKEKPublicKey: kekek, Encryption: hsmapi.KEKOAEPSHA256}); err != nil {
				return
			}
		}
	})
	run(func() {
		for range 4 {
			if err := sessions[5].SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: 0x101, Value: tag}}); err != nil {
				return
			}
		}
	})
	run(func() {
		for range 4 {
			if _, err := sessions[6].Keys(ctx, hsmapi.Filter{Attributes: []hsmapi.Attribute{{Type: 0x101, Value: tag}}}); err != nil {
				t.Errorf("round %d: match: %v", round, err)
				return
			}
			if _, err := sessions[6].Key(ctx, k.UUID); err != nil && !errors.Is(err, hsmapi.ErrKeyNotFound) {
				t.Errorf("round %d: key: %v", round, err)
				return
			}
		}
	})
	run(func() {
		// Let the others start, then delete.
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		if err := sessions[0].DeleteKey(ctx, k.UUID); err != nil {
			t.Errorf("round %d: delete: %v", round, err)
		}
		deleted.Store(true)
	})
	if !finishOrDump(t, &wg, fmt.Sprintf("round %d on %v", round, k.Type)) {
		return 0, false
	}

	if _, err := sessions[1].Sign(ctx, k.UUID, make([]byte, 32), crypto.SHA256); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("round %d: sign after delete: %v", round, err)
	}
	if _, err := h.ks.Get(keystore.ID(k.UUID)); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("round %d: the deleted key's record is in flash again: %v", round, err)
	}
	if n := len(h.ks.List(kindKey)); n != keysBefore-1 {
		t.Errorf("round %d: %d key records after the delete, want %d", round, n, keysBefore-1)
	}
	opts := crypto.SignerOpts(crypto.SHA256)
	if k.Type == hsmapi.KeyTypeHashsigPrivate {
		opts = crypto.Hash(0)
	}
	used := map[uint64]bool{}
	for i, sig := range sigs {
		if err := hsmapi.VerifySignature(k.PublicKey, msgs[i], sig, opts); err != nil {
			t.Errorf("round %d: signature %d does not verify: %v", round, i, err)
		}
		if k.Type == hsmapi.KeyTypeHashsigPrivate {
			q := sigIndex(t, sig)
			if used[q] {
				t.Errorf("round %d: index %d used twice", round, q)
			}
			used[q] = true
		}
	}
	return len(sigs), true
}

// TestForgettingKeysRacesSigning closes or tampers with the HSM while
// sessions sign with an HSS token key: both drop every key the HSM holds,
// and must finish; no Sign that began after they returned may sign.
func TestForgettingKeysRacesSigning(t *testing.T) {
	rounds := 10
	if testing.Short() {
		rounds = 3
	}
	for _, how := range []string{"close", "tamper"} {
		t.Run(how, func(t *testing.T) {
			for round := range rounds {
				h := raceHSM(t)
				sessions := []*Session{raceSession(t, h), raceSession(t, h), raceSession(t, h)}
				k, err := sessions[0].GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags})
				if err != nil {
					t.Fatal(err)
				}
				var (
					wg   sync.WaitGroup
					gone atomic.Bool
				)
				for _, s := range sessions[1:] {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for j := range 6 {
							after := gone.Load()
							_, err := s.Sign(ctx, k.UUID, fmt.Appendf(nil, "message %d", j), crypto.Hash(0))
							if err != nil {
								return
							}
							if after {
								t.Errorf("round %d: a Sign that began after %s returned signed", round, how)
							}
						}
					}()
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(time.Duration(round%4) * time.Millisecond)
					var err error
					if how == "close" {
						err = h.Close()
					} else {
						err = h.Tamper()
					}
					if err != nil {
						t.Errorf("round %d: %s: %v", round, how, err)
					}
					gone.Store(true)
				}()
				if !finishOrDump(t, &wg, fmt.Sprintf("round %d of %s", round, how)) {
					return
				}
				if how == "tamper" {
					h.Close()
				}
			}
		})
	}
}
