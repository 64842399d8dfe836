package hashsig

import (
	"crypto/rand"
	"crypto/sha256"
	"runtime"
	"sync"
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

// benchmarkKeygen generates keys of the given levels, and with
// firstSign makes each key's first signature too. It reports the
// compressions made per second per core and that rate as a fraction of the
// machine's bulk SHA-256 compression rate. Key generation builds the top
// tree; the first signature builds the first tree of each lower level (the
// linking one-time signatures and the signature itself, a fraction of one
// leaf each, are not counted).
func benchmarkKeygen(b *testing.B, levels []Level, progress Progress, firstSign bool) {
	compressions := treeCompressions(levels[0])
	if firstSign {
		for _, l := range levels[1:] {
			compressions += treeCompressions(l)
		}
	}
	bound := boundRate()
	msg := []byte("benchmark message")
	b.ResetTimer()
	for b.Loop() {
		sk, err := GenerateKeyProgress(nil, levels, nil, progress)
		if err != nil {
			b.Fatal(err)
		}
		if firstSign {
			if _, err := sk.Sign(msg); err != nil {
				b.Fatal(err)
			}
		}
	}
	cores := float64(runtime.GOMAXPROCS(0))
	perCore := float64(compressions) * float64(b.N) / b.Elapsed().Seconds() / cores
	b.ReportMetric(perCore/1e6, "Mcompress/s/core")
	b.ReportMetric(100*perCore/bound, "%bound")
}

func BenchmarkKeygenH10W4(b *testing.B) {
	benchmarkKeygen(b, []Level{{LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4}}, nil, false)
}

// BenchmarkKeygenH10W4Progress is BenchmarkKeygenH10W4 watched by a
// progress callback that reads the clock for each leaf, as the CLI's does:
// what watching costs.
func BenchmarkKeygenH10W4Progress(b *testing.B) {
	var last time.Time
	benchmarkKeygen(b, []Level{{LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4}}, func(int, int) { last = time.Now() }, false)
	_ = last
}

var h10h10w4 = []Level{{LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4}, {LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W4}}

// BenchmarkKeygenH10H10W4 is key generation alone, what hash-sigs' keygen
// does: the top tree.
func BenchmarkKeygenH10H10W4(b *testing.B) {
	benchmarkKeygen(b, h10h10w4, nil, false)
}

// BenchmarkKeygenFirstSignH10H10W4 is key generation and the key's first
// signature, which builds the first lower tree: what keygen did before it
// left that tree to the first signature, and what hash-sigs' keygen
// followed by its first load and signature costs.
func BenchmarkKeygenFirstSignH10H10W4(b *testing.B) {
	benchmarkKeygen(b, h10h10w4, nil, true)
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

// cachedKey is a key's state and tree cache, as a holder keeps them.
type cachedKey struct {
	state, cache []byte
	pub          *PublicKey
}

var (
	cachedH20W8     cachedKey
	cachedH20W8Once sync.Once
)

// syntheticH20W8 makes a one-level sha256-m32-h20/sha256-n32-w8 key whose
// first subtree (1,024 leaves, what the first 1,024 signatures use) is
// computed from its seed, and whose other 1,023 subtree roots are random:
// building the whole tree takes minutes on 2 cores. The root follows from
// that row, so the key signs and verifies with indexes 0 to 1,023 exactly
// as a real one, and its cache is as large (the row and the leaves of one
// subtree) and as costly to load.
func syntheticH20W8(b *testing.B) cachedKey {
	cachedH20W8Once.Do(func() {
		levels := []Level{{LMS_SHA256_M32_H20, LMOTS_SHA256_N32_W8}}
		sk := &PrivateKey{levels: levels, seed: make([]byte, 32), reserve: 1, end: capacity(levels)}
		if _, err := rand.Read(sk.id[:]); err != nil {
			b.Fatal(err)
		}
		if _, err := rand.Read(sk.seed); err != nil {
			b.Fatal(err)
		}
		top := sk.topTree()
		nodes := top.computeSubtree(0, nil)
		row := make([]byte, rowSize(levels[0]))
		if _, err := rand.Read(row); err != nil {
			b.Fatal(err)
		}
		copy(row, nodes[1])
		top.setRow(row)
		top.sub, top.subIndex = nodes, 0
		sk.root = top.root()
		sk.trees, sk.topNodes = []*tree{top}, top.top
		sk.setup()
		state, _ := sk.MarshalBinary()
		cache, _ := sk.Cache()
		cachedH20W8 = cachedKey{state, cache, sk.Public()}
	})
	return cachedH20W8
}

var (
	cachedH10H10W8     cachedKey
	cachedH10H10W8Once sync.Once
)

// realH10H10W8 is a two-level sha256-m32-h10/sha256-n32-w8 key after its
// first signature, with its cache.
func realH10H10W8(b *testing.B) cachedKey {
	cachedH10H10W8Once.Do(func() {
		sk, err := GenerateKey(nil, []Level{{LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W8}, {LMS_SHA256_M32_H10, LMOTS_SHA256_N32_W8}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sk.Sign([]byte("m")); err != nil {
			b.Fatal(err)
		}
		state, _ := sk.MarshalBinary()
		cache, _ := sk.Cache()
		cachedH10H10W8 = cachedKey{state, cache, sk.Public()}
	})
	return cachedH10H10W8
}

// benchmarkFirstSignCached is what a holder of a key's state and cache does
// to sign once, as hashsig sign on a file or an HSM after a restart: parse
// the state, load the cache, sign (the signature checked before it is
// returned), no persistence. With sign false, it stops after the load.
func benchmarkFirstSignCached(b *testing.B, k cachedKey, sign bool) {
	msg := []byte("benchmark message")
	for b.Loop() {
		sk, err := ParsePrivateKey(k.state, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := sk.LoadCache(k.cache); err != nil {
			b.Fatal(err)
		}
		if sign {
			var built bool
			sig, err := sk.SignProgress(msg, func(int, int) { built = true })
			if err != nil || built {
				b.Fatalf("sign after loading the cache: %v, trees built: %v", err, built)
			}
			if err := k.pub.Verify(msg, sig); err != nil {
				b.Fatal(err)
			}
		}
		sk.Wipe()
	}
	b.ReportMetric(float64(len(k.cache)), "cache-bytes")
}

// BenchmarkFirstSignCachedH20W8: see syntheticH20W8 for the key.
func BenchmarkFirstSignCachedH20W8(b *testing.B) {
	benchmarkFirstSignCached(b, syntheticH20W8(b), true)
}

func BenchmarkFirstSignCachedH10H10W8(b *testing.B) {
	benchmarkFirstSignCached(b, realH10H10W8(b), true)
}

func BenchmarkLoadCacheH20W8(b *testing.B) {
	benchmarkFirstSignCached(b, syntheticH20W8(b), false)
}

func BenchmarkLoadCacheH10H10W8(b *testing.B) {
	benchmarkFirstSignCached(b, realH10H10W8(b), false)
}
