package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/p11threads"
	"github.com/hsmkit/cryptech-backup/internal/softhsm"
	"github.com/hsmkit/cryptech-backup/rpc"
)

// The signing benchmark of issue 11 item 9: C_SignInit and C_Sign through
// a PKCS#11 module loaded with miekg/pkcs11, as an application does
// (miekg's Sign asks the length, then signs: two C_Sign calls), for
// ECDSA P-256 (CKM_ECDSA over a SHA-256 hash) and RSA-2048
// (CKM_SHA256_RSA_PKCS), on 1 and 4 sessions at once, each session in a
// goroutine of its own. The same harness runs, in the same process:
//
//   - cryptech: this module, the emulated HSM opened in-process;
//   - cryptech-rpc: this module over the libhal RPC socket of a server in
//     the test process;
//   - softhsm2: SoftHSM2's module (needs SoftHSM2; fails under CI=true
//     without it, skipped otherwise).
//
// Run it with
//
//	go test ./cmd/cryptech-pkcs11 -run '^$' -bench 'BenchmarkSign$|BenchmarkSignFloor' -benchtime 2s -count 6
//
// ns/op is the wall time per signature over all sessions; sig/s the same
// as a rate; cpu-µs/sig the process's CPU time per signature (see
// reportRate). docs/PERFORMANCE.md has the figures.
func BenchmarkSign(b *testing.B) {
	for _, tg := range []struct {
		name  string
		setup func(b *testing.B) (lib, pin string)
	}{
		{"cryptech", benchCryptech},
		{"cryptech-rpc", benchCryptechRPC},
		{"softhsm2", benchSoftHSM},
	} {
		b.Run(tg.name, func(b *testing.B) {
			lib, pin := tg.setup(b)
			p := pkcs11.New(lib)
			if p == nil {
				b.Fatalf("load %s", lib)
			}
			defer p.Destroy()
			if err := p.Initialize(); err != nil {
				b.Fatal(err)
			}
			defer p.Finalize()
			slots, err := p.GetSlotList(true)
			if err != nil || len(slots) == 0 {
				b.Fatalf("slots: %v %v", slots, err)
			}
			var sessions []pkcs11.SessionHandle
			for range 4 {
				s, err := p.OpenSession(slots[0], pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
				if err != nil {
					b.Fatal(err)
				}
				sessions = append(sessions, s)
			}
			if err := p.Login(sessions[0], pkcs11.CKU_USER, pin); err != nil {
				b.Fatal(err)
			}
			for _, alg := range benchAlgs {
				key := alg.generate(b, p, sessions[0])
				for _, n := range []int{1, 4} {
					b.Run(fmt.Sprintf("%s/sessions=%d", alg.name, n), func(b *testing.B) {
						benchSign(b, p, sessions[:n], alg.mech, key, alg.data)
					})
				}
				for _, n := range []int{1, 4} {
					b.Run(fmt.Sprintf("%s/c-threads=%d", alg.name, n), func(b *testing.B) {
						benchSignC(b, lib, sessions[:n], alg.mech, key, alg.data)
					})
				}
			}
		})
	}
}

// benchAlgs are the benchmark's keys and mechanisms.
var benchAlgs = []struct {
	name     string
	mech     uint
	data     []byte
	generate func(testing.TB, *pkcs11.Ctx, pkcs11.SessionHandle) pkcs11.ObjectHandle
}{
	{"ecdsa-p256", pkcs11.CKM_ECDSA, make([]byte, 32), func(tb testing.TB, p *pkcs11.Ctx, s pkcs11.SessionHandle) pkcs11.ObjectHandle {
		// CKA_EC_PARAMS: the OID of P-256.
		p256 := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
		return benchKeyPair(tb, p, s, pkcs11.CKM_EC_KEY_PAIR_GEN,
			[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, p256)})
	}},
	{"rsa-2048", pkcs11.CKM_SHA256_RSA_PKCS, []byte("a message to sign"), func(tb testing.TB, p *pkcs11.Ctx, s pkcs11.SessionHandle) pkcs11.ObjectHandle {
		return benchKeyPair(tb, p, s, pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 2048),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		})
	}},
}

// benchKeyPair makes a key pair for signing and returns its private key's
// handle.
func benchKeyPair(tb testing.TB, p *pkcs11.Ctx, s pkcs11.SessionHandle, mech uint, pub []*pkcs11.Attribute) pkcs11.ObjectHandle {
	tb.Helper()
	pub = append(pub, pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true))
	priv := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
	}
	_, k, err := p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pub, priv)
	if err != nil {
		tb.Fatalf("generate a key pair: %v", err)
	}
	return k
}

// benchSign makes b.N signatures on the sessions at once.
func benchSign(b *testing.B, p *pkcs11.Ctx, sessions []pkcs11.SessionHandle, mech uint, key pkcs11.ObjectHandle, data []byte) {
	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	errs := make(chan error, len(sessions))
	b.ResetTimer()
	u0 := usageNow()
	for _, s := range sessions {
		wg.Go(func() {
			m := []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}
			for left.Add(-1) >= 0 {
				if err := p.SignInit(s, m, key); err != nil {
					errs <- err
					return
				}
				if _, err := p.Sign(s, data); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	reportRate(b, u0)
}

// benchSignC makes b.N signatures as benchSign does, but from a C thread
// per session (p11threads), as an application written in C signs: without
// the Go runtime of a Go application, whose goroutines in cgo calls wait
// for its Ps, between the sessions and the module.
func benchSignC(b *testing.B, lib string, sessions []pkcs11.SessionHandle, mech uint, key pkcs11.ObjectHandle, data []byte) {
	hs := make([]uint, len(sessions))
	for i, s := range sessions {
		hs[i] = uint(s)
	}
	b.ResetTimer()
	u0 := usageNow()
	if err := p11threads.Sign(lib, hs, uint(key), mech, data, b.N); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportRate(b, u0)
}

// reportRate reports signatures per second, the process's CPU time per
// signature (every thread's: the application's, the module's, the
// in-process server's), which on a shared machine tells work done from
// time waited for a core, and the process's voluntary context switches per
// signature: how often a thread went to sleep waiting (for a lock, for the
// module's Go runtime to give it a P, for an answer on a socket), which
// the load of the machine moves much less than the rate.
func reportRate(b *testing.B, u0 usage) {
	u := usageNow()
	n := float64(b.N)
	b.ReportMetric(n/u.wall.Sub(u0.wall).Seconds(), "sig/s")
	b.ReportMetric(float64((u.cpu-u0.cpu).Microseconds())/n, "cpu-µs/sig")
	b.ReportMetric(float64(u.switches-u0.switches)/n, "sleeps/sig")
}

// usage is the process's clock, CPU time and voluntary context switches.
type usage struct {
	wall     time.Time
	cpu      time.Duration
	switches int64
}

func usageNow() usage {
	u := usage{wall: time.Now()}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		u.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		u.switches = ru.Nvcsw
	}
	return u
}

// BenchmarkSignFloor signs as BenchmarkSign does, on 1 and 4 goroutines,
// with Go's crypto/ecdsa and crypto/rsa directly (the emulated HSM's own
// calls, hedged ECDSA nonces and blinded RSA): the floor under the
// module's figures in process.
func BenchmarkSignFloor(b *testing.B) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	for _, alg := range []struct {
		name string
		sign func() error
	}{
		{"ecdsa-p256", func() error { _, err := ecdsa.SignASN1(rand.Reader, ec, make([]byte, 32)); return err }},
		{"rsa-2048", func() error {
			d := sha256.Sum256([]byte("a message to sign"))
			_, err := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, d[:])
			return err
		}},
	} {
		for _, n := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/sessions=%d", alg.name, n), func(b *testing.B) {
				var left atomic.Int64
				left.Store(int64(b.N))
				var wg sync.WaitGroup
				b.ResetTimer()
				u0 := usageNow()
				for range n {
					wg.Go(func() {
						for left.Add(-1) >= 0 {
							if err := alg.sign(); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				reportRate(b, u0)
			})
		}
	}
}

// benchCryptech points the module at a new emulated HSM, opened in-process.
func benchCryptech(b *testing.B) (string, string) {
	lib := buildModule(b)
	newHSM(b)
	return lib, string(hsmtest.PIN)
}

// benchCryptechRPC points the module at an emulated HSM served on a libhal
// RPC socket by this process.
func benchCryptechRPC(b *testing.B) (string, string) {
	lib := buildModule(b)
	dir := newHSM(b)
	b.Setenv("CRYPTECH_HSM", "")
	h, err := hsm.Open(dir, hsmtest.Options)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	sock := filepath.Join(b.TempDir(), "rpc.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	srv := rpc.NewServer(h, nil)
	go srv.Serve(l)
	b.Cleanup(func() { srv.Shutdown(b.Context()) })
	b.Setenv("CRYPTECH_RPC_CLIENT_SOCKET_NAME", sock)
	return lib, string(hsmtest.PIN)
}

// benchSoftHSM makes a SoftHSM2 token.
func benchSoftHSM(b *testing.B) (string, string) {
	softhsm.Require(b)
	env, err := softhsm.Setup(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	const pin = "bench-user-pin"
	if err := env.InitToken("bench", "bench-so-pin", pin); err != nil {
		b.Fatal(err)
	}
	return env.Module(), pin
}
