// Package transfertest is the transfer harness that the backends' tests
// share: one benchmark, so that their keys/s figures can be compared, and
// one way to make a bundle.
package transfertest

import (
	"context"
	"testing"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// Benchmark runs setup on dst, then per iteration exports every exportable
// key of src and imports the bundle into dst, and reports keys/s. The
// imported keys are deleted outside the timer, so every iteration stores
// them afresh.
func Benchmark(b *testing.B, src, dst hsmapi.Token) {
	ctx := context.Background()
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

// ExportFor sets dst up to receive keys and exports those of src for it.
func ExportFor(t testing.TB, src, dst hsmapi.Token) (*backup.KEKEKFile, *backup.Bundle) {
	t.Helper()
	ctx := context.Background()
	kekek, err := backup.Setup(ctx, dst, backup.SetupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.Export(ctx, src, kekek, backup.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return kekek, b
}
