package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc"
)

// The config file ($CRYPTECH_PKCS11_CONF) lists the module's slots, one
// [slot] section each, in slot order:
//
//	# the emulated HSM in a directory, opened in-process
//	[slot]
//	label = Primary
//	hsm = /var/lib/cryptech/primary
//
//	# an HSM behind serve, over TLS
//	[slot]
//	rpc = tcp:hsm.example.net:2000
//	tls-ca = ca.pem
//	tls-cert = client.pem
//	tls-key = client.key
//
// A line is blank, a comment (# first), a section or "key = value". The
// keys are those of the command line's flags: hsm (a directory) or rpc
// (unix:PATH or tcp:HOST:PORT), one of them; label (at most 32 bytes; the
// HSM's own label if none); tls-ca, tls-cert, tls-key (with rpc tcp:
// only; cert and key together). A TCP address off loopback needs TLS, as
// --rpc does. Relative paths are relative to the file's directory. Parsing
// is strict: an unknown key or section, a key twice, a slot without its
// HSM, is an error naming the line.

// A slotConfig is one [slot] of the config file.
type slotConfig struct {
	line                   int // of its [slot], for messages
	label                  string
	hsm, rpc               string
	tlsCA, tlsCert, tlsKey string
}

// maxConfig bounds the config file: a few lines a slot.
const maxConfig = 64 << 10

// loadConfig reads and parses the config file at path.
func loadConfig(path string) ([]slotConfig, error) {
	data, err := readBounded(path, maxConfig)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	slots, err := parseConfig(bytes.NewReader(data), filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("config %s%w", path, err)
	}
	return slots, nil
}

// readBounded reads the file path, refusing one of more than limit bytes
// (a wrong path such as /dev/zero is refused, not read until memory runs
// out).
func readBounded(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		clear(data)
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}

// configError is an error of one line: ":LINE: what", after the file's
// name.
type configError struct {
	line int
	err  error
}

func (e configError) Error() string { return fmt.Sprintf(":%d: %v", e.line, e.err) }

func (e configError) Unwrap() error { return e.err }

// parseConfig parses a config file; relative paths in it are made
// relative to dir.
func parseConfig(r io.Reader, dir string) ([]slotConfig, error) {
	var slots []slotConfig
	var cur *slotConfig
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, maxConfig)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case line == "[slot]":
			if cur != nil {
				if err := finishSlot(cur, slots[:len(slots)-1]); err != nil {
					return nil, configError{cur.line, err}
				}
			}
			slots = append(slots, slotConfig{line: n})
			cur = &slots[len(slots)-1]
			clear(seen)
			continue
		case strings.HasPrefix(line, "["):
			return nil, configError{n, fmt.Errorf("unknown section %s: the file has [slot] sections only", line)}
		}
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case !ok:
			return nil, configError{n, fmt.Errorf("%q is not key = value", line)}
		case cur == nil:
			return nil, configError{n, fmt.Errorf("%s before the first [slot]", key)}
		case seen[key]:
			return nil, configError{n, fmt.Errorf("%s twice in one slot", key)}
		case value == "":
			return nil, configError{n, fmt.Errorf("%s without a value", key)}
		}
		seen[key] = true
		if err := cur.set(key, value, dir); err != nil {
			return nil, configError{n, err}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf(": %w", err)
	}
	if cur == nil {
		return nil, errors.New(": no [slot]")
	}
	if err := finishSlot(cur, slots[:len(slots)-1]); err != nil {
		return nil, configError{cur.line, err}
	}
	return slots, nil
}

func (s *slotConfig) set(key, value, dir string) error {
	path := func() string {
		if filepath.IsAbs(value) {
			return filepath.Clean(value)
		}
		return filepath.Join(dir, value)
	}
	switch key {
	case "label":
		if err := hsmapi.CheckTokenLabel(value); err != nil {
			return fmt.Errorf("label: %w", err)
		}
		s.label = value
	case "hsm":
		s.hsm = path()
	case "rpc":
		if _, _, err := rpc.ParseAddress(value); err != nil {
			return err
		}
		if strings.HasPrefix(value, "unix:") && !filepath.IsAbs(strings.TrimPrefix(value, "unix:")) {
			value = "unix:" + filepath.Join(dir, strings.TrimPrefix(value, "unix:"))
		}
		s.rpc = value
	case "tls-ca":
		s.tlsCA = path()
	case "tls-cert":
		s.tlsCert = path()
	case "tls-key":
		s.tlsKey = path()
	default:
		return fmt.Errorf("unknown key %s (the keys are label, hsm, rpc, tls-ca, tls-cert, tls-key)", key)
	}
	return nil
}

// finishSlot checks a slot once all its lines are read, against the slots
// before it.
func finishSlot(s *slotConfig, before []slotConfig) error {
	tls := s.tlsCA != "" || s.tlsCert != "" || s.tlsKey != ""
	switch {
	case s.hsm == "" && s.rpc == "":
		return errors.New("[slot] without hsm or rpc")
	case s.hsm != "" && s.rpc != "":
		return errors.New("[slot] with both hsm and rpc")
	case tls && !strings.HasPrefix(s.rpc, "tcp:"):
		return errors.New("tls-ca, tls-cert and tls-key only mean something with rpc = tcp:...")
	case (s.tlsCert == "") != (s.tlsKey == ""):
		return errors.New("tls-cert and tls-key go together")
	case tls && s.tlsCA == "":
		return errors.New("TLS needs tls-ca, the CA that signed the server's certificate")
	case strings.HasPrefix(s.rpc, "tcp:") && !tls && !rpc.IsLoopback(strings.TrimPrefix(s.rpc, "tcp:")):
		return fmt.Errorf("%s: %v: give tls-ca, tls-cert and tls-key", s.rpc, rpc.ErrCleartext)
	}
	for _, o := range before {
		if s.hsm != "" && o.hsm == s.hsm {
			return fmt.Errorf("hsm %s is the slot's of line %d too: one process opens an HSM once", s.hsm, o.line)
		}
	}
	return nil
}
