package sha256block

import (
	"encoding/binary"
	"math/bits"
)

const (
	// BlockSize is the size in bytes of the block that Block compresses.
	BlockSize = 64

	// Size is the size in bytes of a full SHA-256 state or digest.
	Size = 32

	// MaxPaddedLen is the longest message, in bytes, that fits in one block
	// together with its padding: 64 bytes less the 0x80 byte and the 8-byte
	// bit length.
	MaxPaddedLen = BlockSize - 1 - 8
)

// IV is the initial hash value H(0) of SHA-256 (FIPS 180-4, section 5.3.3).
// Copy it into a state before the first Block:
//
//	h := sha256block.IV
var IV = [8]uint32{
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}

// Block folds the 64-byte block p into the state h with one SHA-256
// compression (FIPS 180-4, section 6.2.2, steps 1 to 4). The caller builds
// the block, including any padding (see [Pad]).
func Block(h *[8]uint32, p *[64]byte) {
	if useSHANI {
		blockSHANI(h, p)
		return
	}
	blockGeneric(h, p)
}

// Block2 does the same as Block(h1, p1) followed by Block(h2, p2), in one
// call. The two states must be distinct; the blocks may be the same.
//
// With SHA-NI the two compressions are interleaved and together cost little
// more than one Block call; without it Block2 is just the two calls.
func Block2(h1, h2 *[8]uint32, p1, p2 *[64]byte) {
	if useSHANI {
		block2SHANI(h1, h2, p1, p2)
		return
	}
	blockGeneric(h1, p1)
	blockGeneric(h2, p2)
}

// Accelerated reports whether Block and Block2 use the SHA-NI assembly
// implementation rather than the portable Go one.
func Accelerated() bool { return useSHANI }

// Pad completes a single-block message: the first msgLen bytes of block
// hold the message, and Pad writes the 0x80 byte, the zero bytes and the
// big-endian 64-bit length in bits that follow it (FIPS 180-4, section
// 5.1.1). It panics unless 0 <= msgLen <= MaxPaddedLen.
func Pad(block *[64]byte, msgLen int) {
	if msgLen < 0 || msgLen > MaxPaddedLen {
		panic("sha256block: message length out of range for a single padded block")
	}
	block[msgLen] = 0x80
	clear(block[msgLen+1 : BlockSize-8])
	binary.BigEndian.PutUint64(block[BlockSize-8:], uint64(msgLen)*8)
}

// PutState writes the state h as big-endian bytes, the form of a SHA-256
// digest, into dst. It writes min(len(dst), 32) bytes, so a 24-byte dst
// receives the SHA-256/192 truncation of SP 800-208.
func PutState(dst []byte, h *[8]uint32) {
	for _, v := range h {
		if len(dst) < 4 {
			for i := range dst {
				dst[i] = byte(v >> (24 - 8*i))
			}
			return
		}
		binary.BigEndian.PutUint32(dst, v)
		dst = dst[4:]
	}
}

// k holds the round constants K(0) to K(63) (FIPS 180-4, section 4.2.2).
// The assembly keeps its own copy, written by internal/gen.
var k = [64]uint32{
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

// blockGeneric is the portable compression, written as in FIPS 180-4,
// section 6.2.2.
func blockGeneric(h *[8]uint32, p *[64]byte) {
	// Step 1: the message schedule W(0) to W(63).
	var w [64]uint32
	for t := 0; t < 16; t++ {
		w[t] = binary.BigEndian.Uint32(p[4*t:])
	}
	for t := 16; t < 64; t++ {
		x, y := w[t-2], w[t-15]
		sigma1 := bits.RotateLeft32(x, -17) ^ bits.RotateLeft32(x, -19) ^ x>>10
		sigma0 := bits.RotateLeft32(y, -7) ^ bits.RotateLeft32(y, -18) ^ y>>3
		w[t] = sigma1 + w[t-7] + sigma0 + w[t-16]
	}

	// Steps 2 and 3: the 64 rounds.
	a, b, c, d, e, f, g, hh := h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
	for t := 0; t < 64; t++ {
		sum1 := bits.RotateLeft32(e, -6) ^ bits.RotateLeft32(e, -11) ^ bits.RotateLeft32(e, -25)
		ch := e&f ^ ^e&g
		t1 := hh + sum1 + ch + k[t] + w[t]
		sum0 := bits.RotateLeft32(a, -2) ^ bits.RotateLeft32(a, -13) ^ bits.RotateLeft32(a, -22)
		maj := a&b ^ a&c ^ b&c
		t2 := sum0 + maj
		hh, g, f, e, d, c, b, a = g, f, e, d+t1, c, b, a, t1+t2
	}

	// Step 4: the intermediate hash value.
	h[0] += a
	h[1] += b
	h[2] += c
	h[3] += d
	h[4] += e
	h[5] += f
	h[6] += g
	h[7] += hh
}
