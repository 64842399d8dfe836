// Command cryptech-pkcs11 is the emulated HSM's PKCS#11 face: built with
//
//	go build -buildmode=c-shared -o libcryptech-pkcs11.so ./cmd/cryptech-pkcs11
//
// it is a PKCS#11 module that applications load in place of SoftHSM2. It
// finds its HSM at C_Initialize: the emulated HSM directory $CRYPTECH_HSM,
// opened in-process, else the libhal RPC socket (the config file of issue
// 11 is still to come). The logic is package internal/cryptoki; export.go and
// shim.c only convert between C and Go.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"

	"github.com/hsmkit/cryptech-backup/cmd/cryptech-pkcs11/internal/cryptoki"
	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc"
)

func main() {}

// module is the library's one state, as a PKCS#11 library has.
var module = cryptoki.New(openFromEnv)

// defaultSocket is where Cryptech's multiplexer listens, and with it
// "serve" for the libhal clients that expect one.
const defaultSocket = "/tmp/.cryptech_muxd.rpc"

// openFromEnv finds the HSM as Cryptech's own PKCS#11 library does, with
// the emulated HSM first: the directory $CRYPTECH_HSM, opened in-process
// and locked until Finalize; else the libhal socket
// $CRYPTECH_RPC_CLIENT_SOCKET_NAME, else defaultSocket, so that several
// applications share one HSM.
func openFromEnv() (*cryptoki.Token, error) {
	if dir := getenv("CRYPTECH_HSM"); dir != "" {
		return openDir(dir)
	}
	path := getenv("CRYPTECH_RPC_CLIENT_SOCKET_NAME")
	if path == "" {
		path = defaultSocket
	}
	return &cryptoki.Token{
		Opener:       socket(path),
		Close:        func() error { return nil }, // each client's connection closes with it
		Label:        "Cryptech HSM",
		Manufacturer: "Cryptech Project",
		Model:        "Cryptech RPC",
		Serial:       serial(path),
		MinPIN:       hsm.MinPINLength,
		MaxPIN:       hsm.MaxPINLength,
	}, nil
}

// socket opens a connection to a libhal RPC server per client.
type socket string

func (s socket) Open(ctx context.Context) (hsmapi.Token, error) {
	return rpc.Dial(ctx, "unix:"+string(s), nil)
}

var _ frontend.Opener = socket("")

// serial stands for the serial number neither the emulated HSM nor the
// libhal RPC tells yet: derived from where the HSM is, it stays the same
// across loads.
func serial(where string) string {
	sum := sha256.Sum256([]byte(where))
	return hex.EncodeToString(sum[:8])
}

// openDir opens the emulated HSM in dir.
func openDir(dir string) (*cryptoki.Token, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("HSM directory %s: %w", dir, err)
	}
	h, err := hsm.Open(abs, hsm.Options{})
	if err != nil {
		return nil, err
	}
	return &cryptoki.Token{
		Opener:       h,
		Close:        h.Close,
		Label:        filepath.Base(abs),
		Manufacturer: "Cryptech Project (emulated)",
		Model:        "Cryptech HSM",
		Serial:       serial(abs),
		MinPIN:       hsm.MinPINLength,
		MaxPIN:       hsm.MaxPINLength,
	}, nil
}
