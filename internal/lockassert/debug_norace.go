//go:build debug && !race

package lockassert

import (
	"sync"

	"github.com/trailofbits/go-mutexasserts"
)

// Held ends the process, printing the stack, unless m is locked.
func Held(m *sync.Mutex) { mutexasserts.AssertMutexLocked(m) }
