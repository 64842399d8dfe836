package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	good := []struct {
		name, text string
		want       []slotConfig
	}{
		{"one directory", "[slot]\nhsm = /var/hsm\n", []slotConfig{{line: 1, hsm: "/var/hsm"}}},
		{"comments, blanks, spaces, relative paths", `
# two HSMs
  [slot]
label =  Primary HSM
hsm=a/b

[slot]
	rpc = unix:sock
`, []slotConfig{{line: 3, label: "Primary HSM", hsm: "/etc/p11/a/b"}, {line: 7, rpc: "unix:/etc/p11/sock"}}},
		{"TCP with TLS", "[slot]\nrpc = tcp:hsm.example.net:2000\ntls-ca = ca.pem\ntls-cert = /c.pem\ntls-key = c.key\n",
			[]slotConfig{{line: 1, rpc: "tcp:hsm.example.net:2000", tlsCA: "/etc/p11/ca.pem", tlsCert: "/c.pem", tlsKey: "/etc/p11/c.key"}}},
		{"TCP with a CA only", "[slot]\nrpc = tcp:10.0.0.1:2000\ntls-ca = /ca.pem\n", []slotConfig{{line: 1, rpc: "tcp:10.0.0.1:2000", tlsCA: "/ca.pem"}}},
		{"TCP on loopback without TLS", "[slot]\nrpc = tcp:127.0.0.1:2000\n", []slotConfig{{line: 1, rpc: "tcp:127.0.0.1:2000"}}},
		{"a label with = and #", "[slot]\nlabel = a=b #1\nhsm = /h\n", []slotConfig{{line: 1, label: "a=b #1", hsm: "/h"}}},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseConfig(strings.NewReader(c.text), "/etc/p11")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}

	bad := []struct{ name, text, want string }{
		{"empty", "", ": no [slot]"},
		{"comments only", "# nothing\n", ": no [slot]"},
		{"unknown key", "[slot]\nhsm = /h\nserial = 1\n", ":3: unknown key serial"},
		{"unknown section", "[token]\n", ":1: unknown section [token]"},
		{"key before a slot", "hsm = /h\n[slot]\n", ":1: hsm before the first [slot]"},
		{"not key = value", "[slot]\nhsm /h\n", `:2: "hsm /h" is not key = value`},
		{"key twice", "[slot]\nhsm = /h\nhsm = /i\n", ":3: hsm twice in one slot"},
		{"no value", "[slot]\nhsm =\n", ":2: hsm without a value"},
		{"no HSM", "[slot]\nlabel = x\n[slot]\nhsm = /h\n", ":1: [slot] without hsm or rpc"},
		{"last slot without HSM", "[slot]\nhsm = /h\n[slot]\nlabel = x\n", ":3: [slot] without hsm or rpc"},
		{"both", "[slot]\nhsm = /h\nrpc = unix:/s\n", ":1: [slot] with both hsm and rpc"},
		{"bad address", "[slot]\nrpc = udp:x:1\n", ":2: bad RPC address"},
		{"TCP off loopback in the clear", "[slot]\nrpc = tcp:10.0.0.1:2000\n", ":1: tcp:10.0.0.1:2000: libhal's protocol carries PINs in the clear"},
		{"TLS with a directory", "[slot]\nhsm = /h\ntls-ca = /ca\n", ":1: tls-ca, tls-cert and tls-key only mean something with rpc = tcp:"},
		{"TLS on a socket", "[slot]\nrpc = unix:/s\ntls-ca = /ca\n", ":1: tls-ca, tls-cert and tls-key only mean something"},
		{"cert without key", "[slot]\nrpc = tcp:h:1\ntls-ca = /ca\ntls-cert = /c\n", ":1: tls-cert and tls-key go together"},
		{"key without CA", "[slot]\nrpc = tcp:h:1\ntls-cert = /c\ntls-key = /k\n", ":1: TLS needs tls-ca"},
		{"label too long", "[slot]\nlabel = " + strings.Repeat("x", 33) + "\nhsm = /h\n", ":2: label: bad arguments: an HSM label has at most 32 bytes"},
		{"label with a control character", "[slot]\nlabel = a\x01b\nhsm = /h\n", ":2: label: bad arguments: label holds control character"},
		{"one HSM twice", "[slot]\nhsm = /h\n[slot]\nhsm = /x/../h\n", ":3: hsm /h is the slot's of line 1 too"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseConfig(strings.NewReader(c.text), "/etc/p11")
			if err == nil {
				t.Fatalf("parsed: %+v", got)
			}
			if !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("error %q, want it to start %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p11.conf")
	if err := os.WriteFile(path, []byte("[slot]\nhsm = hsm\nlabel = x\nfoo = bar\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(path)
	if want := "config " + path + ":4: unknown key foo"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	if err := os.WriteFile(path, []byte("[slot]\nhsm = hsm\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := loadConfig(path)
	if err != nil || len(got) != 1 || got[0].hsm != filepath.Join(dir, "hsm") {
		t.Fatalf("%+v, %v", got, err)
	}
	if _, err := loadConfig(filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("a missing file: %v", err)
	}
	if _, err := loadConfig("/dev/zero"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("/dev/zero: %v", err)
	}
}
