package cryptoki

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc"
)

// BenchmarkSignECDSA and BenchmarkSignRSA are C_SignInit and C_Sign on a
// P-256 and an RSA-2048 key without the C boundary: the HSM's own signing,
// and what the module adds to it, on 1 and 4 sessions at once (a goroutine
// each), as cmd/cryptech-pkcs11's BenchmarkSign runs them through C. Run
// with -cpuprofile, -mutexprofile and -blockprofile to see where the time
// goes and what waits.
func BenchmarkSignECDSA(b *testing.B) {
	benchSign(b, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256}, MechECDSA, 32)
}

func BenchmarkSignRSA(b *testing.B) {
	benchSign(b, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048}, MechRSAPKCS, 51)
}

func benchSign(b *testing.B, req hsmapi.GenerateRequest, mech uint, n int) {
	b.Run("inproc", func(b *testing.B) { benchSignOn(b, newHSM(b), req, mech, n) })
	b.Run("rpc", func(b *testing.B) {
		sock := filepath.Join(b.TempDir(), "rpc.sock")
		l, err := net.Listen("unix", sock)
		if err != nil {
			b.Fatal(err)
		}
		srv := rpc.NewServer(newHSM(b), nil)
		go srv.Serve(l)
		b.Cleanup(func() { srv.Shutdown(context.Background()) })
		benchSignOn(b, dialer("unix:"+sock), req, mech, n)
	})
}

func benchSignOn(b *testing.B, o frontend.Opener, req hsmapi.GenerateRequest, mech uint, n int) {
	m, h := moduleOn(b, o)
	req.Flags = hsmapi.FlagDigitalSignature
	k, err := tokenOf(m).GenerateKey(context.Background(), req)
	if err != nil {
		b.Fatal(err)
	}
	priv, _ := objectsOf(b, m, h, k.UUID)
	sessions := []uint{h}
	for range 3 {
		s, rv := m.OpenSession(slotID, FlagSerialSession|FlagRWSession)
		if rv != OK {
			b.Fatal(rv)
		}
		sessions = append(sessions, s)
	}
	digest := make([]byte, n)
	for _, ns := range []int{1, 4} {
		b.Run(fmt.Sprintf("sessions=%d", ns), func(b *testing.B) {
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			fails := make(chan RV, ns)
			b.ResetTimer()
			for _, s := range sessions[:ns] {
				wg.Go(func() {
					for left.Add(-1) >= 0 {
						if rv := m.SignInit(s, Mechanism{Type: mech}, priv); rv != OK {
							fails <- rv
							return
						}
						if _, _, rv := m.Sign(s, digest, Output{Room: 512}); rv != OK {
							fails <- rv
							return
						}
					}
				})
			}
			wg.Wait()
			close(fails)
			for rv := range fails {
				b.Fatal(rv)
			}
		})
	}
}
