package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/term"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/internal/atomicfile"
)

// input opens a file to read, "-" or "" meaning stdin. It returns the
// reader, the name messages give it, and what closes it.
func (e *env) input(path string) (io.Reader, string, func(), error) {
	if path == "" || path == "-" {
		return e.stdin, "-", func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", nil, err
	}
	return f, path, func() { f.Close() }, nil
}

// Bounds on what a command reads whole, so that a wrong file cannot exhaust
// memory. Each is what the largest real file of its kind needs, with room.
const (
	// maxInput bounds messages for HSS keys, which sign what they are
	// given whole: anything a caller may want signed.
	maxInput = 256 << 20
	// maxBundle bounds a bundle. The largest real one holds backup.MaxKeys
	// RSA-4096 keys wrapped for an RSA-4096 KEKEK, each with a label of the
	// longest JSON form (label_hex of the longest label a key keeps) and
	// PKCS#11 attributes at the HSM's limits: 15,633 bytes a key, 156 MB in
	// all (TestMaxBundleHoldsLargestBundle measures it; docs/PERFORMANCE.md
	// has the figures). Reading a bundle takes at most about its size in
	// memory.
	maxBundle = 168 << 20
	// maxKEKEKFile bounds a KEKEK file: an RSA-4096 public key and a few
	// names take under 2 KiB.
	maxKEKEKFile = 64 << 10
	// maxPublicKey bounds a public key file: an RSA-8192 key in PEM takes
	// 1.5 KB, an HSS key 80 bytes.
	maxPublicKey = 64 << 10
	// maxSmallFile bounds signatures (the largest HSS
	// signature, 8 levels of height 25 with Winternitz 1, has 75 KB), HSS
	// key files and TLS certificates and keys (PEM).
	maxSmallFile = 1 << 20
)

// readInput reads a file, "-" or "" meaning stdin, of at most limit bytes.
func (e *env) readInput(path string, limit int) ([]byte, error) {
	r, name, done, err := e.input(path)
	if err != nil {
		return nil, err
	}
	defer done()
	return readLimited(r, name, limit)
}

// readFileLimited reads the file path, of at most limit bytes.
func readFileLimited(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path, limit)
}

// limitInput refuses, by its size and before a byte is read, an input that
// is a regular file larger than limit; anything else (a pipe, a terminal, a
// device) is read through a reader that fails with a tooLargeError as soon
// as more than limit bytes come. It returns that reader and the file's
// size, or -1 where there is none.
func limitInput(r io.Reader, name string, limit int) (io.Reader, int, error) {
	size := -1
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			if fi.Size() > int64(limit) {
				return nil, 0, tooLargeError{name, limit}
			}
			size = int(fi.Size())
		}
	}
	return &limitedReader{r: r, name: name, limit: limit, left: limit}, size, nil
}

// limitedReader gives at most limit bytes of r, then a tooLargeError if r
// has more.
type limitedReader struct {
	r           io.Reader
	name        string
	limit, left int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left == 0 {
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, tooLargeError{l.name, l.limit}
		}
		return 0, err
	}
	n, err := l.r.Read(p[:min(len(p), l.left)])
	l.left -= n
	return n, err
}

// tooLargeError: an input is larger than a command reads.
type tooLargeError struct {
	name  string
	limit int
}

func (t tooLargeError) Error() string {
	size := fmt.Sprintf("%d bytes", t.limit)
	switch {
	case t.limit >= 1<<20 && t.limit%(1<<20) == 0:
		size = fmt.Sprintf("%d MiB", t.limit>>20)
	case t.limit >= 1<<10 && t.limit%(1<<10) == 0:
		size = fmt.Sprintf("%d KiB", t.limit>>10)
	}
	return fmt.Sprintf("%s: larger than %s", t.name, size)
}

// readLimited reads r to its end, refusing with a tooLargeError what holds
// more than limit bytes: a regular file by its size, before reading it;
// anything else after limit+1 bytes, so a device that never ends
// (/dev/zero) cannot exhaust memory. It clears the buffers it outgrows and,
// on error, what it read: the input may be a PIN or a key.
func readLimited(r io.Reader, name string, limit int) ([]byte, error) {
	r, size, err := limitInput(r, name, limit)
	if err != nil {
		return nil, err
	}
	// A file's size is known: one buffer, and the read that finds its end.
	buf := make([]byte, 0, max(size+1, min(limit+1, 512)))
	for {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*cap(buf), limit+1))
			copy(grown, buf)
			clear(buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			clear(buf)
			return nil, err
		}
	}
}

// output writes data to path ("-" or "" meaning stdout): mode 0600, through
// a temporary file renamed into place, so that no partial file is ever left;
// an existing file is replaced only with force. A path that exists and is not
// a regular file (/dev/null, a pipe) is written to directly.
func (e *env) output(path string, data []byte, force, binary bool) error {
	if path == "" || path == "-" {
		if err := e.checkStdout(binary); err != nil {
			return err
		}
		if _, err := e.stdout.Write(data); err != nil {
			return fmt.Errorf("write standard output: %w", unwrapPathError(err))
		}
		return nil
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		if fi.IsDir() {
			return fmt.Errorf("write %s: is a directory", path)
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		_, err = f.Write(data)
		return errors.Join(err, f.Close())
	}
	if err := writeFileAtomic(path, data, force, false); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// checkStdout refuses binary output to a terminal.
func (e *env) checkStdout(binary bool) error {
	if f, ok := e.stdoutFile(); binary && ok && term.IsTerminal(int(f.Fd())) {
		return usageError{"refusing to write binary output to a terminal; use -o FILE"}
	}
	return nil
}

// checkOutput tells, before a command does what it cannot undo (advance a
// hash-based key, split keys for an export, make a key), whether output
// would refuse path: an existing file without force, a directory, a
// directory that is missing or not writable, binary data for a terminal. It
// creates and removes a temporary file next to path, as output does. Stdout
// and an existing path that is not a regular file (/dev/null) pass. Output
// can still fail afterwards (a full disk, a file created in between: that
// one is never replaced without force), but not for these reasons.
func (e *env) checkOutput(path string, force, binary bool) error {
	if path == "" || path == "-" {
		return e.checkStdout(binary)
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("write %s: is a directory", path)
	case err == nil && !fi.Mode().IsRegular():
		return nil
	case err == nil && !force:
		return fmt.Errorf("write %s: %w", path, errFileExists)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("write %s: %w", path, unwrapPathError(err))
	case err != nil && !force:
		// A symlink to nowhere: writeFileAtomic's link would find it.
		if _, lerr := os.Lstat(path); lerr == nil {
			return fmt.Errorf("write %s: %w", path, errFileExists)
		}
	}
	if err := atomicfile.Probe(path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// errFileExists: an output file exists and --force was not given.
var errFileExists = errors.New("file exists; use --force to replace it")

// writeFileAtomic writes data to path through package atomicfile (mode
// 0600), replacing an existing file only with force; secret data's
// temporary copies are scrubbed.
func writeFileAtomic(path string, data []byte, force, secret bool) error {
	return existsError(atomicfile.Write(path, data, atomicfile.Options{Secret: secret, NoReplace: !force}))
}

// existsError says what to do about an output file that exists.
func existsError(err error) error {
	if errors.Is(err, fs.ErrExist) {
		return errFileExists
	}
	return err
}

// unwrapPathError drops the file name from an error: messages name the
// file as the user gave it.
var unwrapPathError = atomicfile.StripPath

// sameFile tells whether two output paths name one file: the same path once
// cleaned and with symlinks in it resolved, or one existing file.
func sameFile(a, b string) bool {
	if a == "-" || b == "-" {
		return a == b
	}
	if fa, err := os.Stat(a); err == nil {
		if fb, err := os.Stat(b); err == nil {
			return os.SameFile(fa, fb)
		}
	}
	return resolvedPath(a) == resolvedPath(b)
}

// isSpecialFile tells whether path exists and is not a regular file or a
// directory: /dev/null, a FIFO.
func isSpecialFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.Mode().IsRegular() && !fi.IsDir()
}

// resolvedPath is path made absolute, with the symlinks in its directory
// resolved when it exists.
func resolvedPath(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Clean(path)
	}
	dir, base := filepath.Split(abs)
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		dir = d
	}
	return filepath.Join(dir, base)
}

// checkOutputIsNotInput refuses an -o that names the -i file (a device such
// as /dev/null aside): the signature would replace the message.
func checkOutputIsNotInput(out, in string) error {
	if out != "" && out != "-" && in != "" && in != "-" && sameFile(out, in) && !isSpecialFile(out) {
		return usageError{"-o and -i name the same file: the signature would replace the message"}
	}
	return nil
}

// writeJSON writes v as cryptech_backup formats its JSON files, through
// output.
func writeJSON(e *env, path string, v any, force bool) error {
	var buf bytes.Buffer
	if err := backup.Write(&buf, v); err != nil {
		return err
	}
	return e.output(path, buf.Bytes(), force, false)
}
