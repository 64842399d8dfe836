//go:build debug

package lockassert

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

func TestHeldPassesWhenLocked(t *testing.T) {
	var m sync.Mutex
	m.Lock()
	Held(&m) // would end the test binary
	m.Unlock()
	if !m.TryLock() {
		t.Error("Held left the mutex locked")
	}
}

// forgotLock is a function documented "Called with m held" whose caller
// forgot the lock.
func forgotLock(m *sync.Mutex) {
	Held(m)
}

const childEnv = "LOCKASSERT_TEST_CHILD"

// TestHeldCatchesMissedLock runs forgotLock without the lock in a child
// process (the check ends its process) and wants it to die naming the
// variant's check and the function on its stack.
func TestHeldCatchesMissedLock(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		var m sync.Mutex
		forgotLock(&m)
		os.Stdout.WriteString("missed lock not caught\n")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHeldCatchesMissedLock$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("child: %v, want exit status 1; output:\n%s", err, out)
	}
	for _, want := range []string{wantFailure, "lockassert.forgotLock("} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
}

// TestHeldConcurrent asserts a lock that other goroutines contend for. Under
// -race it fails if the check reads the mutex in a way the race detector
// reports (as go-mutexasserts's does: see the package documentation).
func TestHeldConcurrent(t *testing.T) {
	var m sync.Mutex
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				m.Lock()
				Held(&m)
				m.Unlock()
			}
		})
	}
	wg.Wait()
}
