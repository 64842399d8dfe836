// Package lockassert is the one way this module asserts that a function
// documented "Called with m held" is called so: its first statement is
// Held(&m). internal/lockassert's discipline test checks that the two agree
// across the module, so a documented requirement cannot go unchecked.
//
// The check is live only in debug builds (go test -tags debug, as .ci/run
// does) and compiles to nothing otherwise. A missed lock ends the process
// at once, with the stack on stderr: no recover (the CLI has one) can turn
// it into an ordinary error.
//
// There are two checks, because of the race detector:
//
//   - debug && !race: github.com/trailofbits/go-mutexasserts. It reads the
//     mutex's state word through reflect, a plain memory read.
//   - debug && race: TryLock. The race detector reports go-mutexasserts's
//     plain read as a DATA RACE against every concurrent Lock (which changes
//     the word atomically), so under -race every asserted lock that is ever
//     contended would fail the run. TryLock reads the word atomically, and
//     one that fails, the passing case, adds no happens-before edge, so the
//     check hides no race either.
//
// Either tells only that someone holds m, not that the caller does (a Go
// mutex has no owner); that is what a forgotten Lock gives away under any
// test that is not racing for m.
package lockassert
