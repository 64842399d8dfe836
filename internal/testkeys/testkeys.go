// Package testkeys holds fixed private keys for tests that cannot afford
// to make them: an RSA-8192 key takes Go tens of seconds to generate (and
// OpenSSL half a minute: this one was made once with `openssl genpkey
// -algorithm RSA -pkeyopt rsa_keygen_bits:8192`), and Go's crypto/rsa makes
// keys with e = 65537 only (this 1024-bit one, with e = 3, came from
// `openssl genpkey ... -pkeyopt rsa_keygen_pubexp:3`), and an HSS key whose
// tree takes seconds to build is as slow to generate as to load (this one
// came from `cryptech-backup hashsig keygen --lms sha256-m32-h15 --lmots
// sha256-n32-w8`). They are test keys, public in this repository: never
// use them for anything else.
package testkeys

import (
	"bytes"
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
	//go:embed hss-h15-w8.prv
	hssH15W8State []byte
	//go:embed hss-h15-w8.pub
	hssH15W8Public []byte
)

// RSA8192 returns an RSA key with an 8192-bit modulus and e = 65537.
func RSA8192(t testing.TB) *rsa.PrivateKey { return parse(t, rsa8192PEM) }

// RSA1024E3 returns an RSA key with a 1024-bit modulus and e = 3.
func RSA1024E3(t testing.TB) *rsa.PrivateKey { return parse(t, rsa1024E3PEM) }

// HSSH15W8 returns an HSS key of one level, LMS_SHA256_M32_H15 with
// LMOTS_SHA256_N32_W8, unused: its private state (package hashsig's
// MarshalBinary form, as `hashsig keygen` writes it) and its RFC 8554 public
// key, fresh copies. Its 32,768-leaf tree takes seconds to build (tens of
// seconds, or minutes, under the race detector): the first signature after
// the key is loaded builds it.
func HSSH15W8() (state, public []byte) {
	return bytes.Clone(hssH15W8State), bytes.Clone(hssH15W8Public)
}

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
