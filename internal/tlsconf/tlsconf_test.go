package tlsconf

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/internal/testtls"
)

func TestConfigs(t *testing.T) {
	dir := t.TempDir()
	ca := testtls.NewCA(t, "CA")
	caFile := ca.WriteCA(t, dir, "ca.pem")
	cert, key := testtls.WriteCert(t, dir, "c", ca.Issue(t, "c", false))

	c, err := Client(os.ReadFile, cert, key, caFile)
	if err != nil || c.MinVersion != tls.VersionTLS13 || len(c.Certificates) != 1 || c.RootCAs == nil {
		t.Fatalf("client with a certificate: %+v, %v", c, err)
	}
	if c, err := Client(os.ReadFile, "", "", caFile); err != nil || len(c.Certificates) != 0 {
		t.Fatalf("client without a certificate: %+v, %v", c, err)
	}
	s, err := Server(os.ReadFile, cert, key, caFile)
	if err != nil || s.ClientAuth != tls.RequireAndVerifyClientCert || s.ClientCAs == nil || s.MinVersion != tls.VersionTLS13 {
		t.Fatalf("server: %+v, %v", s, err)
	}
	for _, c := range []struct {
		name, cert, key, ca, want string
	}{
		{"a certificate without its key", cert, "", caFile, "a TLS client certificate needs its key"},
		{"no CA file", cert, key, dir + "/none", "TLS CA certificate: "},
		{"a CA file without a certificate", cert, key, key, key + ": no PEM certificate"},
		{"a key that is not the certificate's", cert, caFile, caFile, "TLS certificate " + cert + " and key " + caFile + ": "},
	} {
		if _, err := Client(os.ReadFile, c.cert, c.key, c.ca); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
