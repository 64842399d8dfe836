//go:build !debug

package lockassert

import (
	"sync"
	"testing"
)

// TestHeldIsFreeInRelease: without the debug tag Held checks nothing, so a
// release build never dies of it.
func TestHeldIsFreeInRelease(t *testing.T) {
	var m sync.Mutex
	Held(&m)
	if !m.TryLock() {
		t.Error("Held locked the mutex")
	}
}
