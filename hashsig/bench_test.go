package hashsig

import (
	"crypto/sha256"
	"runtime"
	"testing"
	"time"
)

// blocks is the number of SHA-256 compressions of a message of n bytes.
func blocks(n int) int { return (n + 9 + 63) / 64 }

// treeCompressions counts the SHA-256 compressions that building one tree
// makes: per leaf, p chains of one seed step and 2^w - 1 chain steps, the
// hash of the chain ends (K) and the leaf hash; one hash per interior node.
func treeCompressions(l Level) int {
	lp, _ := l.LMS.Params()
	op, _ := l.LMOTS.Params()
	perLeaf := op.P*(1<<op.W) + blocks(22+op.P*op.N) + blocks(22+op.N)
	leaves := 1 << lp.H
	return leaves*perLeaf + (leaves-1)*blocks(22+2*lp.M)
}

// boundRate measures this machine's raw SHA-256 compression rate: bulk
// hashing throughput divided by 64 bytes per block, one core.
func boundRate() float64 {
	buf := make([]byte, 1<<16)
	start := time.Now()
	n := 0
	for time.Since(start) < 200*time.Millisecond {
		sha256.Sum256(buf)
		n++
	}
	return float64(n*len(buf)/64) / time.Since(start).Seconds()
}

// benchmarkKeygen generates keys of the given levels. It reports the
// compressions made per second per core and that rate as a fraction of the
// machine's bulk SHA-256 compression rate. Key generation builds the top tree
// and the first tree of each lower level (the linking one-time signatures,
// a fraction of one leaf each, are not counted).
func benchmarkKeygen(b *testing.B, levels []Level, progress Progress) {
	compressions := 0
	for _, l := range levels {
		compressions += treeCompressions(l)
	}
	bound := boundRate()
	b.ResetTimer()
	for b.Loop() {
		if _, err := GenerateKeyProgress(nil, levels, nil, progress); err != nil {
			b.Fatal(err)
		}
	}
	cores := float64(runtime.GOMAXPROCS(0))
	perCore := float64(compressions) * float64(b.N) / b.Elapsed().Seconds() / cores
	b.ReportMetric(perCore/1e6, "Mcompress/s/core")
	b.ReportMetric(100*perCore/bound, "%bound")
}

func BenchmarkKeygenH10W4(b *testing.B) {
	benchmarkKeygen(b, []Level{{LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4}}, nil)
}

// BenchmarkKeygenH10W4Progress is BenchmarkKeygenH10W4 watched by a
// progress callback that reads the clock for each leaf, as the CLI's does:
// what watching costs.
func BenchmarkKeygenH10W4Progress(b *testing.B) {
	var last time.Time
	benchmarkKeygen(b, []Level{{LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4}}, func(int, int) { last = time.Now() })
	_ = last
}

func BenchmarkKeygenH10H10W4(b *testing.B) {
	benchmarkKeygen(b, []Level{{LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4}, {LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4}}, nil)
}

// BenchmarkSign signs with a two-level h10/h10 key, persisting nothing. Every
// 1,024th signature builds a new lower tree; b.N runs long enough to include
// that amortized cost.
func BenchmarkSign(b *testing.B) {
	sk, err := GenerateKey(nil, []Level{{LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4}, {LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("benchmark message")
	for b.Loop() {
		if _, err := sk.Sign(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	sk, err := GenerateKey(nil, []Level{{LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4}, {LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("benchmark message")
	sig, err := sk.Sign(msg)
	if err != nil {
		b.Fatal(err)
	}
	pk := sk.Public()
	for b.Loop() {
		if err := pk.Verify(msg, sig); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBulkSHA256 is the bound: crypto/sha256 over 64 KiB buffers.
func BenchmarkBulkSHA256(b *testing.B) {
	buf := make([]byte, 1<<16)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		sha256.Sum256(buf)
	}
	b.ReportMetric(float64(b.N*len(buf)/64)/b.Elapsed().Seconds()/1e6, "Mcompress/s")
}
