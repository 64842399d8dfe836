package backup

import (
	"testing"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// benchmarkTransfer measures the whole transfer of keysPerBundle keys between
// two emulated HSMs: export on the source, import on the destination
// (decryption, pairwise test, one keystore transaction with fsyncs). The
// imported keys are deleted outside the timer. Reported as keys/s.
func benchmarkTransfer(b *testing.B, req hsm.GenerateRequest) {
	const keysPerBundle = 20
	src, dst := hsmtest.New(b), hsmtest.New(b)
	req.Flags = exportable
	for range keysPerBundle {
		generate(b, src, req)
	}
	f := mustSetup(b, dst, SetupOptions{})
	keys := 0
	for b.Loop() {
		bundle, err := Export(ctx, src, f, ExportOptions{})
		if err != nil {
			b.Fatal(err)
		}
		res, err := Import(ctx, dst, bundle, ImportOptions{})
		if err != nil {
			b.Fatal(err)
		}
		keys += len(res)
		b.StopTimer()
		for _, r := range res {
			if r.Present {
				b.Fatal("key already present: the benchmark would measure nothing")
			}
			if err := dst.DeleteKey(ctx, r.UUID); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(keys)/b.Elapsed().Seconds(), "keys/s")
}

func BenchmarkTransferP256(b *testing.B) {
	benchmarkTransfer(b, hsm.GenerateRequest{Type: hsm.KeyTypeECPrivate, Curve: hsm.CurveP256})
}

func BenchmarkTransferRSA2048(b *testing.B) {
	benchmarkTransfer(b, hsm.GenerateRequest{Type: hsm.KeyTypeRSAPrivate, Bits: 2048})
}
