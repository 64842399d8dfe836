package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"
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
		if h.ks.Free() == 0 {
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
