package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var (
	oldData = bytes.Repeat([]byte("old state "), 100)
	newData = bytes.Repeat([]byte("NEW SECRET "), 150)
)

// temps lists the files in dir that are not the ones named.
func temps(t *testing.T, dir string, known ...string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		if !contains(known, e.Name()) {
			left = append(left, e.Name())
		}
	}
	return left
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// steps lists the steps of a write, with or without NoReplace.
func steps(noReplace bool) []string {
	if noReplace {
		return []string{stepCreated, stepWritten, stepSynced, stepLinked, stepCommitted}
	}
	return []string{stepCreated, stepWritten, stepSynced, stepCommitted}
}

func allZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

func TestWriteCreatesAndReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	for _, data := range [][]byte{oldData, newData, nil} {
		if err := Write(path, data, Options{}); err != nil {
			t.Fatal(err)
		}
		if got := read(t, path); !bytes.Equal(got, data) {
			t.Fatalf("content %q, want %q", got, data)
		}
		if left := temps(t, dir, "state"); left != nil {
			t.Fatalf("files left beside the target: %v", left)
		}
	}
}

func TestNoReplaceRefusesAnExistingName(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	if err := Write(path, oldData, Options{NoReplace: true}); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, newData, Options{NoReplace: true, Secret: true}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second write: %v, want fs.ErrExist", err)
	}
	if got := read(t, path); !bytes.Equal(got, oldData) {
		t.Fatal("the refused write changed the file")
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink("nowhere", dangling); err != nil {
		t.Skipf("no symlinks here: %v", err)
	}
	if err := Write(dangling, newData, Options{NoReplace: true}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("write to a dangling symlink: %v, want fs.ErrExist", err)
	}
	if left := temps(t, dir, "state", "dangling"); left != nil {
		t.Fatalf("files left: %v", left)
	}
}

// TestFailedWriteLeavesOldContentAndNoTemp fails a write at each of its
// steps: before the commit the target keeps its old content, after it has
// the new one, and no temporary file is left either way. A secret's
// temporary copy is zeroed before it is removed: a second name the fault
// gave it shows what was on disk.
func TestFailedWriteLeavesOldContentAndNoTemp(t *testing.T) {
	cut := errors.New("cut")
	for _, noReplace := range []bool{false, true} {
		for _, secret := range []bool{false, true} {
			for _, step := range steps(noReplace) {
				dir := t.TempDir()
				path := filepath.Join(dir, "state")
				known := []string{"state", "witness"}
				if !noReplace {
					if err := os.WriteFile(path, oldData, 0o600); err != nil {
						t.Fatal(err)
					}
				}
				witness := filepath.Join(dir, "witness")
				w := writer{fault: func(at, tmp string) error {
					if at != step {
						return nil
					}
					if at != stepCommitted && at != stepLinked {
						if err := os.Link(tmp, witness); err != nil {
							t.Fatal(err)
						}
					}
					return cut
				}}
				name := strings.Join([]string{step, map[bool]string{true: "link", false: "rename"}[noReplace], map[bool]string{true: "secret", false: "plain"}[secret]}, "/")
				err := w.write(path, newData, Options{Secret: secret, NoReplace: noReplace})
				if !errors.Is(err, cut) {
					t.Fatalf("%s: %v, want the fault", name, err)
				}
				got, rerr := os.ReadFile(path)
				committed := step == stepCommitted || step == stepLinked
				switch {
				case committed && !bytes.Equal(got, newData):
					t.Errorf("%s: the target holds %d bytes, not the new content", name, len(got))
				case !committed && noReplace && !errors.Is(rerr, fs.ErrNotExist):
					t.Errorf("%s: the target exists: %v", name, rerr)
				case !committed && !noReplace && !bytes.Equal(got, oldData):
					t.Errorf("%s: the target holds %d bytes, not the old content", name, len(got))
				}
				if left := temps(t, dir, known...); left != nil {
					t.Errorf("%s: temporary files left: %v", name, left)
				}
				if committed {
					continue
				}
				copy := read(t, witness)
				written := step != stepCreated
				switch {
				case written && len(copy) != len(newData):
					t.Errorf("%s: the temporary copy has %d bytes, want %d", name, len(copy), len(newData))
				case secret && !allZero(copy):
					t.Errorf("%s: the secret's temporary copy was not zeroed", name)
				case !secret && written && !bytes.Equal(copy, newData):
					t.Errorf("%s: a plain temporary copy was changed", name)
				}
			}
		}
	}
}

// TestReplacedSecretIsZeroed: the inode a secret's write replaces is zeroed
// once no name leads to it; a plain file's is left alone, and so is one
// that still has another name.
func TestReplacedSecretIsZeroed(t *testing.T) {
	for _, secret := range []bool{false, true} {
		dir := t.TempDir()
		path := filepath.Join(dir, "state")
		if err := os.WriteFile(path, oldData, 0o600); err != nil {
			t.Fatal(err)
		}
		old, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		if err := Write(path, newData, Options{Secret: secret}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(oldData))
		if _, err := old.ReadAt(buf, 0); err != nil {
			t.Fatal(err)
		}
		if secret && !allZero(buf) {
			t.Error("the replaced secret was not zeroed")
		}
		if !secret && !bytes.Equal(buf, oldData) {
			t.Error("a replaced plain file was changed")
		}
	}

	dir := t.TempDir()
	path, other := filepath.Join(dir, "state"), filepath.Join(dir, "other")
	if err := os.WriteFile(path, oldData, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(path, other); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	if err := Write(path, newData, Options{Secret: true}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(t, other), oldData) {
		t.Error("the replaced file's other name lost its content")
	}
}

func TestRemoveTempsScrubsStaleCopies(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.prv")
	if err := os.WriteFile(path, oldData, 0o600); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, ".key.prv.tmp4242")
	keep := []string{"key.prv", ".key.prv.tmp", ".other.prv.tmp4242"}
	for _, name := range append(keep[1:], filepath.Base(stale)) {
		if err := os.WriteFile(filepath.Join(dir, name), newData, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(stale)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	RemoveTemps(path)
	if left := temps(t, dir, keep...); left != nil {
		t.Fatalf("left: %v", left)
	}
	for _, name := range keep {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s was removed: %v", name, err)
		}
	}
	buf := make([]byte, len(newData))
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if !allZero(buf) {
		t.Error("the stale copy was removed without being zeroed")
	}
}

// A temporary file that a crash left linked into place shares the target's
// inode: removing it must not touch the target.
func TestRemoveTempsSparesALinkedTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mkm")
	if err := os.WriteFile(path, oldData, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(path, filepath.Join(dir, ".mkm.tmp77")); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	RemoveTemps(path)
	if left := temps(t, dir, "mkm"); left != nil {
		t.Fatalf("left: %v", left)
	}
	if !bytes.Equal(read(t, path), oldData) {
		t.Fatal("removing the linked temporary name changed the target")
	}
}

func TestProbe(t *testing.T) {
	dir := t.TempDir()
	if err := Probe(filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	if left := temps(t, dir); left != nil {
		t.Fatalf("left: %v", left)
	}
	if err := Probe(filepath.Join(dir, "missing", "out")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("probe in a missing directory: %v", err)
	}
}

// Errors name neither the temporary file nor the target.
func TestErrorsNameNoFile(t *testing.T) {
	dir := t.TempDir()
	err := Write(filepath.Join(dir, "missing", "out"), newData, Options{})
	if !errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), dir) {
		t.Fatalf("got %v", err)
	}
}
