//go:build !unix

package rpc

import "time"

// cpuTime is not measured here.
func cpuTime() time.Duration { return 0 }
