package rpc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// Version is what GET_VERSION answers: libhal's 1.1.1.0.
const Version = 0x01010100

// Server serves an HSM to many connections: each gets a client of its own
// in the front end (package frontend), its own token session, handles and
// login, as cryptech_muxd gives each its own client handle.
type Server struct {
	front *frontend.Frontend
	log   *slog.Logger

	// mu guards conns, listeners and closing. Lock order: Server.mu, then
	// serverConn.mu (Shutdown stops each connection) or the front end's
	// locks (a connection that arrives while closing is closed under it:
	// Frontend.mu, then Client.mu, then the token's session lock).
	mu        sync.Mutex
	conns     map[*serverConn]struct{}
	listeners map[net.Listener]struct{}
	closing   bool
	wg        sync.WaitGroup // one per connection
	nextID    atomic.Uint32
}

// NewServer makes a server for the tokens o opens (an emulated HSM,
// *hsm.HSM, or any other). log may be nil (nothing is logged).
func NewServer(o frontend.Opener, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{front: frontend.New(o), log: log, conns: map[*serverConn]struct{}{}, listeners: map[net.Listener]struct{}{}}
}

// Serve accepts connections on l until Shutdown. It returns nil after
// Shutdown, or the listener's error.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return l.Close()
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return nil
			}
			if temporaryAcceptError(err) {
				// Out of file descriptors and the like: wait, do not spin.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !s.track(nc) {
			nc.Close()
			return nil
		}
	}
}

// temporaryAcceptError reports an Accept failure that passes: the process
// or the system out of file descriptors or memory, a connection aborted
// before it was accepted. (net.Error's Timeout is false for all of them.)
func temporaryAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// track registers a new connection and starts serving it, unless the
// server is shutting down.
func (s *Server) track(nc net.Conn) bool {
	fe, err := s.front.Open(context.Background())
	if err != nil {
		// This connection only: the next may find the token again.
		s.log.Warn("connection refused", "error", err.Error())
		nc.Close()
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		fe.Close()
		return false
	}
	c := &serverConn{srv: s, nc: nc, client: s.nextID.Add(1), fe: fe}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	go c.serve()
	return true
}

// Shutdown stops accepting connections, lets every request in flight
// finish, then closes every connection (logging each out). It waits until
// that is done or ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.stop()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats counts what the server holds, for leak checks.
type Stats struct {
	Conns, LoggedIn, PkeyHandles, HashHandles int
	// ImportBatches counts the open import batches (EXT_IMPORT_BEGIN),
	// ImportBytes what their keys take, as counted against the front end's
	// limit.
	ImportBatches, ImportBytes int
}

// Stats reports the server's connections and what they hold.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	conns := len(s.conns)
	s.mu.Unlock()
	f := s.front.Stats()
	return Stats{Conns: conns, LoggedIn: f.LoggedIn, PkeyHandles: f.KeyHandles, HashHandles: f.HashHandles,
		ImportBatches: f.ImportBatches, ImportBytes: f.ImportBytes}
}

// serverConn is one connection: a client handle and the front end's
// client behind it.
type serverConn struct {
	srv    *Server
	nc     net.Conn
	client uint32
	fe     *frontend.Client
	// ctx ends when the connection is stopped or closed: a LOGIN waiting
	// for the HSM's login lock gives up then. nil means never.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards stopped; nothing is taken under it.
	mu      sync.Mutex
	stopped bool

	// refusal is why the last request was answered FORBIDDEN, for
	// EXT_REFUSAL (requests on a connection are answered one at a time).
	refusal wire.ExtRefusalResponse
	// xfer is the upload and download buffers of the version 6 functions.
	xfer transfer
}

// context is the connection's context (see ctx).
func (c *serverConn) context() context.Context {
	if c.ctx == nil {
		return context.Background()
	}
	return c.ctx
}

// stop makes the connection's next read fail, so it ends once the request
// it is serving, if any, is answered; a LOGIN waiting for its turn gives up.
func (c *serverConn) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
	}
	c.nc.SetReadDeadline(time.Now())
}

func (c *serverConn) serve() {
	log := c.srv.log.With("client", c.client, "remote", c.nc.RemoteAddr().String())
	log.Info("connection open")
	defer func() {
		// As cryptech_muxd does: a closed connection is logged out, and
		// everything it opened is gone.
		if c.cancel != nil {
			c.cancel()
		}
		c.fe.Close()
		c.xfer.reset()
		c.nc.Close()
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
		log.Info("connection closed")
		c.srv.wg.Done()
	}()
	fr := wire.NewFrameReader(c.nc, wire.MaxPacket)
	var out []byte
	for {
		frame, err := fr.ReadFrame()
		// An oversized or badly escaped frame ends the connection: the
		// function it was for is lost, so no answer could reach a client
		// that waits for that function's answer.
		if err != nil {
			if !errors.Is(err, io.EOF) && !c.isStopped() {
				log.Warn("connection dropped", "error", err.Error())
			}
			return
		}
		resp := c.handle(frame, log)
		clear(frame) // LOGIN and SET_PIN requests carry PINs, EXT_MASTERKEY_BACKUP passphrases
		out = wire.AppendFrame(out[:0], resp)
		if _, err := c.nc.Write(out); err != nil {
			return
		}
	}
}

func (c *serverConn) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// handle answers one request. The client field of the answer is this
// connection's handle, whatever the request said, as the multiplexer does.
func (c *serverConn) handle(frame []byte, log *slog.Logger) []byte {
	hdr, d, err := wire.DecodeRequestHeader(frame)
	if err != nil {
		c.refusal = wire.ExtRefusalResponse{}
		log.Warn("request refused", "error", err.Error())
		return wire.EncodeResponse(hdr.Func, c.client, statusOf(err), nil)
	}
	results, err := c.dispatch(hdr.Func, d)
	st := statusOf(err)
	if hdr.Func != wire.FuncExtRefusal {
		c.refusal = refusalOf(hdr.Func, st, err)
	}
	var resp []byte
	if st == wire.StatusOK {
		resp = wire.EncodeResponse(hdr.Func, c.client, st, results)
		if len(resp) > wire.MaxPacket {
			// No libhal client could read it (nor ours: the frame reader
			// drops the connection), e.g. many big attributes at once.
			st = wire.StatusRPCPacketOverflow
		}
	}
	if st != wire.StatusOK {
		// The function and status only: never a PIN, a key or a message.
		log.Warn("request failed", "func", hdr.Func.String(), "status", st.Error())
		resp = wire.EncodeResponse(hdr.Func, c.client, st, nil)
	}
	return resp
}

// dispatch decodes the arguments of f and runs it.
func (c *serverConn) dispatch(f wire.Func, d *wire.Decoder) (wire.Args, error) {
	h, ok := handlers[f]
	if !ok {
		return nil, wire.StatusRPCBadFunction
	}
	return h(c, d)
}
