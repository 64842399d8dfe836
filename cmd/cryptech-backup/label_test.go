package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// TestListEscapesLabels: a label a libhal client set to any bytes is listed
// quoted, never raw; list --json gives its bytes in label_hex.
func TestListEscapesLabels(t *testing.T) {
	const raw = "\xff\x00label\n\x1b[31m\u202e"
	dir := filepath.Join(t.TempDir(), "hsm")
	pin := []byte(fixesPIN)
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: pin, SOPIN: pin, UserPIN: pin, Blocks: 64}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	s := h.NewSession()
	ctx := context.Background()
	if err := s.Login(ctx, hsmapi.UserWheel, pin); err != nil {
		t.Fatal(err)
	}
	flags := hsmapi.FlagDigitalSignature | hsmapi.FlagToken
	odd, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetAttributes(ctx, odd.UUID, []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte(raw)}}); err != nil {
		t.Fatal(err)
	}
	plain, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: flags, Label: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	if st := run([]string{"list", "--hsm", dir}, pinEnv(&stdout, &stderr)); st != 0 {
		t.Fatalf("list: status %d, %s", st, stderr.String())
	}
	out := stdout.String()
	if strings.ContainsAny(out, "\x00\x1b\u202e") || !strings.Contains(out, strconv.Quote(raw)) {
		t.Errorf("list printed the label raw or not quoted:\n%q", out)
	}
	if !strings.Contains(out, plain.UUID.String()) || !strings.Contains(out, " web-1\n") {
		t.Errorf("list quoted a plain label:\n%s", out)
	}

	stdout.Reset()
	if st := run([]string{"list", "--hsm", dir, "--json"}, pinEnv(&stdout, &stderr)); st != 0 {
		t.Fatalf("list --json: status %d, %s", st, stderr.String())
	}
	if bytes.ContainsAny(stdout.Bytes(), "\x00\x1b\u202e") {
		t.Errorf("list --json printed the label raw:\n%q", stdout.String())
	}
	var keys []keyJSON
	if err := json.Unmarshal(stdout.Bytes(), &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		switch k.UUID {
		case odd.UUID.String():
			if b, err := hex.DecodeString(k.LabelHex); err != nil || string(b) != raw || k.Label != strconv.Quote(raw) {
				t.Errorf("list --json: label %q, label_hex %q", k.Label, k.LabelHex)
			}
		case plain.UUID.String():
			if k.Label != "web-1" || k.LabelHex != "" {
				t.Errorf("list --json: plain label %q, label_hex %q", k.Label, k.LabelHex)
			}
		}
	}
}
