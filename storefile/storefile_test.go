package storefile

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

func sample() *File {
	return &File{HSM: "CT-1", CheckValue: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, Created: time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC),
		Keys: []Key{{UUID: hsmapi.UUID{1}, Type: hsmapi.KeyTypeECPrivate, Label: "a", Wrapped: bytes.Repeat([]byte{7}, 40)},
			{UUID: hsmapi.UUID{2}, Type: hsmapi.KeyTypeHashsigPrivate, Label: "b", Wrapped: bytes.Repeat([]byte{8}, 48)}},
		Tag: bytes.Repeat([]byte{9}, TagSize)}
}

func TestRoundTrip(t *testing.T) {
	f := sample()
	data, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	g, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.Binding(), f.Binding()) || !bytes.Equal(g.Tag, f.Tag) {
		t.Fatal("the file does not read back as written")
	}
}

// Every field is in the binding: changing any one changes it.
func TestBindingCoversEveryField(t *testing.T) {
	base := sample().Binding()
	for name, edit := range map[string]func(f *File){
		"hsm":     func(f *File) { f.HSM = "CT-2" },
		"kcv":     func(f *File) { f.CheckValue[7] ^= 1 },
		"created": func(f *File) { f.Created = f.Created.Add(time.Second) },
		"uuid":    func(f *File) { f.Keys[1].UUID[15] = 1 },
		"type":    func(f *File) { f.Keys[0].Type = hsmapi.KeyTypeRSAPrivate },
		"label":   func(f *File) { f.Keys[0].Label = "b" },
		"wrapped": func(f *File) { f.Keys[1].Wrapped[0] ^= 1 },
		"dropped": func(f *File) { f.Keys = f.Keys[:1] },
		"swapped": func(f *File) { f.Keys[0], f.Keys[1] = f.Keys[1], f.Keys[0] },
		// Length prefixes: moving a byte from one field to the next.
		"shifted": func(f *File) { f.HSM, f.Keys[0].Label = "CT-", "1a" },
	} {
		f := sample()
		edit(f)
		if bytes.Equal(f.Binding(), base) {
			t.Errorf("%s: the binding did not change", name)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	data, _ := sample().Marshal()
	s := string(data)
	for name, bad := range map[string]string{
		"truncated":     s[:len(s)/2],
		"empty":         "",
		"trailing":      s + "{}",
		"unknown field": strings.Replace(s, `"hsm"`, `"hsm2": 1, "hsm"`, 1),
		"format":        strings.Replace(s, Format, "v0", 1),
		"kcv":           strings.Replace(s, "0102030405060708", "01020304", 1),
		"created":       strings.Replace(s, "2026-12-03T17:00:00Z", "yesterday", 1),
		"uuid":          strings.Replace(s, "01000000-0000-0000-0000-000000000000", "nope", 1),
		"type":          strings.Replace(s, "ec-private", "dsa", 1),
		"twice":         strings.Replace(s, "02000000-0000-0000-0000-000000000000", "01000000-0000-0000-0000-000000000000", 1),
		"no keys":       strings.Replace(s, `"keys": [`, `"keys": [], "x": [`, 1),
	} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func testFile(token bool) *File {
	f := &File{Token: token, HSM: "5C1A0F3B9E2D7741", CheckValue: [8]byte{1, 2, 3, 4, 5, 6, 7, 8},
		Created: time.Date(2026, 12, 3, 17, 4, 5, 0, time.UTC), Tag: make([]byte, TagSize),
		Keys: []Key{{UUID: hsmapi.UUID{1}, Type: hsmapi.KeyTypeECPrivate, Label: "signer", Wrapped: make([]byte, 40)}}}
	if token {
		f.Tag = make([]byte, TokenTagSize)
		f.Keys[0].PublicKey, f.Keys[0].Flags, f.Keys[0].Attributes = []byte{0x30, 0}, hsmapi.FlagToken, []byte{0, 0, 0, 0}
	}
	return f
}

// TestTokenFileIsAdded: a token's file is a kind of its own, in name and
// in binding; the emulated HSM's file reads and writes as before (no field
// of the token's in it), and neither kind takes the other's fields.
func TestTokenFileIsAdded(t *testing.T) {
	for _, token := range []bool{false, true} {
		data, err := testFile(token).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		f, err := Parse(data)
		if err != nil {
			t.Fatalf("token %v: %v", token, err)
		}
		again, _ := f.Marshal()
		if !bytes.Equal(again, data) || f.Token != token {
			t.Errorf("token %v: does not read back as written", token)
		}
		has := strings.Contains(string(data), `"storage_key_check_value"`)
		for _, field := range []string{`"public_key"`, `"flags"`, `"attributes"`, FormatToken} {
			has = has && strings.Contains(string(data), field)
		}
		if has != token || strings.Contains(string(data), `"master_key_check_value"`) == token {
			t.Errorf("token %v: fields of the other kind:\n%s", token, data)
		}
	}
	master, token := testFile(false), testFile(true)
	token.Keys[0].PublicKey, token.Keys[0].Attributes = nil, nil
	token.Keys[0].Flags = 0
	if bytes.HasPrefix(token.Binding(), master.Binding()[:20]) {
		t.Error("a token file's binding starts as the emulated HSM's")
	}
	mixed := []string{
		strings.Replace(mustMarshal(t, testFile(false)), `"wrapped"`, `"flags": 1, "wrapped"`, 1),
		strings.Replace(mustMarshal(t, testFile(true)), `"storage_key_check_value"`, `"master_key_check_value": "0102030405060708", "storage_key_check_value"`, 1),
		strings.Replace(mustMarshal(t, testFile(true)), `"flags": 8,`, ``, 1),
	}
	for i, m := range mixed {
		if _, err := Parse([]byte(m)); !errors.Is(err, ErrMalformed) {
			t.Errorf("mixed file %d: %v\n%s", i, err, m)
		}
	}
}

func mustMarshal(t *testing.T, f *File) string {
	t.Helper()
	data, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
