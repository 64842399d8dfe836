package main

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// pollConn reads what comes at once and what comes after its wait in
// poll(2) (from Go's poller), stops a read in progress when closed, and
// reads io.EOF when the peer closes.
func TestPollConn(t *testing.T) {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pair := func() (net.Conn, net.Conn) {
		t.Helper()
		c, err := net.Dial("unix", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		peer, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		pc, err := newPollConn(c.(*net.UnixConn))
		if err != nil {
			t.Fatal(err)
		}
		return pc, peer
	}
	pc, peer := pair()
	buf := make([]byte, 16)
	for _, delay := range []time.Duration{0, 3 * pollWait * time.Millisecond} {
		go func() {
			time.Sleep(delay)
			peer.Write([]byte("answer"))
		}()
		n, err := pc.Read(buf)
		if err != nil || string(buf[:n]) != "answer" {
			t.Fatalf("after %v: read %q, %v", delay, buf[:n], err)
		}
	}
	peer.Close()
	if n, err := pc.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after the peer closed: %d, %v; want io.EOF", n, err)
	}
	pc.Close()

	pc, peer = pair()
	defer peer.Close()
	done := make(chan error, 1)
	go func() {
		_, err := pc.Read(buf)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	pc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed connection: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the read in progress")
	}
}
