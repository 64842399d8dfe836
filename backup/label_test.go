package backup

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// rawLabels are labels a libhal client may set over RPC (PKEY_SET_ATTRIBUTES)
// that no bundle could carry as a JSON string: bytes that are not UTF-8, a
// NUL and a right-to-left override; the longest an HSM keeps; and a clean
// label longer than a file may give as text.
var rawLabels = []string{
	"a\x00b\xffc\u202e",
	strings.Repeat("\xfe", hsmapi.MaxRawLabelLength),
	strings.Repeat("l", hsmapi.MaxLabelLength+1),
}

// rawLabelBundle exports from a rawLabelSource for a new emulated HSM,
// which it returns with the keys and the bundle.
func rawLabelBundle(t *testing.T) (moved []hsmapi.KeyInfo, dst *hsm.Session, b *Bundle) {
	t.Helper()
	src, moved := rawLabelSource(t)
	dst = hsmtest.New(t)
	b, err := Export(ctx, src, mustSetup(t, dst, SetupOptions{}), ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return moved, dst, b
}

// rawLabelSource is a token whose exportable keys have the rawLabels and
// one clean label, each set as a libhal client sets it.
func rawLabelSource(t *testing.T) (*hsm.Session, []hsmapi.KeyInfo) {
	t.Helper()
	src := hsmtest.New(t)
	var moved []hsmapi.KeyInfo
	for _, label := range append([]string{"clean"}, rawLabels...) {
		k := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable})
		if err := src.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte(label)}}); err != nil {
			t.Fatal(err)
		}
		k.Label = label
		moved = append(moved, k)
	}
	return src, moved
}

// TestRawLabelsArriveExactly: a key whose label was set over RPC to any
// bytes travels in label_hex and arrives with exactly those bytes; clean
// labels stay text, so the bundle has one form for each label.
func TestRawLabelsArriveExactly(t *testing.T) {
	moved, dst, b := rawLabelBundle(t)
	file := string(written(t, b))
	for _, k := range moved {
		e := entry(t, b, k.UUID)
		want := BundleKey{Label: k.Label}
		if hsmapi.CheckLabel(k.Label) != nil {
			want = BundleKey{LabelHex: hex.EncodeToString([]byte(k.Label))}
			if !strings.Contains(file, `"label_hex": "`+want.LabelHex+`"`) {
				t.Errorf("the bundle file lacks label_hex %.40s...", want.LabelHex)
			}
		}
		if e.Label != want.Label || e.LabelHex != want.LabelHex {
			t.Errorf("label %q exported as label %q, label_hex %q", k.Label, e.Label, e.LabelHex)
		}
	}
	if _, err := Import(ctx, dst, roundTripBundle(t, b), ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	checkArrived(t, dst, moved)
	checkLabels(t, dst, moved)
}

// checkLabels checks that each key is on tok with exactly its label, as Key
// and the label attribute tell.
func checkLabels(t *testing.T, tok *hsm.Session, moved []hsmapi.KeyInfo) {
	t.Helper()
	for _, k := range moved {
		got, err := tok.Key(ctx, k.UUID)
		if err != nil || got.Label != k.Label {
			t.Errorf("%s arrived with label %q (%v), left with %q", k.UUID, got.Label, err, k.Label)
		}
		attr, err := tok.Attributes(ctx, k.UUID, []uint32{hsmapi.AttributeLabel})
		if k.Label == "" {
			if !errors.Is(err, hsmapi.ErrAttributeNotFound) {
				t.Errorf("%s: label attribute %v (%v), want none", k.UUID, attr, err)
			}
			continue
		}
		if err != nil || string(attr[0].Value) != k.Label {
			t.Errorf("%s: label attribute %v (%v), want %q", k.UUID, attr, err, k.Label)
		}
	}
}

func entry(t *testing.T, b *Bundle, id hsmapi.UUID) *BundleKey {
	t.Helper()
	for i := range b.Keys {
		if b.Keys[i].UUID == id.String() {
			return &b.Keys[i]
		}
	}
	t.Fatalf("%s is not in the bundle", id)
	return nil
}

// TestLabelHexIsBound: label_hex changed to another label that only it can
// carry fails the tag, whichever key it is on, and nothing is stored; every
// other change to the bundle is refused too.
func TestLabelHexIsBound(t *testing.T) {
	moved, dst, b := rawLabelBundle(t)
	for _, k := range moved[1:] {
		tampered := roundTripBundle(t, b)
		e := entry(t, tampered, k.UUID)
		raw, _ := hex.DecodeString(e.LabelHex)
		raw[0] ^= 1
		e.LabelHex = hex.EncodeToString(raw)
		if _, err := ReadBundle(bytes.NewReader(written(t, tampered))); err != nil {
			t.Fatalf("the changed label_hex is not well-formed: %v", err)
		}
		if _, err := Import(ctx, dst, tampered, ImportOptions{}); !errors.Is(err, hsmapi.ErrDecryption) {
			t.Errorf("label %q changed in label_hex: %v, want %v", k.Label, err, hsmapi.ErrDecryption)
		}
	}
	if n := keyCount(t, dst); n != 1 {
		t.Errorf("%d keys on the destination besides its KEKEK", n-1)
	}
	checkTamperRefused(t, dst, b)
}

func written(t *testing.T, b *Bundle) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestLabelForms: a label has one form. A reader refuses label_hex holding
// a label that label could carry, a label as text that a file may not give,
// both, and label_hex that is not lower-case hex of a label an HSM keeps;
// an import of such a bundle stores nothing.
func TestLabelForms(t *testing.T) {
	moved, dst, b := rawLabelBundle(t)
	hexOf := func(s string) string { return hex.EncodeToString([]byte(s)) }
	for name, set := range map[string]func(e *BundleKey){
		"label_hex of a clean label": func(e *BundleKey) { e.Label, e.LabelHex = "", hexOf("clean") },
		"label with a NUL":           func(e *BundleKey) { e.Label, e.LabelHex = "a\x00b", "" },
		"label with U+202E":          func(e *BundleKey) { e.Label, e.LabelHex = "evil\u202egnp.exe", "" },
		"label too long as text":     func(e *BundleKey) { e.Label, e.LabelHex = rawLabels[2], "" },
		"both":                       func(e *BundleKey) { e.Label, e.LabelHex = "clean", hexOf(rawLabels[0]) },
		"upper-case label_hex":       func(e *BundleKey) { e.Label, e.LabelHex = "", strings.ToUpper(hexOf(rawLabels[0])) },
		"odd label_hex":              func(e *BundleKey) { e.Label, e.LabelHex = "", hexOf(rawLabels[0])[1:] },
		"label_hex not hex":          func(e *BundleKey) { e.Label, e.LabelHex = "", "zz" },
		"label_hex too long":         func(e *BundleKey) { e.Label, e.LabelHex = "", hexOf(rawLabels[1]+"\xfe") },
	} {
		bad := roundTripBundle(t, b)
		set(entry(t, bad, moved[0].UUID))
		if _, err := ReadBundle(bytes.NewReader(written(t, bad))); !errors.Is(err, ErrFormat) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: read %v, want one line of %v", name, err, ErrFormat)
		}
		if _, err := Import(ctx, dst, bad, ImportOptions{}); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: import %v, want %v", name, err, ErrFormat)
		}
	}
	legacy := roundTripBundle(t, b)
	legacy.toLegacy()
	legacy.Keys[0].LabelHex = hexOf(rawLabels[0])
	if _, err := ReadBundle(bytes.NewReader(written(t, legacy))); !errors.Is(err, ErrFormat) {
		t.Errorf("label_hex in a bundle without version: %v", err)
	}
	if n := keyCount(t, dst); n != 1 {
		t.Errorf("%d keys on the destination besides its KEKEK", n-1)
	}
}

// TestLabelHexBinding: a bundle without label_hex binds what it always
// bound (TestBindingWithoutAttributesUnchanged pins that digest), and
// label_hex, when present, is bound.
func TestLabelHexBinding(t *testing.T) {
	b := fixedBundle()
	d := b.metadataDigest()
	b.Keys[1].LabelHex = hex.EncodeToString([]byte(rawLabels[0]))
	if b.metadataDigest() == d {
		t.Error("label_hex does not change the metadata digest")
	}
	again := fixedBundle()
	again.Keys[1].LabelHex = hex.EncodeToString([]byte(rawLabels[1]))
	if again.metadataDigest() == b.metadataDigest() {
		t.Error("two label_hex values bind the same digest")
	}
}

// longLabels gives every key a label longer than an HSM keeps, as a
// PKCS#11 token may.
type longLabels struct{ hsmapi.Token }

func (l longLabels) Keys(ctx context.Context, f hsmapi.Filter) ([]hsmapi.KeyInfo, error) {
	keys, err := l.Token.Keys(ctx, f)
	for i := range keys {
		keys[i].Label = strings.Repeat("x", hsmapi.MaxRawLabelLength+1)
	}
	return keys, err
}

// TestExportRefusesLabelNoHSMKeeps: a label that no destination could take
// fails the export, before anything is exported.
func TestExportRefusesLabelNoHSMKeeps(t *testing.T) {
	src, _ := rawLabelSource(t)
	dst := hsmtest.New(t)
	_, err := Export(ctx, longLabels{src}, mustSetup(t, dst, SetupOptions{}), ExportOptions{})
	var ke *KeyError
	if !errors.Is(err, hsmapi.ErrBadArguments) || !errors.As(err, &ke) {
		t.Errorf("export of a %d-byte label: %v", hsmapi.MaxRawLabelLength+1, err)
	}
}

// TestOldBundleImportsUnchanged: a bundle written before label_hex existed
// (testdata/v1_bundle/README.md) reads, writes back byte for byte, and
// imports: its tags still check, and every key arrives with its label and
// attributes and signs under its public key.
func TestOldBundleImportsUnchanged(t *testing.T) {
	dir := "testdata/v1_bundle/"
	data, err := os.ReadFile(dir + "bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	pass, err := os.ReadFile(dir + "passphrase.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ReadBundle(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(written(t, b), data) {
		t.Error("the old bundle, read and written again, changed")
	}
	dst := hsmtest.New(t)
	if _, err := Import(ctx, dst, b, ImportOptions{Passphrase: passphrase(string(bytes.TrimSuffix(pass, []byte("\n"))))}); err != nil {
		t.Fatal(err)
	}
	var moved []hsmapi.KeyInfo
	labels := 0
	for _, e := range b.Keys {
		k, err := hsmapi.DescribePublicKey(e.SPKI, e.IsPrivate())
		if err != nil {
			t.Fatal(err)
		}
		k.UUID, _ = hsmapi.ParseUUID(e.UUID)
		k.Label = e.Label
		moved = append(moved, k)
		if e.Label != "" {
			labels++
		}
		got, err := dst.KeyAttributes(ctx, k.UUID)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(asImported(e.Attributes)) {
			t.Errorf("%s arrived with attributes %v (%v), the bundle has %v", e.UUID, got, err, e.Attributes)
		}
	}
	if len(moved) != 4 || labels != 3 {
		t.Fatalf("the old bundle has %d keys, %d labelled", len(moved), labels)
	}
	checkArrived(t, dst, moved)
	checkLabels(t, dst, moved)
	noKEKEKLeft(t, dst)
}
