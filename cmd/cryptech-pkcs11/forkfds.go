package main

/*
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The descriptors the module opens are told to shim.c, whose fork()
// handler closes them in the child (which never enters Go): the child of
// an application that forks without exec holds neither the HSM
// directory's lock nor the RPC connections once the parent lets them go.
// Each is told before the module uses it and taken back before it is
// closed, so that the child never closes a descriptor number the
// application has been given since.

// errOwn: the table of shim.c has no room (malloc failed).
var errOwn = errors.New("cannot note a descriptor for fork()")

func ownFD(fd int) error {
	if C.cryptech_own_fd(C.int(fd)) != 0 {
		return errOwn
	}
	return nil
}

func disownFD(fd int) { C.cryptech_disown_fd(C.int(fd)) }

// ownedConn is a connection whose descriptor shim.c knows until Close.
type ownedConn struct {
	net.Conn
	fd   int
	once sync.Once
}

// ownConn tells shim.c the descriptor of nc, whose socket is sock (nc
// itself, or what a TLS connection runs on).
func ownConn(nc net.Conn, sock syscall.Conn) (net.Conn, error) {
	raw, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return nil, err
	}
	if err := ownFD(fd); err != nil {
		return nil, err
	}
	return &ownedConn{Conn: nc, fd: fd}, nil
}

func (c *ownedConn) Close() error {
	c.once.Do(func() { disownFD(c.fd) })
	return c.Conn.Close()
}

// ownDir tells shim.c every descriptor this process holds on the regular
// files of the HSM directory dir, just opened (the flash, which holds the
// lock, and whatever else the HSM keeps open), found by device and inode
// among /dev/fd; the package that opens them does not tell. It returns
// the function that takes them back, for before the HSM closes.
func ownDir(dir string) (disown func(), err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("HSM directory %s: %w", dir, err)
	}
	type fileID struct{ dev, ino uint64 }
	files := map[fileID]bool{}
	for _, e := range entries {
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(dir, e.Name()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			files[fileID{uint64(st.Dev), uint64(st.Ino)}] = true
		}
	}
	fds, err := os.ReadDir("/dev/fd")
	if err != nil {
		return nil, fmt.Errorf("list this process's descriptors: %w", err)
	}
	var owned []int
	disown = func() {
		for _, fd := range owned {
			disownFD(fd)
		}
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || !files[fileID{uint64(st.Dev), uint64(st.Ino)}] {
			continue
		}
		if err := ownFD(fd); err != nil {
			disown()
			return nil, err
		}
		owned = append(owned, fd)
	}
	return disown, nil
}
