//go:build unix

package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// The mode asked for is the file's, whatever the umask.
func TestModeIgnoresUmask(t *testing.T) {
	for _, tc := range []struct {
		umask int
		perm  fs.FileMode
		want  fs.FileMode
	}{
		{0, 0, 0o600},
		{0o077, 0, 0o600},
		{0o177, 0, 0o600},
		{0o077, 0o640, 0o640},
		{0, 0o400, 0o400},
	} {
		old := syscall.Umask(tc.umask)
		path := filepath.Join(t.TempDir(), "state")
		err := Write(path, newData, Options{Perm: tc.perm})
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != tc.want {
			t.Errorf("umask %03o, perm %v: mode %v, want %v", tc.umask, tc.perm, fi.Mode().Perm(), tc.want)
		}
	}
}

// TestKilledAtEachStep kills a writing process (SIGKILL, no cleanup) at
// each step of a write: the target holds the old content or the new, never
// a mix, and RemoveTemps then leaves no temporary file, zeroes a stale
// secret copy, and keeps the target's content.
func TestKilledAtEachStep(t *testing.T) {
	for _, noReplace := range []bool{false, true} {
		for _, step := range steps(noReplace) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state")
			if !noReplace {
				if err := os.WriteFile(path, oldData, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			mode := "rename"
			if noReplace {
				mode = "link"
			}
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "ATOMICFILE_KILL="+step, "ATOMICFILE_PATH="+path, "ATOMICFILE_MODE="+mode)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("%s %s: the helper was not killed: %v\n%s", mode, step, err, out)
			}
			got, rerr := os.ReadFile(path)
			var want []byte
			switch {
			case step == stepCommitted || step == stepLinked:
				want = newData
			case !noReplace:
				want = oldData
			}
			if want == nil && !errors.Is(rerr, fs.ErrNotExist) {
				t.Errorf("%s %s: the target exists (%d bytes, %v)", mode, step, len(got), rerr)
			}
			if want != nil && !bytes.Equal(got, want) {
				t.Errorf("%s %s: the target holds %d bytes, neither wholly old nor new as expected", mode, step, len(got))
			}
			// The copy a crash left, open to see what RemoveTemps does to it.
			var stale *os.File
			if names, _ := filepath.Glob(filepath.Join(dir, ".state.tmp*")); len(names) == 1 {
				if stale, err = os.Open(names[0]); err != nil {
					t.Fatal(err)
				}
				defer stale.Close()
			}
			RemoveTemps(path)
			if left := temps(t, dir, "state"); left != nil {
				t.Errorf("%s %s: left after RemoveTemps: %v", mode, step, left)
			}
			if again, _ := os.ReadFile(path); !bytes.Equal(again, got) {
				t.Errorf("%s %s: RemoveTemps changed the target", mode, step)
			}
			if stale != nil && step != stepLinked {
				buf := make([]byte, len(newData))
				n, _ := stale.ReadAt(buf, 0)
				if !allZero(buf[:n]) {
					t.Errorf("%s %s: the stale secret copy was not zeroed", mode, step)
				}
			}
		}
	}
}

// TestMain runs, in the process TestKilledAtEachStep starts, the write it
// kills.
func TestMain(m *testing.M) {
	if step := os.Getenv("ATOMICFILE_KILL"); step != "" {
		w := writer{fault: func(at, _ string) error {
			if at == step {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			return nil
		}}
		err := w.write(os.Getenv("ATOMICFILE_PATH"), newData, Options{Secret: true, NoReplace: os.Getenv("ATOMICFILE_MODE") == "link"})
		fmt.Fprintf(os.Stderr, "the write ended without being killed: %v\n", err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}
