//go:build unix

package main

import "syscall"

// umask sets the process's file mode mask, so a socket is created private.
func umask(mask int) int { return syscall.Umask(mask) }
