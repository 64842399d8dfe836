package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsm"
)

// largestKeyAttributes are the PKCS#11 attributes of the largest real key:
// every one a key carries, the byte strings (CKA_ID, CKA_SUBJECT, the public
// key object) as long as the HSM keeps them.
func largestKeyAttributes() []hsm.Attribute {
	var attrs []hsm.Attribute
	for _, t := range []uint32{hsm.CKAToken, hsm.CKAPrivate, hsm.CKATrusted, hsm.CKASensitive, hsm.CKAEncrypt,
		hsm.CKADecrypt, hsm.CKAWrap, hsm.CKAUnwrap, hsm.CKASign, hsm.CKASignRecover, hsm.CKAVerify,
		hsm.CKAVerifyRecover, hsm.CKADerive, hsm.CKAExtractable, hsm.CKALocal, hsm.CKANeverExtractable,
		hsm.CKAAlwaysSensitive, hsm.CKAModifiable, hsm.CKACopyable, hsm.CKADestroyable,
		hsm.CKAAlwaysAuthenticate, hsm.CKAWrapWithTrusted} {
		attrs = append(attrs, hsm.Attribute{Type: t, Value: []byte{1}})
	}
	attrs = append(attrs,
		hsm.Attribute{Type: hsm.CKAStartDate, Value: []byte("20260101")},
		hsm.Attribute{Type: hsm.CKAEndDate, Value: []byte("20361231")},
		hsm.Attribute{Type: hsm.CKAID, Value: bytes.Repeat([]byte{0xa5}, hsm.MaxAttributeSize)},
		hsm.Attribute{Type: hsm.CKASubject, Value: bytes.Repeat([]byte{0x5a}, hsm.MaxAttributeSize)})
	// The public key object: its flags, and a CKA_ID filling what is left.
	var pub []hsm.Attribute
	for _, t := range []uint32{hsm.CKAToken, hsm.CKAPrivate, hsm.CKATrusted, hsm.CKAEncrypt, hsm.CKAWrap,
		hsm.CKAVerify, hsm.CKAVerifyRecover, hsm.CKADerive, hsm.CKAModifiable, hsm.CKACopyable, hsm.CKADestroyable} {
		pub = append(pub, hsm.Attribute{Type: t, Value: []byte{1}})
	}
	pub = append(pub, hsm.Attribute{Type: hsm.CKAID})
	pub[len(pub)-1].Value = bytes.Repeat([]byte{0xa5}, hsm.MaxAttributeSize-len(hsm.EncodeAttributes(pub)))
	return append(attrs, hsm.Attribute{Type: hsm.AttributePublicObject, Value: hsm.EncodeAttributes(pub)})
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
		if err := s.Login(ctx, hsm.UserWheel, pin); err != nil {
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
	k, err := src.GenerateKey(ctx, hsm.GenerateRequest{Type: hsm.KeyTypeRSAPrivate, Bits: 4096,
		Flags: hsm.FlagDigitalSignature | hsm.FlagToken | hsm.FlagExportable})
	if err != nil {
		t.Fatal(err)
	}
	attrs := append(largestKeyAttributes(), hsm.Attribute{Type: hsm.AttributeLabel, Value: bytes.Repeat([]byte{0xff}, hsm.MaxRawLabelLength)})
	if err := src.SetAttributes(ctx, k.UUID, attrs); err != nil {
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
	// Until bundles carry attributes, count them as hex in a JSON object,
	// each on a line of its own with its name.
	if !strings.Contains(strings.ToLower(full.String()), strings.Repeat("a5", 64)) {
		extra := 64
		for _, a := range attrs {
			extra += 2*len(a.Value) + 64
		}
		t.Logf("the bundle carries no attributes: %d bytes a key counted for them", extra)
		perKey += extra
	}
	largest := header.Len() + backup.MaxKeys*perKey
	t.Logf("largest real bundle: %d bytes a key, %d in all; maxBundle %d", perKey, largest, maxBundle)
	if largest+largest/10 > maxBundle {
		t.Errorf("maxBundle (%d bytes) leaves less than 10%% room over the largest real bundle (%d bytes)", maxBundle, largest)
	}
	if maxBundle > 2*largest {
		t.Errorf("maxBundle (%d bytes) is more than twice the largest real bundle (%d bytes)", maxBundle, largest)
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

// endless gives spaces without end, counting them.
type endless struct{ n int }

func (r *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	r.n += len(p)
	return len(p), nil
}

// A pipe (stdin) that never ends is read up to the bound, no further.
func TestBundleOnEndlessPipe(t *testing.T) {
	dir := t.TempDir()
	makeSource(t, dir)
	src := &endless{}
	var stdout, stderr bytes.Buffer
	e := pinEnv(&stdout, &stderr)
	e.stdin = src
	if status := run([]string{"import", "--hsm", filepath.Join(dir, "dst")}, e); status != 1 {
		t.Errorf("exit status %d, want 1", status)
	}
	checkOneLine(t, stderr.String(), `^cryptech-backup: error: -: larger than 168 MiB$`)
	if src.n > maxBundle+1 {
		t.Errorf("read %d bytes from the pipe, more than maxBundle+1 (%d)", src.n, maxBundle+1)
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
