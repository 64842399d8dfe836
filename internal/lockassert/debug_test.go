//go:build debug

package lockassert

import (
	"sync"
	"testing"
)

func TestHeld(t *testing.T) {
	var m sync.Mutex
	m.Lock()
	Held(&m) // held: no panic
	m.Unlock()
	defer func() {
		if recover() == nil {
			t.Error("Held of an unlocked mutex did not panic")
		}
		if !m.TryLock() {
			t.Error("Held left the mutex locked")
		}
	}()
	Held(&m)
}
