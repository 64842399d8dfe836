// Package tlsconf makes the TLS configurations of the libhal RPC, which has
// no secure channel of its own: TLS 1.3, the server's certificate checked
// against a CA, and the client's against another. The command line (--rpc,
// serve) and the PKCS#11 module's config file take the same PEM files and
// get the same configurations from here.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// A Reader reads a PEM file whole, within whatever bound the caller sets
// (a wrong path such as /dev/zero must be refused, not read until memory
// runs out).
type Reader func(path string) ([]byte, error)

// Client is a client's configuration: the server's certificate must chain
// to the CA in caFile; certFile and keyFile, when given (both or neither),
// are the client's own, which serve requires.
func Client(read Reader, certFile, keyFile, caFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a TLS client certificate needs its key, and a key its certificate")
	}
	certs, pool, err := load(read, certFile, keyFile, caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: certs, RootCAs: pool}, nil
}

// Server is a server's configuration: clients must present a certificate
// that chains to the CA in clientCAFile.
func Server(read Reader, certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("a TLS server needs its certificate and key")
	}
	certs, pool, err := load(read, certFile, keyFile, clientCAFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: certs,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}, nil
}

// load reads every file before it parses any, so that a file that cannot
// be read is named first, then parses them: the key pair (none without
// certFile) and the CA.
func load(read Reader, certFile, keyFile, caFile string) ([]tls.Certificate, *x509.CertPool, error) {
	var certPEM, keyPEM []byte
	var err error
	if certFile != "" {
		if certPEM, err = read(certFile); err != nil {
			return nil, nil, fmt.Errorf("TLS certificate: %w", err)
		}
		if keyPEM, err = read(keyFile); err != nil {
			return nil, nil, fmt.Errorf("TLS key: %w", err)
		}
		defer clear(keyPEM)
	}
	caPEM, err := read(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS CA certificate: %w", err)
	}
	var certs []tls.Certificate
	if certFile != "" {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("TLS certificate %s and key %s: %w", certFile, keyFile, err)
		}
		certs = []tls.Certificate{cert}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, errors.New(caFile + ": no PEM certificate")
	}
	return certs, pool, nil
}
