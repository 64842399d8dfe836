package main

import (
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// pollConn is a Unix socket connection whose reads first wait for their
// answer in the kernel (poll(2), up to pollWait), on the thread that
// asked, and only then on Go's network poller.
//
// Why: the module runs inside the application's threads. Each PKCS#11 call
// is a cgo callback, whose goroutine is locked to the calling thread; when
// it waits on Go's poller, the thread sleeps until the poller, run by
// some other thread, finds the answer and hands the goroutine back to it:
// two more wake-ups across threads for every request, each a scheduling
// delay on a busy machine. A C client of libhal blocks in read(2) instead,
// and so does this, as long as the answer comes within pollWait (a
// signature takes about a millisecond at most): only past that does the
// read fall back to the poller, which honours Close.
type pollConn struct {
	*net.UnixConn
	raw syscall.RawConn
}

// pollWait bounds how long a read waits in poll(2), in milliseconds.
const pollWait = 20

func newPollConn(c *net.UnixConn) (net.Conn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &pollConn{UnixConn: c, raw: raw}, nil
}

func (c *pollConn) Read(p []byte) (int, error) {
	var n int
	var rerr error
	waited := false
	err := c.raw.Read(func(fd uintptr) bool {
		if !waited {
			waited = true
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, pollWait); err != nil && err != unix.EINTR {
				n, rerr = 0, err
				return true
			}
		}
		n, rerr = syscall.Read(int(fd), p)
		if rerr == syscall.EAGAIN || rerr == syscall.EINTR {
			return false // not yet: wait on the poller
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}
