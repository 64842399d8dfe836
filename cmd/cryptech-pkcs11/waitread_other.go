//go:build !linux

package main

import "net"

// newPollConn is the connection as it is where poll(2) is not used (see
// waitread_linux.go).
func newPollConn(c *net.UnixConn) (net.Conn, error) { return c, nil }
