//go:build debug

package lockassert

import "sync"

// Held panics unless m is locked.
func Held(m *sync.Mutex) {
	if m.TryLock() {
		m.Unlock()
		panic("lockassert: called without the mutex held")
	}
}
