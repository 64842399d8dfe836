package hsm

import (
	"fmt"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// The figures of issue 12's Measure: store and restore of 1,000 P-256 keys,
// and rotation of a keystore holding 100 to 4,000 keys. Run them with
//
//	go test ./hsm -run '^$' -bench 'StoreKeys|RestoreKeys|RotateMasterKey' -benchtime 5x
//
// docs/PERFORMANCE.md has the figures.

// benchSession opens the HSM openBenchHSM made with n P-256 keys, logged in
// as wheel, and lists its keys.
func benchSession(b *testing.B, n int) (*Session, []hsmapi.UUID) {
	b.Helper()
	h, err := Open(openBenchHSM(b, n, false), testOptions)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	s := login(b, h)
	keys, err := s.Keys(ctx, hsmapi.Filter{})
	if err != nil || len(keys) != n {
		b.Fatalf("%d keys, %v", len(keys), err)
	}
	ids := make([]hsmapi.UUID, n)
	for i, k := range keys {
		ids[i] = k.UUID
	}
	return s, ids
}

func BenchmarkStoreKeys1000P256(b *testing.B) {
	s, ids := benchSession(b, 1000)
	for b.Loop() {
		if _, err := s.StoreKeys(ctx, ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(ids)), "µs/key")
}

func BenchmarkRestoreKeys1000P256(b *testing.B) {
	s, ids := benchSession(b, 1000)
	file, err := s.StoreKeys(ctx, ids)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		for _, id := range ids {
			if err := s.DeleteKey(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if _, err := s.RestoreKeys(ctx, file); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(ids)), "µs/key")
}

// BenchmarkRotateMasterKey: one rotation (every record sealed again, one
// flash write each), for keystores of growing size; the old key is retired
// between rotations, untimed, so that the ring never fills.
func BenchmarkRotateMasterKey(b *testing.B) {
	for _, n := range []int{100, 1000, 4000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			s, _ := benchSession(b, n)
			for b.Loop() {
				res, err := s.RotateMasterKey(ctx)
				if err != nil || res.Resealed != n {
					b.Fatalf("%+v, %v", res, err)
				}
				b.StopTimer()
				if err := s.RetireMasterKey(ctx, res.OldCheckValue); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/key")
		})
	}
}
