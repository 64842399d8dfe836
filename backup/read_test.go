package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// Real files, each as the tool that made it wrote it: a version 1 bundle
// of this tool's (for a soft KEKEK), and cryptech_backup's soft KEKEK file
// and a bundle for it (no version).
func realFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile("testdata/" + path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// kekekFile is a KEKEK file as setup writes it (the reader does not look
// inside kekek_pubkey).
const kekekFile = `{
    "comment": "KEKEK public key",
    "kek_encryptions": [
        "rsa-oaep-sha256",
        "rsa-oaep-sha1"
    ],
    "kekek_pubkey": [
        "AAAA"
    ],
    "kekek_uuid": "5b2b405a-ffac-45ef-906f-9bacc403484d",
    "version": 1
}
`

// replaced is s with old replaced by new once; old must be in s.
func replaced(t testing.TB, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("%.60q not in the file", old)
	}
	return strings.Replace(s, old, new, 1)
}

func readEither(kekek bool, data string) (any, error) {
	if kekek {
		return ReadKEKEKFile(strings.NewReader(data))
	}
	return ReadBundle(strings.NewReader(data))
}

// TestReadRefusesTextThatIsNotUnicode: every string of a file is UTF-8, and
// every \u escape stands for a character. encoding/json reads bytes that are
// not UTF-8, and an escaped half of a UTF-16 surrogate pair alone, as
// U+FFFD; cryptech_backup (Python) refuses the first and keeps the second
// as it is: two tools would read one file as two different labels. A
// surrogate pair, as Python 2 writes a character beyond U+FFFF, is that
// character.
func TestReadRefusesTextThatIsNotUnicode(t *testing.T) {
	v1 := realFile(t, "v1_bundle/bundle.json")
	for _, tc := range []struct{ name, label, want string }{
		{"a byte that is not UTF-8", "\"cl\xffean\"", `keys\[3\]\.label: not UTF-8 at byte \d+$`},
		{"a truncated sequence", "\"cl\xc3\"", `keys\[3\]\.label: not UTF-8 at byte \d+$`},
		{"an overlong encoding", "\"\xc0\xaf\"", `keys\[3\]\.label: not UTF-8 at byte \d+$`},
		{"an encoded surrogate", "\"\xed\xa0\x80\"", `keys\[3\]\.label: not UTF-8 at byte \d+$`},
		{"a high surrogate alone", `"cl\ud800ean"`, `keys\[3\]\.label: \\ud800 at byte \d+ is half a UTF-16 surrogate pair$`},
		{"a low surrogate alone", `"\uDC00"`, `keys\[3\]\.label: \\uDC00 at byte \d+ is half a UTF-16 surrogate pair$`},
		{"a high surrogate before a character", `"\ud800\u0041"`, `keys\[3\]\.label: \\ud800 at byte \d+ is half a UTF-16 surrogate pair$`},
		{"two high surrogates", `"\ud83d\ud83d"`, `keys\[3\]\.label: \\ud83d at byte \d+ is half a UTF-16 surrogate pair$`},
		{"a high surrogate at the end", `"x\ud83d"`, `keys\[3\]\.label: \\ud83d at byte \d+ is half a UTF-16 surrogate pair$`},
	} {
		data := replaced(t, v1, `"label": "rsa"`, `"label": `+tc.label)
		_, err := ReadBundle(strings.NewReader(data))
		if !errors.Is(err, ErrFormat) || !regexp.MustCompile(tc.want).MatchString(err.Error()) {
			t.Errorf("%s: got %v, want %s", tc.name, err, tc.want)
		}
	}
	// Field names and every other string too.
	for _, data := range []string{
		replaced(t, v1, `"comment": "Public key"`, "\"comment\": \"Public\xa0key\""),
		replaced(t, v1, `"comment": "Public key"`, "\"comm\xe9nt\": \"Public key\""),
		replaced(t, realFile(t, "cryptech_backup_soft/kekek.json"), `"comment": "KEKEK software keypair"`, `"comment": "KEKEK\udfff"`),
	} {
		if _, err := readEither(strings.Contains(data, "software"), data); !errors.Is(err, ErrFormat) {
			t.Errorf("%.80q...: got %v, want ErrFormat", data[strings.Index(data, "comm"):], err)
		}
	}
	// A pair is its character, in either case of hexadecimal digits.
	for _, pair := range []string{`\ud83d\ude00`, `\uD83D\uDE00`} {
		b, err := ReadBundle(strings.NewReader(replaced(t, v1, `"label": "rsa"`, `"label": "r`+pair+`sa"`)))
		if err != nil {
			t.Fatalf("%s: %v", pair, err)
		}
		if got := b.Keys[3].Label; got != "r\U0001F600sa" {
			t.Errorf("%s read as %q", pair, got)
		}
	}
}

// TestReadRefusesEmptyFields: a field a file may leave out is either left
// out or given a value; given with its zero value it would read as absent,
// and a file would have two forms (and a version 0 would read as a
// cryptech_backup file). Neither tool writes one: real files of both read
// as before.
func TestReadRefusesEmptyFields(t *testing.T) {
	v1 := realFile(t, "v1_bundle/bundle.json")
	cbBundle := realFile(t, "cryptech_backup_soft/bundle.json")
	cbKEKEK := realFile(t, "cryptech_backup_soft/kekek.json")
	for _, tc := range []struct {
		name  string
		kekek bool
		data  string
		want  string
	}{
		{"version 0", false, replaced(t, v1, `"version": 1`, `"version": 0`), `version: 0, which a file says by leaving the field out`},
		{"version -0", false, replaced(t, v1, `"version": 1`, `"version": -0`), `version: 0, which a file says by leaving the field out`},
		{"KEKEK file version 0", true, replaced(t, kekekFile, `"version": 1`, `"version": 0`), `version: 0, which a file says by leaving the field out`},
		{"label", false, replaced(t, v1, `"label": "rsa"`, `"label": ""`), `keys\[3\]\.label: empty, which a file says by leaving the field out`},
		{"label_hex", false, replaced(t, v1, `"label": "rsa"`, `"label_hex": ""`), `keys\[3\]\.label_hex: empty, which a file says by leaving the field out`},
		{"label_hex beside label", false, replaced(t, v1, `"label": "rsa"`, `"label": "rsa", "label_hex": ""`), `keys\[3\]\.label_hex: empty, which a file says by leaving the field out`},
		{"tag", false, replaced(t, v1, `"label": "pub",`, `"label": "pub", "tag": [],`), `keys\[2\]\.tag: empty, which a file says by leaving the field out`},
		{"kek", false, replaced(t, v1, `"label": "pub",`, `"kek": [], "label": "pub",`), `keys\[2\]\.kek: empty, which a file says by leaving the field out`},
		{"pkcs8 of an empty line", false, replaced(t, v1, `"label": "pub",`, `"label": "pub", "pkcs8": [""],`), `keys\[2\]\.pkcs8: empty, which a file says by leaving the field out`},
		{"spki", false, replaced(t, cbBundle, `"comment": "Encrypted private key", `, `"comment": "Encrypted private key", "spki": [], `), `keys\[0\]\.spki: empty, which a file says by leaving the field out`},
		{"legacy label", false, replaced(t, cbBundle, `"comment": "Encrypted private key", `, `"comment": "Encrypted private key", "label": "", `), `keys\[0\]\.label: empty, which a file says by leaving the field out`},
		{"legacy kekek_uuid", false, replaced(t, cbBundle, `"comment": "Cryptech Alpha encrypted key backup", `, `"comment": "Cryptech Alpha encrypted key backup", "kekek_uuid": "", `), `kekek_uuid: empty, which a file says by leaving the field out`},
		{"legacy kek_encryption", false, replaced(t, cbBundle, `"comment": "Cryptech Alpha encrypted key backup", `, `"comment": "Cryptech Alpha encrypted key backup", "kek_encryption": "", `), `kek_encryption: empty, which a file says by leaving the field out`},
		{"KEKEK file kekek_uuid", true, replaced(t, cbKEKEK, `"comment": "KEKEK software keypair", `, `"comment": "KEKEK software keypair", "kekek_uuid": "", `), `kekek_uuid: empty, which a file says by leaving the field out`},
		{"kek_encryptions", true, replaced(t, kekekFile, `"kek_encryptions": [
        "rsa-oaep-sha256",
        "rsa-oaep-sha1"
    ]`, `"kek_encryptions": []`), `kek_encryptions: empty, which a file says by leaving the field out`},
		{"kek_encryptions twice", true, replaced(t, kekekFile, `"rsa-oaep-sha1"`, `"rsa-oaep-sha1", "rsa-oaep-sha256"`), `kek_encryptions: "rsa-oaep-sha256" given twice`},
	} {
		_, err := readEither(tc.kekek, tc.data)
		if !errors.Is(err, ErrFormat) || !regexp.MustCompile(`malformed file: `+tc.want+`$`).MatchString(err.Error()) {
			t.Errorf("%s: got %v, want ...malformed file: %s", tc.name, err, tc.want)
		}
	}
	// What each tool writes reads, and writes back as it did: the zero
	// values a real file holds (flags 0, an empty comment, no keys) are of
	// fields that are always given.
	for _, tc := range []struct {
		kekek bool
		data  string
	}{{false, v1}, {false, cbBundle}, {true, cbKEKEK}, {true, kekekFile},
		{false, replaced(t, replaced(t, cbBundle, `"flags": 41`, `"flags": 0`), `"comment": "Cryptech Alpha encrypted key backup"`, `"comment": ""`)},
		{false, `{"comment": "Cryptech Alpha encrypted key backup", "kekek_pubkey": ["AAAA"], "kekek_uuid": "5b2b405a-ffac-45ef-906f-9bacc403484d", "keys": []}`},
	} {
		v, err := readEither(tc.kekek, tc.data)
		if err != nil {
			t.Errorf("%.60q...: %v", tc.data, err)
			continue
		}
		var out bytes.Buffer
		Write(&out, v)
		if tc.data == v1 || tc.data == kekekFile {
			if out.String() != tc.data {
				t.Errorf("%.60q... changed through read and write", tc.data)
			}
		}
	}
}

// TestErrorsShowInputShort: a message that shows what a file holds shows
// at most its first 40 bytes, quoted, and its length: one short line on a
// terminal whatever the file holds.
func TestErrorsShowInputShort(t *testing.T) {
	v1 := realFile(t, "v1_bundle/bundle.json")
	soft := replaced(t, v1, `"name": "argon2id"`, `"name": "argon2"`)
	long := strings.Repeat("x", 65_000)
	rlo := strings.Repeat("\u202e", 10_000)
	digits := strings.Repeat("9", 65_000)
	for _, tc := range []struct {
		kekek bool
		data  string
		want  string
	}{
		{false, replaced(t, v1, `"comment": "Public key"`, `"`+long+`": 1, "comment": "Public key"`), `keys[2]: unknown field "` + long[:40] + `"... (65000 bytes)`},
		{false, replaced(t, v1, `"comment": "Public key"`, `"`+rlo[:39]+`": 1, "comment": "Public key"`), `keys[2]: unknown field "` + strings.Repeat(`\u202e`, 13) + `"`},
		{false, replaced(t, v1, `"flags": 40`, `"flags": `+digits), `keys[2].flags: ` + digits[:40] + `... (65000 bytes) where a flag set (a non-negative integer) belongs`},
		{false, replaced(t, v1, `"flags": 40`, `"flags": -`+digits[:30]), `keys[2].flags: -` + digits[:30] + ` where a flag set (a non-negative integer) belongs`},
		{false, replaced(t, v1, `"uuid": "b708a880-3c10-42ac-9446-d3c3e9b57e10"`, `"uuid": "`+rlo[:36]+`"`), `keys[2]: uuid: malformed UUID: "` + strings.Repeat(`\u202e`, 12) + `"`},
		{false, replaced(t, v1, `"uuid": "b708a880-3c10-42ac-9446-d3c3e9b57e10"`, `"uuid": "`+long+`"`), `keys[2].uuid: 65000 bytes, more than the 36 it may have`},
		{false, replaced(t, v1, `"kek_encryption": "rsa-oaep-sha256"`, `"kek_encryption": "`+rlo+`"`), `kek_encryption: 30000 bytes, more than the 32 it may have`},
		{false, replaced(t, v1, `"kek_encryption": "rsa-oaep-sha256"`, `"kek_encryption": "`+rlo[:30]+`"`), `kek_encryption: unknown KEK encryption "` + strings.Repeat(`\u202e`, 10) + `"`},
		{true, replaced(t, kekekFile, `"rsa-oaep-sha1"`, `"`+rlo[:30]+`"`), `kek_encryptions[1]: unknown KEK encryption "` + strings.Repeat(`\u202e`, 10) + `"`},
		{false, soft, `kekek_kdf: unknown KDF "argon2"`},
		{false, replaced(t, soft, `"argon2"`, `"`+rlo[:30]+`"`), `kekek_kdf: unknown KDF "` + strings.Repeat(`\u202e`, 10) + `"`},
	} {
		_, err := readEither(tc.kekek, tc.data)
		if !errors.Is(err, ErrFormat) || !strings.HasSuffix(err.Error(), "malformed file: "+tc.want) {
			t.Errorf("got %.300v, want ...malformed file: %s", err, tc.want)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("a message of %d bytes", len(err.Error()))
		}
	}
	for _, err := range []error{
		func() error { _, err := hsmapi.ParseUUID(strings.Repeat("\xff", 65_000)); return err }(),
		func() error { _, err := hsmapi.ParseKEKEncryption(rlo); return err }(),
		func() error { _, err := hsmapi.ParseCurve(long); return err }(),
	} {
		if err == nil || len(err.Error()) > 200 || !strings.Contains(err.Error(), "... (") {
			t.Errorf("a message of %d bytes: %.200v", len(fmt.Sprint(err)), err)
		}
	}
}

// endlessKeys is a bundle's head, then key entries without end, each a
// valid public key, the same but for its UUID; it counts the bytes read.
type endlessKeys struct {
	entry   func(i int) string
	buf     []byte
	n, i    int
	started bool
}

func (r *endlessKeys) Read(p []byte) (int, error) {
	if !r.started {
		r.started = true
		r.buf = []byte(`{"comment": "", "kek_encryption": "rsa-oaep-sha256", "kekek_pubkey": ["AAAA"], "kekek_uuid": "5b2b405a-ffac-45ef-906f-9bacc403484d", "keys": [`)
	}
	for len(r.buf) == 0 {
		if r.i > 0 {
			r.buf = append(r.buf, ',')
		}
		r.buf = append(r.buf, r.entry(r.i)...)
		r.i++
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.n += n
	return n, nil
}

func publicKeyEntry(i int, extra string) string {
	return fmt.Sprintf(`{%s"comment": "Public key", "flags": 0, "spki": ["AAAA"], "uuid": "00000000-0000-4000-8000-%012x"}`, extra, i+1)
}

// TestReadBoundsWhatItKeeps: what a reader keeps of a file is bounded
// whatever the file holds and however long it is: the keys by MaxKeys,
// attributes by their number in the whole bundle, all of it by a budget.
// Each bundle here is refused at its bound, having read little more than it
// needed to reach it.
func TestReadBoundsWhatItKeeps(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry func(i int) string
		want  string
		read  int // bytes read at most
	}{
		{"keys", func(i int) string { return publicKeyEntry(i, "") }, `keys: more than 10000 keys`, 1 << 20},
		{"empty attributes", func(i int) string { return publicKeyEntry(i, attributesOf(maxAttributes, "")) },
			fmt.Sprintf(`keys\[629\]\.attributes: more than %d attributes in the bundle`, maxBundleAttributes), 12 << 20},
		{"one-byte attributes", func(i int) string { return publicKeyEntry(i, attributesOf(maxAttributes, "01")) },
			fmt.Sprintf(`keys\[629\]\.attributes: more than %d attributes in the bundle`, maxBundleAttributes), 14 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &endlessKeys{entry: tc.entry}
			_, err := ReadBundle(r)
			if !errors.Is(err, ErrFormat) || !regexp.MustCompile(`malformed file: `+tc.want+`$`).MatchString(err.Error()) {
				t.Errorf("got %v, want ...malformed file: %s", err, tc.want)
			}
			if r.n > tc.read {
				t.Errorf("read %d bytes, more than %d", r.n, tc.read)
			}
			t.Logf("refused having read %d bytes, %d keys", r.n, r.i)
		})
	}
}

// TestReadKeepsWithinBudget: a reader counts what it keeps (a key's
// strings, binary fields, each attribute and its value) and refuses a file
// past its budget, having kept no more than that. The keys here are as
// large as a key gets; each keeps about what it takes in the file.
func TestReadKeepsWithinBudget(t *testing.T) {
	entry := func(i int) string {
		e := publicKeyEntry(i, attributesOf(7, strings.Repeat("ab", hsmapi.MaxAttributeSize))+
			`"label_hex": "`+strings.Repeat("ff", hsmapi.MaxRawLabelLength)+`", `)
		return strings.Replace(e, `"comment": "Public key"`, `"comment": "`+strings.Repeat("c", maxComment)+`"`, 1)
	}
	for _, budget := range []int64{1 << 20, 8 << 20} {
		r := &endlessKeys{entry: entry}
		var b Bundle
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := decodeWithin(r, &b, budget)
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(&b)
		want := fmt.Sprintf(`malformed file: keys\[\d+\](\.\w+)?: more than %d bytes to keep in all, more than any real file holds$`, budget)
		if !errors.Is(err, ErrFormat) || !regexp.MustCompile(want).MatchString(err.Error()) {
			t.Errorf("budget %d: got %v, want %s", budget, err, want)
		}
		kept := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		t.Logf("budget %d: refused at key %d, having read %d bytes and kept %d", budget, len(b.Keys), r.n, kept)
		if int64(r.n) > 3*budget || int64(r.n) < budget {
			t.Errorf("budget %d: read %d bytes", budget, r.n)
		}
		if kept > budget+budget/4 {
			t.Errorf("budget %d: kept %d bytes", budget, kept)
		}
	}
}

// attributesOf is an attributes field of n attributes of the same value.
func attributesOf(n int, value string) string {
	var b strings.Builder
	b.WriteString(`"attributes": {`)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `"0x%08x": "%s"`, 0x100+i, value)
	}
	b.WriteString("}, ")
	return b.String()
}

// twiceOffered is an HSM that names a KEK encryption twice (a server of
// libhal's RPC may answer what it likes).
type twiceOffered struct{ *hsm.Session }

func (twiceOffered) KEKEncryptions(context.Context) ([]hsmapi.KEKEncryption, error) {
	return []hsmapi.KEKEncryption{hsmapi.KEKOAEPSHA256, hsmapi.KEKPKCS1v15, hsmapi.KEKOAEPSHA256, hsmapi.KEKOAEPSHA1}, nil
}

// TestSetupWritesWhatReads: setup names each KEK encryption once, as a
// reader takes them, whatever the HSM answers.
func TestSetupWritesWhatReads(t *testing.T) {
	f := roundTrip(t, mustSetup(t, twiceOffered{hsmtest.New(t)}, SetupOptions{}), ReadKEKEKFile)
	if want := []hsmapi.KEKEncryption{hsmapi.KEKOAEPSHA256, hsmapi.KEKOAEPSHA1}; !slices.Equal(f.KEKEncryptions, want) {
		t.Errorf("setup wrote %v, want %v", f.KEKEncryptions, want)
	}
}
