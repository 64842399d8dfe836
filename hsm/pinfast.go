package hsm

import (
	"crypto/hmac"
	"crypto/sha256"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// Fast PIN checks (issue 13). A PIN record costs 600,000 PBKDF2 rounds to
// check, which is what makes an offline guess at a stolen HSM directory
// dear, and also what made every login cost about 100 ms. Two shortcuts
// let a PIN that already passed the full check pass again cheaply, and
// neither touches the record or the directory:
//
//   - In memory (this file): after a full check, the HSM keeps, per user,
//     HMAC-SHA-256(k, record || PIN) under a key k drawn from the board's
//     TRNG for this HSM object. A later login whose PIN gives the same MAC
//     passes; any other login takes the full check, and a wrong PIN the
//     wrong-PIN delay, as before. So serve's clients, and the PKCS#11
//     module's sessions, log in in microseconds after the first.
//   - Across processes (pinticket.go): the same idea in a per-boot ticket
//     file outside the HSM's directory, keyed from the master key.
//
// Both are checked in the login turn (checkPINInTurn), so guesses still go
// one at a time, and a guess that does not match pays the full check and
// the delay: online guessing gains nothing. docs/pin-tickets.md says what
// an attacker holding the directory, a ticket or both faces.

// pinVerifiers is the in-memory shortcut. Its mu is a leaf: nothing is
// taken under it.
type pinVerifiers struct {
	mu  sync.Mutex
	key []byte // nil until the first full check passes
	mac map[hsmapi.User][]byte

	// The counts of PINCheckStats.
	full, verifier, ticket, delayed atomic.Uint64
}

// pinMAC is HMAC-SHA-256(key, record || pin); the record has a fixed
// length, so the two cannot run into each other.
func pinMAC(key, record, pin []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(record)
	m.Write(pin)
	return m.Sum(nil)
}

// matches reports, in constant time, whether pin is the PIN that last
// passed the full check for u against record.
func (v *pinVerifiers) matches(u hsmapi.User, record, pin []byte) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	want, ok := v.mac[u]
	if !ok {
		return false
	}
	got := pinMAC(v.key, record, pin)
	defer clear(got)
	return hmac.Equal(got, want)
}

// remember keeps the verifier of a PIN that passed the full check. Without
// randomness for its key, it keeps none: the next login pays in full.
func (v *pinVerifiers) remember(rand io.Reader, u hsmapi.User, record, pin []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.key == nil {
		k := make([]byte, sha256.Size)
		if _, err := io.ReadFull(rand, k); err != nil {
			return
		}
		v.key = k
	}
	if v.mac == nil {
		v.mac = map[hsmapi.User][]byte{}
	}
	if old := v.mac[u]; old != nil {
		clear(old)
	}
	v.mac[u] = pinMAC(v.key, record, pin)
}

// forget drops u's verifier (its PIN changed).
func (v *pinVerifiers) forget(u hsmapi.User) {
	v.mu.Lock()
	defer v.mu.Unlock()
	clear(v.mac[u])
	delete(v.mac, u)
}

// forgetAll drops every verifier and the key (power off, tamper).
func (v *pinVerifiers) forgetAll() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for u, m := range v.mac {
		clear(m)
		delete(v.mac, u)
	}
	clear(v.key)
	v.key = nil
}

// PINCheckStats counts how this HSM object checked PINs: what tests and
// benchmarks look at to tell a fast login from a full one without timing
// it.
type PINCheckStats struct {
	// Full: PBKDF2 checks of a PIN record, right or wrong.
	Full uint64
	// Verifier: logins that passed on the in-memory verifier.
	Verifier uint64
	// Ticket: logins that passed on a PIN ticket.
	Ticket uint64
	// Delayed: wrong PINs that waited out the wrong-PIN delay.
	Delayed uint64
}

// PINChecks returns the counts since the HSM was opened.
func (h *HSM) PINChecks() PINCheckStats {
	v := &h.pins
	return PINCheckStats{Full: v.full.Load(), Verifier: v.verifier.Load(),
		Ticket: v.ticket.Load(), Delayed: v.delayed.Load()}
}
