//go:build debug && race

package lockassert

import (
	"os"
	"runtime/debug"
	"sync"
)

// Held ends the process, printing the stack, unless m is locked, as
// go-mutexasserts does (see the package documentation for why not it here).
func Held(m *sync.Mutex) {
	if m.TryLock() {
		m.Unlock()
		os.Stderr.WriteString(failure)
		debug.PrintStack()
		os.Exit(1)
	}
}

const failure = "lockassert: Held failed: the mutex is not locked\n"
