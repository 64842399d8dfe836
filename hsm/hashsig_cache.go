package hsm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// HSS tree caches: what the first signature of an HSS key loaded from flash
// would rebuild (about 20 s for one level of height 20), kept in the
// keystore beside the key (hashsig.PrivateKey.Cache), so that the first
// signature after the HSM is opened builds nothing.
//
// A cache is never the key's state: the key's record is, persisted before
// each signature is released, as before. A cache says which trees the key
// has, not which indexes it used; hashsig checks a cache against the key
// (an HMAC keyed from the key's seed, and every tree against the key's
// root) and refuses a damaged or foreign one (hashsig.ErrBadCache), which
// the HSM then ignores: the trees are rebuilt, nothing else changes.
//
// In flash a cache is split into parts of at most partCapacity bytes, each
// a record of kind kindHSSCache under cacheID(key UUID, part), sealed with
// AES-256-GCM under a key derived from the master key (HKDF-SHA-256, a
// label of its own, so it is not the key that wraps key records), a random
// nonce, and as additional data the key's UUID, its HSS identifier, the
// part's number, the number of parts and the cache's generation
// (hashsig's digest of which trees it holds): a part moved to another key
// or another place, or a part of another generation, does not open, or
// opens for what it is and is refused. All parts of one generation are
// written in one keystore transaction (Commit), so a power cut leaves the
// old cache or the new one; parts left over from a larger cache are
// deleted afterwards, and, should a power cut come first, ignored (their
// count is not the cache's).
//
// When: after keygen of a token HSS key, and after a token HSS key's
// signature whose trees changed the generation since the HSM last stored
// it (at most once per 1,024 signatures), with the signature's state
// already persisted and returned to no one yet; a cache that cannot be
// stored (flash short of room, master key wiped, a write failing) is
// skipped, and never fails the signature or the keygen. A key loaded from
// flash reads its cache just before its first signature, not at lookup:
// listing keys reads no cache.
//
// Flash: caches are optional and must never keep a key, a PIN, a key's
// state or the HSS history from being stored. So a cache is written only
// when cacheReserve blocks stay free after it, a key whose cache could
// exceed maxCacheParts blocks is not cached (one level of height 25 and
// up: 1 MiB and more), nor one whose first signature builds fewer than
// minCacheLeaves leaves (it rebuilds in milliseconds), and a write of
// anything else that finds the flash full evicts caches and tries again
// (store.makeRoom).
//
// Life: a key's cache is deleted before the key (remove, deleteAllKeys),
// so a power cut in between leaves a key without a cache, never a cache
// without a key; a key stored outside (StoreKeys: disabled, it signs no
// more) drops its cache; a rotation of the master key seals the parts
// again under the new key, and those that open under no key are deleted;
// RetireMasterKey counts key records only, so caches never hold it back.
// Volatile keys keep none.

// kindHSSCache is a part of an HSS key's tree cache.
const kindHSSCache keystore.Kind = 8

// cachePrefix starts the IDs of tree cache parts, as historyPrefix starts
// those of the HSS history: a namespace no key's UUID has (isReserved).
var cachePrefix = [6]byte{'H', 'S', 'S', 'T', 'R', 'C'}

// isCacheID reports whether id is in the tree cache parts' namespace.
func isCacheID(id hsmapi.UUID) bool {
	return [6]byte(id[:6]) == cachePrefix && id[6]>>4 == 0
}

// cacheID names part n of the cache of the key with UUID u: the prefix, a
// zero byte (the version field), 64 bits of a hash of u, and n. Two keys
// whose hashes meet would replace each other's cache, which costs time
// only: the parts name the UUID they are for (partAD).
func cacheID(u hsmapi.UUID, n int) keystore.ID {
	sum := sha256.Sum256(append([]byte("cryptech-backup HSS tree cache\x00"), u[:]...))
	var id keystore.ID
	copy(id[:], cachePrefix[:])
	copy(id[7:15], sum[:8])
	id[15] = byte(n)
	return id
}

const (
	cachePartVersion = 1
	// partHead: u8 version || u8 part || u8 parts || u64 generation ||
	// key UUID || HSS identifier, then the nonce.
	partHead     = 1 + 1 + 1 + 8 + 16 + hashsig.IDSize
	partOverhead = partHead + 12 + 16 // nonce, GCM tag
	// partCapacity is how much of a cache one part holds.
	partCapacity = keystore.MaxDataSize - partOverhead
	// maxCacheParts caps a key's cache: one level of height 20 needs 9
	// parts, two 13 or 14, three 19; one of height 25 would need 135.
	maxCacheParts = 40
	// minCacheLeaves: a key whose first signature builds fewer leaves
	// (every tree on its path, top to bottom) is not cached; two levels
	// of height 5 build 64, in milliseconds.
	minCacheLeaves = 1024
)

// cacheSealInfo labels the key that seals cache parts.
const cacheSealInfo = "cryptech-backup HSS tree cache seal v1"

// cacheReserve is how many blocks a cache store leaves free: 1/16 of the
// flash, at least 32. Below that the flash is for keys, their state and
// the HSS history: an import of a few dozen keys, the history packs it
// rewrites, and every HSS key's state update find room without evicting
// anything, and a cache never takes the last blocks.
func cacheReserve(blocks int) int { return max(32, blocks/16) }

// treeCache is what the HSM knows of a token HSS key's cache; shared by
// the key's copies (SetAttributes).
type treeCache struct {
	// fromFlash: the key was loaded from flash, and may have a cache there
	// to read before its first signature (load).
	fromFlash bool
	load      sync.Once
	// gen is the generation of the cache in flash (0: none known), and
	// evictions the store's count of evictions when it was written or
	// read: once that changes, the cache may be gone. Guarded by HSM.mu.
	gen, evictions uint64
}

// cacheable reports whether a key of these levels gets a tree cache.
func cacheable(levels []hashsig.Level) bool {
	leaves := 0
	for _, l := range levels {
		p, _ := l.LMS.Params()
		leaves += 1 << p.H
	}
	size := hashsig.MaxCacheSize(levels)
	return leaves >= minCacheLeaves && size > 0 && size <= maxCacheParts*partCapacity
}

// attachTreeCache gives a token HSS key that qualifies its treeCache.
// fromFlash: it was read from flash (lookup), not generated, imported or
// restored here. Called with h.mu held, on a key no other goroutine has
// yet.
func (h *HSM) attachTreeCache(k *key, fromFlash bool) {
	lockassert.Held(&h.mu)
	if k.hss == nil || k.info.Flags&hsmapi.FlagToken == 0 || !cacheable(k.hss.Levels()) {
		return
	}
	k.tc = &treeCache{fromFlash: fromFlash}
}

// cacheAEAD is the AEAD that seals cache parts under master key mk.
func cacheAEAD(mk []byte) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, mk, nil, cacheSealInfo, 32)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// partHeader is the clear head of a sealed part, all of it additional
// data.
type partHeader struct {
	part, parts int
	gen         uint64
	uuid        hsmapi.UUID
	hssID       [hashsig.IDSize]byte
}

func (p partHeader) marshal() []byte {
	b := []byte{cachePartVersion, byte(p.part), byte(p.parts)}
	b = binary.BigEndian.AppendUint64(b, p.gen)
	b = append(b, p.uuid[:]...)
	return append(b, p.hssID[:]...)
}

var errBadCachePart = errors.New("malformed HSS tree cache part")

func parsePartHeader(data []byte) (partHeader, error) {
	if len(data) < partOverhead || data[0] != cachePartVersion {
		return partHeader{}, errBadCachePart
	}
	p := partHeader{part: int(data[1]), parts: int(data[2]), gen: binary.BigEndian.Uint64(data[3:])}
	copy(p.uuid[:], data[11:27])
	copy(p.hssID[:], data[27:partHead])
	if p.parts < 1 || p.parts > maxCacheParts || p.part >= p.parts {
		return partHeader{}, errBadCachePart
	}
	return p, nil
}

// sealPart seals one part: head || nonce || AES-GCM(body), the head as
// additional data.
func (h *HSM) sealPart(aead cipher.AEAD, head partHeader, body []byte) ([]byte, error) {
	ad := head.marshal()
	out := make([]byte, partHead+aead.NonceSize(), partHead+aead.NonceSize()+len(body)+aead.Overhead())
	copy(out, ad)
	nonce := out[partHead:]
	if _, err := h.board.TRNG.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(out, nonce, body, ad), nil
}

// openPart opens a sealed part under any of the AEADs given.
func openPart(aeads []cipher.AEAD, data []byte) ([]byte, error) {
	ad, rest := data[:partHead], data[partHead:]
	for _, aead := range aeads {
		nonce, sealed := rest[:aead.NonceSize()], rest[aead.NonceSize():]
		if body, err := aead.Open(nil, nonce, sealed, ad); err == nil {
			return body, nil
		}
	}
	return nil, errBadCachePart
}

// cacheAEADs returns the AEADs of the current master key and of each old
// key in the ring, current first. Called with h.mu held.
func (h *HSM) cacheAEADs() ([]cipher.AEAD, error) {
	lockassert.Held(&h.mu)
	mk, err := h.masterKey()
	if err != nil {
		return nil, err
	}
	keys := append([][]byte{mk}, h.board.MKM.OldKeys()...)
	defer wipeKeys(keys)
	var out []cipher.AEAD
	for _, k := range keys {
		aead, err := cacheAEAD(k)
		if err != nil {
			return nil, err
		}
		out = append(out, aead)
	}
	return out, nil
}

// readTreeCache reads and opens the cache of k from flash: nil if there is
// none whole (a part missing, damaged, of another key, place or
// generation, or sealed under no key the HSM holds). Called with h.mu
// held.
func (h *HSM) readTreeCache(k *key) ([]byte, uint64) {
	lockassert.Held(&h.mu)
	id := k.info.UUID
	aeads, err := h.cacheAEADs()
	if err != nil {
		return nil, 0
	}
	var cache []byte
	var first partHeader
	for n := 0; n == 0 || n < first.parts; n++ {
		rec, err := h.ks.Get(cacheID(id, n))
		if err != nil || rec.Kind != kindHSSCache {
			return nil, 0
		}
		head, err := parsePartHeader(rec.Data)
		if n == 0 {
			first = head
		}
		want := partHeader{part: n, parts: first.parts, gen: first.gen, uuid: id, hssID: k.hss.ID()}
		if err != nil || head != want {
			return nil, 0
		}
		body, err := openPart(aeads, rec.Data)
		if err != nil {
			return nil, 0
		}
		cache = append(cache, body...)
	}
	return cache, first.gen
}

// loadTreeCache installs k's cache from flash before its first signature,
// once. A cache missing or refused is ignored: the signature builds the
// trees, and stores a cache again. Never called with h.mu held; called
// with the key in use (key.use).
func (h *HSM) loadTreeCache(k *key) {
	tc := k.tc
	if tc == nil || !tc.fromFlash {
		return
	}
	tc.load.Do(func() {
		h.mu.Lock()
		cache, gen := h.readTreeCache(k)
		evictions := h.ks.evictions.Load()
		h.mu.Unlock()
		if cache == nil || k.hss.LoadCache(cache) != nil {
			return
		}
		h.mu.Lock()
		tc.gen, tc.evictions = gen, evictions
		h.mu.Unlock()
	})
}

// storeTreeCache stores the cache of k unless the one in flash is of its
// current generation already: after a signature it costs a generation
// number, and the cache is encoded and copied only when it moved on. It is
// skipped, with nothing reported, when the key was deleted or replaced
// meanwhile, when the flash has not room to spare (cacheReserve), and on
// any error: a cache is never needed. Never called with h.mu held (Cache
// takes the key's signing lock, which comes before h.mu).
func (h *HSM) storeTreeCache(k *key) {
	if k.tc == nil {
		return
	}
	now := k.hss.CacheGeneration()
	h.mu.Lock()
	stale := h.treeCacheStale(k, now)
	h.mu.Unlock()
	if !stale {
		return
	}
	cache, gen := k.hss.Cache()
	if len(cache) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.treeCacheStale(k, gen) {
		return // stored meanwhile by another signature
	}
	evictions := h.ks.evictions.Load()
	parts := (len(cache) + partCapacity - 1) / partCapacity
	if parts > maxCacheParts || h.ks.Free() < cacheReserve(h.board.Flash.Blocks())+parts+1 {
		return
	}
	recs, err := h.sealTreeCache(k, cache, gen, parts)
	if err != nil {
		return
	}
	// Straight to the keystore: a cache store never evicts another.
	if err := h.ks.Store.Commit(nil, recs); err != nil {
		return
	}
	k.tc.gen, k.tc.evictions = gen, evictions
	// Parts of an earlier, larger cache: ignored should this stop early.
	for n := parts; n < maxCacheParts; n++ {
		if h.ks.Store.Delete(cacheID(k.info.UUID, n)) != nil {
			break
		}
	}
}

// treeCacheStale reports whether k, still the key of its UUID, has a
// cache in flash older than generation gen, or one an eviction may have
// removed since. Called with h.mu held.
func (h *HSM) treeCacheStale(k *key, gen uint64) bool {
	lockassert.Held(&h.mu)
	if cur := h.cache[k.info.UUID]; cur == nil || cur.hss != k.hss {
		return false // deleted (or forgotten, or replaced by a restore)
	}
	return gen != 0 && (k.tc.gen != gen || k.tc.evictions != h.ks.evictions.Load())
}

// sealTreeCache seals a cache as its parts' records. Called with h.mu
// held.
func (h *HSM) sealTreeCache(k *key, cache []byte, gen uint64, parts int) ([]keystore.Record, error) {
	lockassert.Held(&h.mu)
	mk, err := h.masterKey()
	if err != nil {
		return nil, err
	}
	aead, err := cacheAEAD(mk)
	clear(mk)
	if err != nil {
		return nil, err
	}
	recs := make([]keystore.Record, parts)
	for n := range parts {
		body := cache[n*partCapacity : min(len(cache), (n+1)*partCapacity)]
		head := partHeader{part: n, parts: parts, gen: gen, uuid: k.info.UUID, hssID: k.hss.ID()}
		data, err := h.sealPart(aead, head, body)
		if err != nil {
			return nil, err
		}
		recs[n] = keystore.Record{ID: cacheID(k.info.UUID, n), Kind: kindHSSCache, Data: data}
	}
	return recs, nil
}

// dropTreeCache deletes the cache parts of the key with UUID u. Called
// with h.mu held.
func (h *HSM) dropTreeCache(u hsmapi.UUID) error {
	lockassert.Held(&h.mu)
	prefix := cacheID(u, 0)
	for _, id := range h.ks.List(kindHSSCache) {
		if !bytes.Equal(id[:15], prefix[:15]) {
			continue
		}
		if err := h.ks.Delete(id); err != nil {
			return fmt.Errorf("delete the tree cache of key %s: %w", u, err)
		}
	}
	return nil
}

// resealTreeCaches seals again under the master key the cache parts that
// do not open under it, and deletes those that open under no key the HSM
// holds (a cache is never needed). Called with h.mu held, by a rotation.
func (h *HSM) resealTreeCaches() error {
	lockassert.Held(&h.mu)
	aeads, err := h.cacheAEADs()
	if err != nil {
		return err
	}
	cur := aeads[0]
	for _, id := range h.ks.List(kindHSSCache) {
		rec, err := h.ks.Get(id)
		if err != nil {
			continue // damaged: the keystore keeps it as it is
		}
		head, err := parsePartHeader(rec.Data)
		var body []byte
		if err == nil {
			if body, err = openPart([]cipher.AEAD{cur}, rec.Data); err == nil {
				continue
			}
			body, err = openPart(aeads, rec.Data)
		}
		if err != nil {
			if err := h.ks.Delete(id); err != nil {
				return err
			}
			continue
		}
		if rec.Data, err = h.sealPart(cur, head, body); err != nil {
			return err
		}
		if err := h.ks.Put(rec); err != nil {
			return err
		}
	}
	return nil
}
