//go:build cgo

package p11

import (
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/transfertest"
)

// BenchmarkTransfer100 moves 100 P-256 keys, SoftHSM2 token to SoftHSM2
// token and emulated HSM to emulated HSM, in the same harness: export on
// the source, import on the destination, keys/s. The imported keys are
// deleted outside the timer.
func BenchmarkTransfer100(b *testing.B) {
	for _, kind := range []string{"softhsm", "emulated"} {
		b.Run(kind, func(b *testing.B) {
			var src, dst hsmapi.Token
			if kind == "softhsm" {
				src, dst = newToken(b), newToken(b)
			} else {
				src, dst = hsmtest.New(b), hsmtest.New(b)
			}
			const n = 100
			for range n {
				generate(b, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable})
			}
			transfertest.Benchmark(b, src, dst)
		})
	}
}
