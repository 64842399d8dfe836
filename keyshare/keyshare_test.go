package keyshare

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
)

func newKey(t *testing.T) []byte {
	t.Helper()
	key := make([]byte, KeySize)
	rand.Read(key)
	return key
}

// Every subset of k shares recovers the key, in any order.
func TestSplitCombineEverySubset(t *testing.T) {
	for _, c := range []struct{ k, n int }{{1, 1}, {1, 3}, {2, 2}, {2, 3}, {3, 5}, {5, 5}, {4, 7}} {
		t.Run(fmt.Sprintf("%d-of-%d", c.k, c.n), func(t *testing.T) {
			key := newKey(t)
			shares, err := Split(key, c.k, c.n)
			if err != nil {
				t.Fatal(err)
			}
			if len(shares) != c.n {
				t.Fatalf("%d shares, want %d", len(shares), c.n)
			}
			for mask := 0; mask < 1<<c.n; mask++ {
				var subset []Share
				for i := c.n - 1; i >= 0; i-- { // reversed: order does not matter
					if mask&(1<<i) != 0 {
						subset = append(subset, shares[i])
					}
				}
				got, err := Combine(c.k, subset)
				switch {
				case len(subset) < c.k:
					if !errors.Is(err, ErrTooFewShares) {
						t.Fatalf("%d shares: %v, want ErrTooFewShares", len(subset), err)
					}
				case err != nil:
					t.Fatalf("subset %b: %v", mask, err)
				case !bytes.Equal(got, key):
					t.Fatalf("subset %b recovered another key", mask)
				}
			}
		})
	}
}

// The halves' extremes survive: the map into the field is exact.
func TestExtremeKeys(t *testing.T) {
	for _, key := range [][]byte{bytes.Repeat([]byte{0}, KeySize), bytes.Repeat([]byte{0xff}, KeySize)} {
		shares, err := Split(key, 2, 3)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Combine(2, shares[1:])
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("key %x: got %x, %v", key[:2], got, err)
		}
	}
}

// k-1 shares of two different keys can be the same: k-1 shares say nothing.
// Shown constructively: shares are uniform, so two splits of one key differ.
func TestSharesAreFresh(t *testing.T) {
	key := newKey(t)
	a, _ := Split(key, 2, 2)
	b, _ := Split(key, 2, 2)
	if a[0].Value == b[0].Value {
		t.Fatal("two splits of one key gave the same share")
	}
	for _, s := range a {
		if bytes.Contains(s.Value[:], key[:8]) || bytes.Contains(s.Value[:], key[16:24]) {
			t.Fatal("a share holds part of the key in the clear")
		}
	}
}

func TestCombineRefuses(t *testing.T) {
	key := newKey(t)
	shares, err := Split(key, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Split(newKey(t), 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	flipped := shares[2]
	flipped.Value[3] ^= 1
	nonCanonical := shares[2]
	for i := scalarSize - 1; i > scalarSize-4; i-- {
		nonCanonical.Value[i] = 0xff
	}
	cv := CheckValue(key)
	for _, c := range []struct {
		name   string
		shares []Share
		want   error
	}{
		{"too few", shares[:2], ErrTooFewShares},
		{"twice", []Share{shares[0], shares[1], shares[0]}, ErrDuplicateShare},
		{"another key's", []Share{shares[0], shares[1], other[2]}, nil},
		{"flipped bit", []Share{shares[0], shares[1], flipped}, nil},
		{"not canonical", []Share{shares[0], shares[1], nonCanonical}, ErrMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Combine(3, c.shares)
			if c.want != nil {
				if !errors.Is(err, c.want) {
					t.Fatalf("got %v, want %v", err, c.want)
				}
				return
			}
			// Mixed or damaged shares recombine to no key (ErrMismatch) or
			// to a wrong one, which the check value refuses.
			if err == nil && Matches(got, cv) {
				t.Fatal("mixed shares recombined to the key")
			}
			if err != nil && !errors.Is(err, ErrMismatch) {
				t.Fatalf("got %v, want ErrMismatch or a wrong key", err)
			}
		})
	}
	if _, err := Combine(0, shares); err == nil {
		t.Fatal("threshold 0 accepted")
	}
	if _, err := Combine(1, []Share{{Index: 0}}); err == nil {
		t.Fatal("index 0 accepted")
	}
}

func TestSplitRefuses(t *testing.T) {
	key := newKey(t)
	for _, c := range []struct {
		key  []byte
		k, n int
	}{{key[:31], 2, 3}, {key, 0, 3}, {key, 4, 3}, {key, 2, 256}} {
		if _, err := Split(c.key, c.k, c.n); err == nil {
			t.Errorf("Split(%d bytes, %d, %d) accepted", len(c.key), c.k, c.n)
		}
	}
}

func TestCheckValue(t *testing.T) {
	key := newKey(t)
	cv := CheckValue(key)
	if !Matches(key, cv) {
		t.Fatal("a key does not match its own check value")
	}
	other := bytes.Clone(key)
	other[31] ^= 1
	if Matches(other, cv) {
		t.Fatal("a different key matches")
	}
	if bytes.Contains(key, cv[:4]) {
		t.Fatal("the check value shows key bytes")
	}
}

func BenchmarkSplit3of5(b *testing.B) {
	key := make([]byte, KeySize)
	for b.Loop() {
		if _, err := Split(key, 3, 5); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCombine3(b *testing.B) {
	key := make([]byte, KeySize)
	shares, _ := Split(key, 3, 5)
	for b.Loop() {
		if _, err := Combine(3, shares); err != nil {
			b.Fatal(err)
		}
	}
}
