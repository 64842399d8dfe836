//go:build debug && !race

package lockassert

// wantFailure is what go-mutexasserts writes when its assertion fails.
const wantFailure = "AssertMutexLocked failed!"
