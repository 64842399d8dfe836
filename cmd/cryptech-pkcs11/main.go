// Command cryptech-pkcs11 is the emulated HSM's PKCS#11 face: built with
//
//	go build -buildmode=c-shared -o libcryptech-pkcs11.so ./cmd/cryptech-pkcs11
//
// it is a PKCS#11 module that applications load in place of SoftHSM2. It
// finds its HSM at C_Initialize: the emulated HSM directory $CRYPTECH_HSM,
// opened in-process (the config file and the libhal socket of issue 11 are
// still to come). The logic is package internal/cryptoki; export.go and
// shim.c only convert between C and Go.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/hsmkit/cryptech-backup/cmd/cryptech-pkcs11/internal/cryptoki"
	"github.com/hsmkit/cryptech-backup/hsm"
)

func main() {}

// module is the library's one state, as a PKCS#11 library has.
var module = cryptoki.New(openFromEnv)

// errNoHSM: nothing says where the HSM is.
var errNoHSM = errors.New("CRYPTECH_HSM is not set")

// openFromEnv opens the emulated HSM in $CRYPTECH_HSM, holding its
// directory's lock until Finalize.
func openFromEnv() (*cryptoki.Token, error) {
	dir := getenv("CRYPTECH_HSM")
	if dir == "" {
		return nil, errNoHSM
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("HSM directory %s: %w", dir, err)
	}
	h, err := hsm.Open(abs, hsm.Options{})
	if err != nil {
		return nil, err
	}
	// The emulated HSM has no serial number of its own yet; its directory
	// names it, so the serial is derived from that and stays the same
	// across loads.
	sum := sha256.Sum256([]byte(abs))
	return &cryptoki.Token{
		Opener:       h,
		Close:        h.Close,
		Label:        filepath.Base(abs),
		Manufacturer: "Cryptech Project (emulated)",
		Model:        "Cryptech HSM",
		Serial:       hex.EncodeToString(sum[:8]),
		MinPIN:       hsm.MinPINLength,
		MaxPIN:       hsm.MaxPINLength,
	}, nil
}
