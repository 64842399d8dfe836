package backup_test

import (
	"context"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/transfertest"
)

// benchmarkTransfer measures the whole transfer of 20 keys between two
// emulated HSMs: export on the source, import on the destination
// (decryption, pairwise test, one keystore transaction with fsyncs).
func benchmarkTransfer(b *testing.B, req hsmapi.GenerateRequest) {
	src, dst := hsmtest.New(b), hsmtest.New(b)
	req.Flags = hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable
	for range 20 {
		if _, err := src.GenerateKey(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	transfertest.Benchmark(b, src, dst)
}

func BenchmarkTransferP256(b *testing.B) {
	benchmarkTransfer(b, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256})
}

func BenchmarkTransferRSA2048(b *testing.B) {
	benchmarkTransfer(b, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048})
}
