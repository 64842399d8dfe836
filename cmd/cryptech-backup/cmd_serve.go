package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/hsmkit/cryptech-backup/internal/filelock"
	"github.com/hsmkit/cryptech-backup/rpc"
)

// defaultSocket is where libhal's Python client looks for the multiplexer.
const defaultSocket = "/tmp/.cryptech_muxd.rpc"

// repeated collects a flag given several times (--listen, store's --key).
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

var serveCommand = &command{
	name:    "serve",
	args:    "[--hsm DIR] [--listen unix:PATH] [--listen tcp:HOST:PORT] [--tls-cert F --tls-key F --tls-client-ca F]",
	summary: "run an emulated HSM as a daemon speaking the libhal RPC protocol",
	examples: `  cryptech-backup serve --hsm ./hsm                       # on /tmp/.cryptech_muxd.rpc
  cryptech-backup serve --hsm ./hsm --listen tcp:127.0.0.1:2000
  cryptech-backup serve --hsm ./hsm --listen tcp:0.0.0.0:2000 --tls-cert srv.pem --tls-key srv.key --tls-client-ca ca.pem
`,
	define: defineServe,
}

// defineServe registers the flags of serve and returns what runs it.
func defineServe(fs *flag.FlagSet) runFunc {
	var dir string
	var listens repeated
	var tf tlsFlags
	registerHSMDir(fs, &dir, "emulated HSM state directory", "")
	fs.Var(&listens, "listen", "where to listen, repeatable: unix:PATH or tcp:HOST:PORT (default unix:$CRYPTECH_RPC_CLIENT_SOCKET_NAME, else unix:"+defaultSocket+")")
	tf.registerServer(fs)
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		c.hsmDir = dir
		if len(listens) == 0 {
			sock := e.getenv("CRYPTECH_RPC_CLIENT_SOCKET_NAME")
			if sock == "" {
				sock = defaultSocket
			}
			listens = append(listens, "unix:"+sock)
		}
		conf, err := tf.server()
		if err != nil {
			return err
		}
		var ls []net.Listener
		defer func() {
			for _, l := range ls {
				l.Close()
			}
		}()
		for _, addr := range listens {
			l, err := listen(addr, conf)
			if err != nil {
				return err
			}
			ls = append(ls, l)
		}
		h, err := openEmulated(e, c.dir(e), "")
		if err != nil {
			return err
		}
		log := slog.New(slog.NewTextHandler(e.stderr, nil))
		srv := rpc.NewServer(h, log)
		errs := make(chan error, len(ls))
		for _, l := range ls {
			go func() { errs <- srv.Serve(l) }()
		}
		// The addresses the listeners got: tcp:HOST:0 names a port.
		var got []string
		for _, l := range ls {
			got = append(got, l.Addr().Network()+":"+l.Addr().String())
		}
		log.Info("serving", "hsm", c.dir(e), "listen", strings.Join(got, ","))
		select {
		case <-ctx.Done():
			// serve bounds its own shutdown (shutdownBound): the
			// interrupt watchdog's few seconds must not cut short a
			// signature that is still building its key's trees, or
			// the keystore's closing. A second signal still kills.
			release := e.hold()
			defer release()
			log.Info("stopping: finishing the requests in flight")
		case err = <-errs:
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownBound)
		defer cancel()
		serr := srv.Shutdown(sctx)
		if serr != nil {
			serr = fmt.Errorf("requests still in flight after %v were cut short: %w", shutdownBound, serr)
		}
		// Closing the HSM makes its keystore durable, and ends what is
		// still in flight: an HSS signature still building its key's
		// trees gives up, using no signature index.
		cerr := h.Close()
		if err := errors.Join(err, serr, cerr); err != nil {
			return err
		}
		log.Info("stopped")
		return nil
	}
}

// shutdownBound is how long serve lets the requests in flight finish when
// it is told to stop.
const shutdownBound = 30 * time.Second

// listen opens one listener. A TCP listener off the loopback interface
// needs TLS: libhal sends PINs and keys in the clear.
func listen(addr string, conf *tls.Config) (net.Listener, error) {
	network, address, err := rpc.ParseAddress(addr)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	if network == "unix" {
		return listenUnix(address)
	}
	if !rpc.IsLoopback(address) && conf == nil {
		return nil, fmt.Errorf("refusing to listen on %s without TLS: libhal's protocol carries PINs in the clear; give --tls-cert, --tls-key and --tls-client-ca, or listen on loopback", addr)
	}
	l, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	if conf != nil {
		return tls.NewListener(l, conf), nil
	}
	return l, nil
}

// listenUnix listens on a Unix socket readable by this user only. A socket
// file nobody answers on is left over from a daemon that died: it is
// replaced. An exclusive lock on PATH.lock, held for the listener's life,
// keeps two daemons started at once from both finding nobody answering and
// one removing the other's socket.
func listenUnix(path string) (net.Listener, error) {
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := filelock.Lock(lock); err != nil {
		lock.Close()
		if errors.Is(err, filelock.ErrLocked) {
			return nil, fmt.Errorf("%s: another daemon is serving there", path)
		}
		return nil, fmt.Errorf("lock %s.lock: %w", path, err)
	}
	// A daemon of a version without the lock may still be answering.
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		lock.Close()
		return nil, fmt.Errorf("%s: another daemon is serving there", path)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	old := umask(0o077)
	l, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return &lockedListener{Listener: l, lock: lock}, nil
}

// lockedListener releases its socket path's lock once it is closed (and
// its socket file removed).
type lockedListener struct {
	net.Listener
	lock *os.File
}

func (l *lockedListener) Close() error {
	err := l.Listener.Close()
	l.lock.Close()
	return err
}
