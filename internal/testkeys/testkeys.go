// Package testkeys holds fixed private keys for tests that cannot afford
// to make them: an RSA-8192 key takes Go tens of seconds to generate (and
// OpenSSL half a minute: this one was made once with `openssl genpkey
// -algorithm RSA -pkeyopt rsa_keygen_bits:8192`), and Go's crypto/rsa makes
// keys with e = 65537 only (this 1024-bit one, with e = 3, came from
// `openssl genpkey ... -pkeyopt rsa_keygen_pubexp:3`). They are test keys,
// public in this repository: never use them for anything else.
package testkeys

import (
	"crypto/rsa"
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"testing"
)

var (
	//go:embed rsa8192.pem
	rsa8192PEM []byte
	//go:embed rsa1024-e3.pem
	rsa1024E3PEM []byte
)

// RSA8192 returns an RSA key with an 8192-bit modulus and e = 65537.
func RSA8192(t testing.TB) *rsa.PrivateKey { return parse(t, rsa8192PEM) }

// RSA1024E3 returns an RSA key with a 1024-bit modulus and e = 3.
func RSA1024E3(t testing.TB) *rsa.PrivateKey { return parse(t, rsa1024E3PEM) }

func parse(t testing.TB, data []byte) *rsa.PrivateKey {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("testkeys: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("testkeys: %v", err)
	}
	return k.(*rsa.PrivateKey)
}
