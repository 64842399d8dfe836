package rpc

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// Helpers for the server tests: a server whose HSM directory the test
// knows, and a raw connection that writes frames and reads answers without
// going through Client.

var userPIN = []byte("user-pin")

// servedHSM starts a Server on a Unix socket for a new emulated HSM in a
// temporary directory, with opts; configure, if any, sets the Server up
// before it serves. It returns the address, the server, the HSM and its
// directory. Cleanup shuts the server down and closes the HSM (twice is
// harmless).
func servedHSM(t testing.TB, opts hsm.Options, configure ...func(*Server)) (addr string, srv *Server, h *hsm.HSM, dir string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "hsm")
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: wheelPIN, SOPIN: []byte("so-pin"), UserPIN: userPIN, Blocks: 256}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	addr, srv = serveHSM(t, h, configure...)
	return addr, srv, h, dir
}

// serveHSM puts h behind a new Server on a Unix socket, set up by
// configure, and returns its address. Cleanup shuts the server down.
func serveHSM(t testing.TB, h *hsm.HSM, configure ...func(*Server)) (string, *Server) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "rpc.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(h, nil)
	for _, f := range configure {
		f(srv)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown(ctx) })
	return "unix:" + sock, srv
}

// dialAs connects a Client and logs it in as user.
func dialAs(t testing.TB, addr string, user hsmapi.User, pin []byte) *Client {
	t.Helper()
	c, err := Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if user != hsmapi.UserNone {
		if err := c.Login(ctx, user, pin); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// rawConn is a connection that speaks frames, not functions.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	fr *wire.FrameReader
}

// ioTimeout bounds every read and write of a rawConn, so that a server that
// neither answers nor closes fails the test instead of hanging it.
const ioTimeout = 10 * time.Second

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc := dialAddr(t, addr)
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, fr: wire.NewFrameReader(nc, wire.MaxPacket)}
}

// dialAddr connects to a server's address as the client's Dial parses it.
func dialAddr(t testing.TB, addr string) net.Conn {
	t.Helper()
	network, address, err := ParseAddress(addr)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial(network, address)
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// write sends bytes as they are.
func (r *rawConn) write(b []byte) {
	r.t.Helper()
	r.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// send sends one payload in a SLIP frame.
func (r *rawConn) send(payload []byte) { r.t.Helper(); r.write(wire.AppendFrame(nil, payload)) }

// recv reads the next answer's payload (a copy).
func (r *rawConn) recv() []byte {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	frame, err := r.fr.ReadFrame()
	if err != nil {
		r.t.Fatalf("read an answer: %v", err)
	}
	return append([]byte(nil), frame...)
}

// roundTrip sends a payload and returns the answer's payload.
func (r *rawConn) roundTrip(payload []byte) []byte {
	r.t.Helper()
	r.send(payload)
	return r.recv()
}

// call sends a request for f and decodes its answer into results (which
// may be nil when the status is not expected to be OK). It checks that the
// answer is for f and well formed, and returns its status.
func (r *rawConn) call(f wire.Func, args, results wire.Args) wire.Status {
	r.t.Helper()
	return r.checkAnswer(f, r.roundTrip(wire.EncodeRequest(f, 0, args)), results)
}

// checkAnswer decodes an answer to f.
func (r *rawConn) checkAnswer(f wire.Func, payload []byte, results wire.Args) wire.Status {
	r.t.Helper()
	hdr, st, err := wire.DecodeResponse(payload, results)
	if err != nil {
		r.t.Fatalf("%v: malformed answer %x: %v", f, payload, err)
	}
	if hdr.Func != f {
		r.t.Fatalf("answer for %v to a %v request: %x", hdr.Func, f, payload)
	}
	return st
}

// expectClosedOrStatus reads what the server does after a bad frame: it
// either closes the connection or answers with a status other than OK.
// It returns true if the connection was closed.
func (r *rawConn) expectClosedOrStatus() bool {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	frame, err := r.fr.ReadFrame()
	switch {
	case err == nil:
		_, st, derr := wire.DecodeResponse(frame, nil)
		if derr != nil && st == wire.StatusOK {
			r.t.Fatalf("malformed answer to a bad frame: %x: %v", frame, derr)
		}
		if st == wire.StatusOK {
			r.t.Fatalf("a bad frame was answered OK: %x", frame)
		}
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		r.t.Fatal("the server neither answered nor closed the connection")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), isReset(err):
		return true
	default:
		r.t.Fatalf("read after a bad frame: %v", err)
	}
	return false
}

// isReset reports a connection the peer reset or closed under a write.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
