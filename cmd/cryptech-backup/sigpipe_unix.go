//go:build unix

package main

import (
	"os/signal"
	"syscall"
)

// ignoreSIGPIPE makes a write to a closed pipe (cryptech-backup export |
// head) fail with EPIPE, which the command reports in its one line, instead
// of killing the process without a word.
func ignoreSIGPIPE() { signal.Ignore(syscall.SIGPIPE) }
