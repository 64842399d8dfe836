package main

import (
	"crypto/tls"
	"flag"

	"github.com/hsmkit/cryptech-backup/internal/tlsconf"
)

// tlsFlags are the TLS settings of a client (--tls-ca, registered with the
// backend flags) or a server (--tls-client-ca). libhal has no secure channel of its own; these give it
// TLS 1.3 with certificates on both sides (package tlsconf).
type tlsFlags struct {
	cert, key, ca, clientCA string
}

func (t *tlsFlags) registerServer(fs *flag.FlagSet) {
	fs.StringVar(&t.cert, "tls-cert", "", "the server's certificate (PEM), for TCP listeners")
	fs.StringVar(&t.key, "tls-key", "", "the server's private key (PEM)")
	fs.StringVar(&t.clientCA, "tls-client-ca", "", "the CA certificate (PEM) that clients' certificates must chain to")
}

// client returns the client's TLS configuration, or nil without TLS flags.
func (t *tlsFlags) client() (*tls.Config, error) {
	if t.cert == "" && t.key == "" && t.ca == "" {
		return nil, nil
	}
	if t.cert == "" || t.key == "" || t.ca == "" {
		return nil, usageError{"TLS needs --tls-cert, --tls-key and --tls-ca together"}
	}
	return tlsconf.Client(readPEM, t.cert, t.key, t.ca)
}

// server returns the server's TLS configuration, or nil without TLS flags.
// Clients must present a certificate the client CA signed.
func (t *tlsFlags) server() (*tls.Config, error) {
	if t.cert == "" && t.key == "" && t.clientCA == "" {
		return nil, nil
	}
	if t.cert == "" || t.key == "" || t.clientCA == "" {
		return nil, usageError{"TLS needs --tls-cert, --tls-key and --tls-client-ca together"}
	}
	return tlsconf.Server(readPEM, t.cert, t.key, t.clientCA)
}

// readPEM reads a TLS file of at most maxSmallFile bytes: a wrong path
// such as /dev/zero is refused, not read until memory runs out.
func readPEM(path string) ([]byte, error) { return readFileLimited(path, maxSmallFile) }
