package hashsig

import (
	"encoding/binary"
	"fmt"
)

// coef returns digit i of width w of s (RFC 8554 section 3.1.3).
func coef(s []byte, i, w int) int {
	return int(s[i*w/8]>>(8-w*(i%(8/w)+1))) & (1<<w - 1)
}

// checksummed returns Q || Cksm(Q) as RFC 8554 section 4.4 defines it: the
// digits every chain is walked to.
func checksummed(q []byte, p LMOTSParams) []byte {
	u := 8 * p.N / p.W
	sum := 0
	for i := range u {
		sum += 1<<p.W - 1 - coef(q, i, p.W)
	}
	out := append(q[:p.N:p.N], 0, 0)
	binary.BigEndian.PutUint16(out[p.N:], uint16(sum<<p.LS))
	return out
}

// otsSeedStep is the j value that derives a chain's secret from the seed
// (RFC 8554 Appendix A): x_q[i] = H(I || u32(q) || u16(i) || 0xff || SEED).
const otsSeedStep = 0xff

// otsPublicKey computes K, the LM-OTS public key of leaf q, from the seed:
// each chain starts at x_q[i] and is walked 2^w - 1 steps.
func otsPublicKey(h *hasher, p LMOTSParams, id *[16]byte, q uint32, seed []byte, k []byte) {
	ends := make([]byte, p.P*p.N)
	// Every chain is walked the whole way, so they go two at a time.
	i := 0
	for ; i+1 < p.P; i += 2 {
		h.chainSetup(0, id, q, uint16(i), seed)
		h.chainSetup(1, id, q, uint16(i+1), seed)
		h.chainStep2(otsSeedStep)
		for j := range 1<<p.W - 1 {
			h.chainStep2(byte(j))
		}
		copy(ends[i*p.N:], h.chainValue(0))
		copy(ends[(i+1)*p.N:], h.chainValue(1))
	}
	if i < p.P {
		h.chainSetup(0, id, q, uint16(i), seed)
		h.chainStep(otsSeedStep)
		for j := range 1<<p.W - 1 {
			h.chainStep(byte(j))
		}
		copy(ends[i*p.N:], h.chainValue(0))
	}
	h.reset()
	h.write(id[:])
	h.writeU32(q)
	h.writeU16(dPBLC)
	h.write(ends)
	h.sum(k)
}

// otsMessageHash is Q = H(I || u32(q) || u16(D_MESG) || C || message).
func otsMessageHash(h *hasher, p LMOTSParams, id *[16]byte, q uint32, c, msg []byte) []byte {
	h.reset()
	h.write(id[:])
	h.writeU32(q)
	h.writeU16(dMESG)
	h.write(c)
	h.write(msg)
	out := make([]byte, p.N)
	h.sum(out)
	return out
}

// otsSign signs msg with leaf q's one-time key: u32(type) || C || y[0..p-1].
func otsSign(h *hasher, t LMOTSType, id *[16]byte, q uint32, seed, c, msg []byte) []byte {
	p, _ := t.Params()
	digits := checksummed(otsMessageHash(h, p, id, q, c, msg), p)
	sig := binary.BigEndian.AppendUint32(nil, uint32(t))
	sig = append(sig, c...)
	for i := range p.P {
		h.chainSetup(0, id, q, uint16(i), seed)
		h.chainStep(otsSeedStep)
		for j := range coef(digits, i, p.W) {
			h.chainStep(byte(j))
		}
		sig = append(sig, h.chainValue(0)...)
	}
	return sig
}

// otsSignatureSize is the size of an LM-OTS signature of type t.
func otsSignatureSize(p LMOTSParams) int { return 4 + p.N*(p.P+1) }

// otsCandidate computes the public key candidate Kc of an LM-OTS signature
// (RFC 8554 Algorithm 4b). The signature's type must be want.
func otsCandidate(h *hasher, want LMOTSType, id *[16]byte, q uint32, sig, msg []byte) ([]byte, error) {
	p, _ := want.Params()
	if len(sig) != otsSignatureSize(p) {
		return nil, fmt.Errorf("%w: LM-OTS signature of %d bytes, want %d", ErrMalformed, len(sig), otsSignatureSize(p))
	}
	if LMOTSType(binary.BigEndian.Uint32(sig)) != want {
		return nil, fmt.Errorf("%w: LM-OTS type %d where the key has %v", ErrInvalidSignature, binary.BigEndian.Uint32(sig), want)
	}
	c, ys := sig[4:4+p.N], sig[4+p.N:]
	digits := checksummed(otsMessageHash(h, p, id, q, c, msg), p)
	ends := make([]byte, p.P*p.N)
	for i := range p.P {
		h.chainSetup(0, id, q, uint16(i), ys[i*p.N:(i+1)*p.N])
		for j := coef(digits, i, p.W); j < 1<<p.W-1; j++ {
			h.chainStep(byte(j))
		}
		copy(ends[i*p.N:], h.chainValue(0))
	}
	k := make([]byte, p.N)
	h.reset()
	h.write(id[:])
	h.writeU32(q)
	h.writeU16(dPBLC)
	h.write(ends)
	h.sum(k)
	return k, nil
}
