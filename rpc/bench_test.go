package rpc

import (
	"crypto"
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsm"
)

// BenchmarkSignP256 measures ECDSA P-256 signatures per second with 1, 4
// and 16 goroutines: in process (hsm.Session.Sign, a session per
// goroutine) and over a Unix socket (a Client per goroutine, each on its
// own connection, doing the whole Token.Sign: the request, the server's
// conversion of the signature to r || s and the client's back to ASN.1).
// docs/PERFORMANCE.md gives the ratio; the target is that the socket costs
// under 20% at 16 clients.
func BenchmarkSignP256(b *testing.B) {
	addr, _, h, _ := servedHSM(b, testOptions)
	admin := h.NewSession()
	defer admin.Close()
	if err := admin.Login(ctx, hsm.UserNormal, userPIN); err != nil {
		b.Fatal(err)
	}
	key, err := admin.GenerateKey(ctx, hsm.GenerateRequest{Type: hsm.KeyTypeECPrivate, Curve: hsm.CurveP256,
		Flags: hsm.FlagDigitalSignature | hsm.FlagToken})
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("benchmark"))

	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("inproc/%d", n), func(b *testing.B) {
			sessions := make([]*hsm.Session, n)
			for i := range sessions {
				sessions[i] = h.NewSession()
				defer sessions[i].Close()
				if err := sessions[i].Login(ctx, hsm.UserNormal, userPIN); err != nil {
					b.Fatal(err)
				}
			}
			parallel(b, n, func(g int) error {
				_, err := sessions[g].Sign(ctx, key.UUID, digest[:], crypto.SHA256)
				return err
			})
		})
	}
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("socket/%d", n), func(b *testing.B) {
			clients := make([]*Client, n)
			for i := range clients {
				clients[i] = dialAs(b, addr, hsm.UserNormal, userPIN)
				// Open the key: what a client does once, not per signature.
				if _, err := clients[i].Sign(ctx, key.UUID, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
			parallel(b, n, func(g int) error {
				_, err := clients[g].Sign(ctx, key.UUID, digest[:], crypto.SHA256)
				return err
			})
			for _, c := range clients {
				c.Close()
			}
		})
	}
}

// parallel runs op b.N times over n goroutines (op(g) runs on goroutine
// g), with b.RunParallel when n is a multiple of GOMAXPROCS and on n
// goroutines of its own otherwise, and reports signatures per second.
func parallel(b *testing.B, n int, op func(g int) error) {
	procs := runtime.GOMAXPROCS(0)
	var failed atomic.Bool
	run := func(g int) {
		if err := op(g); err != nil && !failed.Swap(true) {
			b.Error(err)
		}
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	switch {
	case n == 1:
		for i := 0; i < b.N && !failed.Load(); i++ {
			run(0)
		}
	case n%procs == 0:
		b.SetParallelism(n / procs)
		var next atomic.Int32
		b.RunParallel(func(pb *testing.PB) {
			g := int(next.Add(1) - 1)
			for pb.Next() {
				run(g)
			}
		})
	default:
		var left atomic.Int64
		left.Store(int64(b.N))
		var wg sync.WaitGroup
		for g := range n {
			wg.Go(func() {
				for left.Add(-1) >= 0 && !failed.Load() {
					run(g)
				}
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sigs/s")
	// The process's CPU time, client and server: what a signature costs
	// whether or not the cores were kept busy.
	if d := cpuTime() - cpu0; d > 0 {
		b.ReportMetric(float64(d.Microseconds())/float64(b.N), "cpu-µs/op")
	}
}
