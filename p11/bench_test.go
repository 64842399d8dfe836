//go:build cgo

package p11

import (
	"testing"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// BenchmarkTransfer100 moves 100 P-256 keys, SoftHSM2 token to SoftHSM2
// token and emulated HSM to emulated HSM, in the same harness: export on
// the source, import on the destination, keys/s. The imported keys are
// deleted outside the timer.
func BenchmarkTransfer100(b *testing.B) {
	for _, kind := range []string{"softhsm", "emulated"} {
		b.Run(kind, func(b *testing.B) {
			var src, dst hsm.Token
			if kind == "softhsm" {
				src, dst = newToken(b), newToken(b)
			} else {
				src, dst = hsmtest.New(b), hsmtest.New(b)
			}
			const n = 100
			for range n {
				generate(b, src, hsm.GenerateRequest{Type: hsm.KeyTypeECPrivate, Curve: hsm.CurveP256, Flags: exportable})
			}
			kekek, err := backup.Setup(ctx, dst, backup.SetupOptions{})
			if err != nil {
				b.Fatal(err)
			}
			keys := 0
			for b.Loop() {
				bundle, err := backup.Export(ctx, src, kekek, backup.ExportOptions{})
				if err != nil {
					b.Fatal(err)
				}
				res, err := backup.Import(ctx, dst, bundle, backup.ImportOptions{})
				if err != nil {
					b.Fatal(err)
				}
				keys += len(res)
				b.StopTimer()
				for _, r := range res {
					if r.Present {
						b.Fatal("key already present: nothing would be measured")
					}
					if err := dst.DeleteKey(ctx, r.UUID); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(keys)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}
