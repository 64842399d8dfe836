package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/cmd/cryptech-pkcs11/internal/cryptoki"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// C_Finalize releases everything the module took, with the openers the
// library uses (openFromEnv): no goroutine is left (counted in this
// process, where the module runs as package code), the HSM directory is
// unlocked, and the RPC server sees no connection. Each round signs
// concurrently on several sessions first, and the next round's
// C_Initialize works.
func TestFinalizeReleasesEverything(t *testing.T) {
	dir := newHSM(t)
	// A token key pair to sign with, made through the module in-process
	// (key pair generation over RPC is a follow-up of issue 11).
	m := cryptoki.New(openFromEnv)
	if rv := m.Initialize(nil); rv != cryptoki.OK {
		t.Fatalf("Initialize: %#x", rv)
	}
	h := loginModule(t, m)
	p256 := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	tokenTrue := cryptoki.Attribute{Type: pkcs11.CKA_TOKEN, Value: []byte{1}}
	if _, _, rv := m.GenerateKeyPair(h, cryptoki.MechECKeyPairGen, nil,
		[]cryptoki.Attribute{{Type: pkcs11.CKA_EC_PARAMS, Value: p256}, tokenTrue}, []cryptoki.Attribute{tokenTrue}); rv != cryptoki.OK {
		t.Fatalf("GenerateKeyPair: %#x", rv)
	}
	if rv := m.Finalize(false); rv != cryptoki.OK {
		t.Fatalf("Finalize: %#x", rv)
	}

	rounds := func(t *testing.T, released func() error) {
		base := runtime.NumGoroutine()
		for round := range 3 {
			m := cryptoki.New(openFromEnv)
			if rv := m.Initialize(&cryptoki.InitArgs{Flags: cryptoki.FlagOSLockingOK}); rv != cryptoki.OK {
				t.Fatalf("round %d: Initialize: %#x", round, rv)
			}
			signConcurrently(t, m, 4, 5)
			if rv := m.Finalize(false); rv != cryptoki.OK {
				t.Fatalf("round %d: Finalize: %#x", round, rv)
			}
			if err := settle(func() error {
				if n := runtime.NumGoroutine(); n > base {
					return fmt.Errorf("%d goroutines, %d before Initialize", n, base)
				}
				return released()
			}); err != nil {
				var stacks bytes.Buffer
				pprof.Lookup("goroutine").WriteTo(&stacks, 1)
				t.Fatalf("round %d, after Finalize: %v\n%s", round, err, stacks.String())
			}
		}
	}
	t.Run("in-process", func(t *testing.T) {
		rounds(t, func() error {
			h, err := hsm.Open(dir, hsmtest.Options)
			if err != nil {
				return fmt.Errorf("the HSM does not open: %w", err)
			}
			return h.Close()
		})
	})
	t.Run("rpc", func(t *testing.T) {
		_, srv := serveHSM(t, dir)
		rounds(t, func() error {
			if st := srv.Stats(); st.Conns != 0 || st.LoggedIn != 0 || st.PkeyHandles != 0 || st.HashHandles != 0 {
				return fmt.Errorf("the server still holds %+v", st)
			}
			return nil
		})
	})
}

// settle waits up to 5 s for check to pass: goroutines that Finalize
// told to end, and connections it closed, take a moment to go.
func settle(check func() error) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// loginModule opens a read-write session on slot 0 and logs the user in.
func loginModule(t *testing.T, m *cryptoki.Module) uint {
	t.Helper()
	h, rv := m.OpenSession(0, cryptoki.FlagSerialSession|cryptoki.FlagRWSession)
	if rv != cryptoki.OK {
		t.Fatalf("OpenSession: %#x", rv)
	}
	if rv := m.Login(h, cryptoki.UserUser, hsmtest.PIN); rv != cryptoki.OK {
		t.Fatalf("Login: %#x", rv)
	}
	return h
}

// signConcurrently signs n times on each of g sessions, one goroutine
// each, with the token's EC key pair, and verifies each signature.
func signConcurrently(t *testing.T, m *cryptoki.Module, g, n int) {
	t.Helper()
	h := loginModule(t, m)
	priv, pub := onlyObject(t, m, h, pkcs11.CKO_PRIVATE_KEY), onlyObject(t, m, h, pkcs11.CKO_PUBLIC_KEY)
	var wg sync.WaitGroup
	errs := make(chan error, g)
	mech := cryptoki.Mechanism{Type: cryptoki.MechECDSASHA256}
	for i := range g {
		wg.Go(func() {
			s, rv := m.OpenSession(0, cryptoki.FlagSerialSession)
			if rv != cryptoki.OK {
				errs <- fmt.Errorf("session %d: OpenSession: %#x", i, rv)
				return
			}
			for j := range n {
				msg := []byte(fmt.Sprintf("session %d, message %d", i, j))
				if rv := m.SignInit(s, mech, priv); rv != cryptoki.OK {
					errs <- fmt.Errorf("session %d: SignInit: %#x", i, rv)
					return
				}
				sig, _, rv := m.Sign(s, msg, cryptoki.Output{Room: 256})
				if rv != cryptoki.OK || len(sig) != 64 {
					errs <- fmt.Errorf("session %d: Sign: %d bytes, %#x", i, len(sig), rv)
					return
				}
				if rv := m.VerifyInit(s, mech, pub); rv != cryptoki.OK {
					errs <- fmt.Errorf("session %d: VerifyInit: %#x", i, rv)
					return
				}
				if rv := m.Verify(s, msg, sig); rv != cryptoki.OK {
					errs <- fmt.Errorf("session %d: Verify: %#x", i, rv)
					return
				}
			}
			// Left open: Finalize closes it.
		})
	}
	wg.Wait()
	close(errs)
	err := errors.Join(func() (es []error) {
		for e := range errs {
			es = append(es, e)
		}
		return
	}()...)
	if err != nil {
		t.Fatal(strings.TrimSpace(err.Error()))
	}
}

// onlyObject finds the one object of class on session h's token.
func onlyObject(t *testing.T, m *cryptoki.Module, h, class uint) uint {
	t.Helper()
	if rv := m.FindObjectsInit(h, []cryptoki.Attribute{{Type: pkcs11.CKA_CLASS, Value: ulong(class)}}); rv != cryptoki.OK {
		t.Fatalf("FindObjectsInit: %#x", rv)
	}
	found, rv := m.FindObjects(h, 2)
	m.FindObjectsFinal(h)
	if rv != cryptoki.OK || len(found) != 1 {
		t.Fatalf("FindObjects of class %d: %v, %#x", class, found, rv)
	}
	return found[0]
}

// ulong is a CK_ULONG attribute value as C lays it out.
func ulong(v uint) []byte { return binary.NativeEndian.AppendUint64(nil, uint64(v)) }
