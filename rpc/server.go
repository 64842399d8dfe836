package rpc

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// Version is what GET_VERSION answers: libhal's 1.1.1.0.
const Version = 0x01010100

// Server serves one emulated HSM to many connections.
type Server struct {
	hsm *hsm.HSM
	log *slog.Logger

	mu        sync.Mutex
	conns     map[*serverConn]struct{}
	listeners map[net.Listener]struct{}
	closing   bool
	wg        sync.WaitGroup // one per connection
	nextID    atomic.Uint32

	// limits bound what each connection holds (defaultLimits; tests set
	// smaller ones before Serve).
	limits connLimits
}

// connLimits bound what one connection may hold at once.
type connLimits struct {
	pkeys, hashes                int // open key and hash handles
	batches, batchKeys, batchMem int // open import batches, keys in one, bytes in all
}

var defaultLimits = connLimits{
	pkeys: maxPkeyHandles, hashes: maxHashHandles,
	batches: maxImportBatches, batchKeys: maxBatch, batchMem: maxImportBytes,
}

// NewServer makes a server for h. log may be nil (nothing is logged).
func NewServer(h *hsm.HSM, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{hsm: h, log: log, conns: map[*serverConn]struct{}{}, listeners: map[net.Listener]struct{}{}, limits: defaultLimits}
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	c := &serverConn{
		srv: s, nc: nc, client: s.nextID.Add(1),
		sess:  s.hsm.NewSession(),
		pkeys: map[uint32]pkeyHandle{}, hashes: map[uint32]*hashState{}, imports: map[uint32]*importBatch{},
	}
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
	// ImportBytes what their keys take, as counted against maxImportBytes.
	ImportBatches, ImportBytes int
}

// Stats reports the server's connections and what they hold.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Stats
	for c := range s.conns {
		st.Conns++
		c.mu.Lock()
		if c.sess.User() != hsm.UserNone {
			st.LoggedIn++
		}
		st.PkeyHandles += len(c.pkeys)
		st.HashHandles += len(c.hashes)
		st.ImportBatches += len(c.imports)
		st.ImportBytes += c.importBytes
		c.mu.Unlock()
	}
	return st
}

// logoutAll logs every connection out (LOGOUT_ALL).
func (s *Server) logoutAll() {
	s.mu.Lock()
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.sess.Logout(context.Background())
		c.dropImports()
	}
}

// What one connection may hold at once. libhal has fixed tables of key and
// hash slots for all its clients; these bound each connection instead, so
// that no client can make the daemon hold memory without end.
const (
	// maxPkeyHandles bounds the open key handles: more than the keys a
	// keystore of sim.MaxBlocks blocks can hold (one key per block), since
	// Client keeps a handle on every key it has touched. Beyond it, a
	// function that would open one answers NO_KEY_SLOTS_AVAILABLE, as
	// libhal does when its key slots are all taken.
	maxPkeyHandles = 65536
	// maxHashHandles bounds the open hashes; beyond it HASH_INITIALIZE
	// answers ALLOCATION_FAILURE, as libhal does when its hash slots are
	// all taken.
	maxHashHandles = 64
)

// serverConn is one connection: a client handle, an HSM session and the
// handles opened through it.
type serverConn struct {
	srv    *Server
	nc     net.Conn
	client uint32
	sess   *hsm.Session
	// ctx ends when the connection is stopped or closed: a LOGIN waiting
	// for the HSM's login lock gives up then. nil means never.
	ctx    context.Context
	cancel context.CancelFunc

	mu          sync.Mutex
	nextHandle  uint32
	pkeys       map[uint32]pkeyHandle
	hashes      map[uint32]*hashState
	imports     map[uint32]*importBatch
	importBytes int // what the open import batches hold (importBatch.bytes)
	stopped     bool
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
		c.sess.Close()
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
		clear(frame) // LOGIN and SET_PIN requests carry PINs
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
		log.Warn("request refused", "error", err.Error())
		return wire.EncodeResponse(hdr.Func, c.client, statusOf(err), nil)
	}
	results, err := c.dispatch(hdr.Func, d)
	st := statusOf(err)
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

// handles

func (c *serverConn) newHandle() uint32 {
	c.nextHandle++
	if c.nextHandle == 0 {
		c.nextHandle++
	}
	return c.nextHandle
}

// roomForPkey fails when the connection holds maxPkeyHandles key handles.
// A function that opens a handle asks first, before it makes or stores
// anything: a connection serves one request at a time, so the room is
// still there when the handle is opened.
func (c *serverConn) roomForPkey() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pkeys) >= c.srv.limits.pkeys {
		return wire.StatusNoKeySlotsAvailable
	}
	return nil
}

// pkeyHandle is what a key handle names: a key, and the facts of it that
// never change, so that signing needs no lookup of its own (libhal's key
// slots keep them too).
type pkeyHandle struct {
	id    hsm.UUID
	typ   hsm.KeyType
	curve hsm.Curve
	hss   bool
}

func (c *serverConn) openPkey(k hsm.KeyInfo) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.newHandle()
	c.pkeys[h] = pkeyHandle{id: k.UUID, typ: k.Type, curve: k.Curve, hss: k.Hashsig != nil}
	return h
}

func (c *serverConn) pkey(h uint32) (hsm.UUID, error) {
	k, err := c.pkeyHandle(h)
	return k.id, err
}

func (c *serverConn) pkeyHandle(h uint32) (pkeyHandle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.pkeys[h]
	if !ok {
		return pkeyHandle{}, fmt.Errorf("%w: no key handle %d", hsm.ErrKeyNotFound, h)
	}
	return k, nil
}

func (c *serverConn) closePkey(h uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pkeys, h)
}

// pkeyInfo returns the key behind a handle.
func (c *serverConn) pkeyInfo(h uint32) (hsm.KeyInfo, error) {
	id, err := c.pkey(h)
	if err != nil {
		return hsm.KeyInfo{}, err
	}
	return c.sess.Key(context.Background(), id)
}

// hashState is an open hash (HASH_INITIALIZE).
type hashState struct {
	alg  uint32
	hash crypto.Hash
	h    interface {
		io.Writer
		Sum([]byte) []byte
	}
}
