package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
)

// tlsFlags are the TLS settings of a client (--tls-ca, registered with the
// backend flags) or a server (--tls-client-ca). libhal has no secure channel of its own; these give it
// TLS 1.3 with certificates on both sides.
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
	cert, pool, err := loadTLS(t.cert, t.key, t.ca)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool}, nil
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
	cert, pool, err := loadTLS(t.cert, t.key, t.clientCA)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}, nil
}

// loadTLS reads the PEM files, none larger than maxSmallFile (a wrong path
// such as /dev/zero is refused, not read until memory runs out), then parses
// them.
func loadTLS(certFile, keyFile, caFile string) (tls.Certificate, *x509.CertPool, error) {
	certPEM, err := readFileLimited(certFile, maxSmallFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("TLS certificate: %w", err)
	}
	keyPEM, err := readFileLimited(keyFile, maxSmallFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("TLS key: %w", err)
	}
	defer clear(keyPEM)
	caPEM, err := readFileLimited(caFile, maxSmallFile)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("TLS CA certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return tls.Certificate{}, nil, errors.New(caFile + ": no PEM certificate")
	}
	return cert, pool, nil
}
