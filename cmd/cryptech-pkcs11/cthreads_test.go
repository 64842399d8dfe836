package main

import (
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/internal/p11threads"
)

// TestSignFromCThreads checks the C threads BenchmarkSign signs from: four
// sessions sign through the module at once, each operation ends (the
// session takes a new C_SignInit), and a key that may not sign stops them
// with the module's code.
func TestSignFromCThreads(t *testing.T) {
	p, s0 := loggedInModule(t)
	pub, priv := keyPair(t, p, s0, pkcs11.CKM_EC_KEY_PAIR_GEN,
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}))
	sessions := []uint{uint(s0)}
	for range 3 {
		s, err := p.OpenSession(0, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, uint(s))
	}
	lib := buildModule(t)
	if err := p11threads.Sign(lib, sessions, uint(priv), pkcs11.CKM_ECDSA, make([]byte, 32), 40); err != nil {
		t.Fatal(err)
	}
	m := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}
	for _, s := range sessions {
		if err := p.SignInit(pkcs11.SessionHandle(s), m, priv); err != nil {
			t.Fatalf("session %d after the C threads: %v", s, err)
		}
		if _, err := p.Sign(pkcs11.SessionHandle(s), make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
	}
	err := p11threads.Sign(lib, sessions, uint(pub), pkcs11.CKM_ECDSA, make([]byte, 32), 40)
	if err == nil || !strings.Contains(err.Error(), "CKR 0x68") {
		t.Fatalf("signing with a public key from C threads: %v, want CKR_KEY_FUNCTION_NOT_PERMITTED (0x68)", err)
	}
}
