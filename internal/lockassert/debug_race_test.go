//go:build debug && race

package lockassert

const wantFailure = failure
