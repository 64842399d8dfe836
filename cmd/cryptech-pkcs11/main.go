// Command cryptech-pkcs11 is the emulated HSM's PKCS#11 face: built with
//
//	go build -buildmode=c-shared -o libcryptech-pkcs11.so ./cmd/cryptech-pkcs11
//
// it is a PKCS#11 module that applications load in place of SoftHSM2. It
// finds its HSMs at C_Initialize: the slots of the config file
// $CRYPTECH_PKCS11_CONF (config.go), else the emulated HSM directory
// $CRYPTECH_HSM, opened in-process, else the libhal RPC socket. The logic
// is package internal/cryptoki; export.go and shim.c only convert between
// C and Go, but that shim.c keeps a fork()ed child out of the module and
// closes its copies of the module's descriptors (forkfds.go).
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hsmkit/cryptech-backup/cmd/cryptech-pkcs11/internal/cryptoki"
	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/tlsconf"
	"github.com/hsmkit/cryptech-backup/rpc"
)

func main() {}

// module is the library's one state, as a PKCS#11 library has.
var module = cryptoki.New(openFromEnv)

func init() { module.Log = logInitError }

// logInitError writes why C_Initialize failed to stderr, one line, when
// $CRYPTECH_PKCS11_DEBUG is set: a library has no business writing on its
// application's stderr otherwise, and PKCS#11 has no code but
// CKR_GENERAL_ERROR for "your config file is wrong".
func logInitError(err error) {
	if getenv("CRYPTECH_PKCS11_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "cryptech-pkcs11: C_Initialize: %v\n", err)
	}
}

// defaultSocket is where Cryptech's multiplexer listens, and with it
// "serve" for the libhal clients that expect one.
const defaultSocket = "/tmp/.cryptech_muxd.rpc"

// openFromEnv finds the HSMs: the slots of the config file
// $CRYPTECH_PKCS11_CONF; else, as Cryptech's own PKCS#11 library does with
// the emulated HSM first, the directory $CRYPTECH_HSM, opened in-process
// and locked until Finalize; else the libhal socket
// $CRYPTECH_RPC_CLIENT_SOCKET_NAME, else defaultSocket, so that several
// applications share one HSM.
func openFromEnv() ([]*cryptoki.Token, error) {
	if path := getenv("CRYPTECH_PKCS11_CONF"); path != "" {
		slots, err := loadConfig(path)
		if err != nil {
			return nil, err
		}
		return openSlots(slots)
	}
	if dir := getenv("CRYPTECH_HSM"); dir != "" {
		return openSlots([]slotConfig{{hsm: dir}})
	}
	path := getenv("CRYPTECH_RPC_CLIENT_SOCKET_NAME")
	if path == "" {
		path = defaultSocket
	}
	return openSlots([]slotConfig{{rpc: "unix:" + path}})
}

// openSlots opens every slot's HSM, or none: when one fails, those opened
// are closed again.
func openSlots(slots []slotConfig) ([]*cryptoki.Token, error) {
	var toks []*cryptoki.Token
	for i, s := range slots {
		tok, err := openSlot(s)
		if err != nil {
			for _, t := range toks {
				t.Close()
			}
			if s.line != 0 {
				return nil, fmt.Errorf("the slot of line %d: %w", s.line, err)
			}
			return nil, fmt.Errorf("slot %d: %w", i, err)
		}
		tok.Label = s.label
		toks = append(toks, tok)
	}
	return toks, nil
}

func openSlot(s slotConfig) (*cryptoki.Token, error) {
	if s.hsm != "" {
		return openDir(s.hsm)
	}
	return openRemote(s)
}

// openRemote makes the token of an HSM behind a libhal RPC server: a
// connection per client of the front end. (The first opens at
// Initialize: a server not there fails it.)
func openRemote(s slotConfig) (*cryptoki.Token, error) {
	var conf *tls.Config
	if s.tlsCA != "" {
		var err error
		conf, err = tlsconf.Client(readPEM, s.tlsCert, s.tlsKey, s.tlsCA)
		if err != nil {
			return nil, err
		}
	}
	return &cryptoki.Token{
		Opener: remote{addr: s.rpc, tls: conf},
		Close:  func() error { return nil }, // each client's connection closes with it
		// What a Cryptech HSM, which cannot tell its identity, shows.
		Identity: hsmapi.Identity{
			Label:        "Cryptech HSM",
			Manufacturer: "Cryptech Project",
			Model:        "Cryptech RPC",
			Serial:       serial(strings.TrimPrefix(s.rpc, "unix:")),
		},
		MinPIN: hsm.MinPINLength,
		MaxPIN: hsm.MaxPINLength,
	}, nil
}

// readPEM reads a TLS file named in the config file.
func readPEM(path string) ([]byte, error) { return readBounded(path, maxPEM) }

// maxPEM bounds a TLS certificate or key file.
const maxPEM = 1 << 20

// remote opens a connection to a libhal RPC server per client.
type remote struct {
	addr string
	tls  *tls.Config
}

// Open connects as rpc.Dial does, its socket told to shim.c (ownConn):
// Unix sockets read through pollConn, TCP refused in the clear but to
// loopback.
func (r remote) Open(ctx context.Context) (hsmapi.Token, error) {
	network, address, err := rpc.ParseAddress(r.addr)
	if err != nil {
		return nil, err
	}
	if network == "tcp" && r.tls == nil && !rpc.IsLoopback(address) {
		return nil, fmt.Errorf("connect to %s: %w", r.addr, rpc.ErrCleartext)
	}
	nc, err := r.dial(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", r.addr, err)
	}
	c, err := rpc.NewClient(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect to %s: %w", r.addr, err)
	}
	return c, nil
}

// dial opens the connection: over TLS when r has its configuration.
func (r remote) dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	if r.tls != nil {
		nc, err := (&tls.Dialer{NetDialer: &d, Config: r.tls}).DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return owned(nc, nc.(*tls.Conn).NetConn().(syscall.Conn))
	}
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	if uc, ok := nc.(*net.UnixConn); ok {
		pc, err := newPollConn(uc)
		if err != nil {
			nc.Close()
			return nil, err
		}
		return owned(pc, uc)
	}
	return owned(nc, nc.(syscall.Conn))
}

// owned is ownConn, closing nc when it fails.
func owned(nc net.Conn, sock syscall.Conn) (net.Conn, error) {
	oc, err := ownConn(nc, sock)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return oc, nil
}

var _ frontend.Opener = remote{}

// serial stands for the serial number a Cryptech HSM's libhal RPC does not
// tell: derived from where the HSM is (a socket's path, as before there
// were TCP addresses here, or tcp:HOST:PORT), it stays the same across
// loads.
func serial(where string) string {
	sum := sha256.Sum256([]byte(where))
	return hex.EncodeToString(sum[:8])
}

// openDir opens the emulated HSM in dir; its identity is its own
// (hsmapi.Identifier).
func openDir(dir string) (*cryptoki.Token, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("HSM directory %s: %w", dir, err)
	}
	h, err := hsm.Open(abs, hsm.Options{PINTickets: hsm.PINTicketsFromEnv(os.Getenv)})
	if errors.Is(err, hsm.ErrBoardInUse) {
		return nil, fmt.Errorf("HSM directory %s: %w (another process has it open; reach it through serve's socket instead)", dir, err)
	}
	if err != nil {
		return nil, err
	}
	disown, err := ownDir(abs)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &cryptoki.Token{
		Opener: h,
		Close: func() error {
			disown()
			return h.Close()
		},
		MinPIN: hsm.MinPINLength,
		MaxPIN: hsm.MaxPINLength,
	}, nil
}
