// Package hsskeyfile keeps an HSS (RFC 8554) private key in a file that a
// signer advances: each signature's state is written back, atomically and
// durably, before the signature is released, under a lock that keeps two
// processes from signing with the same state. A kill or a failed write at
// any moment can lose signatures, never reuse one.
//
// The lock and the writes go to the file that the path names once symlinks
// are resolved: through a link, a lock named after the link would not
// exclude a signer using the real name, and a rename would replace the link
// and leave the real file (and its state) behind. A key file with more than
// one hard link is refused, as its other names would keep the old state.
package hsskeyfile

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/internal/atomicfile"
	"github.com/hsmkit/cryptech-backup/internal/filelock"
)

// MaxSize bounds a key file: the largest HSS key state takes a few hundred
// bytes, and a wrong path (/dev/zero) must not be read until memory runs out.
const MaxSize = 1 << 20

var (
	// ErrInUse: another process holds the key file's lock.
	ErrInUse = errors.New("in use by another process")
	// ErrTooLarge: the file is larger than MaxSize, so no key file.
	ErrTooLarge = errors.New("larger than 1 MiB")
)

// Create writes a new key file at path (mode 0600) holding state, as
// hashsig.PrivateKey.MarshalBinary gives it. Without replace it fails with
// an error matching fs.ErrExist if path exists. Errors do not name path.
func Create(path string, state []byte, replace bool) error {
	return atomicfile.Write(path, state, atomicfile.Options{Secret: true, NoReplace: !replace})
}

// Remove undoes Create: it removes path if it still holds state (another
// process may have replaced it since).
func Remove(path string, state []byte) error {
	now, err := os.ReadFile(path)
	defer clear(now)
	if err != nil || subtle.ConstantTimeCompare(now, state) != 1 {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, atomicfile.StripPath(err))
	}
	return nil
}

// Sign signs msg with the key in path, as a Signer{} does.
func Sign(path string, msg []byte) ([]byte, error) {
	return Signer{}.Sign(path, msg)
}

// Signer signs with key files. Its zero value is ready to use.
type Signer struct {
	// Progress, if not nil, is told of the leaves of the trees a signature
	// builds: all of them, minutes for a large key, when the key file has
	// no usable tree cache.
	Progress hashsig.Progress
	// Warn, if not nil, is told in one line of what Sign went on without:
	// a tree cache it could not read, refused, or could not write.
	Warn func(string)

	// write is atomicfile.Write, or what a test puts in its place to cut
	// the writes of the state.
	write func(path string, data []byte, o atomicfile.Options) error
}

// Sign signs msg with the key in path. It holds the key file's lock while
// it reads the state, advances it and writes it back; the signature is
// returned only once the advanced state is durable. A key file that does
// not parse or is exhausted is left as it is. Temporary copies of the state
// that a killed signer left are scrubbed and removed first.
//
// The key's trees come from its tree cache (CachePath) when it has a good
// one, and are rebuilt otherwise; the cache is written again, after the
// signature is made, when the trees it should hold changed (when the
// signatures move to another bottom subtree: see hashsig.PrivateKey.Cache).
// The cache never decides which index is used.
func (s Signer) Sign(path string, msg []byte) ([]byte, error) {
	write := s.write
	if write == nil {
		write = atomicfile.Write
	}
	real, err := resolve(path)
	if err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(real+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := filelock.Lock(lock); errors.Is(err, filelock.ErrLocked) {
		return nil, fmt.Errorf("%s is %w", path, ErrInUse)
	} else if err != nil {
		return nil, err
	}
	// The file may have been replaced or linked between the check and the lock.
	if err := check(path, real); err != nil {
		return nil, err
	}
	atomicfile.RemoveTemps(real)
	state, err := readState(real)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer clear(state)
	persist := func(next []byte) error {
		if err := check(path, real); err != nil {
			return err
		}
		if err := write(real, next, atomicfile.Options{Secret: true}); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}
	sk, err := hashsig.ParsePrivateKey(state, persist)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer sk.Wipe()
	loaded := s.loadCache(path, real, sk)
	sig, err := sk.SignProgress(msg, s.Progress)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// The signature is made and the state durable: a cache that cannot be
	// written costs the next signature time, nothing else.
	if sk.CacheGeneration() != loaded {
		cache, _ := sk.Cache()
		if err := writeCache(real, cache); err != nil {
			s.warn(fmt.Sprintf("%s: %v; the next signature rebuilds the trees", CachePath(path), err))
		}
	}
	return sig, nil
}

func (s Signer) warn(msg string) {
	if s.Warn != nil {
		s.Warn(msg)
	}
}

// CachePath is the tree cache of the key file path: path + ".cache". It
// holds no secret, and it is never the key's state: a signer ignores one
// that is damaged or another key's, and the key file alone decides which
// index is used. Through a symlink, the cache is beside the file linked to.
func CachePath(path string) string { return path + ".cache" }

// loadCache installs the tree cache of the key file real on sk, telling
// s.Warn why it cannot, and returns the cache's generation (0 for none).
func (s Signer) loadCache(path, real string, sk *hashsig.PrivateKey) uint64 {
	name := CachePath(real)
	atomicfile.RemoveTemps(name)
	cache, err := readCache(name, hashsig.MaxCacheSize(sk.Levels()))
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err == nil {
		err = sk.LoadCache(cache)
	}
	if err != nil {
		s.warn(fmt.Sprintf("%s ignored, the trees are rebuilt: %v", CachePath(path), err))
		return 0
	}
	return sk.CacheGeneration()
}

// readCache reads a tree cache of at most limit bytes. Like the key file it
// must be a regular file: a symlink, a pipe or a device is not read (a pipe
// would block).
func readCache(name string, limit int) ([]byte, error) {
	if fi, err := os.Lstat(name); err != nil {
		return nil, atomicfile.StripPath(err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", hashsig.ErrBadCache)
	}
	return readBounded(name, int64(limit), fmt.Errorf("%w: larger than %d bytes", hashsig.ErrBadCache, limit))
}

// writeCache writes cache as the tree cache of the key file real, or
// removes the cache if there is none to write.
func writeCache(real string, cache []byte) error {
	if cache == nil {
		if err := os.Remove(CachePath(real)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return atomicfile.StripPath(err)
		}
		return nil
	}
	return atomicfile.Write(CachePath(real), cache, atomicfile.Options{})
}

// WriteCache writes the tree cache of sk, a key just generated and written
// to the key file path: its first signature then builds nothing.
func WriteCache(path string, sk *hashsig.PrivateKey) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return atomicfile.StripPath(err)
	}
	cache, _ := sk.Cache()
	return writeCache(real, cache)
}

// readState reads the key file real, of at most MaxSize bytes, into one
// buffer that the caller clears.
func readState(real string) ([]byte, error) {
	return readBounded(real, MaxSize, ErrTooLarge)
}

// readBounded reads the file name into one buffer that the caller clears,
// or returns tooLarge if it has more than limit bytes.
func readBounded(name string, limit int64, tooLarge error) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, atomicfile.StripPath(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, atomicfile.StripPath(err)
	}
	if fi.Size() > limit {
		return nil, tooLarge
	}
	// One byte more than the file has shows that it grew.
	buf := make([]byte, fi.Size()+1)
	n, err := io.ReadFull(f, buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return buf[:n], nil
	case err == nil:
		err = errors.New("the file grew while it was read")
	}
	clear(buf)
	return nil, atomicfile.StripPath(err)
}

// resolve returns the file that path names once symlinks are resolved,
// after checking it is a regular file with one hard link.
func resolve(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, atomicfile.StripPath(err))
	}
	return real, check(path, real)
}

// check checks that path still leads to real, and that real is a regular
// file with one name.
func check(path, real string) error {
	if now, err := filepath.EvalSymlinks(path); err != nil {
		return fmt.Errorf("%s: %w", path, atomicfile.StripPath(err))
	} else if now != real {
		return fmt.Errorf("%s: now leads to %s instead of %s; try again", path, now, real)
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return fmt.Errorf("%s: %w", path, atomicfile.StripPath(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	if n, ok := filelock.Links(fi); ok && n > 1 {
		return fmt.Errorf("%s: the key file has %d hard links; a hash-based key file must have one name only", path, n)
	}
	return nil
}
