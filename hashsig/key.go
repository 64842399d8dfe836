package hashsig

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// PrivateKey is a stateful HSS private key: the top tree's identifier and
// seed, from which every one-time key and lower tree is derived, and the
// range of signature indexes it may still use. It is safe for concurrent use.
type PrivateKey struct {
	mu     sync.Mutex
	levels []Level
	id     [IDSize]byte
	seed   []byte
	// next is the next index to sign with, end the first it may not use,
	// persisted the next value the stored state holds (see state.go).
	next, end, persisted uint64
	reserve              uint64
	persist              PersistFunc

	pub *PublicKey
	// trees[l] is the level-l tree that signs at index next, built lazily.
	trees []*tree
	// childSigs[l] is the signature of trees[l+1]'s public key by trees[l].
	childSigs [][]byte
}

// GenerateKey makes a new HSS key of the given levels, top first, reading
// the top seed and identifier from rand (crypto/rand if nil). It computes
// the top tree (and the first tree of each lower level), spreading the work
// over all cores. persist may be nil.
func GenerateKey(rand io.Reader, levels []Level, persist PersistFunc) (*PrivateKey, error) {
	if err := checkLevels(levels); err != nil {
		return nil, err
	}
	if rand == nil {
		rand = cryptoRand
	}
	p, _ := levels[0].LMS.Params()
	sk := &PrivateKey{levels: append([]Level(nil), levels...), seed: make([]byte, p.M), reserve: 1, persist: persist}
	if _, err := io.ReadFull(rand, sk.id[:]); err != nil {
		return nil, fmt.Errorf("hashsig: key identifier: %w", err)
	}
	if _, err := io.ReadFull(rand, sk.seed); err != nil {
		return nil, fmt.Errorf("hashsig: key seed: %w", err)
	}
	sk.end = capacity(levels)
	if err := sk.load(); err != nil {
		return nil, err
	}
	if err := sk.store(0, sk.end); err != nil {
		return nil, err
	}
	return sk, nil
}

var cryptoRand = rand.Reader

// load builds the trees that sign at index next.
func (sk *PrivateKey) load() error {
	top := newTree(sk.levels[0].LMS, sk.levels[0].LMOTS, sk.id, sk.seed, 0)
	top.build()
	sk.trees = []*tree{top}
	sk.pub = &PublicKey{levels: len(sk.levels), top: top.publicKey()}
	sk.childSigs = make([][]byte, len(sk.levels)-1)
	if sk.next < sk.end {
		sk.descend(sk.next)
	}
	return nil
}

// descend makes trees[1..] the trees on the path of index s, rebuilding
// those that changed and the signatures that link them.
func (sk *PrivateKey) descend(s uint64) {
	path := indexPath(sk.levels, s)
	hs := sk.hasher()
	for l := 1; l < len(sk.levels); l++ {
		parent := sk.trees[l-1]
		lp, _ := sk.levels[l-1].LMS.Params()
		want := parent.number<<lp.H + uint64(path[l-1])
		if l < len(sk.trees) && sk.trees[l].number == want && sk.childSigs[l-1] != nil {
			continue
		}
		child := parent.child(hs, path[l-1], sk.levels[l].LMS, sk.levels[l].LMOTS)
		child.build()
		sk.trees = append(sk.trees[:l], child)
		// Linking signatures sign a fixed message (the child's public key)
		// with a one-time key used for nothing else, so their randomizer is
		// derived, and rebuilding one after a restart gives the same bytes.
		c := parent.derive(hs, path[l-1], deriveC)
		sk.childSigs[l-1] = parent.sign(hs, path[l-1], c, child.publicKey().marshal())
		for k := l; k < len(sk.childSigs); k++ {
			sk.childSigs[k] = nil
		}
	}
}

func (sk *PrivateKey) hasher() *hasher {
	p, _ := sk.levels[0].LMS.Params()
	return newHasher(p.Hash, p.M)
}

// Public returns the HSS public key.
func (sk *PrivateKey) Public() *PublicKey { return sk.pub }

// Levels returns the key's parameters, top level first.
func (sk *PrivateKey) Levels() []Level { return append([]Level(nil), sk.levels...) }

// Sign signs msg with the next unused index. The state that marks the index
// used is persisted (see SetReserve) before the signature is made; a key with
// no index left returns ErrKeyExhausted.
func (sk *PrivateKey) Sign(msg []byte) ([]byte, error) {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	s, err := sk.claim()
	if err != nil {
		return nil, err
	}
	sk.descend(s)
	path := indexPath(sk.levels, s)
	last := len(sk.levels) - 1
	sig := binary.BigEndian.AppendUint32(nil, uint32(last))
	for l := range last {
		sig = append(sig, sk.childSigs[l]...)
		sig = append(sig, sk.trees[l+1].publicKey().marshal()...)
	}
	bottom := sk.trees[last]
	c := make([]byte, bottom.op.N)
	if _, err := io.ReadFull(cryptoRand, c); err != nil {
		return nil, fmt.Errorf("hashsig: randomizer: %w", err)
	}
	return append(sig, bottom.sign(sk.hasher(), path[last], c, msg)...), nil
}

// privateKeyVersion starts the serialized form of a private key.
const privateKeyVersion = 1

// MarshalBinary returns the key's state: parameters, identifier, seed and
// range. It is secret: it can sign.
func (sk *PrivateKey) MarshalBinary() ([]byte, error) {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	return sk.marshal(max(sk.next, sk.persisted), sk.end), nil
}

// marshal encodes: u32 version || u32 L || L × (u32 lms, u32 lmots) || I ||
// SEED || u64 next || u64 end.
func (sk *PrivateKey) marshal(next, end uint64) []byte {
	b := binary.BigEndian.AppendUint32(nil, privateKeyVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(sk.levels)))
	for _, l := range sk.levels {
		b = binary.BigEndian.AppendUint32(b, uint32(l.LMS))
		b = binary.BigEndian.AppendUint32(b, uint32(l.LMOTS))
	}
	b = append(b, sk.id[:]...)
	b = append(b, sk.seed...)
	b = binary.BigEndian.AppendUint64(b, next)
	return binary.BigEndian.AppendUint64(b, end)
}

// ParsePrivateKey loads a key from its MarshalBinary form and rebuilds its
// trees. persist may be nil.
func ParsePrivateKey(b []byte, persist PersistFunc) (*PrivateKey, error) {
	sk, err := parsePrivateKeyState(b)
	if err != nil {
		return nil, err
	}
	sk.persist = persist
	if err := sk.load(); err != nil {
		return nil, err
	}
	return sk, nil
}

func parsePrivateKeyState(b []byte) (*PrivateKey, error) {
	bad := func(why string) error { return fmt.Errorf("%w: private key: %s", ErrMalformed, why) }
	if len(b) < 8 || binary.BigEndian.Uint32(b) != privateKeyVersion {
		return nil, bad("unknown version")
	}
	l := binary.BigEndian.Uint32(b[4:])
	if l < 1 || l > MaxLevels {
		return nil, bad(fmt.Sprintf("%d levels", l))
	}
	b = b[8:]
	if len(b) < int(l)*8 {
		return nil, bad("truncated")
	}
	sk := &PrivateKey{reserve: 1}
	for i := range int(l) {
		sk.levels = append(sk.levels, Level{LMSType(binary.BigEndian.Uint32(b[8*i:])), LMOTSType(binary.BigEndian.Uint32(b[8*i+4:]))})
	}
	if err := checkLevels(sk.levels); err != nil {
		return nil, bad(err.Error())
	}
	b = b[8*l:]
	p, _ := sk.levels[0].LMS.Params()
	if len(b) != IDSize+p.M+16 {
		return nil, bad(fmt.Sprintf("%d bytes of identifier, seed and range, want %d", len(b), IDSize+p.M+16))
	}
	copy(sk.id[:], b)
	sk.seed = bytes.Clone(b[IDSize : IDSize+p.M])
	sk.next = binary.BigEndian.Uint64(b[IDSize+p.M:])
	sk.end = binary.BigEndian.Uint64(b[IDSize+p.M+8:])
	if sk.next > sk.end || sk.end > capacity(sk.levels) {
		return nil, bad(fmt.Sprintf("range [%d, %d) outside the key's %d signatures", sk.next, sk.end, capacity(sk.levels)))
	}
	sk.persisted = sk.next
	return sk, nil
}

// cloneRange returns a key with the same secret and top tree but the range
// [next, end) and nothing persisted. Its lower trees are built when it first
// signs: a part that is only exported never pays for them. Called with sk.mu
// held.
func (sk *PrivateKey) cloneRange(next, end uint64) *PrivateKey {
	return &PrivateKey{
		levels: sk.levels, id: sk.id, seed: bytes.Clone(sk.seed),
		next: next, end: end, persisted: next, reserve: 1,
		pub: sk.pub, trees: []*tree{sk.trees[0].clone()}, childSigs: make([][]byte, len(sk.levels)-1),
	}
}

// ID returns I, the identifier of the key's top tree: what names an HSS key
// (libhal refuses to import a key whose identifier it already holds).
func (sk *PrivateKey) ID() [IDSize]byte { return sk.id }
