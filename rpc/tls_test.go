package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/testtls"
)

// TestServerTLS puts the server behind TLS 1.3 with client certificates,
// as the serve command does for a TCP listener off loopback: a client with
// a certificate from the client CA gets in; one without a certificate, one
// whose certificate another CA signed, and one that speaks plain libhal
// are refused at the handshake or the first call, and leave nothing behind.
func TestServerTLS(t *testing.T) {
	ca, otherCA := testtls.NewCA(t, "test CA"), testtls.NewCA(t, "other CA")
	serverCert := ca.Issue(t, "server", true)
	clientCert := ca.Issue(t, "client", false)
	strangerCert := otherCA.Issue(t, "stranger", false)

	h, err := hsm.Create(t.TempDir()+"/hsm", hsm.InitConfig{WheelPIN: wheelPIN, SOPIN: []byte("so-pin"), UserPIN: userPIN, Blocks: 64}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// As cmd/cryptech-backup's tlsFlags.server and listen.
	conf := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{serverCert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool}
	srv := NewServer(h, nil)
	go srv.Serve(tls.NewListener(l, conf))
	defer srv.Shutdown(ctx)
	addr := "tcp:" + l.Addr().String()

	clientConf := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: certs, RootCAs: ca.Pool}
	}

	c, err := Dial(ctx, addr, clientConf(clientCert))
	if err != nil {
		t.Fatalf("a client with a good certificate: %v", err)
	}
	if err := c.Login(ctx, hsmapi.UserNormal, userPIN); err != nil {
		t.Fatal(err)
	}
	if !c.Extended() {
		t.Error("no extensions over TLS")
	}
	if st := srv.Stats(); st.Conns != 1 || st.LoggedIn != 1 {
		t.Errorf("server holds %+v", st)
	}

	for _, tc := range []struct {
		name string
		conf *tls.Config
	}{
		{"no client certificate", clientConf()},
		// Go's client keeps back a certificate the server's CAs did not
		// sign; the second one sends it all the same.
		{"a certificate another CA signed", clientConf(strangerCert)},
		{"a certificate another CA signed, sent", &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.Pool,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &strangerCert, nil }}},
		{"TLS 1.2", &tls.Config{MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{clientCert}, RootCAs: ca.Pool}},
		{"a server it does not trust", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{clientCert}, RootCAs: otherCA.Pool}},
		{"no TLS", nil},
	} {
		if c, err := Dial(ctx, addr, tc.conf); err == nil {
			c.Close()
			t.Errorf("%s: connected", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	waitStats(t, srv, Stats{Conns: 1, LoggedIn: 1})
	// The good client never noticed.
	if !isLoggedIn(t, c, hsmapi.UserNormal) {
		t.Error("the good client was logged out")
	}
	c.Close()
	waitStats(t, srv, Stats{})
}

// The client refuses to send PINs in the clear off loopback, before it
// connects; on loopback, or with TLS, it goes ahead.
func TestDialRefusesCleartextOffLoopback(t *testing.T) {
	for _, addr := range []string{"tcp:192.0.2.1:4444", "tcp:[2001:db8::1]:4444", "tcp:hsm.example:4444"} {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := Dial(ctx, addr, nil)
		cancel()
		if !errors.Is(err, ErrCleartext) {
			t.Errorf("%s: got %v, want ErrCleartext", addr, err)
		}
	}
	for addr, want := range map[string]bool{
		"127.0.0.1:1": true, "[::1]:1": true, "localhost:1": true, "127.3.4.5:1": true,
		"192.0.2.1:1": false, "0.0.0.0:1": false, "localhost.example:1": false, "nonsense": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}

// A Unix socket path too long for the kernel is refused by name.
func TestParseAddressRefusesLongSocketPath(t *testing.T) {
	long := "unix:/" + strings.Repeat("d", maxUnixPath)
	if _, _, err := ParseAddress(long); !errors.Is(err, ErrBadAddress) || !strings.Contains(err.Error(), "at most 107 bytes") {
		t.Errorf("a %d-byte path: %v", len(long)-5, err)
	}
	if _, _, err := ParseAddress("unix:/" + strings.Repeat("d", maxUnixPath-1)); err != nil {
		t.Errorf("a %d-byte path: %v", maxUnixPath, err)
	}
}
