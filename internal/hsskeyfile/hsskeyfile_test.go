package hsskeyfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/internal/atomicfile"
	"github.com/hsmkit/cryptech-backup/internal/filelock"
)

var msg = []byte("hash-based signatures are stateful")

// newKey writes a key file of 1024 signatures (two levels of height 5) and
// returns its path and public key.
func newKey(t *testing.T) (string, *hashsig.PublicKey) {
	t.Helper()
	levels := []hashsig.Level{
		{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4},
		{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4},
	}
	sk, err := hashsig.GenerateKey(nil, levels, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Wipe()
	state, _ := sk.MarshalBinary()
	path := filepath.Join(t.TempDir(), "k.prv")
	if err := Create(path, state, false); err != nil {
		t.Fatal(err)
	}
	return path, sk.Public()
}

// next is the first index the key file at path has not used.
func next(t *testing.T, path string) uint64 {
	t.Helper()
	state, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := hashsig.ParsePrivateKey(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Wipe()
	n, _ := sk.Range()
	return n
}

func index(t *testing.T, sig []byte) uint64 {
	t.Helper()
	i, err := hashsig.SignatureIndex(sig)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestStatePersistedBeforeRelease: when a signature comes back, the file
// already says its index is used; when the write of the state fails, no
// signature comes back and the next one gets a fresh index.
func TestStatePersistedBeforeRelease(t *testing.T) {
	path, pub := newKey(t)
	used := map[uint64]bool{}
	var onDisk uint64
	cut := errors.New("disk full")
	for i := range 6 {
		fail := i%2 == 1
		s := Signer{write: func(p string, data []byte, o atomicfile.Options) error {
			if !o.Secret {
				t.Error("the key state was written as no secret")
			}
			if fail {
				return cut
			}
			return atomicfile.Write(p, data, o)
		}}
		before := next(t, path)
		sig, err := s.Sign(path, msg)
		if fail {
			if !errors.Is(err, cut) || sig != nil {
				t.Fatalf("sign with a failing write: %v, %d bytes of signature", err, len(sig))
			}
			if next(t, path) != before {
				t.Fatal("a failed write changed the key file")
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Verify(msg, sig); err != nil {
			t.Fatal(err)
		}
		idx := index(t, sig)
		if used[idx] {
			t.Fatalf("index %d used twice", idx)
		}
		used[idx] = true
		if onDisk = next(t, path); onDisk <= idx {
			t.Fatalf("signature %d released while the file says %d is next", idx, onDisk)
		}
	}
}

func TestCreateAndRemove(t *testing.T) {
	path, _ := newKey(t)
	state, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	if err := Create(path, []byte("other"), false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("create over a key file: %v", err)
	}
	if err := Remove(path, []byte("other")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal("Remove removed a file that holds other data")
	}
	if err := Remove(path, state); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Remove left the file: %v", err)
	}
}

// TestLockedKeyFileIsRefused: a key file another holder has locked is not
// read or advanced, by its name or through a symlink.
func TestLockedKeyFileIsRefused(t *testing.T) {
	path, _ := newKey(t)
	link := filepath.Join(t.TempDir(), "link.prv")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := filelock.Lock(lock); err != nil {
		t.Fatal(err)
	}
	before := next(t, path)
	for _, p := range []string{path, link} {
		if _, err := Sign(p, msg); !errors.Is(err, ErrInUse) || err.Error() != p+" is in use by another process" {
			t.Errorf("sign %s while locked: %v", p, err)
		}
	}
	if next(t, path) != before {
		t.Error("the key file advanced")
	}
}

func TestRefusedKeyFiles(t *testing.T) {
	path, _ := newKey(t)
	dir := filepath.Dir(path)
	other := filepath.Join(dir, "other.prv")
	if err := os.Link(path, other); err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(path, msg); err == nil || !strings.Contains(err.Error(), "2 hard links") {
		t.Errorf("a key file with two names: %v", err)
	}
	os.Remove(other)
	big := filepath.Join(dir, "big.prv")
	if err := os.WriteFile(big, make([]byte, MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(big, msg); !errors.Is(err, ErrTooLarge) || err.Error() != big+": larger than 1 MiB" {
		t.Errorf("a large file: %v", err)
	}
	if _, err := Sign(dir, msg); err == nil || err.Error() != dir+": not a regular file" {
		t.Errorf("a directory: %v", err)
	}
	missing := filepath.Join(dir, "missing.prv")
	if _, err := Sign(missing, msg); !errors.Is(err, fs.ErrNotExist) || err.Error() != missing+": no such file or directory" {
		t.Errorf("a missing file: %v", err)
	}
	if _, err := os.Lstat(missing + ".lock"); err == nil {
		t.Error("a lock file was made for a missing key file")
	}
}

// TestStaleCopyIsScrubbed: the copy of the state a signer killed before its
// rename left is zeroed and removed by the next signer.
func TestStaleCopyIsScrubbed(t *testing.T) {
	path, _ := newKey(t)
	state, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(filepath.Dir(path), ".k.prv.tmp4242")
	if err := os.WriteFile(stale, state, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(stale)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Sign(path, msg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the stale copy is still there: %v", err)
	}
	buf := make([]byte, len(state))
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, make([]byte, len(state))) {
		t.Fatal("the stale copy of the state was not zeroed")
	}
}

// TestMain is, for the tests that start processes, the signer: it signs
// $HSSKEYFILE_SIGN times (retrying while another process holds the lock)
// and prints each signature's index as soon as it has it.
func TestMain(m *testing.M) {
	path := os.Getenv("HSSKEYFILE_PATH")
	if path == "" {
		os.Exit(m.Run())
	}
	n, _ := strconv.Atoi(os.Getenv("HSSKEYFILE_SIGN"))
	out := bufio.NewWriter(os.Stdout)
	for i := 0; i < n; {
		sig, err := Sign(path, msg)
		if errors.Is(err, ErrInUse) {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		idx, _ := hashsig.SignatureIndex(sig)
		fmt.Fprintln(out, idx)
		out.Flush()
		i++
	}
	os.Exit(0)
}

// startSigner makes the command of a process that signs n times with path.
func startSigner(path string, n int) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "HSSKEYFILE_PATH="+path, "HSSKEYFILE_SIGN="+strconv.Itoa(n),
		// Under -race a process sleeps at exit; the kills should land in signing.
		"GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	return cmd
}

// indexes parses the indexes a signer printed.
func indexes(t *testing.T, out []byte) []uint64 {
	t.Helper()
	var list []uint64
	for _, line := range strings.Fields(string(out)) {
		i, err := strconv.ParseUint(line, 10, 64)
		if err != nil {
			t.Fatalf("signer printed %q", line)
		}
		list = append(list, i)
	}
	return list
}

// TestConcurrentProcessesAreSerialized: processes signing with one key file
// at once take turns on its lock; no index is used twice, and the file
// accounts for every signature.
func TestConcurrentProcessesAreSerialized(t *testing.T) {
	path, _ := newKey(t)
	const procs, each = 4, 8
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := startSigner(path, each).Output()
			if err != nil {
				t.Errorf("signer: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, i := range indexes(t, out) {
				if seen[i] {
					t.Errorf("index %d used twice", i)
				}
				seen[i] = true
			}
		}()
	}
	wg.Wait()
	if len(seen) != procs*each {
		t.Errorf("%d signatures, want %d", len(seen), procs*each)
	}
	if n := next(t, path); n != procs*each {
		t.Errorf("the key file says %d is next after %d signatures", n, procs*each)
	}
}

// TestKilledSignersNeverReuseAnIndex kills signing processes at a spread
// of moments: every signature any of them released, and those made after,
// have distinct indexes, and the key file still parses.
func TestKilledSignersNeverReuseAnIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("kills many processes; not under -short")
	}
	path, pub := newKey(t)
	seen := map[uint64]bool{}
	record := func(out []byte) {
		for _, i := range indexes(t, out) {
			if seen[i] {
				t.Errorf("index %d used twice", i)
			}
			seen[i] = true
		}
	}
	killed := 0
	for run := range 12 {
		cmd := startSigner(path, 1000)
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+run*15) * time.Millisecond)
		cmd.Process.Kill()
		if err := cmd.Wait(); err != nil {
			killed++
		}
		record(out.Bytes())
	}
	if killed == 0 {
		t.Fatal("no signer was killed: the test proved nothing")
	}
	sig, err := Sign(path, msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Verify(msg, sig); err != nil {
		t.Fatal(err)
	}
	record([]byte(fmt.Sprint(index(t, sig))))
	t.Logf("%d signers killed, %d signatures", killed, len(seen))
}
