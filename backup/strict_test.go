package backup

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/testkeys"
)

// The bound on a binary field holds the largest a real bundle has, a
// wrapped RSA-8192 private key, with room, and that key imports; the bound
// is not so loose that a field near it takes far more than a real one.
func TestBinaryFieldBoundHoldsLargestField(t *testing.T) {
	src, dst := hsmtest.New(t), hsmtest.New(t)
	der, err := x509.MarshalPKCS8PrivateKey(testkeys.RSA8192(t))
	if err != nil {
		t.Fatal(err)
	}
	k, err := src.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: exportable})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Export(ctx, src, mustSetup(t, dst, SetupOptions{Bits: 4096}), ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	Write(&buf, b)
	var doc struct {
		Keys []struct {
			PKCS8 []string `json:"pkcs8"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil || len(doc.Keys) != 1 {
		t.Fatalf("%d keys, %v", len(doc.Keys), err)
	}
	largest, lines := len(b.Keys[0].PKCS8), len(doc.Keys[0].PKCS8)
	t.Logf("a wrapped RSA-8192 key: %d bytes, %d lines; the bound: %d bytes, %d lines", largest, lines, maxBinaryField, maxBase64Lines)
	if largest+largest/4 > maxBinaryField || lines+lines/4 > maxBase64Lines {
		t.Errorf("the bound (%d bytes, %d lines) leaves less than 25%% room over the largest field (%d bytes, %d lines)", maxBinaryField, maxBase64Lines, largest, lines)
	}
	if maxBinaryField > 2*largest {
		t.Errorf("the bound (%d bytes) is more than twice the largest field (%d)", maxBinaryField, largest)
	}
	res, err := Import(ctx, dst, roundTripBundle(t, b), ImportOptions{})
	if err != nil || len(res) != 1 || res[0].UUID != k.UUID {
		t.Fatalf("import: %v, %v", res, err)
	}
}

// A binary field is refused at its 145th line, or at a line of more than 76
// characters, and any number of lines up to the bound is read.
func TestBase64LinesBounds(t *testing.T) {
	lines := func(n int, line string) []byte {
		data, _ := json.Marshal(strings.Split(strings.Repeat(line+"\n", n-1)+line, "\n"))
		return data
	}
	line := strings.Repeat("A", base64LineLength)
	var b Base64Lines
	if err := b.UnmarshalJSON(lines(maxBase64Lines, line)); err != nil || len(b) != maxBase64Lines*base64LineLength/4*3 {
		t.Errorf("%d lines: %d bytes, %v", maxBase64Lines, len(b), err)
	}
	for _, tc := range []struct {
		data []byte
		want string
	}{
		{lines(maxBase64Lines+1, line), "more than 144 lines of Base64: no field holds more than 8192 bytes"},
		{lines(maxBase64Lines+1, ""), "more than 144 lines of Base64: no field holds more than 8192 bytes"},
		{lines(2, line+"AAAA"), "line 1 of Base64 has 80 characters, more than 76"},
		{[]byte(`["AAAA", null]`), "line 2: null where a Base64 line (a string) belongs"},
		{[]byte(`"AAAA"`), "a string where an array of Base64 lines belongs"},
	} {
		if err := b.UnmarshalJSON(tc.data); err == nil || err.Error() != tc.want {
			t.Errorf("%.40s...: got %v, want %s", tc.data, err, tc.want)
		}
	}
}

// Each fault is named in the file's terms: where it is and what belongs
// there.
func TestReadBundleSaysWhereAndWhat(t *testing.T) {
	src, _, _ := source(t)
	b, err := Export(ctx, src, mustSetup(t, hsmtest.New(t), SetupOptions{}), ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	Write(&buf, b)
	valid := buf.String()
	for _, tc := range []struct{ old, new, want string }{
		{`"flags": `, `"flags": -1, "x": `, `keys[0].flags: -1 where a flag set (a non-negative integer) belongs`},
		{`"flags": `, `"flags": "49", "x": `, `keys[0].flags: a string where a flag set (a non-negative integer) belongs`},
		{`"flags": `, `"flags": 4294967296, "x": `, `keys[0].flags: 4294967296 where a flag set (a non-negative integer) belongs`},
		{`"comment": `, `"comment": null, "x": `, `comment: null where a string belongs`},
		{`"version": 1`, `"version": 1.0`, `version: 1.0 where an integer belongs`},
		{`"uuid": `, `"surprise": 1, "uuid": `, `keys[0]: unknown field "surprise"`},
		{`"comment": `, `"Comment": "", "comment": `, `unknown field "Comment"`},
		{`"uuid": `, `"uuid": "x", "uuid": `, `keys[0]: field "uuid" given twice`},
		{`"0x00000102": "0a01"`, `"0x00000102": null`, `keys[N].attributes: attribute 0x00000102: null where a string of hexadecimal digits belongs`},
		{`"kekek_pubkey": [`, `"kekek_pubkey": {`, `kekek_pubkey: an object where an array of Base64 lines belongs`},
		{`"kek_encryption": "rsa-oaep-sha256"`, `"kek_encryption": ["rsa-oaep-sha256"]`, `kek_encryption: an array where a string belongs`},
	} {
		data := strings.Replace(valid, tc.old, tc.new, 1)
		if data == valid {
			t.Fatalf("%s not in the bundle", tc.old)
		}
		_, err := ReadBundle(strings.NewReader(data))
		// N: the key the attribute is in, whose place changes.
		want := regexp.MustCompile(`malformed file: ` + strings.Replace(regexp.QuoteMeta(tc.want), "N", `\d+`, 1) + `$`)
		if !errors.Is(err, ErrFormat) || !want.MatchString(err.Error()) {
			t.Errorf("%s: got %v, want ...malformed file: %s", tc.new, err, tc.want)
		}
	}
}
