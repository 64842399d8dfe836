package hashsig

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// PrivateKey is a stateful HSS private key: the top tree's identifier and
// seed, from which every one-time key and lower tree is derived, the top
// tree's root, and the range of signature indexes it may still use. It is
// safe for concurrent use.
type PrivateKey struct {
	// Two locks, so that building trees, which takes seconds to minutes
	// the first time a loaded key signs (height 15 and up), holds up only
	// other signatures of this key:
	//
	//  - signMu guards the trees (trees, childSigs): Sign holds it
	//    throughout, including while it builds them. Wipe takes it too,
	//    after it has set wiped, which makes a build in progress give up
	//    at its next leaf.
	//  - mu guards the state (next, end, persisted, reserve, persist,
	//    topNodes): every method holds it to read or change them, and
	//    across the call to the PersistFunc, never across a build.
	//
	// Lock order: signMu, then mu, then what the PersistFunc takes (the
	// owner's locks, the HSM's). So the owner must never wait for either
	// (call Sign, Split, Wipe, Range, Remaining, MarshalBinary,
	// SetPersist...) while it holds a lock that its PersistFunc takes,
	// unless no other goroutine can have the key.
	signMu sync.Mutex
	mu     sync.Mutex
	// wiped is set by Wipe before it waits for the locks.
	wiped atomic.Bool

	// levels, id, root and pub never change; seed changes only when Wipe
	// clears it, holding both locks.
	levels []Level
	id     [IDSize]byte
	seed   []byte
	root   []byte
	pub    *PublicKey

	// next is the next index to sign with, end the first it may not use,
	// persisted the next value the stored state holds (see state.go).
	// next changes only with both locks held (Sign's claim, Wipe).
	next, end, persisted uint64
	reserve              uint64
	persist              PersistFunc
	// topNodes are the top tree's nodes above its subtrees once it is
	// built: never written again, shared with the parts Split makes.
	topNodes [][]byte

	// trees[l] is the level-l tree that signs at index next. They are built
	// when the key first signs: loading a key, listing it or splitting it
	// never pays for them.
	trees []*tree
	// childSigs[l] is the signature of trees[l+1]'s public key by trees[l].
	childSigs [][]byte
	// cached is the last encoding Cache made, of generation cachedGen:
	// kept so that a caller asking after each signature does not pay for
	// an encoding (64 KiB at height 20) that did not change. Guarded by
	// signMu.
	cached    []byte
	cachedGen uint64
}

// GenerateKey makes a new HSS key of the given levels, top first, reading
// the top seed and identifier from rand (crypto/rand if nil). It computes
// the top tree, whose root is the public key, spreading the work over all
// cores. As Cisco hash-sigs' keygen, it leaves the first tree of each lower
// level to the key's first signature, which builds them as it would after
// a load (SignProgress tells of that work). persist may be nil.
func GenerateKey(rand io.Reader, levels []Level, persist PersistFunc) (*PrivateKey, error) {
	return GenerateKeyProgress(rand, levels, persist, nil)
}

// GenerateKeyProgress is GenerateKey telling progress, if not nil, of the
// leaves computed: large keys take minutes.
func GenerateKeyProgress(rand io.Reader, levels []Level, persist PersistFunc, progress Progress) (*PrivateKey, error) {
	if err := CheckLevels(levels); err != nil {
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
	// No other goroutine has the key yet: nothing wipes it while its tree
	// is built, and its lock is free, taken for what store asserts.
	top := sk.topTree()
	top.build(newMeter(progress, leaves(levels[0])))
	sk.root = top.root()
	sk.trees, sk.topNodes = []*tree{top}, top.top
	sk.setup()
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if err := sk.store(0, sk.end); err != nil {
		return nil, err
	}
	return sk, nil
}

var cryptoRand = rand.Reader

func (sk *PrivateKey) topTree() *tree {
	return newTree(sk.levels[0].LMS, sk.levels[0].LMOTS, sk.id, sk.seed, 0, &sk.wiped)
}

// setup derives what follows from the stored state: the public key.
func (sk *PrivateKey) setup() {
	sk.pub = &PublicKey{levels: len(sk.levels), top: &lmsPublicKey{
		typ: sk.levels[0].LMS, otsTyp: sk.levels[0].LMOTS, id: sk.id, root: sk.root}}
	sk.childSigs = make([][]byte, len(sk.levels)-1)
}

// prepare builds the trees that sign index s, and the subtree of the
// bottom tree that holds its leaf, so that once s is claimed nothing is left
// that takes long. It returns ErrWiped if the key was wiped meanwhile, the
// work done thrown away. progress, if not nil, is told of the leaves
// computed. Called with sk.signMu held.
func (sk *PrivateKey) prepare(s uint64, progress Progress) error {
	lockassert.Held(&sk.signMu)
	var m *meter
	if progress != nil {
		m = newMeter(progress, sk.work(s))
	}
	if err := sk.buildTop(m); err != nil {
		return err
	}
	if !sk.descend(s, m) {
		return ErrWiped
	}
	path := indexPath(sk.levels, s)
	if last := len(sk.levels) - 1; !sk.trees[last].cache(path[last], m) {
		return ErrWiped
	}
	return nil
}

// buildTop builds the top tree if it is not built yet, and checks that its
// root is the one stored: a damaged seed is found before anything is signed.
// Called with sk.signMu held.
func (sk *PrivateKey) buildTop(m *meter) error {
	lockassert.Held(&sk.signMu)
	if sk.trees != nil {
		return nil
	}
	top := sk.topTree()
	if !top.build(m) {
		return ErrWiped
	}
	if subtle.ConstantTimeCompare(top.root(), sk.root) != 1 {
		return fmt.Errorf("%w: the seed does not give the key's public key", ErrMalformed)
	}
	sk.trees = []*tree{top}
	sk.mu.Lock()
	sk.topNodes = top.top
	sk.mu.Unlock()
	return nil
}

// descend makes trees[1..] the trees on the path of index s, rebuilding
// those that changed and the signatures that link them. It returns false if
// the key was wiped meanwhile; the trees and links installed so far are
// consistent, and the next call goes on from there. Called with
// sk.signMu held, after buildTop.
func (sk *PrivateKey) descend(s uint64, m *meter) bool {
	lockassert.Held(&sk.signMu)
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
		// Linking signatures sign a fixed message (the child's public key)
		// with a one-time key used for nothing else, so their randomizer is
		// derived, and rebuilding one after a restart gives the same bytes.
		var link []byte
		if child.build(m) {
			c := parent.derive(hs, path[l-1], deriveC)
			link = parent.sign(hs, path[l-1], c, child.publicKey().marshal(), m)
		}
		if link == nil {
			clear(child.seed) // abandoned: Wipe never sees this tree
			return false
		}
		for _, old := range sk.trees[l:] {
			clear(old.seed)
		}
		sk.trees = append(sk.trees[:l], child)
		sk.childSigs[l-1] = link
		for k := l; k < len(sk.childSigs); k++ {
			sk.childSigs[k] = nil
		}
	}
	return true
}

func (sk *PrivateKey) hasher() *hasher {
	p, _ := sk.levels[0].LMS.Params()
	return newHasher(p.Hash, p.M)
}

// Public returns the HSS public key.
func (sk *PrivateKey) Public() *PublicKey { return sk.pub }

// Levels returns the key's parameters, top level first.
func (sk *PrivateKey) Levels() []Level { return append([]Level(nil), sk.levels...) }

// ID returns I, the identifier of the key's top tree: what names an HSS key
// (libhal refuses to import a key whose identifier it already holds).
func (sk *PrivateKey) ID() [IDSize]byte { return sk.id }

// Sign signs msg with the next unused index. The state that marks the index
// used is persisted (see SetReserve) before the signature is made; a key with
// no index left returns ErrKeyExhausted. The signature is verified before it
// is returned, so a fault while signing cannot release a bad one.
//
// Only other signatures of the key wait while it builds its trees (see
// PrivateKey.mu): they are built before the index is claimed, so a key
// wiped meanwhile gives up its build, returns ErrWiped, and uses no index.
func (sk *PrivateKey) Sign(msg []byte) ([]byte, error) { return sk.SignProgress(msg, nil) }

// SignProgress is Sign telling progress, if not nil, of the leaves it
// computes if it has trees to build: the first signature of a loaded key
// builds them all, which takes minutes for large keys. It is not called
// when there is nothing to build.
func (sk *PrivateKey) SignProgress(msg []byte, progress Progress) ([]byte, error) {
	sk.signMu.Lock()
	defer sk.signMu.Unlock()
	if sk.wiped.Load() {
		return nil, ErrWiped
	}
	sk.mu.Lock()
	s, exhausted := sk.next, sk.next >= sk.end
	sk.mu.Unlock()
	if exhausted {
		return nil, ErrKeyExhausted
	}
	// next changes only under signMu too, which this holds: the index
	// claimed below is s.
	if err := sk.prepare(s, progress); err != nil {
		return nil, err
	}
	sk.mu.Lock()
	claimed, err := sk.claim()
	sk.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if claimed != s {
		// Cannot happen while next changes only under signMu; were it to,
		// signing with trees prepared for s would use s a second time.
		if err := sk.prepare(claimed, nil); err != nil {
			return nil, err
		}
		s = claimed
	}
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
	// The leaf's subtree is cached (prepare): this does not build.
	sig = append(sig, bottom.sign(sk.hasher(), path[last], c, msg, nil)...)
	if err := sk.pub.Verify(msg, sig); err != nil {
		return nil, fmt.Errorf("hashsig: signature %d failed its own check: %w", s, err)
	}
	return sig, nil
}

// privateKeyVersion starts the serialized form of a private key.
const privateKeyVersion = 1

// MarshalBinary returns the key's state: parameters, identifier, seed, root
// and range, and a checksum. It is secret: it can sign.
func (sk *PrivateKey) MarshalBinary() ([]byte, error) {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	return sk.marshal(max(sk.next, sk.persisted), sk.end), nil
}

// marshal encodes: u32 version || u32 L || L × (u32 lms, u32 lmots) || I ||
// SEED || T[1] || u64 next || u64 end || SHA-256 of all that before.
func (sk *PrivateKey) marshal(next, end uint64) []byte {
	// Sized exactly: an append that outgrew b would leave a copy of the
	// seed behind in the old array, where nothing clears it.
	b := binary.BigEndian.AppendUint32(make([]byte, 0, stateSize(len(sk.levels), len(sk.seed))), privateKeyVersion)
	b = sk.appendLevels(b)
	b = append(b, sk.id[:]...)
	b = append(b, sk.seed...)
	b = append(b, sk.root...)
	b = binary.BigEndian.AppendUint64(b, next)
	b = binary.BigEndian.AppendUint64(b, end)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// stateSize is the length of marshal's encoding for l levels of a top
// level with hashes of m bytes (the seed's and the root's length).
func stateSize(l, m int) int { return 8 + 8*l + IDSize + 2*m + 16 + sha256.Size }

// ParsePrivateKey loads a key from its MarshalBinary form. It checks the
// checksum; the trees are built, and the seed checked against the stored
// root, when the key first signs. persist may be nil.
func ParsePrivateKey(b []byte, persist PersistFunc) (*PrivateKey, error) {
	sk, err := parsePrivateKeyState(b)
	if err != nil {
		return nil, err
	}
	sk.persist = persist
	return sk, nil
}

func parsePrivateKeyState(b []byte) (*PrivateKey, error) {
	bad := func(why string) error { return fmt.Errorf("%w: private key: %s", ErrMalformed, why) }
	if len(b) < 8+sha256.Size || binary.BigEndian.Uint32(b) != privateKeyVersion {
		return nil, bad("unknown version or truncated")
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if want := sha256.Sum256(body); subtle.ConstantTimeCompare(sum, want[:]) != 1 {
		return nil, bad("checksum mismatch: the key is damaged")
	}
	l := binary.BigEndian.Uint32(body[4:])
	if l < 1 || l > MaxLevels {
		return nil, bad(fmt.Sprintf("%d levels", l))
	}
	body = body[8:]
	if len(body) < int(l)*8 {
		return nil, bad("truncated")
	}
	sk := &PrivateKey{reserve: 1}
	for i := range int(l) {
		sk.levels = append(sk.levels, Level{LMSType(binary.BigEndian.Uint32(body[8*i:])), LMOTSType(binary.BigEndian.Uint32(body[8*i+4:]))})
	}
	if err := CheckLevels(sk.levels); err != nil {
		return nil, bad(err.Error())
	}
	body = body[8*l:]
	p, _ := sk.levels[0].LMS.Params()
	if len(body) != IDSize+2*p.M+16 {
		return nil, bad(fmt.Sprintf("%d bytes of identifier, seed, root and range, want %d", len(body), IDSize+2*p.M+16))
	}
	copy(sk.id[:], body)
	sk.seed = bytes.Clone(body[IDSize : IDSize+p.M])
	sk.root = bytes.Clone(body[IDSize+p.M : IDSize+2*p.M])
	sk.next = binary.BigEndian.Uint64(body[IDSize+2*p.M:])
	sk.end = binary.BigEndian.Uint64(body[IDSize+2*p.M+8:])
	if sk.next > sk.end || sk.end > capacity(sk.levels) {
		return nil, bad(fmt.Sprintf("range [%d, %d) outside the key's %d signatures", sk.next, sk.end, capacity(sk.levels)))
	}
	sk.persisted = sk.next
	sk.setup()
	return sk, nil
}

// cloneRange returns a key with the same secret (and top tree's nodes, if
// built) but the range [next, end) and nothing persisted. Called with sk.mu
// held.
func (sk *PrivateKey) cloneRange(next, end uint64) *PrivateKey {
	lockassert.Held(&sk.mu)
	c := &PrivateKey{
		levels: sk.levels, id: sk.id, seed: bytes.Clone(sk.seed), root: sk.root,
		next: next, end: end, persisted: next, reserve: 1, topNodes: sk.topNodes,
	}
	c.setup()
	if c.topNodes != nil {
		top := c.topTree() // its own seed: wiping sk must not wipe c
		top.top = c.topNodes
		c.trees = []*tree{top}
	}
	return c
}

// Wipe clears the key's secrets from memory: its seed and the seeds of the
// trees built from it. The key cannot sign or split afterwards. A signature
// whose index is claimed finishes first; one still building its trees gives
// up within a leaf's time, its trees thrown away, and returns ErrWiped; so
// Wipe returns promptly. The HSM wipes the keys it deletes or forgets.
func (sk *PrivateKey) Wipe() {
	sk.wiped.Store(true)
	sk.signMu.Lock()
	defer sk.signMu.Unlock()
	sk.mu.Lock()
	defer sk.mu.Unlock()
	clear(sk.seed)
	for _, t := range sk.trees {
		clear(t.seed)
	}
	sk.trees = nil
	clear(sk.childSigs)
	sk.cached, sk.cachedGen = nil, 0
	sk.next = sk.end
}
