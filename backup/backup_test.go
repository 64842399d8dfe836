package backup

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

var ctx = context.Background()

const exportable = hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable

func generate(t testing.TB, tok hsmapi.Token, req hsmapi.GenerateRequest) hsmapi.KeyInfo {
	t.Helper()
	k, err := tok.GenerateKey(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// source makes a token with a mix of keys: three exportable private keys,
// one that is not exportable, and an exportable public key.
func source(t testing.TB) (tok *hsm.Session, moved []hsmapi.KeyInfo, stays hsmapi.KeyInfo) {
	t.Helper()
	tok = hsmtest.New(t)
	moved = []hsmapi.KeyInfo{
		generate(t, tok, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable, Label: "ec"}),
		generate(t, tok, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: exportable, Label: "rsa"}),
		generate(t, tok, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384, Flags: exportable}),
		generate(t, tok, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Flags: exportable, Label: "lms", Levels: []hashsig.Level{
			{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4},
			{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4},
		}}),
	}
	// The first key has the attributes it would have had on a PKCS#11 token.
	if err := tok.SetAttributes(ctx, moved[0].UUID, pkcs11Attributes); err != nil {
		t.Fatal(err)
	}
	stays = generate(t, tok, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken})
	pub, err := tok.Import(ctx, hsmapi.ImportRequest{PublicKey: stays.PublicKey, Flags: hsmapi.FlagToken | hsmapi.FlagExportable, Label: "pub"})
	if err != nil {
		t.Fatal(err)
	}
	moved = append(moved, pub.Key)
	return tok, moved, stays
}

// pkcs11Attributes are those of a key pair made with pkcs11-tool --id 0a01
// that may derive.
var pkcs11Attributes = []hsmapi.Attribute{
	{Type: hsmapi.CKAID, Value: []byte{0x0a, 0x01}},
	{Type: hsmapi.CKASign, Value: []byte{1}},
	{Type: hsmapi.CKADerive, Value: []byte{1}},
	{Type: hsmapi.CKAModifiable, Value: []byte{0}},
	{Type: hsmapi.AttributePublicObject, Value: hsmapi.EncodeAttributes([]hsmapi.Attribute{
		{Type: hsmapi.CKAID, Value: []byte{0x0a, 0x01}},
		{Type: hsmapi.CKAVerify, Value: []byte{1}},
	})},
}

// asImported are the attributes a key that carried attrs has once
// imported into an emulated HSM: those, with CKA_LOCAL false (it was made
// elsewhere), in order of type.
func asImported(attrs []hsmapi.Attribute) []hsmapi.Attribute {
	out := slices.DeleteFunc(slices.Clone(attrs), func(a hsmapi.Attribute) bool { return a.Type == hsmapi.CKALocal })
	out = append(out, hsmapi.Attribute{Type: hsmapi.CKALocal, Value: []byte{0}})
	slices.SortFunc(out, func(a, b hsmapi.Attribute) int { return cmp.Compare(a.Type, b.Type) })
	return out
}

// roundTrip writes v as JSON and reads it back, as the files travel.
func roundTrip[T any](t testing.TB, v T, read func(io.Reader) (T, error)) T {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, v); err != nil {
		t.Fatal(err)
	}
	got, err := read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func roundTripBundle(t testing.TB, b *Bundle) *Bundle { return roundTrip(t, b, ReadBundle) }

func keyCount(t testing.TB, tok hsmapi.Token) int {
	t.Helper()
	keys, err := tok.Keys(ctx, hsmapi.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

func TestTransfer(t *testing.T) {
	src, moved, stays := source(t)
	dst := hsmtest.New(t)
	f := roundTrip(t, mustSetup(t, dst, SetupOptions{}), ReadKEKEKFile)
	if want := []hsmapi.KEKEncryption{hsmapi.KEKOAEPSHA256, hsmapi.KEKOAEPSHA1}; fmt.Sprint(f.KEKEncryptions) != fmt.Sprint(want) {
		t.Errorf("setup offers %v, want %v", f.KEKEncryptions, want)
	}
	b, err := Export(ctx, src, f, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b.KEKEncryption != hsmapi.KEKOAEPSHA256 || len(b.Keys) != len(moved) {
		t.Fatalf("bundle has %d keys with %s", len(b.Keys), b.KEKEncryption)
	}
	res, err := Import(ctx, dst, roundTripBundle(t, b), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Present || r.UUID.String() != b.Keys[i].UUID {
			t.Errorf("key %d: %+v", i, r)
		}
	}
	for _, k := range moved {
		got, err := dst.Key(ctx, k.UUID)
		if err != nil {
			t.Fatalf("%s (%s) did not arrive: %v", k.UUID, k.Label, err)
		}
		if got.Label != k.Label || got.Flags != k.Flags || got.Type != k.Type || !bytes.Equal(got.PublicKey, k.PublicKey) {
			t.Errorf("arrived as %+v, left as %+v", got, k)
		}
		left, _ := src.KeyAttributes(ctx, k.UUID)
		arrived, err := dst.KeyAttributes(ctx, k.UUID)
		if err != nil || fmt.Sprint(arrived) != fmt.Sprint(asImported(left)) {
			t.Errorf("%s arrived with attributes %v, left with %v (%v)", k.Label, arrived, left, err)
		}
		if !k.Type.IsPrivate() {
			continue
		}
		msg, opts := signable(k)
		sig, err := dst.Sign(ctx, k.UUID, msg, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := hsmapi.VerifySignature(k.PublicKey, msg, sig, opts); err != nil {
			t.Errorf("%s: signature from the destination fails under the source's key: %v", k.Label, err)
		}
	}
	if _, err := dst.Key(ctx, stays.UUID); !errors.Is(err, hsmapi.ErrKeyNotFound) {
		t.Errorf("the non-exportable key reached the destination: %v", err)
	}
	// Re-running the import is harmless.
	before := keyCount(t, dst)
	res, err = Import(ctx, dst, b, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if !r.Present {
			t.Errorf("second import: key %d not reported present", i)
		}
	}
	if keyCount(t, dst) != before {
		t.Error("second import changed the keystore")
	}
}

// signable returns what Sign takes for a key: a SHA-256 digest, or for an
// HSS key the message itself.
func signable(k hsmapi.KeyInfo) ([]byte, crypto.SignerOpts) {
	msg := []byte("signed on the destination: " + k.UUID.String())
	if k.Type == hsmapi.KeyTypeHashsigPrivate {
		return msg, crypto.Hash(0)
	}
	digest := sha256.Sum256(msg)
	return digest[:], crypto.SHA256
}

func mustSetup(t testing.TB, tok hsmapi.Token, opts SetupOptions) *KEKEKFile {
	t.Helper()
	f, err := Setup(ctx, tok, opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestSetupFindsOrMakesKEKEK(t *testing.T) {
	tok := hsmtest.New(t)
	first := mustSetup(t, tok, SetupOptions{})
	if again := mustSetup(t, tok, SetupOptions{}); again.KEKEKUUID != first.KEKEKUUID {
		t.Error("setup made a second KEKEK instead of reusing the first")
	}
	if fresh := mustSetup(t, tok, SetupOptions{New: true}); fresh.KEKEKUUID == first.KEKEKUUID {
		t.Error("setup --new reused the KEKEK")
	}
	id, _ := hsmapi.ParseUUID(first.KEKEKUUID)
	if named := mustSetup(t, tok, SetupOptions{UUID: id}); named.KEKEKUUID != first.KEKEKUUID {
		t.Error("setup --uuid used another key")
	}
	ec := generate(t, tok, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken})
	signer := generate(t, tok, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken})
	for _, tc := range []struct {
		id   hsmapi.UUID
		want error
	}{{ec.UUID, hsmapi.ErrUnsupportedKey}, {signer.UUID, hsmapi.ErrForbidden}, {hsmapi.UUID{1}, hsmapi.ErrKeyNotFound}} {
		if _, err := Setup(ctx, tok, SetupOptions{UUID: tc.id}); !errors.Is(err, tc.want) {
			t.Errorf("setup -u %s: got %v, want %v", tc.id, err, tc.want)
		}
	}
}

func TestChooseKEKEncryption(t *testing.T) {
	tok := hsmtest.New(t)
	all := []hsmapi.KEKEncryption{hsmapi.KEKOAEPSHA256, hsmapi.KEKOAEPSHA1}
	for _, tc := range []struct {
		theirs []hsmapi.KEKEncryption
		legacy bool
		want   hsmapi.KEKEncryption
		err    error
	}{
		{all, false, hsmapi.KEKOAEPSHA256, nil},
		{[]hsmapi.KEKEncryption{hsmapi.KEKOAEPSHA1}, false, hsmapi.KEKOAEPSHA1, nil},
		{[]hsmapi.KEKEncryption{hsmapi.KEKOAEPSHA1, hsmapi.KEKOAEPSHA256}, false, hsmapi.KEKOAEPSHA256, nil},
		{[]hsmapi.KEKEncryption{hsmapi.KEKPKCS1v15}, false, "", hsmapi.ErrUnsupported},
		{[]hsmapi.KEKEncryption{}, false, "", hsmapi.ErrUnsupported},
		{nil, false, "", ErrLegacy},
		{nil, true, hsmapi.KEKPKCS1v15, nil},
		{all, true, hsmapi.KEKPKCS1v15, nil},
	} {
		got, err := chooseKEKEncryption(ctx, tok, &KEKEKFile{KEKEncryptions: tc.theirs}, tc.legacy)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("theirs %v legacy %v: got %q, %v; want %q, %v", tc.theirs, tc.legacy, got, err, tc.want, tc.err)
		}
	}
}

func TestExportRefusesBadKEKEK(t *testing.T) {
	src, _, _ := source(t)
	dst := hsmtest.New(t)
	f := mustSetup(t, dst, SetupOptions{})
	ec := generate(t, dst, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken})
	ecFile := *f
	ecFile.KEKEKPubkey = ec.PublicKey
	if _, err := Export(ctx, src, &ecFile, ExportOptions{}); !errors.Is(err, hsmapi.ErrUnsupportedKey) {
		t.Errorf("EC KEKEK: got %v", err)
	}
	junk := *f
	junk.KEKEKPubkey = []byte("not a key")
	if _, err := Export(ctx, src, &junk, ExportOptions{}); !errors.Is(err, hsmapi.ErrUnsupportedKey) {
		t.Errorf("junk KEKEK: got %v", err)
	}
}

func TestImportRefusesBundleForAnotherKEKEK(t *testing.T) {
	src, _, _ := source(t)
	dst, other := hsmtest.New(t), hsmtest.New(t)
	mustSetup(t, other, SetupOptions{})
	b, err := Export(ctx, src, mustSetup(t, dst, SetupOptions{}), ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := keyCount(t, other)
	if _, err := Import(ctx, other, b, ImportOptions{}); !errors.Is(err, ErrWrongKEKEK) {
		t.Errorf("got %v, want ErrWrongKEKEK", err)
	}
	if keyCount(t, other) != before {
		t.Error("refused import changed the keystore")
	}
}

// TestImportRefusesTamperedBundle changes every field of a bundle, one at a
// time, and checks that each change is refused with nothing stored: on a
// fresh destination, and on one that already holds the bundle's keys (where
// an unchanged bundle would report them present).
func TestImportRefusesTamperedBundle(t *testing.T) {
	for _, already := range []bool{false, true} {
		t.Run(fmt.Sprintf("keys already there %v", already), func(t *testing.T) {
			src, _, _ := source(t)
			dst := hsmtest.New(t)
			b, err := Export(ctx, src, mustSetup(t, dst, SetupOptions{}), ExportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if already {
				if _, err := Import(ctx, dst, roundTripBundle(t, b), ImportOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			checkTamperRefused(t, dst, b)
			// The untouched bundle still imports: the refusals were about the changes.
			if _, err := Import(ctx, dst, roundTripBundle(t, b), ImportOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func checkTamperRefused(t *testing.T, dst hsmapi.Token, b *Bundle) {
	t.Helper()
	var buf bytes.Buffer
	Write(&buf, b)
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	before := keyCount(t, dst)
	n := 0
	for _, path := range leaves(doc, "") {
		for _, mutated := range mutations(t, doc, path) {
			n++
			data, _ := json.Marshal(mutated)
			nb, err := ReadBundle(bytes.NewReader(data))
			if err == nil {
				_, err = Import(ctx, dst, nb, ImportOptions{})
			}
			if err == nil {
				t.Errorf("bundle with %s changed was imported", path)
			} else if strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: error spans lines: %q", path, err)
			}
		}
	}
	if n < 40 {
		t.Errorf("only %d mutations tried", n)
	}
	if got := keyCount(t, dst); got != before {
		t.Errorf("tampered bundles stored %d keys", got-before)
	}
}

// leaves lists the paths of every value in a JSON document, and of every
// object and array (which can be emptied or lose an element).
func leaves(v any, path string) []string {
	out := []string{path}
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			out = append(out, leaves(e, path+"/"+k)...)
		}
	case []any:
		for i, e := range v {
			out = append(out, leaves(e, fmt.Sprintf("%s/%d", path, i))...)
		}
	}
	return out
}

// mutations returns copies of doc with the value at path changed in each way
// that fits its type.
func mutations(t testing.TB, doc map[string]any, path string) []map[string]any {
	var out []map[string]any
	edit := func(f func(parent any, key string)) {
		var c map[string]any
		data, _ := json.Marshal(doc)
		json.Unmarshal(data, &c)
		parts := strings.Split(path, "/")[1:]
		if len(parts) == 0 {
			return
		}
		var parent any = c
		for _, p := range parts[:len(parts)-1] {
			parent = child(parent, p)
		}
		f(parent, parts[len(parts)-1])
		out = append(out, c)
	}
	get := func(parent any, key string) any { return child(parent, key) }
	set := func(parent any, key string, v any) {
		switch p := parent.(type) {
		case map[string]any:
			p[key] = v
		case []any:
			var i int
			fmt.Sscan(key, &i)
			p[i] = v
		}
	}
	var val any = doc
	for _, p := range strings.Split(path, "/")[1:] {
		val = child(val, p)
	}
	switch v := val.(type) {
	case string:
		edit(func(p any, k string) { set(p, k, flipChar(v)) })
		edit(func(p any, k string) { set(p, k, v+"x") })
	case float64:
		edit(func(p any, k string) { set(p, k, v+1) })
		edit(func(p any, k string) { set(p, k, v-1) })
	case []any:
		if len(v) > 0 {
			edit(func(p any, k string) { set(p, k, v[1:]) })
		}
		edit(func(p any, k string) { set(p, k, append(append([]any{}, v...), get(p, k).([]any)...)) })
	case map[string]any:
		if parent, _ := splitPath(path); strings.HasSuffix(parent, "/keys") || parent == "" {
			edit(func(p any, k string) {
				m := get(p, k).(map[string]any)
				for name := range m {
					delete(m, name)
					break
				}
			})
		}
	}
	// Removing the field altogether.
	if parent, _ := splitPath(path); !strings.HasSuffix(parent, "kekek_pubkey") && !isArrayIndex(path) {
		edit(func(p any, k string) {
			if m, ok := p.(map[string]any); ok {
				delete(m, k)
			}
		})
	}
	return out
}

func child(v any, key string) any {
	switch v := v.(type) {
	case map[string]any:
		return v[key]
	case []any:
		var i int
		fmt.Sscan(key, &i)
		return v[i]
	}
	return nil
}

func splitPath(p string) (string, string) {
	i := strings.LastIndex(p, "/")
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

func isArrayIndex(p string) bool {
	_, last := splitPath(p)
	var i int
	_, err := fmt.Sscan(last, &i)
	return err == nil
}

// flipChar changes one character of s, keeping it within the Base64 alphabet.
func flipChar(s string) string {
	if s == "" {
		return "A"
	}
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestLegacyBundles(t *testing.T) {
	src, moved, _ := source(t)
	dst := hsmtest.New(t)
	f := mustSetup(t, dst, SetupOptions{})

	// A KEKEK file from cryptech_backup names no KEK encryption: libhal's HSM
	// undoes PKCS#1 v1.5 only.
	legacyFile := &KEKEKFile{Comment: "KEKEK public key", KEKEKPubkey: f.KEKEKPubkey, KEKEKUUID: f.KEKEKUUID}
	if _, err := Export(ctx, src, legacyFile, ExportOptions{}); !errors.Is(err, ErrLegacy) {
		t.Fatalf("export to a cryptech_backup KEKEK without --legacy-kek: got %v", err)
	}
	b, err := Export(ctx, src, legacyFile, ExportOptions{LegacyKEK: true})
	if err != nil {
		t.Fatal(err)
	}
	if b.KEKEncryption != hsmapi.KEKPKCS1v15 {
		t.Fatalf("legacy export used %s", b.KEKEncryption)
	}
	if _, err := Import(ctx, dst, b, ImportOptions{}); !errors.Is(err, ErrLegacy) {
		t.Errorf("PKCS#1 v1.5 bundle imported without --legacy-kek: %v", err)
	}

	// What cryptech_backup itself writes: no version, no tags, no labels,
	// no attributes, private keys without their public keys.
	old := *b
	old.Version, old.KEKEncryption = 0, ""
	old.Keys = nil
	for _, k := range b.Keys {
		k.Tag, k.Label, k.Attributes = nil, "", nil
		if k.IsPrivate() {
			k.SPKI = nil
		}
		old.Keys = append(old.Keys, k)
	}
	cryptech := roundTripBundle(t, &old)
	if _, err := Import(ctx, dst, cryptech, ImportOptions{}); !errors.Is(err, ErrLegacy) {
		t.Errorf("cryptech_backup bundle imported without --legacy-kek: %v", err)
	}
	res, err := Import(ctx, dst, cryptech, ImportOptions{LegacyKEK: true})
	if err != nil {
		t.Fatal(err)
	}
	arrived := map[hsmapi.UUID]bool{}
	for _, r := range res {
		arrived[r.UUID] = !r.Present
	}
	for i, k := range moved {
		if !arrived[k.UUID] {
			t.Errorf("key %d (%s) not imported: %v", i, k.UUID, res)
		}
		if got, err := dst.Key(ctx, k.UUID); err != nil || !bytes.Equal(got.PublicKey, k.PublicKey) {
			t.Errorf("key %d did not arrive: %v", i, err)
		}
	}
	// Again: the token recognises its keys even without public keys in the bundle.
	res, err = Import(ctx, dst, cryptech, ImportOptions{LegacyKEK: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range res {
		if !res[i].Present {
			t.Errorf("second legacy import: key %d not present", i)
		}
	}
}

func TestImportRefusesDifferentKeyUnderSameUUID(t *testing.T) {
	src, moved, _ := source(t)
	dst := hsmtest.New(t)
	b, err := Export(ctx, src, mustSetup(t, dst, SetupOptions{}), ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Occupy the second key's UUID on the destination with another key.
	pub, err := dst.Import(ctx, hsmapi.ImportRequest{UUID: moved[1].UUID, PublicKey: moved[0].PublicKey, Flags: hsmapi.FlagToken})
	if err != nil {
		t.Fatal(err)
	}
	before := keyCount(t, dst)
	if _, err := Import(ctx, dst, b, ImportOptions{}); !errors.Is(err, hsmapi.ErrKeyNameInUse) {
		t.Errorf("got %v, want ErrKeyNameInUse", err)
	}
	if keyCount(t, dst) != before {
		t.Error("the refused import stored keys")
	}
	if got, _ := dst.Key(ctx, pub.Key.UUID); !bytes.Equal(got.PublicKey, moved[0].PublicKey) {
		t.Error("the key already there was changed")
	}
}

// oneByOne hides a token's batch import, so Import takes the path that real
// tokens without transactions take.
type oneByOne struct{ hsmapi.Token }

// failingToken fails the import of the n-th key.
type failingToken struct {
	hsmapi.Token
	n, calls int
}

func (f *failingToken) Import(ctx context.Context, req hsmapi.ImportRequest) (hsmapi.ImportResult, error) {
	f.calls++
	if f.calls == f.n {
		return hsmapi.ImportResult{}, errors.New("injected failure")
	}
	return f.Token.Import(ctx, req)
}

func TestImportOneByOneRollsBack(t *testing.T) {
	src, moved, _ := source(t)
	dst := hsmtest.New(t)
	b, err := Export(ctx, src, mustSetup(t, dst, SetupOptions{}), ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := keyCount(t, dst)
	ft := &failingToken{Token: dst, n: 3}
	if _, err := Import(ctx, ft, b, ImportOptions{}); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("got %v", err)
	}
	if got := keyCount(t, dst); got != before {
		t.Errorf("rollback left %d keys", got-before)
	}
	if _, err := Import(ctx, oneByOne{dst}, b, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := keyCount(t, dst); got != before+len(moved) {
		t.Errorf("one-by-one import stored %d keys, want %d", got-before, len(moved))
	}
}

func TestBundleJSONLayout(t *testing.T) {
	src, _, _ := source(t)
	dst := hsmtest.New(t)
	b, err := Export(ctx, src, mustSetup(t, dst, SetupOptions{}), ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, b); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.HasPrefix(out, "{\n    \"comment\": ") {
		t.Errorf("not four-space indented with sorted keys:\n%.200s", out)
	}
	// Keys of every object appear in sorted order.
	checkSortedKeys(t, json.NewDecoder(strings.NewReader(out)))
	// Base64 is split into lines of at most 76 characters.
	var doc struct {
		KEKEKPubkey []string `json:"kekek_pubkey"`
	}
	json.Unmarshal(buf.Bytes(), &doc)
	if len(doc.KEKEKPubkey) < 2 {
		t.Fatalf("kekek_pubkey is %d lines", len(doc.KEKEKPubkey))
	}
	for i, l := range doc.KEKEKPubkey {
		if len(l) > 76 || i < len(doc.KEKEKPubkey)-1 && len(l) != 76 {
			t.Errorf("line %d has %d characters", i, len(l))
		}
	}
	// Reading and writing again gives the same bytes.
	var again bytes.Buffer
	Write(&again, roundTripBundle(t, b))
	if again.String() != out {
		t.Error("a bundle read and written again changed")
	}
}

func checkSortedKeys(t *testing.T, dec *json.Decoder) {
	t.Helper()
	type frame struct {
		object  bool
		last    string
		wantKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if k, ok := tok.(string); ok && top != nil && top.object && top.wantKey {
			if k < top.last {
				t.Errorf("key %q after %q", k, top.last)
			}
			top.last, top.wantKey = k, false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].wantKey = true
		}
	}
}

func TestReadBundleRefusesMalformedFiles(t *testing.T) {
	src, _, _ := source(t)
	dst := hsmtest.New(t)
	b, err := Export(ctx, src, mustSetup(t, dst, SetupOptions{}), ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	Write(&buf, b)
	valid := buf.Bytes()
	// Every truncation that removes more than the final newline.
	for i := 0; i < len(valid)-1; i += 7 {
		if _, err := ReadBundle(bytes.NewReader(valid[:i])); !errors.Is(err, ErrFormat) {
			t.Fatalf("bundle cut to %d bytes: got %v", i, err)
		}
	}
	for name, data := range map[string]string{
		"empty":                     "",
		"not JSON":                  "hello",
		"array":                     "[]",
		"trailing":                  string(valid) + "{}",
		"unknown field":             strings.Replace(string(valid), `"comment"`, `"surprise": 1, "comment"`, 1),
		"version 2":                 strings.Replace(string(valid), `"version": 1`, `"version": 2`, 1),
		"kek_encryption":            strings.Replace(string(valid), `"rsa-oaep-sha256"`, `"rot13"`, 1),
		"no keys":                   `{"comment": "", "kekek_pubkey": ["AAAA"], "kekek_uuid": "` + b.KEKEKUUID + `"}`,
		"binary string":             strings.Replace(string(valid), `"kekek_pubkey": [`, `"kekek_pubkey": "AAAA", "x": [`, 1),
		"field case":                strings.Replace(string(valid), `"kekek_uuid"`, `"KEKEK_UUID"`, 1),
		"key field case":            strings.Replace(string(valid), `"flags"`, `"Flags"`, 1),
		"field twice":               strings.Replace(string(valid), `"comment"`, `"version": 1, "comment"`, 1),
		"upper-case uuid":           strings.Replace(string(valid), b.Keys[0].UUID, strings.ToUpper(b.Keys[0].UUID), 1),
		"long space before a close": strings.Replace(string(valid), "\n    ]", "\n"+strings.Repeat(" ", maxAtom)+"]", 1),
		"long space at the end":     string(valid) + strings.Repeat(" ", maxAtom+1),
		"nil uuid":                  strings.Replace(string(valid), b.Keys[0].UUID, "00000000-0000-0000-0000-000000000000", 1),
		"line break": strings.Replace(string(valid), `"kekek_pubkey": [
        "`, `"kekek_pubkey": [
        "\n`, 1),
		"too many keys": func() string {
			many := *b
			many.Keys = make([]BundleKey, MaxKeys+1)
			for i := range many.Keys {
				many.Keys[i] = BundleKey{Comment: "Public key", SPKI: b.KEKEKPubkey, UUID: fmt.Sprintf("00000000-0000-4000-8000-%012x", i+1)}
			}
			var out bytes.Buffer
			Write(&out, &many)
			return out.String()
		}(),
	} {
		if _, err := ReadBundle(strings.NewReader(data)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v, want ErrFormat", name, err)
		}
	}
}

func FuzzReadBundle(f *testing.F) {
	f.Add([]byte(`{"comment": "x", "kekek_pubkey": ["AAAA"], "kekek_uuid": "00000000-0000-4000-8000-000000000000", "keys": []}`))
	f.Add([]byte(`{"comment": "x", "kek_encryption": "rsa-oaep-sha256", "kekek_pubkey": ["AAAA"], "kekek_uuid": "00000000-0000-4000-8000-000000000000", "keys": [{"comment": "", "flags": 49, "spki": ["AAAA"], "uuid": "00000000-0000-4000-8000-000000000001"}], "version": 1}`))
	f.Add([]byte(`{"comment": "x", "kek_encryption": "rsa-oaep-sha256", "kekek_pubkey": ["AAAA"], "kekek_uuid": "00000000-0000-4000-8000-000000000000", "keys": [{"comment": "", "flags": 49, "label_hex": "6100ff", "spki": ["AAAA"], "uuid": "00000000-0000-4000-8000-000000000001"}], "version": 1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ReadBundle(bytes.NewReader(data))
		if err != nil {
			return
		}
		// What parses writes out canonically and reads back the same.
		var one, two bytes.Buffer
		if err := Write(&one, b); err != nil {
			t.Fatal(err)
		}
		b2, err := ReadBundle(bytes.NewReader(one.Bytes()))
		if err != nil {
			t.Fatalf("written bundle does not read back: %v", err)
		}
		Write(&two, b2)
		if one.String() != two.String() {
			t.Fatal("bundle is not stable through write and read")
		}
	})
}

// TestExportSplitsNothingWhenItFails: an HSS key too worn to split fails the
// export before any HSS key is split.
func TestExportSplitsNothingWhenItFails(t *testing.T) {
	src, moved, _ := source(t)
	dst := hsmtest.New(t)
	var healthy hsmapi.KeyInfo
	for _, k := range moved {
		if k.Type == hsmapi.KeyTypeHashsigPrivate {
			healthy = k
		}
	}
	worn := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Flags: exportable, Levels: []hashsig.Level{
		{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}})
	for range 31 {
		if _, err := src.Sign(ctx, worn.UUID, []byte("m"), crypto.Hash(0)); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := src.Key(ctx, healthy.UUID)
	if _, err := Export(ctx, src, mustSetup(t, dst, SetupOptions{}), ExportOptions{}); !errors.Is(err, hsmapi.ErrKeyExhausted) {
		t.Fatalf("got %v, want ErrKeyExhausted", err)
	}
	after, _ := src.Key(ctx, healthy.UUID)
	if after.Hashsig.Remaining != before.Hashsig.Remaining {
		t.Errorf("a failed export split an HSS key: %d left, had %d", after.Hashsig.Remaining, before.Hashsig.Remaining)
	}

	// Told to, it leaves the worn key out and says so.
	var skipped []hsmapi.UUID
	b, err := Export(ctx, src, mustSetup(t, dst, SetupOptions{}), ExportOptions{SkipExhausted: true,
		Skipped: func(k hsmapi.KeyInfo, why error) { skipped = append(skipped, k.UUID) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 1 || skipped[0] != worn.UUID {
		t.Errorf("skipped %v, want the worn key %s", skipped, worn.UUID)
	}
	for _, k := range b.Keys {
		if k.UUID == worn.UUID.String() {
			t.Error("the worn key is in the bundle")
		}
	}
	if len(b.Keys) != len(moved) {
		t.Errorf("%d keys in the bundle, want %d", len(b.Keys), len(moved))
	}
}

// damagedToken is a session whose HSM reports damaged flash blocks.
type damagedToken struct{ *hsm.Session }

func (damagedToken) DamagedBlocks(context.Context) ([]int, error) { return []int{7}, nil }

// An export from a token with keys it cannot read fails before anything is
// done, unless told to take what can be read.
func TestExportRefusesDamagedToken(t *testing.T) {
	src, moved, _ := source(t)
	dst := hsmtest.New(t)
	f := mustSetup(t, dst, SetupOptions{})
	var hss hsmapi.KeyInfo
	for _, k := range moved {
		if k.Type == hsmapi.KeyTypeHashsigPrivate {
			hss = k
		}
	}
	before, _ := src.Key(ctx, hss.UUID)
	_, err := Export(ctx, damagedToken{src}, f, ExportOptions{})
	if !errors.Is(err, hsmapi.ErrDamaged) || !strings.Contains(err.Error(), "[7]") {
		t.Fatalf("got %v, want ErrDamaged naming block 7", err)
	}
	if after, _ := src.Key(ctx, hss.UUID); after.Hashsig.Remaining != before.Hashsig.Remaining {
		t.Errorf("the refused export split an HSS key: %d left, had %d", after.Hashsig.Remaining, before.Hashsig.Remaining)
	}
	b, err := Export(ctx, damagedToken{src}, f, ExportOptions{SkipDamaged: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Keys) != len(moved) {
		t.Errorf("exported %d keys, want %d", len(b.Keys), len(moved))
	}
}
