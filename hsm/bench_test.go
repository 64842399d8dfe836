package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// benchmarkStore measures storing one key in the flash keystore: sealing its
// record under the master key and a durable keystore write.
func benchmarkStore(b *testing.B, priv crypto.Signer) {
	h, _ := newTestHSM(b)
	s := login(b, h)
	for b.Loop() {
		h.mu.Lock()
		id, err := h.newUUID()
		if err != nil {
			b.Fatal(err)
		}
		r, k, err := recordFor(id, priv, nil, signFlags, "")
		if err == nil {
			err = h.store(s, []*keyRecord{r}, []*key{k}, nil)
		}
		h.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		// A store keeps a block free, and needs one for its commit block.
		if h.ks.Free() < 4 {
			for _, id := range h.ks.List(kindKey) {
				h.ks.Delete(id)
			}
		}
		b.StartTimer()
	}
}

// benchmarkLoad measures loading a key from the keystore after a restart
// (nothing cached): the flash read, unsealing and parsing the key.
func benchmarkLoad(b *testing.B, priv crypto.Signer) {
	h, _ := newTestHSM(b)
	s := login(b, h)
	h.mu.Lock()
	id, _ := h.newUUID()
	r, k, err := recordFor(id, priv, nil, signFlags, "")
	if err == nil {
		err = h.store(s, []*keyRecord{r}, []*key{k}, nil)
	}
	h.mu.Unlock()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		h.mu.Lock()
		delete(h.cache, id)
		_, err := h.lookup(s, id)
		h.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
	}
}

func p256Key(b *testing.B) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func rsa2048Key(b *testing.B) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func BenchmarkKeyStoreP256(b *testing.B)    { benchmarkStore(b, p256Key(b)) }
func BenchmarkKeyStoreRSA2048(b *testing.B) { benchmarkStore(b, rsa2048Key(b)) }
func BenchmarkKeyLoadP256(b *testing.B)     { benchmarkLoad(b, p256Key(b)) }
func BenchmarkKeyLoadRSA2048(b *testing.B)  { benchmarkLoad(b, rsa2048Key(b)) }

// openBenchHSM makes an HSM holding n EC P-256 key records, written directly
// (sealed as store seals them, a transaction per 500), and returns its
// directory, closed. With legacyKeygen, it also holds an HSS key named
// ff...ff, last in the keystore's order, with a history record an older
// version wrote at its keygen: Open then reads every key record to learn
// whether a key holds that identifier (see reclaimKeygenHistory).
func openBenchHSM(b *testing.B, n int, legacyKeygen bool) string {
	b.Helper()
	dir := b.TempDir() + "/hsm"
	h, err := Create(dir, InitConfig{WheelPIN: wheelPIN, SOPIN: soPIN, UserPIN: userPIN, Blocks: n + 64}, testOptions)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	priv := p256Key(b)
	var batch []keystore.Record
	flush := func() {
		if err := h.ks.PutAll(batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	for range n {
		id, err := hsmapi.NewUUID(h.board.TRNG)
		if err != nil {
			b.Fatal(err)
		}
		batch = append(batch, sealedRecord(b, h, id, priv))
		if len(batch) == 500 {
			flush()
		}
	}
	if legacyKeygen {
		hss, err := hashsig.GenerateKey(nil, []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		var last hsmapi.UUID
		for i := range last {
			last[i] = 0xff
		}
		batch = append(batch, sealedRecord(b, h, last, hss))
		hid := hss.ID()
		legacy := binary.BigEndian.AppendUint32(append([]byte(nil), hid[:]...), 1)
		legacy = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(legacy, 0), 32)
		batch = append(batch, keystore.Record{ID: legacyHistoryID(hid), Kind: kindHashsigLegacy, Data: legacy})
	}
	if len(batch) > 0 {
		flush()
	}
	return dir
}

func sealedRecord(b *testing.B, h *HSM, id hsmapi.UUID, priv any) keystore.Record {
	r, _, err := recordFor(id, priv, nil, signFlags, "")
	if err != nil {
		b.Fatal(err)
	}
	defer r.wipe()
	data, err := h.seal(r)
	if err != nil {
		b.Fatal(err)
	}
	return keystore.Record{ID: keystore.ID(id), Kind: kindKey, Data: data}
}

func benchmarkOpen(b *testing.B, legacyKeygen bool) {
	dir := openBenchHSM(b, 10000, legacyKeygen)
	for b.Loop() {
		h, err := Open(dir, testOptions)
		if err != nil {
			b.Fatal(err)
		}
		h.Close()
	}
}

// BenchmarkOpen10000Keys: power-on of an HSM with 10,000 keys.
func BenchmarkOpen10000Keys(b *testing.B) { benchmarkOpen(b, false) }

// BenchmarkOpen10000KeysLegacyKeygenHistory: the same with a legacy keygen
// history record whose key exists, Open's worst case.
func BenchmarkOpen10000KeysLegacyKeygenHistory(b *testing.B) { benchmarkOpen(b, true) }

// benchHSSKeys holds, per key shape, an HSS key's state and tree cache,
// made once per benchmark process: keygen of large keys takes minutes.
var benchHSSKeys sync.Map // string -> *benchHSSKey

type benchHSSKey struct {
	once         sync.Once
	state, cache []byte
	err          error
}

// benchHSMWithHSSKey makes an HSM in a new directory holding one HSS key
// of the given levels, with its cache, and returns the directory, closed,
// and the key.
func benchHSMWithHSSKey(b *testing.B, levels []hashsig.Level) (string, hsmapi.KeyInfo) {
	b.Helper()
	v, _ := benchHSSKeys.LoadOrStore(fmt.Sprint(levels), new(benchHSSKey))
	bk := v.(*benchHSSKey)
	bk.once.Do(func() {
		sk, err := hashsig.GenerateKey(nil, levels, nil)
		if err != nil {
			bk.err = err
			return
		}
		defer sk.Wipe()
		// Keygen builds the top tree only; the first signature the lower
		// trees, and the cache holds them from then on.
		if _, bk.err = sk.Sign([]byte("first")); bk.err != nil {
			return
		}
		bk.state, bk.err = sk.MarshalBinary()
		bk.cache, _ = sk.Cache()
	})
	if bk.err != nil {
		b.Fatal(bk.err)
	}
	sk, err := hashsig.ParsePrivateKey(bk.state, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := sk.LoadCache(bk.cache); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir() + "/hsm"
	h, err := Create(dir, InitConfig{WheelPIN: wheelPIN, SOPIN: soPIN, UserPIN: userPIN, Blocks: 256}, testOptions)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	k, err := h.storeNew(nil, sk, signFlags, "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	h.storeTreeCache(k)
	if len(h.ks.List(kindHSSCache)) == 0 {
		b.Fatal("no tree cache stored")
	}
	return dir, k.info
}

// benchmarkFirstSignAfterOpen times what an operator's `sign` with an HSS
// key costs after the HSM is opened: Open, then the key's first signature
// (the login, outside the timer). nocache: the cache deleted first, as
// before caches were kept (the trees rebuilt); cache: read from flash.
func benchmarkFirstSignAfterOpen(b *testing.B, levels []hashsig.Level) {
	base, k := benchHSMWithHSSKey(b, levels)
	msg := []byte("first signature after open")
	for _, cached := range []bool{false, true} {
		name := "nocache"
		if cached {
			name = "cache"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				dir := b.TempDir()
				if err := copyDir(base, dir); err != nil {
					b.Fatal(err)
				}
				if !cached {
					dropCaches(b, dir)
				}
				b.StartTimer()
				h, err := Open(dir, testOptions)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s := h.NewSession()
				if err := s.Login(ctx, hsmapi.UserNormal, userPIN); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				sig, err := s.Sign(ctx, k.UUID, msg, crypto.Hash(0))
				b.StopTimer()
				if err == nil {
					err = hsmapi.VerifySignature(k.PublicKey, msg, sig, crypto.Hash(0))
				}
				if err != nil {
					b.Fatal(err)
				}
				h.Close()
			}
		})
	}
}

// dropCaches deletes every tree cache of the HSM in dir.
func dropCaches(b *testing.B, dir string) {
	b.Helper()
	h, err := Open(dir, testOptions)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for _, id := range h.ks.List(kindHSSCache) {
		if err := h.ks.Store.Delete(id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFirstSignAfterOpen: an h10/h10 w8 key.
func BenchmarkFirstSignAfterOpen(b *testing.B) {
	benchmarkFirstSignAfterOpen(b, []hashsig.Level{
		{LMS: hashsig.LMS_SHA256_M32_H10, LMOTS: hashsig.LMOTS_SHA256_N32_W8},
		{LMS: hashsig.LMS_SHA256_M32_H10, LMOTS: hashsig.LMOTS_SHA256_N32_W8},
	})
}

// BenchmarkFirstSignAfterOpenH20: one level of height 20, w4 (w8's keygen
// takes ten minutes here; the cache is the same size, and its load as
// fast): keygen takes about a minute, once per process, and each nocache
// iteration as long.
func BenchmarkFirstSignAfterOpenH20(b *testing.B) {
	benchmarkFirstSignAfterOpen(b, []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H20, LMOTS: hashsig.LMOTS_SHA256_N32_W4}})
}
