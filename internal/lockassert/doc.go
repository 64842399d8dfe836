// Package lockassert checks that a function documented "called with m held"
// is called so. The check is live only in debug builds (go test -tags
// debug); otherwise it compiles to nothing.
//
// It tells only that someone holds m, not that the caller does, which is
// what a forgotten Lock gives away under any test that is not racing.
// (github.com/trailofbits/go-mutexasserts does the same by reading the
// mutex's state field through reflect, a plain read the race detector
// reports against every Lock; TryLock reads it atomically.)
package lockassert
