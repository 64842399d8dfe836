package hashsig

import (
	"crypto/sha256"
	"crypto/sha3"
	"encoding/binary"
	"hash"

	"github.com/hsmkit/cryptech-backup/internal/sha256block"
)

// Domain separation constants of RFC 8554.
const (
	dPBLC = 0x8080
	dMESG = 0x8181
	dLEAF = 0x8282
	dINTR = 0x8383
)

// hasher computes the hashes of one hash family and output size. It is not
// safe for concurrent use: every goroutine makes its own.
//
// Almost all the work of key generation is the Winternitz chain step,
// H(I || u32(q) || u16(i) || u8(j) || tmp), one 64-byte SHA-256 block with
// padding. chain runs those steps on a block prepared once, through the bare
// compression function, instead of paying a hash call for each.
type hasher struct {
	family HashFamily
	n      int
	sha    hash.Hash
	shake  *sha3.SHAKE
	// block[lane] holds I, q and i of a chain being computed, and its
	// current value at offset 23; only j and the value change between steps.
	// Two lanes let two independent chains share each compression call.
	block [2][64]byte
}

func newHasher(f HashFamily, n int) *hasher {
	h := &hasher{family: f, n: n}
	if f == SHAKE256 {
		h.shake = sha3.NewSHAKE256()
	} else {
		h.sha = sha256.New()
	}
	return h
}

// reset starts a new hash computation.
func (h *hasher) reset() {
	if h.shake != nil {
		h.shake.Reset()
	} else {
		h.sha.Reset()
	}
}

func (h *hasher) write(b []byte) {
	if h.shake != nil {
		h.shake.Write(b)
	} else {
		h.sha.Write(b)
	}
}

func (h *hasher) writeU32(v uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	h.write(b[:])
}

func (h *hasher) writeU16(v uint16) {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	h.write(b[:])
}

// sum writes the n-byte hash into dst, which must hold n bytes.
func (h *hasher) sum(dst []byte) {
	if h.shake != nil {
		h.shake.Read(dst[:h.n])
		return
	}
	var full [sha256.Size]byte
	h.sha.Sum(full[:0])
	copy(dst, full[:h.n])
}

// chainSetup fixes I, q and i of the chain in a lane and loads the chain's
// starting value.
func (h *hasher) chainSetup(lane int, id *[16]byte, q uint32, i uint16, start []byte) {
	b := &h.block[lane]
	copy(b[:16], id[:])
	binary.BigEndian.PutUint32(b[16:], q)
	binary.BigEndian.PutUint16(b[20:], i)
	copy(b[23:23+h.n], start)
	if h.family == SHA256 {
		sha256block.Pad(b, 23+h.n)
	}
}

// chainStep replaces the chain value v of lane 0 by
// H(I || u32(q) || u16(i) || u8(j) || v).
func (h *hasher) chainStep(j byte) {
	b := &h.block[0]
	b[22] = j
	if h.family == SHA256 {
		st := sha256block.IV
		sha256block.Block(&st, b)
		sha256block.PutState(b[23:23+h.n], &st)
		return
	}
	h.shakeStep(b)
}

// chainStep2 steps the chains of both lanes with the same j.
func (h *hasher) chainStep2(j byte) {
	b0, b1 := &h.block[0], &h.block[1]
	b0[22], b1[22] = j, j
	if h.family == SHA256 {
		st0, st1 := sha256block.IV, sha256block.IV
		sha256block.Block2(&st0, &st1, b0, b1)
		sha256block.PutState(b0[23:23+h.n], &st0)
		sha256block.PutState(b1[23:23+h.n], &st1)
		return
	}
	h.shakeStep(b0)
	h.shakeStep(b1)
}

func (h *hasher) shakeStep(b *[64]byte) {
	h.shake.Reset()
	h.shake.Write(b[:23+h.n])
	h.shake.Read(b[23 : 23+h.n])
}

// chainValue returns the current chain value of a lane (aliasing the
// hasher: copy it before the next chainSetup).
func (h *hasher) chainValue(lane int) []byte { return h.block[lane][23 : 23+h.n] }
