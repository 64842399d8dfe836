package hashsig

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/internal/testkeys"
)

// prompt bounds what must not wait for a tree build: far under the build of
// the slow key's tree (seconds; minutes under the race detector), and far
// over what it takes (microseconds, even under the race detector on a
// loaded 2-core machine, though a busy scheduler can add a fraction of a
// second). That the reads ended while the build went on is checked too.
const prompt = time.Second

// slowKey loads the h15/w8 test key, trees unbuilt, persisting into st.
func slowKey(t *testing.T, st *store) *PrivateKey {
	t.Helper()
	state, _ := testkeys.HSSH15W8()
	sk, err := ParsePrivateKey(state, st.persist)
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

// within runs f and fails the test if it took longer than d. It returns
// how long f took.
func within(t *testing.T, d time.Duration, what string, f func()) time.Duration {
	t.Helper()
	start := time.Now()
	f()
	took := time.Since(start)
	if took > d {
		t.Errorf("%s took %v during a tree build, want under %v", what, took.Round(time.Millisecond), d)
	}
	return took
}

// While a freshly loaded key makes its first signature, building its
// 32,768-leaf tree, reading and splitting its state do not wait for the
// build; Wipe ends the build promptly, the signature is abandoned without
// using an index (nothing was persisted), and the key signs no more.
func TestTreeBuildBlocksOnlySignatures(t *testing.T) {
	st := &store{}
	sk := slowKey(t, st)
	signed := make(chan error, 1)
	go func() {
		_, err := sk.Sign([]byte("first"))
		signed <- err
	}()
	time.Sleep(100 * time.Millisecond) // the build is under way
	want := uint64(1 << 15)
	var slowest time.Duration
	for i := range 5 {
		slowest = max(slowest, within(t, prompt, "Remaining", func() {
			if n := sk.Remaining(); n != want {
				t.Errorf("Remaining() = %d, want %d", n, want)
			}
		}))
		slowest = max(slowest, within(t, prompt, "Range", func() { sk.Range() }))
		slowest = max(slowest, within(t, prompt, "MarshalBinary", func() { sk.MarshalBinary() }))
		if i == 0 {
			slowest = max(slowest, within(t, prompt, "Split", func() {
				part, err := sk.Split()
				if err != nil {
					t.Fatal(err)
				}
				part.Wipe()
			}))
			want /= 2
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case err := <-signed:
		t.Fatalf("the first signature ended (%v) before the checks did: the test proves nothing", err)
	default:
	}
	t.Logf("the slowest state read or split during the build took %v", slowest)
	seed := sk.seed
	t.Logf("Wipe during the build took %v", within(t, time.Second, "Wipe", sk.Wipe))
	select {
	case err := <-signed:
		if !errors.Is(err, ErrWiped) {
			t.Errorf("the signature building its tree when the key was wiped: %v, want ErrWiped", err)
		}
	case <-time.After(time.Second):
		t.Fatal("the signature was still building a second after Wipe returned")
	}
	// Only the split persisted: it shrank the range, and no index was used.
	if len(st.states) != 1 {
		t.Fatalf("%d states persisted, want the split's alone", len(st.states))
	}
	if saved, _ := parsePrivateKeyState(st.last()); saved.next != 0 {
		t.Errorf("the abandoned signature persisted next = %d", saved.next)
	}
	if !bytes.Equal(seed, make([]byte, len(seed))) {
		t.Error("the seed the abandoned build used is not cleared")
	}
	if _, err := sk.Sign([]byte("after")); !errors.Is(err, ErrWiped) {
		t.Errorf("sign after Wipe: %v", err)
	}
	if _, err := sk.Split(); !errors.Is(err, ErrWiped) {
		t.Errorf("split after Wipe: %v", err)
	}
}

// Many goroutines make the first signatures of a freshly loaded key at once
// (the first builds its trees, the others wait for it) while another splits
// it: every signature verifies, no index is used twice or given to a part,
// and each index used was persisted before the signature was released.
func TestConcurrentFirstSignatures(t *testing.T) {
	levels := []Level{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W8}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W8}}
	gen, err := GenerateKey(nil, levels, nil)
	if err != nil {
		t.Fatal(err)
	}
	state, _ := gen.MarshalBinary()
	gen.Wipe()
	main := &persisted{}
	sk, err := ParsePrivateKey(state, main.persist)
	if err != nil {
		t.Fatal(err)
	}
	sk.SetReserve(3)
	pub := sk.Public()
	var (
		mu   sync.Mutex
		used = map[uint64]string{}
	)
	record := func(sig []byte, msg string, by *persisted) {
		t.Helper()
		if err := pub.Verify([]byte(msg), sig); err != nil {
			t.Errorf("%s: %v", msg, err)
			return
		}
		s := sigIndex(t, levels, sig)
		if stored := by.stored(); s >= stored {
			t.Errorf("%s used index %d, not yet persisted (stored next = %d)", msg, s, stored)
		}
		mu.Lock()
		defer mu.Unlock()
		if prev, dup := used[s]; dup {
			t.Errorf("index %d used by %s and by %s", s, prev, msg)
		}
		used[s] = msg
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5 {
				msg := fmt.Sprintf("goroutine %d signature %d", g, i)
				sig, err := sk.Sign([]byte(msg))
				if err != nil {
					t.Errorf("%s: %v", msg, err)
					return
				}
				record(sig, msg, main)
			}
		})
	}
	var parts []*PrivateKey
	wg.Go(func() {
		for range 3 {
			p, err := sk.Split()
			if err != nil {
				t.Errorf("split: %v", err)
				return
			}
			parts = append(parts, p)
		}
	})
	wg.Wait()
	if len(used) != 40 {
		t.Fatalf("%d signatures made, want 40", len(used))
	}
	for i, p := range parts {
		next, end := p.Range()
		for s, msg := range used {
			if next <= s && s < end {
				t.Errorf("part %d [%d, %d) holds index %d, used by %s", i, next, end, s, msg)
			}
		}
		by := &persisted{}
		p.SetPersist(by.persist)
		msg := fmt.Sprintf("part %d", i)
		sig, err := p.Sign([]byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		record(sig, msg, by)
	}
}

// persisted is a PersistFunc's store that keeps the highest next stored.
type persisted struct {
	mu   sync.Mutex
	next uint64
}

func (p *persisted) persist(b []byte) error {
	saved, err := parsePrivateKeyState(b)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next = max(p.next, saved.next)
	return nil
}

func (p *persisted) stored() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next
}
