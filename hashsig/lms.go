package hashsig

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// IDSize is the size of I, the identifier of an LMS tree.
const IDSize = 16

// lmsPublicKey is an LMS public key: u32(type) || u32(otstype) || I || T[1].
type lmsPublicKey struct {
	typ    LMSType
	otsTyp LMOTSType
	id     [IDSize]byte
	root   []byte
}

func (k *lmsPublicKey) marshal() []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(k.typ))
	b = binary.BigEndian.AppendUint32(b, uint32(k.otsTyp))
	b = append(b, k.id[:]...)
	return append(b, k.root...)
}

// parseLMSPublicKey parses an LMS public key at the start of b, returning
// the rest.
func parseLMSPublicKey(b []byte) (*lmsPublicKey, []byte, error) {
	if len(b) < 8 {
		return nil, nil, fmt.Errorf("%w: LMS public key too short", ErrMalformed)
	}
	k := &lmsPublicKey{typ: LMSType(binary.BigEndian.Uint32(b)), otsTyp: LMOTSType(binary.BigEndian.Uint32(b[4:]))}
	if err := CheckLevels([]Level{{k.typ, k.otsTyp}}); err != nil {
		return nil, nil, fmt.Errorf("%w: LMS public key: %v", ErrMalformed, err)
	}
	p, _ := k.typ.Params()
	if len(b) < 8+IDSize+p.M {
		return nil, nil, fmt.Errorf("%w: LMS public key too short", ErrMalformed)
	}
	copy(k.id[:], b[8:])
	k.root = bytes.Clone(b[8+IDSize : 8+IDSize+p.M])
	return k, b[8+IDSize+p.M:], nil
}

// leafHash is T[r] = H(I || u32(r) || u16(D_LEAF) || K) for r = 2^h + q.
func leafHash(h *hasher, id *[IDSize]byte, r uint32, k, out []byte) {
	h.reset()
	h.write(id[:])
	h.writeU32(r)
	h.writeU16(dLEAF)
	h.write(k)
	h.sum(out)
}

// interiorHash is T[r] = H(I || u32(r) || u16(D_INTR) || left || right).
func interiorHash(h *hasher, id *[IDSize]byte, r uint32, left, right, out []byte) {
	h.reset()
	h.write(id[:])
	h.writeU32(r)
	h.writeU16(dINTR)
	h.write(left)
	h.write(right)
	h.sum(out)
}

// lmsSignatureSize is the size of an LMS signature with these parameters.
func lmsSignatureSize(t LMSType, ot LMOTSType) int {
	p, _ := t.Params()
	op, _ := ot.Params()
	return 4 + otsSignatureSize(op) + 4 + p.H*p.M
}

// splitLMSSignature takes the LMS signature at the start of b, whose size
// its own type fields give, and returns it and the rest.
func splitLMSSignature(b []byte) (sig, rest []byte, err error) {
	if len(b) < 8 {
		return nil, nil, fmt.Errorf("%w: LMS signature too short", ErrMalformed)
	}
	ot := LMOTSType(binary.BigEndian.Uint32(b[4:]))
	op, ok := ot.Params()
	if !ok {
		return nil, nil, fmt.Errorf("%w: unknown LM-OTS type %d in signature", ErrMalformed, uint32(ot))
	}
	at := 4 + otsSignatureSize(op)
	if len(b) < at+4 {
		return nil, nil, fmt.Errorf("%w: LMS signature too short", ErrMalformed)
	}
	t := LMSType(binary.BigEndian.Uint32(b[at:]))
	if !t.Valid() {
		return nil, nil, fmt.Errorf("%w: unknown LMS type %d in signature", ErrMalformed, uint32(t))
	}
	n := lmsSignatureSize(t, ot)
	if len(b) < n {
		return nil, nil, fmt.Errorf("%w: LMS signature too short", ErrMalformed)
	}
	return b[:n], b[n:], nil
}

// verify checks an LMS signature of msg (RFC 8554 Algorithm 6a). sig must be
// exactly one LMS signature.
func (k *lmsPublicKey) verify(h *hasher, msg, sig []byte) error {
	p, _ := k.typ.Params()
	op, _ := k.otsTyp.Params()
	if len(sig) != lmsSignatureSize(k.typ, k.otsTyp) {
		return fmt.Errorf("%w: LMS signature of %d bytes for a key that makes %d", ErrInvalidSignature, len(sig), lmsSignatureSize(k.typ, k.otsTyp))
	}
	q := binary.BigEndian.Uint32(sig)
	otsSig := sig[4 : 4+otsSignatureSize(op)]
	rest := sig[4+otsSignatureSize(op):]
	if LMSType(binary.BigEndian.Uint32(rest)) != k.typ {
		return fmt.Errorf("%w: LMS type differs from the key's", ErrInvalidSignature)
	}
	if q >= 1<<p.H {
		return fmt.Errorf("%w: leaf %d outside a tree of height %d", ErrInvalidSignature, q, p.H)
	}
	path := rest[4:]
	kc, err := otsCandidate(h, k.otsTyp, &k.id, q, otsSig, msg)
	if err != nil {
		return err
	}
	node := uint32(1)<<p.H + q
	tmp := make([]byte, p.M)
	leafHash(h, &k.id, node, kc, tmp)
	for i := 0; node > 1; i++ {
		sibling := path[i*p.M : (i+1)*p.M]
		if node&1 == 1 {
			interiorHash(h, &k.id, node/2, sibling, tmp, tmp)
		} else {
			interiorHash(h, &k.id, node/2, tmp, sibling, tmp)
		}
		node /= 2
	}
	// Public values: no need for a constant-time comparison.
	if !bytes.Equal(tmp, k.root) {
		return ErrInvalidSignature
	}
	return nil
}

// SignatureSize is the size of the HSS signatures a key with these levels
// (top first) makes (RFC 8554 section 6.2): a signature's size follows from
// the key's parameters, so a caller can make room for one before it spends
// a one-time key. Its error wraps ErrBadParameters for levels CheckLevels
// refuses.
func SignatureSize(levels []Level) (int, error) {
	if err := CheckLevels(levels); err != nil {
		return 0, err
	}
	n := 4
	for i, l := range levels {
		n += lmsSignatureSize(l.LMS, l.LMOTS)
		if i > 0 {
			p, _ := l.LMS.Params()
			n += 4 + 4 + IDSize + p.M // the level's signed public key
		}
	}
	return n, nil
}
