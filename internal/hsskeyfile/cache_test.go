package hsskeyfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
)

// signed is what one signature with a Signer did.
type signed struct {
	index    uint64
	computed int      // leaves of the trees it built
	warnings []string // what it told Warn
}

// signCounting signs with the key file at path, checks that the signature
// verifies under pub, and says what it did.
func signCounting(t *testing.T, path string, pub *hashsig.PublicKey) signed {
	t.Helper()
	var r signed
	s := Signer{
		Progress: func(done, total int) { r.computed = done },
		Warn:     func(w string) { r.warnings = append(r.warnings, w) },
	}
	sig, err := s.Sign(path, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Verify(msg, sig); err != nil {
		t.Fatal(err)
	}
	r.index = index(t, sig)
	return r
}

// copyKey copies the key file at path (and its cache, if asked and there is
// one) into a new directory.
func copyKey(t *testing.T, path string, withCache bool) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "k.prv")
	files := map[string]string{path: to}
	if withCache {
		files[CachePath(path)] = CachePath(to)
	}
	for from, to := range files {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// TestCacheSparesTheRebuild: the first signature of a key file without a
// cache builds its trees and writes the cache (0600, beside the key file a
// symlink leads to); the next builds nothing. A cache written at keygen
// spares the first one's build too.
func TestCacheSparesTheRebuild(t *testing.T) {
	path, pub := newKey(t)
	link := filepath.Join(t.TempDir(), "link.prv")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	first := signCounting(t, link, pub)
	if first.computed == 0 || len(first.warnings) != 0 {
		t.Fatalf("first signature without a cache: %+v", first)
	}
	if fi, err := os.Lstat(CachePath(path)); err != nil || fi.Mode().Perm() != 0o600 || !fi.Mode().IsRegular() {
		t.Fatalf("cache beside the real key file: %v, %v", fi, err)
	}
	if _, err := os.Lstat(CachePath(link)); err == nil {
		t.Error("a cache beside the symlink")
	}
	for _, p := range []string{path, link} {
		r := signCounting(t, p, pub)
		if r.computed != 0 || len(r.warnings) != 0 {
			t.Errorf("signature with a cache, through %s: %+v", p, r)
		}
	}

	levels := []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4}}
	sk, err := hashsig.GenerateKey(nil, levels, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Wipe()
	state, _ := sk.MarshalBinary()
	fresh := filepath.Join(t.TempDir(), "fresh.prv")
	if err := Create(fresh, state, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteCache(fresh, sk); err != nil {
		t.Fatal(err)
	}
	if r := signCounting(t, fresh, sk.Public()); r.computed != 0 || r.index != 0 || len(r.warnings) != 0 {
		t.Errorf("first signature after keygen wrote the cache: %+v", r)
	}
}

// TestBadCacheIsIgnored: a cache with a flipped byte, a truncated one,
// another key's, and one that is no regular file each get one warning, the
// trees are rebuilt, the signature verifies, and a good cache replaces the
// bad one.
func TestBadCacheIsIgnored(t *testing.T) {
	path, pub := newKey(t)
	signCounting(t, path, pub)
	good, err := os.ReadFile(CachePath(path))
	if err != nil {
		t.Fatal(err)
	}
	otherPath, otherPub := newKey(t)
	signCounting(t, otherPath, otherPub)
	other, err := os.ReadFile(CachePath(otherPath))
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 1
	for what, put := range map[string]func(name string) error{
		"a flipped byte": func(name string) error { return os.WriteFile(name, flipped, 0o600) },
		"truncated":      func(name string) error { return os.WriteFile(name, good[:len(good)-1], 0o600) },
		"another key's":  func(name string) error { return os.WriteFile(name, other, 0o600) },
		"empty":          func(name string) error { return os.WriteFile(name, nil, 0o600) },
		"a symlink":      func(name string) error { return os.Symlink(CachePath(otherPath), name) },
		"a directory":    func(name string) error { return os.Mkdir(name, 0o700) },
	} {
		p := copyKey(t, path, false)
		if err := put(CachePath(p)); err != nil {
			t.Fatal(err)
		}
		r := signCounting(t, p, pub)
		warnings := 1
		if what == "a directory" {
			warnings = 2 // a directory is not replaced: the write fails, and says so
		}
		if r.computed == 0 || len(r.warnings) != warnings || !strings.HasPrefix(r.warnings[0], CachePath(p)+" ignored, the trees are rebuilt: ") || strings.Contains(strings.Join(r.warnings, ""), "\n") {
			t.Errorf("%s: %+v", what, r)
		}
		if what == "a directory" {
			continue
		}
		if r := signCounting(t, p, pub); r.computed != 0 || len(r.warnings) != 0 {
			t.Errorf("%s: the cache was not replaced: %+v", what, r)
		}
	}
}

// TestCacheNeverDecidesTheIndex: copies of one key file state sign with the
// same index with the cache, without it, and with a cache from a later
// point of the key, and go on with consecutive indexes.
func TestCacheNeverDecidesTheIndex(t *testing.T) {
	path, pub := newKey(t)
	signCounting(t, path, pub)
	withCache, without := copyKey(t, path, true), copyKey(t, path, false)
	later := copyKey(t, path, false)
	ahead := copyKey(t, path, false)
	for range 40 { // into the second bottom tree
		signCounting(t, ahead, pub)
	}
	b, err := os.ReadFile(CachePath(ahead))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(CachePath(later), b, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range uint64(2) {
		for _, p := range []string{withCache, without, later} {
			if r := signCounting(t, p, pub); r.index != 1+i || len(r.warnings) != 0 {
				t.Errorf("signature %d of %s: %+v", i, p, r)
			}
		}
	}
}
