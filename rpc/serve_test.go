package rpc

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// flakyListener fails its first Accepts as an exhausted process does.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestServeSurvivesEMFILE: running out of file descriptors is passing; the
// server waits and accepts again rather than stop listening (the serve
// command would exit).
func TestServeSurvivesEMFILE(t *testing.T) {
	h, err := hsm.Create(filepath.Join(t.TempDir(), "hsm"), hsm.InitConfig{WheelPIN: wheelPIN, SOPIN: []byte("so-pin"), UserPIN: userPIN, Blocks: 64}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	sock := filepath.Join(t.TempDir(), "rpc.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l := &flakyListener{Listener: ul}
	l.fails.Store(3)
	srv := NewServer(h, nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer srv.Shutdown(ctx)

	// Three failures take Serve 35 ms of waiting.
	select {
	case err := <-served:
		t.Fatalf("Serve gave up on EMFILE: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	c, err := Dial(ctx, "unix:"+sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(ctx, hsmapi.UserNormal, userPIN); err != nil {
		t.Fatal(err)
	}
}

// TestServerAnswerFitsAPacket: an answer that would not fit in a libhal
// packet is refused with RPC_PACKET_OVERFLOW, not sent (a libhal client,
// or this package's, could not read it, and would lose the connection).
func TestServerAnswerFitsAPacket(t *testing.T) {
	addr, _ := served(t)
	r := dialRaw(t, addr)
	if st := r.call(wire.FuncLogin, &wire.LoginRequest{User: uint32(hsmapi.UserNormal), PIN: userPIN}, &wire.LoginResponse{}); st != wire.StatusOK {
		t.Fatalf("login: %v", st)
	}
	var gen wire.PkeyGenerateECResponse
	if st := r.call(wire.FuncPkeyGenerateEC, &wire.PkeyGenerateECRequest{Curve: uint32(hsmapi.CurveP256), Flags: uint32(hsmapi.FlagDigitalSignature)}, &gen); st != wire.StatusOK {
		t.Fatalf("generate: %v", st)
	}
	big := bytes.Repeat([]byte{0xC0}, hsmapi.MaxAttributeSize) // escaped, too
	if st := r.call(wire.FuncPkeySetAttributes, &wire.PkeySetAttributesRequest{Pkey: gen.Pkey, Attributes: []wire.Attribute{{Type: 0x100, Value: big}}}, &wire.PkeySetAttributesResponse{}); st != wire.StatusOK {
		t.Fatalf("set attributes: %v", st)
	}
	// Sixteen copies fit; twenty do not.
	for _, tc := range []struct {
		n    int
		want wire.Status
	}{{15, wire.StatusOK}, {20, wire.StatusRPCPacketOverflow}, {4000, wire.StatusRPCPacketOverflow}} {
		types := make([]uint32, tc.n)
		for i := range types {
			types[i] = 0x100
		}
		r.send(wire.EncodeRequest(wire.FuncPkeyGetAttributes, 0, &wire.PkeyGetAttributesRequest{Pkey: gen.Pkey, Types: types, BufferLen: uint32(tc.n * len(big))}))
		r.nc.SetReadDeadline(time.Now().Add(ioTimeout))
		frame, err := r.fr.ReadFrame()
		if errors.Is(err, wire.ErrFrameTooLong) {
			t.Fatalf("%d attributes of %d bytes: the server sent an answer over %d bytes", tc.n, len(big), wire.MaxPacket)
		}
		if err != nil {
			t.Fatal(err)
		}
		var res wire.PkeyGetAttributesResponse
		if tc.want != wire.StatusOK {
			if st := r.checkAnswer(wire.FuncPkeyGetAttributes, frame, nil); st != tc.want {
				t.Errorf("%d attributes: %v, want %v", tc.n, st, tc.want)
			}
			continue
		}
		if st := r.checkAnswer(wire.FuncPkeyGetAttributes, bytes.Clone(frame), &res); st != wire.StatusOK || len(res.Attributes) != tc.n {
			t.Errorf("%d attributes: %v, %d attributes", tc.n, st, len(res.Attributes))
		}
	}
	// The connection still works.
	if st := r.call(wire.FuncGetVersion, nil, &wire.GetVersionResponse{}); st != wire.StatusOK {
		t.Fatalf("GET_VERSION: %v", st)
	}
}

// TestClientCloseDuringCall: Close does not wait for an answer that may
// never come; the call in flight fails.
func TestClientCloseDuringCall(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "mute.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A server that answers the handshake (GET_VERSION, then
	// RPC_BAD_FUNCTION to the extensions), then reads and never answers.
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		fr := wire.NewFrameReader(nc, 0)
		for i := 0; ; i++ {
			frame, err := fr.ReadFrame()
			if err != nil {
				return
			}
			hdr, _, _ := wire.DecodeRequestHeader(frame)
			switch i {
			case 0:
				nc.Write(wire.AppendFrame(nil, wire.EncodeResponse(hdr.Func, 1, wire.StatusOK, &wire.GetVersionResponse{Version: Version})))
			case 1:
				nc.Write(wire.AppendFrame(nil, wire.EncodeResponse(hdr.Func, 1, wire.StatusRPCBadFunction, nil)))
			}
		}
	}()
	c, err := Dial(ctx, "unix:"+sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Login(ctx, hsmapi.UserNormal, userPIN) }()
	time.Sleep(50 * time.Millisecond) // let the LOGIN go out
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for the answer to a call in flight")
	}
	select {
	case err := <-done:
		if !errors.Is(err, wire.StatusRPCTransport) {
			t.Errorf("the call in flight: %v, want RPC_TRANSPORT", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call in flight did not end when the client closed")
	}
}
