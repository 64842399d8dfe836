package sharefile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/keyshare"
)

// fastKDF keeps the tests quick; the layout and checks are the same.
var fastKDF = KDF{Time: 1, MemoryKiB: 64, Threads: 1}

func passphrase(i int) []byte { return fmt.Appendf(nil, "custodian %d's passphrase", i) }

// backup splits a new key 3-of-5 into a file, share i under passphrase(i).
func backup(t *testing.T) (*File, []byte) {
	t.Helper()
	key := make([]byte, keyshare.KeySize)
	rand.Read(key)
	shares, err := keyshare.Split(key, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(Header{ID: "master", HSM: "CT-0001", CheckValue: keyshare.CheckValue(key), Threshold: 3, Shares: 5, Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range shares {
		if err := f.Seal(s, passphrase(i+1), fastKDF); err != nil {
			t.Fatal(err)
		}
	}
	return f, key
}

func TestRoundTrip(t *testing.T) {
	f, key := backup(t)
	data := f.Marshal()
	g, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(g.Names(), " "); got != "master-1 master-2 master-3 master-4 master-5" {
		t.Fatalf("names %q", got)
	}
	var shares []keyshare.Share
	for _, i := range []int{5, 2, 4} {
		s, err := g.Open(g.Name(i), passphrase(i))
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s)
	}
	got, err := keyshare.Combine(g.Threshold, shares)
	if err != nil || !bytes.Equal(got, key) || !keyshare.Matches(got, g.CheckValue) {
		t.Fatalf("recombined %v", err)
	}
	if bytes.Contains(data, key[:6]) || bytes.Contains(data, passphrase(1)) {
		t.Fatal("the file shows the key or a passphrase")
	}
}

func TestWrongPassphrase(t *testing.T) {
	f, _ := backup(t)
	if _, err := f.Open("master-1", passphrase(2)); !errors.Is(err, ErrOpen) {
		t.Fatalf("got %v, want ErrOpen", err)
	}
	if _, err := f.Open("master-9", passphrase(1)); !errors.Is(err, ErrNoShare) {
		t.Fatalf("got %v, want ErrNoShare", err)
	}
}

// Changing a passphrase (open, seal again) keeps the share and the check
// values and gives a new salt; the old passphrase no longer opens it.
func TestChangePassphrase(t *testing.T) {
	f, _ := backup(t)
	before := *must(f.Section("master-2"))
	s, err := f.Open("master-2", passphrase(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Seal(s, []byte("a new one"), fastKDF); err != nil {
		t.Fatal(err)
	}
	after := must(f.Section("master-2"))
	if len(f.Sections) != 5 || after.ShareCheck != before.ShareCheck || bytes.Equal(after.Salt, before.Salt) {
		t.Fatalf("sections %d, share check %x -> %x", len(f.Sections), before.ShareCheck, after.ShareCheck)
	}
	g, err := Parse(f.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Open("master-2", passphrase(2)); !errors.Is(err, ErrOpen) {
		t.Fatalf("old passphrase: %v", err)
	}
	s2, err := g.Open("master-2", []byte("a new one"))
	if err != nil || s2 != s {
		t.Fatalf("new passphrase: %v", err)
	}
}

// Every edit of a field is refused: by the parser or, for values it
// cannot judge, by the sealed share's additional data.
func TestEditsAreRefused(t *testing.T) {
	f, _ := backup(t)
	data := string(f.Marshal())
	sections := strings.SplitAfter(data, "\n")
	for i, line := range sections {
		key, value, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ": ")
		if !ok || value == "" {
			continue
		}
		// Change one character of the value to another of the same kind.
		b := []byte(value)
		j := len(b) / 2
		switch {
		case b[j] >= '0' && b[j] <= '8':
			b[j]++
		case b[j] == '9':
			b[j] = '1'
		case b[j] == 'a' || b[j] == 'A':
			b[j]++
		default:
			b[j] = 'a'
		}
		edited := strings.Join(sections[:i], "") + key + ": " + string(b) + "\n" + strings.Join(sections[i+1:], "")
		t.Run(fmt.Sprintf("line %d %s", i+1, key), func(t *testing.T) {
			g, err := Parse([]byte(edited))
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("got %v, want ErrMalformed", err)
				}
				return
			}
			// It parses: then no share it touched may open.
			opened := 0
			for n := 1; n <= 5; n++ {
				if _, err := g.Open(g.Name(n), passphrase(n)); err == nil {
					opened++
				}
			}
			if key == "sealed" || key == "salt" || key == "share-check" || strings.HasPrefix(key, "kdf") || key == "index" {
				if opened != 4 {
					t.Fatalf("%d of 5 shares open after editing one section's %s", opened, key)
				}
			} else if opened != 0 {
				t.Fatalf("%d shares open after editing the header's %s", opened, key)
			}
		})
	}
}

func TestTruncatedAndForeign(t *testing.T) {
	f, _ := backup(t)
	data := f.Marshal()
	for n := 0; n < len(data); n += 7 {
		if _, err := Parse(data[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated at %d: %v", n, err)
		}
	}
	for _, bad := range []string{
		"",
		"hello\n",
		strings.Replace(string(data), "\n", "\r\n", -1),
		string(data) + "\n",
		string(data) + string(data[bytes.Index(data, []byte("\n[master-1]")):]), // a share twice
		strings.Replace(string(data), "[master-2]", "[other-2]", 1),
		strings.Replace(string(data), "kdf-memory-kib: 64", "kdf-memory-kib: 999999999", 1),
	} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("parsed %.40q: %v", bad, err)
		}
	}
	// A section from another backup of the same key does not open here.
	g, _ := backup(t)
	other := g.Sections[0]
	f.Sections[0] = other
	if _, err := f.Open("master-1", passphrase(1)); !errors.Is(err, ErrOpen) {
		t.Fatalf("foreign section: %v", err)
	}
}

// A custodian's copy may hold only their own section.
func TestSubsetFile(t *testing.T) {
	f, _ := backup(t)
	mine := *f
	mine.Sections = []Section{f.Sections[3]}
	g, err := Parse(mine.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Open("master-4", passphrase(4)); err != nil {
		t.Fatal(err)
	}
}

func TestHeaderChecks(t *testing.T) {
	for _, h := range []Header{
		{ID: "", HSM: "x", Threshold: 1, Shares: 1},
		{ID: "-a", HSM: "x", Threshold: 1, Shares: 1},
		{ID: "a b", HSM: "x", Threshold: 1, Shares: 1},
		{ID: "a", HSM: "", Threshold: 1, Shares: 1},
		{ID: "a", HSM: "x\ny", Threshold: 1, Shares: 1},
		{ID: "a", HSM: "x", Threshold: 3, Shares: 2},
		{ID: "a", HSM: "x", Threshold: 0, Shares: 2},
		{ID: "a", HSM: "x", Threshold: 2, Shares: 256},
	} {
		if _, err := New(h); !errors.Is(err, ErrMalformed) {
			t.Errorf("New(%+v): %v", h, err)
		}
	}
	f, _ := New(Header{ID: "a", HSM: "x", Threshold: 1, Shares: 2})
	if err := f.Seal(keyshare.Share{Index: 3}, nil, fastKDF); err == nil {
		t.Error("sealed share 3 of 2")
	}
	if err := f.Seal(keyshare.Share{Index: 1}, nil, KDF{}); err == nil {
		t.Error("sealed under zero KDF parameters")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func BenchmarkOpenDefaultKDF(b *testing.B) {
	f, err := New(Header{ID: "m", HSM: "x", Threshold: 1, Shares: 1})
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Seal(keyshare.Share{Index: 1}, []byte("pass"), DefaultKDF); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := f.Open("m-1", []byte("pass")); err != nil {
			b.Fatal(err)
		}
	}
}
