// Package atomicfile replaces a file so that a crash at any moment leaves
// either its old content or its new one, never a mix, and so that no copy of
// a secret outlives the write that made it.
//
// A write goes to a temporary file in the target's directory (mode 0600, or
// the mode asked for, whatever the umask), which is synced, renamed (or
// hard-linked, when an existing file must not be replaced) over the target,
// and the directory is synced. A write that fails removes its temporary
// file. For a secret, every copy the write does not leave in place — the
// temporary file of a failed write, the inode a replace orphans — is
// overwritten with zeros and synced before it goes, as far as the file
// system lets (copy-on-write file systems and SSDs may keep old blocks).
//
// Errors name neither the temporary file nor the target: the caller says
// which file it was writing.
package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hsmkit/cryptech-backup/internal/filelock"
)

// Options say how Write treats the target.
type Options struct {
	// Perm is the file's mode; zero means 0600.
	Perm fs.FileMode
	// Secret: the data is a secret, whose copies are scrubbed.
	Secret bool
	// NoReplace makes Write fail, with an error matching fs.ErrExist, when
	// the target exists (even as a dangling symlink). The check and the
	// write are one step: a hard link, which fails if the name is taken.
	NoReplace bool
}

// Steps of a write, at which the tests cut it.
const (
	stepCreated   = "created"   // the temporary file exists, empty
	stepWritten   = "written"   // it holds the data, not yet synced
	stepSynced    = "synced"    // the data is durable, under the temporary name
	stepLinked    = "linked"    // NoReplace: the target and the temporary name share the inode
	stepCommitted = "committed" // the target has the new content, the directory is not synced
)

// writer is Write with a fault injected at a step (tests only): fault runs
// at each step with the temporary file's name, and an error it returns
// fails the write there.
type writer struct {
	fault func(step, tmp string) error
}

// Write writes data to path atomically and durably; see the package comment.
func Write(path string, data []byte, o Options) error {
	return writer{}.write(path, data, o)
}

func (w writer) at(step, tmp string) error {
	if w.fault == nil {
		return nil
	}
	return w.fault(step, tmp)
}

func (w writer) write(path string, data []byte, o Options) error {
	perm := o.Perm
	if perm == 0 {
		perm = 0o600
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPattern(path))
	if err != nil {
		return StripPath(err)
	}
	tmp := f.Name()
	err = w.fill(f, tmp, data, perm)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		discard(tmp, o.Secret)
		return StripPath(err)
	}
	if o.NoReplace {
		if err := os.Link(tmp, path); err != nil {
			discard(tmp, o.Secret)
			return StripPath(err)
		}
		// The temporary name now shares the target's inode: remove the
		// name only, never scrub it.
		err := w.at(stepLinked, tmp)
		os.Remove(tmp)
		if err != nil {
			return err
		}
	} else {
		// The inode the rename orphans, opened now to be scrubbed then.
		var old *os.File
		if o.Secret {
			old = openReplaced(path)
		}
		if old != nil {
			defer old.Close()
		}
		if err := os.Rename(tmp, path); err != nil {
			discard(tmp, o.Secret)
			return StripPath(err)
		}
		defer scrubOrphan(old)
	}
	if err := w.at(stepCommitted, tmp); err != nil {
		return err
	}
	return SyncDir(dir)
}

// fill writes data to the new temporary file f and syncs it.
func (w writer) fill(f *os.File, tmp string, data []byte, perm fs.FileMode) error {
	// CreateTemp's 0600 is subject to the umask; the mode asked is not.
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := w.at(stepCreated, tmp); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := w.at(stepWritten, tmp); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return w.at(stepSynced, tmp)
}

// Probe creates and removes a temporary file where Write to path would, so
// that a caller can tell, before it does what it cannot undo, that the
// directory exists and takes new files.
func Probe(path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), tempPattern(path))
	if err != nil {
		return StripPath(err)
	}
	return StripPath(errors.Join(f.Close(), os.Remove(f.Name())))
}

// RemoveTemps removes the temporary files that writes to path left when
// their process died before renaming them, scrubbing each first (see
// Scrub): they are copies of what was being written.
func RemoveTemps(path string) {
	dir, name := filepath.Split(path)
	entries, _ := os.ReadDir(filepath.Clean(dir))
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Name(), tempPrefix(name)); ok && rest != "" && e.Type().IsRegular() {
			Scrub(filepath.Join(dir, e.Name()))
		}
	}
}

// Scrub overwrites the file name with zeros, syncs it and removes it. A
// file that has another name as well (a temporary file a crash left after
// linking it into place shares the target's inode) only loses this name:
// zeroing it would destroy the other.
func Scrub(name string) error {
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err == nil {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			if n, ok := filelock.Links(fi); ok && n == 1 {
				zero(f, fi.Size())
			}
		}
		f.Close()
	}
	return os.Remove(name)
}

// tempPattern names the temporary files of writes to path, in its directory
// (os.CreateTemp puts digits for the *).
func tempPattern(path string) string { return tempPrefix(filepath.Base(path)) + "*" }

func tempPrefix(name string) string { return "." + name + ".tmp" }

// discard removes the temporary file of a failed write; for a secret it
// scrubs it first. It is no one else's: it was never linked into place.
func discard(tmp string, secret bool) {
	if secret {
		if f, err := os.OpenFile(tmp, os.O_WRONLY, 0); err == nil {
			if fi, err := f.Stat(); err == nil {
				zero(f, fi.Size())
			}
			f.Close()
		}
	}
	os.Remove(tmp)
}

// openReplaced opens the regular file at path, which a rename is about to
// replace, for scrubOrphan; nil if there is none or it cannot be written.
func openReplaced(path string) *os.File {
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil
	}
	return f
}

// scrubOrphan zeroes the inode a rename replaced, if no name leads to it
// any more. Best effort: the new content is in place already.
func scrubOrphan(old *os.File) {
	if old == nil {
		return
	}
	if fi, err := old.Stat(); err == nil {
		if n, ok := filelock.Links(fi); ok && n == 0 {
			zero(old, fi.Size())
		}
	}
}

// zero overwrites the first size bytes of f with zeros and syncs it.
func zero(f *os.File, size int64) {
	buf := make([]byte, min(size, 64<<10))
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return
		}
	}
	f.Sync()
}

// SyncDir makes a rename, a link or a new file in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return StripPath(err)
	}
	err = d.Sync()
	return StripPath(errors.Join(err, d.Close()))
}

// StripPath drops the file name from an error of package os, for a caller
// whose message names the file as the user gave it (here, the temporary
// file's name would show).
func StripPath(err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		return pe.Err
	case errors.As(err, &le):
		return le.Err
	}
	return err
}
