package backup

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// TestBindingWithoutAttributesUnchanged: a bundle whose keys have no
// attributes binds exactly what it bound before attributes existed, so
// every bundle written before, and every bundle for or from a Cryptech
// HSM, still imports. The digest was computed by the code before
// attributes were added.
func TestBindingWithoutAttributesUnchanged(t *testing.T) {
	d := fixedBundle().metadataDigest()
	if got, want := hex.EncodeToString(d[:]), "3a8a4aafcac69d61c2ea5cdd3070f0e8824a3b6f6ba9cad7574e753aca52eb9a"; got != want {
		t.Errorf("metadata digest of a bundle without attributes is %s, was %s", got, want)
	}
	// The same bundle with an attribute binds something else.
	b := fixedBundle()
	b.Keys[1].Attributes = Attributes{{Type: hsmapi.CKAID, Value: []byte{1}}}
	if b.metadataDigest() == d {
		t.Error("an attribute does not change the metadata digest")
	}

	// A bundle from a source that has no attributes (today's code path)
	// leaves the field out and imports.
	src, moved, _ := source(t)
	dst := hsmtest.New(t)
	b, err := Export(ctx, noAttributes{src}, mustSetup(t, dst, SetupOptions{}), ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	Write(&buf, b)
	if strings.Contains(buf.String(), "attributes") {
		t.Fatal("a source without attributes wrote some")
	}
	if _, err := Import(ctx, dst, roundTripBundle(t, b), ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := keyCount(t, dst); got != len(moved)+1 {
		t.Errorf("%d keys on the destination, want %d and the KEKEK", got, len(moved))
	}
}

// noAttributes hides a token's attributes, as a token that has none.
type noAttributes struct{ hsmapi.Token }

// fixedBundle is a bundle of fixed content, for known-answer tests of the
// binding.
func fixedBundle() *Bundle {
	return &Bundle{
		Comment:       "Cryptech Alpha encrypted key backup",
		KEKEncryption: hsmapi.KEKOAEPSHA256,
		KEKEKPubkey:   []byte{0x30, 0x82, 0x01, 0x22},
		KEKEKUUID:     "6c1c4f36-1a0d-4c9a-9d1e-0f4a3c2b1a00",
		Keys: []BundleKey{
			{Comment: "Encrypted private key", Flags: exportable, Label: "ec", SPKI: []byte{0x30, 0x59}, UUID: "0b0e6a52-7c55-4d7e-8a4e-3d1f2e1c0b01"},
			{Comment: "Public key", Flags: hsmapi.FlagToken | hsmapi.FlagExportable, SPKI: []byte{0x30, 0x2a}, UUID: "0b0e6a52-7c55-4d7e-8a4e-3d1f2e1c0b02"},
		},
		Version: Version,
	}
}

// TestAttributesAreBound: changing, adding or removing one attribute of any
// key of a bundle is refused as the tag's failure, and stores nothing.
func TestAttributesAreBound(t *testing.T) {
	src, _, _ := source(t)
	dst := hsmtest.New(t)
	b, err := Export(ctx, src, mustSetup(t, dst, SetupOptions{}), ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	carried := 0
	for _, k := range b.Keys {
		carried += len(k.Attributes)
	}
	if carried != len(pkcs11Attributes) {
		t.Fatalf("the bundle carries %d attributes, the source has %d", carried, len(pkcs11Attributes))
	}
	before := keyCount(t, dst)
	type change struct {
		name string
		f    func(Attributes) Attributes
	}
	changes := []change{{"added", func(a Attributes) Attributes {
		return sortedAttributes(append(slices.Clone(a), hsmapi.Attribute{Type: hsmapi.CKADecrypt, Value: []byte{1}}))
	}}}
	for i := range len(pkcs11Attributes) {
		changes = append(changes,
			change{fmt.Sprintf("attribute %d changed", i), func(a Attributes) Attributes {
				a = slices.Clone(a)
				a[i].Value = slices.Clone(a[i].Value)
				a[i].Value[len(a[i].Value)-1] ^= 1
				return a
			}},
			change{fmt.Sprintf("attribute %d removed", i), func(a Attributes) Attributes {
				return slices.Delete(slices.Clone(a), i, i+1)
			}})
	}
	n := 0
	for ki := range b.Keys {
		for _, c := range changes {
			if len(b.Keys[ki].Attributes) == 0 && c.name != "added" {
				continue
			}
			tampered := *b
			tampered.Keys = slices.Clone(b.Keys)
			tampered.Keys[ki].Attributes = c.f(b.Keys[ki].Attributes)
			if len(tampered.Keys[ki].Attributes) == 0 {
				tampered.Keys[ki].Attributes = nil
			}
			n++
			_, err := Import(ctx, dst, roundTripBundle(t, &tampered), ImportOptions{})
			if !errors.Is(err, hsmapi.ErrDecryption) {
				t.Errorf("key %d, %s: got %v, want decryption failed", ki, c.name, err)
			}
		}
	}
	if n < len(b.Keys)+2*len(pkcs11Attributes) {
		t.Errorf("only %d changes tried", n)
	}
	if got := keyCount(t, dst); got != before {
		t.Errorf("tampered bundles stored %d keys", got-before)
	}
	// The bundle as it was imports, attributes and all.
	if _, err := Import(ctx, dst, roundTripBundle(t, b), ImportOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestAttributesJSON(t *testing.T) {
	good := Attributes{{Type: hsmapi.CKAID, Value: []byte{0x0a, 0x01}}, {Type: hsmapi.CKADerive, Value: []byte{1}}, {Type: hsmapi.CKAStartDate}}
	data, err := good.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"0x00000102":"0a01","0x0000010c":"01","0x00000110":""}`; string(data) != want {
		t.Errorf("encoded as %s, want %s", data, want)
	}
	var back Attributes
	if err := back.UnmarshalJSON(data); err != nil || fmt.Sprint(back) != fmt.Sprint(good) {
		t.Errorf("read back as %v, %v", back, err)
	}
	long := strings.Repeat("00", hsmapi.MaxAttributeSize+1)
	for _, bad := range []string{
		`null`, `{}`, `[]`, `"0a01"`,
		`{"0x00000102":"0A01"}`,                 // upper-case value
		`{"0X00000102":"0a01"}`,                 // upper-case prefix
		`{"0x0000010A":"01"}`,                   // upper-case type
		`{"0x102":"01"}`,                        // short type
		`{"258":"01"}`,                          // decimal type
		`{"0x00000102":"0a0"}`,                  // odd hex
		`{"0x00000102":"zz"}`,                   // not hex
		`{"0x00000102":1}`,                      // not a string
		`{"0x00000101":null}`,                   // null is no empty value
		`{"0x00000003":"6b6579"}`,               // the label
		`{"0x00000102":"01","0x00000102":"02"}`, // twice
		`{"0x0000010c":"01","0x00000102":"02"}`, // out of order
		`{"0x00000102":"` + long + `"}`,         // too long
		`{"0xc7b50002":"00000001"}`,             // public object list truncated
		`{"0xc7b50002":"0000000000"}`,           // public object list with trailing bytes
	} {
		var a Attributes
		if err := a.UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("%s read as %v", bad, a)
		}
	}
}

// TestReadBundleAttributes: attributes travel through the file, and a
// malformed attributes object, or attributes in a bundle without version,
// are refused as the format's.
func TestReadBundleAttributes(t *testing.T) {
	src, _, _ := source(t)
	b, err := Export(ctx, src, mustSetup(t, hsmtest.New(t), SetupOptions{}), ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := roundTripBundle(t, b)
	for i := range b.Keys {
		if fmt.Sprint(got.Keys[i].Attributes) != fmt.Sprint(b.Keys[i].Attributes) {
			t.Errorf("key %d: attributes %v read back as %v", i, b.Keys[i].Attributes, got.Keys[i].Attributes)
		}
	}
	var buf bytes.Buffer
	Write(&buf, b)
	valid := buf.String()
	if !strings.Contains(valid, `"0x00000102": "0a01"`) {
		t.Fatalf("CKA_ID not in the bundle:\n%s", valid)
	}
	for name, data := range map[string]string{
		"upper case": strings.Replace(valid, `"0x00000102": "0a01"`, `"0x00000102": "0A01"`, 1),
		"label":      strings.Replace(valid, `"0x00000102": "0a01"`, `"0x00000003": "0a01"`, 1),
		"twice":      strings.Replace(valid, `"0x00000102": "0a01"`, `"0x00000102": "0a01", "0x00000102": "0a02"`, 1),
		"not object": strings.Replace(valid, `"attributes": {`, `"attributes": [], "x": {`, 1),
	} {
		if _, err := ReadBundle(strings.NewReader(data)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v, want ErrFormat", name, err)
		}
	}
	legacy := *b
	legacy.Version, legacy.KEKEncryption = 0, ""
	legacy.Keys = slices.Clone(b.Keys)
	for i := range legacy.Keys {
		legacy.Keys[i].Tag, legacy.Keys[i].Label = nil, ""
	}
	buf.Reset()
	Write(&buf, &legacy)
	if _, err := ReadBundle(&buf); !errors.Is(err, ErrFormat) {
		t.Errorf("attributes in a bundle without version: %v", err)
	}
}
