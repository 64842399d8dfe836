package hashsig

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// sigIndex is SignatureIndex, failing the test on error.
func sigIndex(t testing.TB, _ []Level, sig []byte) uint64 {
	t.Helper()
	s, err := SignatureIndex(sig)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var small = []Level{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W8}}

func TestSignVerifyEveryHashFamily(t *testing.T) {
	for _, levels := range [][]Level{
		small,
		{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W4}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W2}},
		{{LMS_SHA256_M24_H5, LMOTS_SHA256_N24_W8}, {LMS_SHA256_M24_H5, LMOTS_SHA256_N24_W8}},
		{{LMS_SHAKE_M32_H5, LMOTS_SHAKE_N32_W8}},
		{{LMS_SHAKE_M24_H5, LMOTS_SHAKE_N24_W8}, {LMS_SHAKE_M24_H5, LMOTS_SHAKE_N24_W1}},
		{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W8}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W8}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W8}},
	} {
		t.Run(fmt.Sprint(levels), func(t *testing.T) {
			sk, err := GenerateKey(nil, levels, nil)
			if err != nil {
				t.Fatal(err)
			}
			pk, err := ParsePublicKey(sk.Public().Bytes())
			if err != nil {
				t.Fatal(err)
			}
			size, err := SignatureSize(levels)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[uint64]bool{}
			// Enough signatures to cross from the first lower tree to the next.
			n := int(min(40, capacity(levels)))
			for i := range n {
				msg := []byte(fmt.Sprintf("message %d", i))
				sig, err := sk.Sign(msg)
				if err != nil {
					t.Fatal(err)
				}
				if err := pk.Verify(msg, sig); err != nil {
					t.Fatalf("signature %d: %v", i, err)
				}
				if len(sig) != size {
					t.Fatalf("signature %d has %d bytes, SignatureSize said %d", i, len(sig), size)
				}
				if err := pk.Verify([]byte("other"), sig); !errors.Is(err, ErrInvalidSignature) {
					t.Fatalf("signature %d verifies another message: %v", i, err)
				}
				s := sigIndex(t, levels, sig)
				if seen[s] || s != uint64(i) {
					t.Fatalf("signature %d used index %d", i, s)
				}
				seen[s] = true
			}
		})
	}
}

func TestSignatureSizeRefusesBadLevels(t *testing.T) {
	for _, levels := range [][]Level{nil, {{0, LMOTS_SHA256_N32_W8}}, {{LMS_SHA256_M32_H5, LMOTS_SHAKE_N32_W8}}} {
		if n, err := SignatureSize(levels); !errors.Is(err, ErrBadParameters) {
			t.Errorf("SignatureSize(%v) = %d, %v", levels, n, err)
		}
	}
}

func TestExhaustion(t *testing.T) {
	sk, err := GenerateKey(nil, small, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 32 {
		if _, err := sk.Sign([]byte{byte(i)}); err != nil {
			t.Fatalf("signature %d: %v", i, err)
		}
	}
	if _, err := sk.Sign(nil); !errors.Is(err, ErrKeyExhausted) {
		t.Fatalf("33rd signature of a height-5 key: %v", err)
	}
	if sk.Remaining() != 0 {
		t.Errorf("Remaining() = %d", sk.Remaining())
	}
}

// store is a PersistFunc that keeps what it is given, and can fail.
type store struct {
	states [][]byte
	fail   bool
}

func (s *store) persist(state []byte) error {
	if s.fail {
		return errors.New("disk full")
	}
	s.states = append(s.states, bytes.Clone(state))
	return nil
}

func (s *store) last() []byte { return s.states[len(s.states)-1] }

func TestStateIsPersistedBeforeEachSignature(t *testing.T) {
	st := &store{}
	sk, err := GenerateKey(nil, small, st.persist)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		sig, err := sk.Sign([]byte("m"))
		if err != nil {
			t.Fatal(err)
		}
		saved, err := parsePrivateKeyState(st.last())
		if err != nil {
			t.Fatal(err)
		}
		if used := sigIndex(t, small, sig); saved.next <= used {
			t.Fatalf("signature %d used index %d but the stored state says next = %d", i, used, saved.next)
		}
	}
	// A failed persist gives no signature and uses no index.
	st.fail = true
	if _, err := sk.Sign([]byte("m")); err == nil {
		t.Fatal("signed although the state could not be stored")
	}
	st.fail = false
	sig, err := sk.Sign([]byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if got := sigIndex(t, small, sig); got != 5 {
		t.Errorf("after a failed persist the next signature used index %d, want 5", got)
	}
}

func TestReserveAndCrash(t *testing.T) {
	st := &store{}
	sk, err := GenerateKey(nil, small, st.persist)
	if err != nil {
		t.Fatal(err)
	}
	sk.SetReserve(10)
	calls := len(st.states)
	for range 12 {
		if _, err := sk.Sign([]byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(st.states) - calls; got != 2 {
		t.Errorf("12 signatures with a reserve of 10 persisted %d times, want 2", got)
	}
	// Crash: reload from what was stored. Indexes 12..19 were reserved and
	// are skipped, never reused.
	reloaded, err := ParsePrivateKey(st.last(), st.persist)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := reloaded.Sign([]byte("after the crash"))
	if err != nil {
		t.Fatal(err)
	}
	if got := sigIndex(t, small, sig); got != 20 {
		t.Errorf("after a crash the key signed with index %d, want 20", got)
	}
	if err := sk.Public().Verify([]byte("after the crash"), sig); err != nil {
		t.Error(err)
	}
}

func TestSplit(t *testing.T) {
	st := &store{}
	levels := []Level{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W8}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W8}}
	sk, err := GenerateKey(nil, levels, st.persist)
	if err != nil {
		t.Fatal(err)
	}
	sk.Sign([]byte("first"))
	other, err := sk.Split()
	if err != nil {
		t.Fatal(err)
	}
	n1, e1 := sk.Range()
	n2, e2 := other.Range()
	if e1 != n2 || e2 != 1024 || n1 != 1 || e1-n1 < 500 {
		t.Errorf("split into [%d,%d) and [%d,%d)", n1, e1, n2, e2)
	}
	if saved, _ := parsePrivateKeyState(st.last()); saved.end != e1 {
		t.Errorf("the shrunken range was not persisted: stored end %d, want %d", saved.end, e1)
	}
	for _, k := range []*PrivateKey{sk, other} {
		sig, err := k.Sign([]byte("both sign"))
		if err != nil {
			t.Fatal(err)
		}
		if err := sk.Public().Verify([]byte("both sign"), sig); err != nil {
			t.Error(err)
		}
	}
	parts, err := other.SplitN(4)
	if err != nil || len(parts) != 3 {
		t.Fatal(err)
	}
	tiny, err := GenerateKey(nil, small, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 31 {
		tiny.Sign(nil)
	}
	if _, err := tiny.Split(); !errors.Is(err, ErrCannotSplit) {
		t.Errorf("split of a key with one signature left: %v", err)
	}
	st.fail = true
	before, _ := sk.Range()
	if _, err := sk.Split(); err == nil {
		t.Error("split although the state could not be stored")
	}
	if after, _ := sk.Range(); after != before {
		t.Error("a failed split changed the range")
	}
}

// Detach gives every signature left away, skipping reserved ones, and
// persists this key's empty range first: it cannot sign, the other can.
func TestDetach(t *testing.T) {
	st := &store{}
	sk, err := GenerateKey(nil, small, st.persist)
	if err != nil {
		t.Fatal(err)
	}
	sk.SetReserve(4)
	sk.Sign([]byte("first")) // persists next = 4: indexes 1 to 3 reserved
	other, err := sk.Detach()
	if err != nil {
		t.Fatal(err)
	}
	n1, e1 := sk.Range()
	n2, e2 := other.Range()
	if n1 != 4 || e1 != 4 || n2 != 4 || e2 != 32 {
		t.Fatalf("detached [%d,%d), kept [%d,%d)", n2, e2, n1, e1)
	}
	if saved, _ := parsePrivateKeyState(st.last()); saved.next != 4 || saved.end != 4 {
		t.Fatalf("stored [%d,%d)", saved.next, saved.end)
	}
	if _, err := sk.Sign([]byte("no")); !errors.Is(err, ErrKeyExhausted) {
		t.Fatalf("the detached key signed: %v", err)
	}
	sig, err := other.Sign([]byte("yes"))
	if err != nil || sk.Public().Verify([]byte("yes"), sig) != nil {
		t.Fatalf("the other key: %v", err)
	}
	if _, err := sk.Detach(); !errors.Is(err, ErrCannotSplit) {
		t.Fatalf("detach of an empty key: %v", err)
	}
	other.SetPersist(st.persist)
	st.fail = true
	if _, err := other.Detach(); err == nil {
		t.Fatal("detached although the state could not be stored")
	}
	if n, e := other.Range(); n != 5 || e != 32 {
		t.Fatalf("a failed detach changed the range: [%d,%d)", n, e)
	}
}

// TestPartsNeverOverlap runs random sequences of signing, splitting,
// reserving and crashing (reloading from the last stored state) over all the
// parts of one key, and checks that no index is ever used twice.
func TestPartsNeverOverlap(t *testing.T) {
	levels := []Level{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W2}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W2}}
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	for round := range rounds {
		rng := rand.New(rand.NewPCG(uint64(round), 1))
		type part struct {
			key *PrivateKey
			st  *store
		}
		newPart := func(k *PrivateKey) *part {
			p := &part{key: k, st: &store{}}
			k.SetPersist(p.st.persist)
			state, _ := k.MarshalBinary()
			p.st.states = append(p.st.states, state)
			return p
		}
		root, err := GenerateKey(nil, levels, nil)
		if err != nil {
			t.Fatal(err)
		}
		parts := []*part{newPart(root)}
		used := map[uint64]int{}
		for op := range 300 {
			p := parts[rng.IntN(len(parts))]
			switch r := rng.IntN(10); {
			case r < 6:
				sig, err := p.key.Sign([]byte("m"))
				if errors.Is(err, ErrKeyExhausted) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				s := sigIndex(t, levels, sig)
				if prev, dup := used[s]; dup {
					t.Fatalf("round %d op %d: index %d used twice (first at op %d)", round, op, s, prev)
				}
				used[s] = op
			case r < 8:
				k, err := p.key.Split()
				if errors.Is(err, ErrCannotSplit) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				parts = append(parts, newPart(k))
			case r < 9:
				p.key.SetReserve(uint64(1 + rng.IntN(8)))
			default:
				k, err := ParsePrivateKey(p.st.last(), p.st.persist)
				if err != nil {
					t.Fatal(err)
				}
				p.key = k
			}
		}
		if len(used) < 50 {
			t.Errorf("round %d: only %d signatures made", round, len(used))
		}
	}
}

// The private state is built in a buffer of its exact size: an append that
// outgrew it would leave a copy of the seed in an array nothing clears.
func TestPrivateStateAllocatesOnce(t *testing.T) {
	for _, levels := range [][]Level{
		small,
		{{LMS_SHA256_M24_H5, LMOTS_SHA256_N24_W8}, {LMS_SHA256_M24_H5, LMOTS_SHA256_N24_W8}, {LMS_SHA256_M24_H5, LMOTS_SHA256_N24_W8}},
	} {
		sk, err := GenerateKey(nil, levels, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b := sk.marshal(sk.next, sk.end); len(b) != cap(b) {
			t.Errorf("%d levels: state of %d bytes in a buffer of %d", len(levels), len(b), cap(b))
		}
	}
}

func TestParsePrivateKeyRefusesBadState(t *testing.T) {
	sk, err := GenerateKey(nil, small, nil)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := sk.MarshalBinary()
	for i := range len(good) {
		if _, err := parsePrivateKeyState(good[:i]); !errors.Is(err, ErrMalformed) {
			t.Errorf("state cut to %d bytes: %v", i, err)
		}
	}
	if _, err := parsePrivateKeyState(append(bytes.Clone(good), 0)); !errors.Is(err, ErrMalformed) {
		t.Error("state with a trailing byte parsed")
	}
	bad := bytes.Clone(good)
	binary.BigEndian.PutUint64(bad[len(bad)-8:], 33) // end beyond 2^5
	if _, err := parsePrivateKeyState(bad); !errors.Is(err, ErrMalformed) {
		t.Error("range beyond the key's capacity parsed")
	}
	bad = bytes.Clone(good)
	binary.BigEndian.PutUint64(bad[len(bad)-16:], 40) // next > end
	if _, err := parsePrivateKeyState(bad); !errors.Is(err, ErrMalformed) {
		t.Error("next beyond end parsed")
	}
}

func TestDamagedPrivateKeyIsRefusedBeforeSigning(t *testing.T) {
	st := &store{}
	sk, err := GenerateKey(nil, small, st.persist)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := sk.MarshalBinary()
	// Any changed byte fails the checksum.
	for i := range len(good) {
		bad := bytes.Clone(good)
		bad[i] ^= 0x10
		if _, err := ParsePrivateKey(bad, nil); !errors.Is(err, ErrMalformed) {
			t.Fatalf("byte %d changed: %v", i, err)
		}
	}
	// A changed seed with a recomputed checksum parses, but the key refuses
	// to sign, and stores nothing, once its tree disagrees with its root.
	bad := bytes.Clone(good[:len(good)-32])
	bad[8+8+IDSize] ^= 1 // first seed byte
	sum := sha256.Sum256(bad)
	bad = append(bad, sum[:]...)
	st2 := &store{}
	k, err := ParsePrivateKey(bad, st2.persist)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Sign([]byte("m")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("sign with a damaged seed: %v", err)
	}
	if len(st2.states) != 0 {
		t.Error("a damaged key persisted state")
	}
}

// Wipe clears the seeds, the key signs no more, and a part split off
// before keeps its own seed and goes on signing.
func TestWipe(t *testing.T) {
	levels := []Level{{LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W8}, {LMS_SHA256_M32_H5, LMOTS_SHA256_N32_W8}}
	sk, err := GenerateKey(nil, levels, nil)
	if err != nil {
		t.Fatal(err)
	}
	sk.Sign([]byte("build every tree"))
	part, err := sk.Split()
	if err != nil {
		t.Fatal(err)
	}
	seeds := [][]byte{sk.seed}
	for _, tr := range sk.trees {
		seeds = append(seeds, tr.seed)
	}
	sk.Wipe()
	for i, seed := range seeds {
		if !bytes.Equal(seed, make([]byte, len(seed))) {
			t.Errorf("seed %d not cleared", i)
		}
	}
	if _, err := sk.Sign([]byte("after wipe")); err == nil {
		t.Error("a wiped key signed")
	}
	if _, err := sk.Split(); err == nil {
		t.Error("a wiped key split")
	}
	sig, err := part.Sign([]byte("the part"))
	if err != nil {
		t.Fatal(err)
	}
	if err := part.Public().Verify([]byte("the part"), sig); err != nil {
		t.Error(err)
	}
}
