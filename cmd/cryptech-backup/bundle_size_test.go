package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// largestKeyAttributes are the PKCS#11 attributes of the largest real key:
// every one a key carries, the byte strings (CKA_ID, CKA_SUBJECT, the public
// key object) as long as the HSM keeps them.
func largestKeyAttributes() []hsmapi.Attribute {
	var attrs []hsmapi.Attribute
	for _, t := range []uint32{hsmapi.CKAToken, hsmapi.CKAPrivate, hsmapi.CKATrusted, hsmapi.CKASensitive, hsmapi.CKAEncrypt,
		hsmapi.CKADecrypt, hsmapi.CKAWrap, hsmapi.CKAUnwrap, hsmapi.CKASign, hsmapi.CKASignRecover, hsmapi.CKAVerify,
		hsmapi.CKAVerifyRecover, hsmapi.CKADerive, hsmapi.CKAExtractable, hsmapi.CKALocal, hsmapi.CKANeverExtractable,
		hsmapi.CKAAlwaysSensitive, hsmapi.CKAModifiable, hsmapi.CKACopyable, hsmapi.CKADestroyable,
		hsmapi.CKAAlwaysAuthenticate, hsmapi.CKAWrapWithTrusted} {
		attrs = append(attrs, hsmapi.Attribute{Type: t, Value: []byte{1}})
	}
	attrs = append(attrs,
		hsmapi.Attribute{Type: hsmapi.CKAStartDate, Value: []byte("20260101")},
		hsmapi.Attribute{Type: hsmapi.CKAEndDate, Value: []byte("20361231")},
		hsmapi.Attribute{Type: hsmapi.CKAID, Value: bytes.Repeat([]byte{0xa5}, hsmapi.MaxAttributeSize)},
		hsmapi.Attribute{Type: hsmapi.CKASubject, Value: bytes.Repeat([]byte{0x5a}, hsmapi.MaxAttributeSize)})
	// The public key object: its flags, and a CKA_ID filling what is left.
	var pub []hsmapi.Attribute
	for _, t := range []uint32{hsmapi.CKAToken, hsmapi.CKAPrivate, hsmapi.CKATrusted, hsmapi.CKAEncrypt, hsmapi.CKAWrap,
		hsmapi.CKAVerify, hsmapi.CKAVerifyRecover, hsmapi.CKADerive, hsmapi.CKAModifiable, hsmapi.CKACopyable, hsmapi.CKADestroyable} {
		pub = append(pub, hsmapi.Attribute{Type: t, Value: []byte{1}})
	}
	pub = append(pub, hsmapi.Attribute{Type: hsmapi.CKAID})
	pub[len(pub)-1].Value = bytes.Repeat([]byte{0xa5}, hsmapi.MaxAttributeSize-len(hsmapi.EncodeAttributes(pub)))
	return append(attrs, hsmapi.Attribute{Type: hsmapi.AttributePublicObject, Value: hsmapi.EncodeAttributes(pub)})
}

// TestMaxBundleHoldsLargestBundle: maxBundle holds, with room, the largest
// real bundle: backup.MaxKeys keys of the largest kind, measured on a real
// export of one (RSA-4096 for an RSA-4096 KEKEK, a label of the longest JSON
// form, the largest attributes), and is not so loose that parsing a bundle
// near it takes far more memory than a real one needs.
func TestMaxBundleHoldsLargestBundle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pin := []byte(fixesPIN)
	open := func(name string) *hsm.Session {
		h, err := hsm.Create(filepath.Join(dir, name), hsm.InitConfig{WheelPIN: pin, SOPIN: pin, UserPIN: pin, Blocks: 16}, testOptions)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		s := h.NewSession()
		if err := s.Login(ctx, hsmapi.UserWheel, pin); err != nil {
			t.Fatal(err)
		}
		return s
	}
	src, dst := open("src"), open("dst")
	kekek, err := backup.Setup(ctx, dst, backup.SetupOptions{Bits: 4096})
	if err != nil {
		t.Fatal(err)
	}
	// The longest label a key keeps, set as a libhal client may: it travels
	// as label_hex, two bytes for each of its bytes, the most any label
	// takes (a label as text takes at most two for each, '"' written \").
	k, err := src.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 4096,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable})
	if err != nil {
		t.Fatal(err)
	}
	attrs := append(largestKeyAttributes(), hsmapi.Attribute{Type: hsmapi.AttributeLabel, Value: bytes.Repeat([]byte{0xff}, hsmapi.MaxRawLabelLength)})
	if err := src.SetAttributes(ctx, k.UUID, attrs); err != nil {
		t.Fatal(err)
	}
	// Every attribute is set, CKA_WRAP_WITH_TRUSTED too: such a key leaves
	// only for a KEKEK the source trusts, which wheel (as the SO may)
	// stores there with CKA_TRUSTED.
	if _, err := src.Import(ctx, hsmapi.ImportRequest{PublicKey: kekek.KEKEKPubkey, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken,
		Attributes: []hsmapi.Attribute{{Type: hsmapi.CKATrusted, Value: []byte{1}}}}); err != nil {
		t.Fatal(err)
	}
	b, err := backup.Export(ctx, src, kekek, backup.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var full, header bytes.Buffer
	backup.Write(&full, b)
	b.Keys = []backup.BundleKey{}
	backup.Write(&header, b)
	perKey := full.Len() - header.Len()
	if !strings.Contains(full.String(), strings.Repeat("a5", hsmapi.MaxAttributeSize)) {
		t.Fatal("the bundle does not carry the key's attributes")
	}
	largest := header.Len() + backup.MaxKeys*perKey
	t.Logf("largest real bundle: %d bytes a key, %d in all; maxBundle %d", perKey, largest, maxBundle)
	if largest+largest/10 > maxBundle {
		t.Errorf("maxBundle (%d bytes) leaves less than 10%% room over the largest real bundle (%d bytes)", maxBundle, largest)
	}
	if maxBundle > 2*largest {
		t.Errorf("maxBundle (%d bytes) is more than twice the largest real bundle (%d bytes)", maxBundle, largest)
	}

	// The key passes every bound of the reader and imports.
	rb, err := backup.ReadBundle(bytes.NewReader(full.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	res, err := backup.Import(ctx, dst, rb, backup.ImportOptions{})
	if err != nil || len(res) != 1 || res[0].UUID != k.UUID {
		t.Fatalf("import of the largest key: %v, %v", res, err)
	}

	// MaxKeys of them (under new UUIDs, which their tags do not bind, so
	// they are read only) are read keeping less than the bundle's size in
	// memory (what is read is kept once, decoded), and allocating in all
	// little more than that (the rest: each label and the public object's
	// attributes, decoded to check them).
	data := full.Bytes()
	keysAt := bytes.Index(data, []byte(`"keys": [`)) + len(`"keys": [`)
	end := bytes.LastIndex(data, []byte("]"))
	entry := bytes.TrimSuffix(data[keysAt:end], []byte("\n    "))
	uuidAt := bytes.Index(entry, []byte(k.UUID.String()))
	var many bytes.Buffer
	many.Grow(len(data) + backup.MaxKeys*(len(entry)+1))
	many.Write(data[:keysAt])
	for i := range backup.MaxKeys {
		if i > 0 {
			many.WriteByte(',')
		}
		many.Write(entry[:uuidAt])
		fmt.Fprintf(&many, "00000000-0000-4000-8000-%012x", i+1)
		many.Write(entry[uuidAt+36:])
	}
	many.Write(data[end:])
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	mb, err := backup.ReadBundle(bytes.NewReader(many.Bytes()))
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(mb.Keys) != backup.MaxKeys {
		t.Fatalf("%d keys read", len(mb.Keys))
	}
	var kept runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&kept)
	runtime.KeepAlive(mb)
	size := float64(many.Len())
	alloc, live := float64(after.TotalAlloc-before.TotalAlloc)/size, (float64(kept.HeapAlloc)-float64(before.HeapAlloc))/size
	t.Logf("%d keys, %d bytes: %.2f bytes allocated and %.2f kept per byte read", backup.MaxKeys, many.Len(), alloc, live)
	// Measured: 1.00 and 0.68; 2.86 allocated when json.Decoder read it
	// token by token, 7.62 when the whole file went through json.Unmarshal.
	if alloc > 2 || live > 1 {
		t.Errorf("reading the largest real bundle allocated %.2f bytes and kept %.2f per byte read", alloc, live)
	}
}

// An input one byte over its bound is refused by its size, before it is
// read: a bundle to import, a KEKEK file to export to, from a file or on
// stdin. Sparse files take no disk.
func TestInputRefusedBySize(t *testing.T) {
	dir := t.TempDir()
	makeSource(t, dir)
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	sparse := func(name string, size int) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, int64(size)); err != nil {
			t.Fatal(err)
		}
		return path
	}
	bundle := sparse("big.json", maxBundle+1)
	kekekFile := sparse("big-kekek.json", maxKEKEKFile+1)
	sig := sparse("big.sig", maxSmallFile+1)
	pub := sparse("big.pub", maxPublicKey+1)
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"import", "--hsm", dst, "-i", bundle}, "", `^cryptech-backup: error: .*big.json: larger than 168 MiB$`},
		{[]string{"import", "--hsm", dst}, bundle, `^cryptech-backup: error: -: larger than 168 MiB$`},
		{[]string{"export", "--hsm", src, "-i", kekekFile}, "", `^cryptech-backup: error: .*big-kekek.json: larger than 64 KiB$`},
		{[]string{"verify", "--hsm", src, "--key", "00000000-0000-4000-8000-000000000001", "--sig", sig}, "", `^cryptech-backup: error: .*big.sig: larger than 1 MiB$`},
		{[]string{"hashsig", "verify", "--pub", pub, "--sig", sig, "-i", bundle}, "", `^cryptech-backup: error: .*big.pub: larger than 64 KiB$`},
	} {
		var stdout, stderr bytes.Buffer
		e := pinEnv(&stdout, &stderr)
		if tc.stdin != "" {
			f, err := os.Open(tc.stdin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			e.stdin = f
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		status := run(tc.args, e)
		runtime.ReadMemStats(&after)
		if status != 1 {
			t.Errorf("%v: exit status %d, want 1", tc.args, status)
		}
		checkOneLine(t, stderr.String(), tc.want)
		if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
			t.Errorf("%v: allocated %d bytes: the input was read", tc.args, got)
		}
	}
}

// endless gives head, then unit over and over without end, counting the
// bytes.
type endless struct {
	head, unit string
	n          int
}

func (r *endless) Read(p []byte) (int, error) {
	for i := range p {
		if r.n < len(r.head) {
			p[i] = r.head[r.n]
		} else {
			p[i] = r.unit[(r.n-len(r.head))%len(r.unit)]
		}
		r.n++
	}
	return len(p), nil
}

// A pipe (stdin) that never ends is read up to the bound, no further: here
// a keys array whose entries would each pass the reader's bounds (with 64
// KB of white space after each, the quickest to read), and so reach the
// size bound before the 10,000th. One that would never pass is refused
// sooner: endless white space, at 64 KiB.
func TestBundleOnEndlessPipe(t *testing.T) {
	dir := t.TempDir()
	makeSource(t, dir)
	for _, tc := range []struct {
		src  *endless
		want string
		max  int
	}{
		{&endless{head: `{"keys": [`, unit: `{"comment": "", "flags": 0, "spki": ["AAAA"], "uuid": "00000000-0000-4000-8000-000000000002"}` + strings.Repeat(" ", 64000) + `,`}, `^cryptech-backup: error: -: larger than 168 MiB$`, maxBundle + 1},
		{&endless{unit: " "}, `^cryptech-backup: error: read bundle: malformed file: more than 65536 bytes in one JSON string or value, at byte 65537 \(`, 1 << 20},
	} {
		var stdout, stderr bytes.Buffer
		e := pinEnv(&stdout, &stderr)
		e.stdin = tc.src
		if status := run([]string{"import", "--hsm", filepath.Join(dir, "dst")}, e); status != 1 {
			t.Errorf("exit status %d, want 1", status)
		}
		checkOneLine(t, stderr.String(), tc.want)
		if tc.src.n > tc.max {
			t.Errorf("read %d bytes from the pipe, more than %d", tc.src.n, tc.max)
		}
	}
}

// limitInput gives a pipe's limit bytes, then refuses the next; a file is
// judged by its size before a byte is read.
func TestLimitInput(t *testing.T) {
	for _, tc := range []struct {
		size    int
		refused bool
	}{{9, false}, {10, false}, {11, true}} {
		src := &countingReader{r: bytes.NewReader(make([]byte, tc.size))}
		r, _, err := limitInput(src, "pipe", 10)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		if refused := errorIsTooLarge(err); refused != tc.refused || !tc.refused && len(data) != tc.size {
			t.Errorf("pipe of %d bytes, limit 10: %d bytes, %v", tc.size, len(data), err)
		}
		if src.n > 11 {
			t.Errorf("pipe of %d bytes, limit 10: %d bytes read", tc.size, src.n)
		}
		path := filepath.Join(t.TempDir(), "f")
		os.WriteFile(path, make([]byte, tc.size), 0o600)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		_, size, err := limitInput(f, path, 10)
		if refused := errorIsTooLarge(err); refused != tc.refused || !refused && size != tc.size {
			t.Errorf("file of %d bytes, limit 10: size %d, %v", tc.size, size, err)
		}
		if off, _ := f.Seek(0, io.SeekCurrent); off != 0 {
			t.Errorf("file of %d bytes: %d bytes read", tc.size, off)
		}
		f.Close()
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func errorIsTooLarge(err error) bool {
	var tl tooLargeError
	return errors.As(err, &tl)
}

// Bundles under the size bound whose content would take many times their
// size in memory once parsed: each is refused at the bound it passes, in one
// line, having allocated less than three times its size (a keys array of
// empty objects once took 230 bytes of memory per byte of file; keys of
// 1,016 attributes of a few bytes, 17.6, and 744 MB for 163 MB).
func TestBundleRefusedAtItsBounds(t *testing.T) {
	dir := t.TempDir()
	makeSource(t, dir)
	const size = 20 << 20
	repeat := func(head, elem, tail string) []byte {
		n := (size - len(head) - len(tail)) / (len(elem) + 1)
		return []byte(head + strings.Repeat(elem+",", n-1) + elem + tail)
	}
	// Keys with 1,016 attributes (as many as a key may have) of one value.
	attributes := func(value string) string {
		var b strings.Builder
		for i := range 1016 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"0x%08x":"%s"`, 0x100+i, value)
		}
		return `"attributes":{` + b.String() + `}`
	}
	lines := func(line string) string { return `[` + strings.Repeat(`"`+line+`",`, 143) + `"` + line + `"]` }
	ff := `"` + strings.Repeat("\xff", 65534) + `"`
	aaa := `"` + strings.Repeat("a", 65534) + `"`
	// The reviewer's, and those a reader took for keys until it had read them
	// all (each is a well-formed key until the bound).
	const head, versioned = `{"kekek_pubkey":["AAAA"],"kekek_uuid":"00000000-0000-4000-8000-000000000001","keys":[`,
		`{"comment":"","kek_encryption":"rsa-oaep-sha256","kekek_pubkey":["AAAA"],"kekek_uuid":"00000000-0000-4000-8000-000000000001","keys":[`
	const key = `"comment":"Public key","flags":0,"spki":["AAAA"],"uuid":"00000000-0000-4000-8000-000000000002"`
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty keys", repeat(`{"kekek_pubkey":[],"keys":[`, `{}`, `]}`), `keys\[0\]: uuid: malformed UUID: ""`},
		{"keys", repeat(head, `{`+key+`}`, `]}`), `keys: more than 10000 keys`},
		{"empty lines", repeat(`{"kekek_pubkey":[],"keys":[{"pkcs8":[`, `""`, `]}]}`), `keys\[0\]\.pkcs8: more than 144 lines of Base64: no field holds more than 8192 bytes`},
		{"long line", []byte(`{"kekek_pubkey":["` + strings.Repeat("A", size) + `"],"keys":[]}`), `more than 65536 bytes in one JSON string or value, at byte 65554`},
		{"long space", []byte(`{"kekek_pubkey":` + strings.Repeat(" ", size) + `[],"keys":[]}`), `more than 65536 bytes in one JSON string or value, at byte 65553`},
		{"empty attributes", repeat(head, `{`+attributes("")+`}`, `]}`), `keys\[0\]: uuid: malformed UUID: ""`},
		{"one-byte attributes", repeat(head, `{`+attributes("01")+`}`, `]}`), `keys\[0\]: uuid: malformed UUID: ""`},
		{"strings not UTF-8", repeat(head, `{"comment":`+ff+`,"label":`+ff+`,"label_hex":`+ff+`,"uuid":`+ff+`}`, `]}`), `keys\[0\]\.comment: not UTF-8 at byte 98`},
		{"empty Base64 lines", repeat(head, `{`+attributes("")+`,"kek":`+lines("")+`,"pkcs8":`+lines("")+`,"spki":`+lines("")+`,"tag":`+lines("")+`}`, `]}`), `keys\[0\]\.kek: empty, which a file says by leaving the field out`},
		{"keys of empty attributes", repeat(versioned, `{`+attributes("")+`,`+key+`}`, `],"version":1}`), `keys\[629\]\.attributes: more than 640000 attributes in the bundle`},
		{"keys of one-byte attributes", repeat(versioned, `{`+attributes("01")+`,`+key+`}`, `],"version":1}`), `keys\[629\]\.attributes: more than 640000 attributes in the bundle`},
		{"keys of long strings", repeat(versioned, `{"comment":`+aaa+`,"label":`+aaa+`,"label_hex":`+aaa+`,"uuid":`+aaa+`}`, `],"version":1}`), `keys\[0\]\.comment: 65534 bytes, more than the 1024 it may have`},
		{"keys of Base64 lines", repeat(versioned, `{`+attributes("")+`,`+key+`,"kek":`+lines("AAAA")+`,"pkcs8":`+lines("AAAA")+`,"tag":`+lines("AAAA")+`}`, `],"version":1}`),
			`keys\[629\]\.attributes: more than 640000 attributes in the bundle`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "b.json")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			status := run([]string{"import", "--hsm", filepath.Join(dir, "dst"), "-i", path}, pinEnv(&stdout, &stderr))
			runtime.ReadMemStats(&after)
			if status != 1 {
				t.Errorf("exit status %d, want 1", status)
			}
			checkOneLine(t, stderr.String(), `^cryptech-backup: error: read bundle: malformed file: `+tc.want+` \(import takes`)
			if got := after.TotalAlloc - before.TotalAlloc; got > 3*uint64(len(tc.data)) {
				t.Errorf("allocated %d bytes for a %d-byte bundle, %.1f per byte", got, len(tc.data), float64(got)/float64(len(tc.data)))
			} else {
				t.Logf("allocated %d bytes for a %d-byte bundle, %.2f per byte", got, len(tc.data), float64(got)/float64(len(tc.data)))
			}
		})
	}
}
