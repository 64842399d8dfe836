package sha256block

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	mathrand "math/rand"
	"math/rand/v2"
	"testing"
	"testing/quick"
)

// impl is one implementation of the compression function.
type impl struct {
	name  string
	block func(h *[8]uint32, p *[64]byte)
}

// impls returns the implementations to test: Block as dispatched, the
// portable one, and each lane of Block2 (the other lane compressing a
// different block into a scratch state). On a machine without SHA-NI, or
// with the purego tag, Block and Block2 are the portable code too.
func impls(t testing.TB) []impl {
	t.Helper()
	t.Logf("Accelerated() = %v", Accelerated())
	var scratch [8]uint32
	var other [64]byte
	for i := range other {
		other[i] = byte(i * 7)
	}
	return []impl{
		{"Block", Block},
		{"blockGeneric", blockGeneric},
		{"Block2/first", func(h *[8]uint32, p *[64]byte) {
			scratch = IV
			Block2(h, &scratch, p, &other)
		}},
		{"Block2/second", func(h *[8]uint32, p *[64]byte) {
			scratch = IV
			Block2(&scratch, h, &other, p)
		}},
	}
}

// sum is SHA-256 of msg, of any length, chained through block with
// FIPS 180-4 padding built by hand.
func sum(block func(h *[8]uint32, p *[64]byte), msg []byte) [32]byte {
	padded := append([]byte(nil), msg...)
	padded = append(padded, 0x80)
	for len(padded)%BlockSize != BlockSize-8 {
		padded = append(padded, 0)
	}
	padded = binary.BigEndian.AppendUint64(padded, uint64(len(msg))*8)

	h := IV
	for len(padded) > 0 {
		block(&h, (*[64]byte)(padded))
		padded = padded[BlockSize:]
	}
	var d [32]byte
	PutState(d[:], &h)
	return d
}

// sumPadded is SHA-256 of a message of at most MaxPaddedLen bytes, padded
// with Pad, the way the package is meant to be used.
func sumPadded(block func(h *[8]uint32, p *[64]byte), msg []byte) [32]byte {
	var blk [64]byte
	for i := range blk {
		blk[i] = 0xa5 // Pad must overwrite whatever follows the message
	}
	Pad(&blk, copy(blk[:], msg))
	h := IV
	block(&h, &blk)
	var d [32]byte
	PutState(d[:], &h)
	return d
}

func TestKnownAnswers(t *testing.T) {
	// FIPS 180-4 examples (csrc.nist.gov example values, SHA256.pdf and
	// SHA2_Additional.pdf).
	tests := []struct {
		msg  string
		want string
	}{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
		{"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu", "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
		{string(make([]byte, 55)), "02779466cdec163811d078815c633f21901413081449002f24aa3e80f0b88ef7"},
		{string(make([]byte, 56)), "d4817aa5497628e7c77e6b606107042bbba3130888c5f47a375e6179be789fbb"},
		{string(make([]byte, 64)), "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b"},
	}
	for _, im := range impls(t) {
		for i, tt := range tests {
			got := sum(im.block, []byte(tt.msg))
			if hex.EncodeToString(got[:]) != tt.want {
				t.Errorf("%s: #%d (%d bytes): got %x, want %s", im.name, i, len(tt.msg), got, tt.want)
			}
		}
	}
}

func TestSinglePaddedBlock(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, im := range impls(t) {
		for n := 0; n <= MaxPaddedLen; n++ {
			msg := make([]byte, n)
			for i := range msg {
				msg[i] = byte(rng.Uint32())
			}
			want := sha256.Sum256(msg)
			if got := sumPadded(im.block, msg); got != want {
				t.Errorf("%s: %d-byte message: got %x, want %x", im.name, n, got, want)
			}
		}
	}
}

func TestMultiBlock(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, im := range impls(t) {
		for n := 0; n <= 300; n++ {
			msg := make([]byte, n)
			for i := range msg {
				msg[i] = byte(rng.Uint32())
			}
			if got, want := sum(im.block, msg), sha256.Sum256(msg); got != want {
				t.Errorf("%s: %d-byte message: got %x, want %x", im.name, n, got, want)
			}
		}
	}
}

// TestBlockVersusGeneric compares Block and Block2 with blockGeneric on
// random states and blocks.
func TestBlockVersusGeneric(t *testing.T) {
	if !Accelerated() {
		t.Log("Block is blockGeneric here: the comparison is trivial")
	}
	cfg := &quick.Config{MaxCount: 10000, Rand: mathrand.New(mathrand.NewSource(5))}
	if testing.Short() {
		cfg.MaxCount = 1000
	}
	one := func(h [8]uint32, p [64]byte) [8]uint32 {
		Block(&h, &p)
		return h
	}
	oneGeneric := func(h [8]uint32, p [64]byte) [8]uint32 {
		blockGeneric(&h, &p)
		return h
	}
	if err := quick.CheckEqual(one, oneGeneric, cfg); err != nil {
		t.Error("Block:", err)
	}

	two := func(h1, h2 [8]uint32, p1, p2 [64]byte) [2][8]uint32 {
		Block2(&h1, &h2, &p1, &p2)
		return [2][8]uint32{h1, h2}
	}
	twoGeneric := func(h1, h2 [8]uint32, p1, p2 [64]byte) [2][8]uint32 {
		blockGeneric(&h1, &p1)
		blockGeneric(&h2, &p2)
		return [2][8]uint32{h1, h2}
	}
	if err := quick.CheckEqual(two, twoGeneric, cfg); err != nil {
		t.Error("Block2:", err)
	}
}

// TestBlock2SameBlock checks that Block2 may read one block for both states.
func TestBlock2SameBlock(t *testing.T) {
	var p [64]byte
	copy(p[:], "one block, two states")
	Pad(&p, len("one block, two states"))
	h1, h2 := IV, IV
	h2[7] ^= 1
	w1, w2 := h1, h2
	blockGeneric(&w1, &p)
	blockGeneric(&w2, &p)
	Block2(&h1, &h2, &p, &p)
	if h1 != w1 || h2 != w2 {
		t.Errorf("got %08x and %08x, want %08x and %08x", h1, h2, w1, w2)
	}
}

// TestAccumulated chains many compressions, each block and state derived
// from the previous output, and checks the final state of each
// implementation against the portable one: a long run in one comparison.
func TestAccumulated(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 1000
	}
	run := func(block func(h *[8]uint32, p *[64]byte)) [8]uint32 {
		h := IV
		var p [64]byte
		for i := 0; i < n; i++ {
			PutState(p[i%2*32:], &h) // the block is the last two outputs
			block(&h, &p)
		}
		return h
	}
	want := run(blockGeneric)
	for _, im := range impls(t) {
		if got := run(im.block); got != want {
			t.Errorf("%s: after %d blocks got %08x, want %08x", im.name, n, got, want)
		}
	}
}

func TestPad(t *testing.T) {
	for n := 0; n <= MaxPaddedLen; n++ {
		var got [64]byte
		for i := range got {
			got[i] = 0xff
		}
		Pad(&got, n)
		var want [64]byte
		for i := range n {
			want[i] = 0xff
		}
		want[n] = 0x80
		binary.BigEndian.PutUint64(want[56:], uint64(8*n))
		if got != want {
			t.Errorf("Pad(%d):\n got %x\nwant %x", n, got, want)
		}
	}
	for _, n := range []int{-1, MaxPaddedLen + 1, 63, 64, 1000} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Pad(%d) did not panic", n)
				}
			}()
			var blk [64]byte
			Pad(&blk, n)
		}()
	}
}

func TestPutState(t *testing.T) {
	h := [8]uint32{0x00010203, 0x04050607, 0x08090a0b, 0x0c0d0e0f, 0x10111213, 0x14151617, 0x18191a1b, 0x1c1d1e1f}
	var full [32]byte
	for i := range full {
		full[i] = byte(i)
	}
	for n := 0; n <= 40; n++ {
		dst := bytes.Repeat([]byte{0xee}, n)
		PutState(dst, &h)
		m := min(n, 32)
		if !bytes.Equal(dst[:m], full[:m]) || !bytes.Equal(dst[m:], bytes.Repeat([]byte{0xee}, n-m)) {
			t.Errorf("PutState into %d bytes: got %x", n, dst)
		}
	}
}

// TestIV checks IV against crypto/sha256: an empty message padded into one
// block and compressed from IV gives the digest of "".
func TestIV(t *testing.T) {
	if got, want := sumPadded(blockGeneric, nil), sha256.Sum256(nil); got != want {
		t.Errorf("got %x, want %x", got, want)
	}
}

// TestNoAllocs checks that the entry points neither allocate nor make their
// arguments escape.
func TestNoAllocs(t *testing.T) {
	var h1, h2 [8]uint32
	var p [64]byte
	var out [32]byte
	if n := testing.AllocsPerRun(100, func() {
		h1, h2 = IV, IV
		Pad(&p, 55)
		Block(&h1, &p)
		Block2(&h1, &h2, &p, &p)
		PutState(out[:24], &h1)
	}); n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}

var benchSink [8]uint32

func BenchmarkBlock(b *testing.B) {
	benchBlock(b, Block)
}

func BenchmarkBlockGeneric(b *testing.B) {
	benchBlock(b, blockGeneric)
}

func benchBlock(b *testing.B, block func(h *[8]uint32, p *[64]byte)) {
	var p [64]byte
	Pad(&p, 55)
	h := IV
	b.SetBytes(BlockSize)
	for b.Loop() {
		block(&h, &p)
	}
	benchSink = h
}

// BenchmarkBlock2 reports bytes for both blocks, so its MB/s compares
// directly with BenchmarkBlock's and its ns/op is for two blocks.
func BenchmarkBlock2(b *testing.B) {
	var p1, p2 [64]byte
	Pad(&p1, 55)
	Pad(&p2, 47)
	h1, h2 := IV, IV
	b.SetBytes(2 * BlockSize)
	for b.Loop() {
		Block2(&h1, &h2, &p1, &p2)
	}
	benchSink = h1
	benchSink[0] ^= h2[0]
}

// BenchmarkChain is an LM-OTS-style chain: each step hashes a 55-byte
// message whose last 32 bytes are the previous step's output, so every
// compression waits for the one before it.
func BenchmarkChain(b *testing.B) {
	for _, size := range []int{32, 24} {
		b.Run(fmt.Sprintf("n=%d", size), func(b *testing.B) {
			var p [64]byte
			msgLen := 23 + size
			Pad(&p, msgLen)
			b.SetBytes(BlockSize)
			for b.Loop() {
				h := IV
				Block(&h, &p)
				PutState(p[23:msgLen], &h)
			}
		})
	}
}

// BenchmarkChain2 runs two LM-OTS-style chains side by side with Block2.
func BenchmarkChain2(b *testing.B) {
	var p1, p2 [64]byte
	Pad(&p1, 55)
	Pad(&p2, 55)
	p2[0] = 1
	b.SetBytes(2 * BlockSize)
	for b.Loop() {
		h1, h2 := IV, IV
		Block2(&h1, &h2, &p1, &p2)
		PutState(p1[23:55], &h1)
		PutState(p2[23:55], &h2)
	}
}

// BenchmarkSum256 is crypto/sha256.Sum256 of a 55-byte message: what a
// chain step costs without this package.
func BenchmarkSum256(b *testing.B) {
	msg := make([]byte, 55)
	b.SetBytes(BlockSize)
	for b.Loop() {
		d := sha256.Sum256(msg)
		copy(msg[23:], d[:])
	}
}

// BenchmarkBulkSHA256 is the bound: crypto/sha256 over 64 KiB buffers,
// where the per-call costs vanish and only the compressions remain.
func BenchmarkBulkSHA256(b *testing.B) {
	buf := make([]byte, 64<<10)
	h := sha256.New()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		h.Write(buf)
	}
	var d [32]byte
	_ = h.Sum(d[:0])
}
