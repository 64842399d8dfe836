package backup

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

const testPassphrase = "correct horse battery staple"

// cheapKDF keeps the tests quick; TestSoftKEKEKDefaultKDF runs the real one.
var cheapKDF = &KDF{Name: kdfArgon2id, Time: 1, Memory: 64, Threads: 1}

func passphrase(p string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) { return []byte(p), nil }
}

func newSoft(t testing.TB, legacy bool) *KEKEKFile {
	t.Helper()
	f, err := NewSoftKEKEK([]byte(testPassphrase), SoftOptions{Legacy: legacy, KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	return roundTrip(t, f, ReadKEKEKFile)
}

// checkArrived checks that every moved key is on dst and signs there under
// the source's public key.
func checkArrived(t *testing.T, dst hsmapi.Token, moved []hsmapi.KeyInfo) {
	t.Helper()
	for _, k := range moved {
		got, err := dst.Key(ctx, k.UUID)
		if err != nil {
			t.Fatalf("%s (%s) did not arrive: %v", k.UUID, k.Label, err)
		}
		if !bytes.Equal(got.PublicKey, k.PublicKey) {
			t.Errorf("%s arrived with another public key", k.UUID)
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
}

// noKEKEKLeft checks that no key with keyEncipherment stayed on tok: the
// loaded soft KEKEK is deleted after the import.
func noKEKEKLeft(t *testing.T, tok hsmapi.Token) {
	t.Helper()
	keys, err := tok.Keys(ctx, hsmapi.Filter{Mask: hsmapi.FlagKeyEncipherment, Flags: hsmapi.FlagKeyEncipherment})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("%d keys with keyencipherment left on the destination, the first %s", len(keys), keys[0].UUID)
	}
}

func TestSoftKEKEKTransfer(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy %v", legacy), func(t *testing.T) {
			src, moved, _ := source(t)
			f := newSoft(t, legacy)
			if !f.IsSoft() || f.KEKEKUUID != "" {
				t.Fatalf("soft KEKEK file: %+v", f)
			}
			// One HSM imports it (HSS keys included).
			b, err := Export(ctx, src, f, ExportOptions{LegacyKEK: legacy, HSSSingleRestore: true})
			if err != nil {
				t.Fatal(err)
			}
			b = roundTripBundle(t, b)
			if !b.IsSoft() || !bytes.Equal(b.KEKEKPKCS8, f.KEKEKPKCS8) {
				t.Fatal("the bundle does not carry the soft KEKEK")
			}
			// Any HSM will do: this one never saw the KEKEK.
			dst := &loadWatcher{Session: hsmtest.New(t)}
			asked := 0
			res, err := Import(ctx, dst, b, ImportOptions{LegacyKEK: legacy, Passphrase: func(c context.Context) ([]byte, error) {
				asked++
				return passphrase(testPassphrase)(c)
			}})
			if err != nil {
				t.Fatal(err)
			}
			if asked != 1 || len(res) != len(moved) {
				t.Fatalf("asked %d times, %d results", asked, len(res))
			}
			checkArrived(t, dst, moved)
			noKEKEKLeft(t, dst)
			if got := keyCount(t, dst); got != len(moved) {
				t.Errorf("%d keys on the destination, want %d", got, len(moved))
			}
			// The KEKEK was loaded to unwrap and nothing else: volatile, so
			// that it goes at logout whatever happens, and not exportable.
			want := []hsmapi.Flags{hsmapi.FlagKeyEncipherment}
			if !slices.Equal(dst.asked, want) || !slices.Equal(dst.held, want) {
				t.Errorf("the soft KEKEK was loaded with flags %v and held with %v; want %v: volatile, not exportable", dst.asked, dst.held, want)
			}
		})
	}
}

// loadWatcher records the flags of each private key loaded into the HSM,
// as asked for and as the HSM then holds the key.
type loadWatcher struct {
	*hsm.Session
	asked, held []hsmapi.Flags
}

func (w *loadWatcher) LoadPrivateKey(ctx context.Context, req hsmapi.LoadRequest) (hsmapi.KeyInfo, error) {
	w.asked = append(w.asked, req.Flags)
	k, err := w.Session.LoadPrivateKey(ctx, req)
	if err == nil {
		held, _ := w.Session.Key(ctx, k.UUID)
		w.held = append(w.held, held.Flags)
	}
	return k, err
}

func TestSoftKEKEKFileLayout(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		f := newSoft(t, legacy)
		var buf bytes.Buffer
		if err := Write(&buf, f); err != nil {
			t.Fatal(err)
		}
		checkSortedKeys(t, json.NewDecoder(bytes.NewReader(buf.Bytes())))
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
			t.Fatal(err)
		}
		var fields []string
		for k := range doc {
			fields = append(fields, k)
		}
		slices.Sort(fields)
		// cryptech_backup's file exactly; the modern one has no kekek_salt,
		// so that cryptech_backup does not take it for a soft KEKEK (and
		// then fails for want of kekek_uuid) rather than misread it.
		want := "[comment kekek_pkcs8 kekek_pubkey kekek_salt]"
		if !legacy {
			want = "[comment kek_encryptions kekek_kdf kekek_pkcs8 kekek_pubkey version]"
		}
		if fmt.Sprint(fields) != want {
			t.Errorf("legacy %v: fields %v, want %s", legacy, fields, want)
		}
		if !strings.Contains(buf.String(), `"comment": "KEKEK software keypair"`) {
			t.Errorf("comment: %s", doc["comment"])
		}
	}
}

func TestSoftKEKEKDefaultKDF(t *testing.T) {
	f, err := NewSoftKEKEK([]byte(testPassphrase), SoftOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f = roundTrip(t, f, ReadKEKEKFile)
	if k := f.KEKEKKDF; k == nil || k.Name != "argon2id" || k.Time != 3 || k.Memory != 65536 || k.Threads != 4 || len(k.Salt) != 16 {
		t.Fatalf("kekek_kdf %+v", f.KEKEKKDF)
	}
	der, err := f.soft().privateKey([]byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	checkPKCS8Matches(t, der, f.KEKEKPubkey)
}

func checkPKCS8Matches(t *testing.T, der, spki []byte) {
	t.Helper()
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.(crypto.Signer).Public())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub, spki) {
		t.Error("the wrapped private key is not kekek_pubkey's")
	}
}

func TestNewSoftKEKEKRefusesShortPassphrase(t *testing.T) {
	_, err := NewSoftKEKEK([]byte("fourteen bytes"), SoftOptions{KDF: cheapKDF})
	if !errors.Is(err, ErrWeakPassphrase) {
		t.Errorf("14-byte passphrase: %v", err)
	}
	if _, err := NewSoftKEKEK([]byte("fifteen bytes!!"), SoftOptions{KDF: cheapKDF}); err != nil {
		t.Errorf("15-byte passphrase: %v", err)
	}
}

// softBundle is a bundle made for a soft KEKEK and what it moves. One HSM
// at most imports it whole.
func softBundle(t *testing.T, legacy bool) (*Bundle, []hsmapi.KeyInfo) {
	t.Helper()
	src, moved, _ := source(t)
	b, err := Export(ctx, src, newSoft(t, legacy), ExportOptions{LegacyKEK: legacy, HSSSingleRestore: true})
	if err != nil {
		t.Fatal(err)
	}
	return roundTripBundle(t, b), moved
}

// checkNothingStored imports b into a new HSM and expects ErrPassphrase and
// nothing left behind.
func checkNothingStored(t *testing.T, b *Bundle, pass string, legacy bool) {
	t.Helper()
	dst := hsmtest.New(t)
	_, err := Import(ctx, dst, b, ImportOptions{LegacyKEK: legacy, Passphrase: passphrase(pass)})
	if !errors.Is(err, ErrPassphrase) {
		t.Fatalf("got %v, want %v", err, ErrPassphrase)
	}
	if !strings.Contains(err.Error(), "wrong passphrase or damaged KEKEK file") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error: %q", err)
	}
	if n := keyCount(t, dst); n != 0 {
		t.Errorf("%d keys stored", n)
	}
}

func TestSoftKEKEKWrongPassphrase(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		b, _ := softBundle(t, legacy)
		checkNothingStored(t, b, testPassphrase+"!", legacy)
		checkNothingStored(t, b, "", legacy)
	}
}

func TestSoftKEKEKTamperedPKCS8(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		b, _ := softBundle(t, legacy)
		for _, i := range []int{len(b.KEKEKPKCS8) - 1, len(b.KEKEKPKCS8) / 2, 30} {
			nb := *b
			nb.KEKEKPKCS8 = bytes.Clone(b.KEKEKPKCS8)
			nb.KEKEKPKCS8[i] ^= 1
			checkNothingStored(t, &nb, testPassphrase, legacy)
		}
		// Another soft KEKEK under the same passphrase opens, but is not
		// the key the bundle's KEKs are encrypted to.
		nb := *b
		nb.KEKEKKDF, nb.KEKEKPKCS8, nb.KEKEKSalt = func(f *KEKEKFile) (*KDF, []byte, []byte) {
			return f.KEKEKKDF, f.KEKEKPKCS8, f.KEKEKSalt
		}(newSoft(t, legacy))
		checkNothingStored(t, &nb, testPassphrase, legacy)
	}
}

// cancellingToken cancels the import's context at its first key.
type cancellingToken struct {
	*hsm.Session
	cancel context.CancelFunc
}

func (c cancellingToken) ImportBatch(ctx context.Context, reqs []hsmapi.ImportRequest) ([]hsmapi.ImportResult, error) {
	c.cancel()
	return nil, ctx.Err()
}

func TestSoftKEKEKDeletedAfterFailedImport(t *testing.T) {
	b, _ := softBundle(t, false)
	t.Run("interrupted", func(t *testing.T) {
		dst := hsmtest.New(t)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, err := Import(cctx, cancellingToken{dst, cancel}, b, ImportOptions{Passphrase: passphrase(testPassphrase)})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
		noKEKEKLeft(t, dst)
		if n := keyCount(t, dst); n != 0 {
			t.Errorf("%d keys stored", n)
		}
	})
	t.Run("a key refused", func(t *testing.T) {
		dst := hsmtest.New(t)
		nb := *b
		nb.Keys = slices.Clone(b.Keys)
		i := slices.IndexFunc(nb.Keys, func(k BundleKey) bool { return k.IsPrivate() })
		nb.Keys[i].KEK = bytes.Clone(nb.Keys[i].KEK)
		nb.Keys[i].KEK[20] ^= 1
		if _, err := Import(ctx, dst, &nb, ImportOptions{Passphrase: passphrase(testPassphrase)}); err == nil {
			t.Fatal("a changed KEK was imported")
		}
		noKEKEKLeft(t, dst)
		if n := keyCount(t, dst); n != 0 {
			t.Errorf("%d keys stored", n)
		}
	})
	t.Run("no passphrase", func(t *testing.T) {
		dst := hsmtest.New(t)
		if _, err := Import(ctx, dst, b, ImportOptions{}); !errors.Is(err, ErrNoPassphrase) {
			t.Fatalf("got %v", err)
		}
	})
}

// plainToken hides the emulated HSM's PrivateKeyLoader.
type plainToken struct{ hsmapi.Token }

func TestSoftKEKEKNeedsALoader(t *testing.T) {
	b, _ := softBundle(t, false)
	dst := hsmtest.New(t)
	_, err := Import(ctx, plainToken{dst}, b, ImportOptions{Passphrase: func(context.Context) ([]byte, error) {
		t.Error("asked for a passphrase that cannot be used")
		return nil, errors.New("no")
	}})
	if !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Errorf("got %v", err)
	}
}

func TestReadSoftKEKEKFileRefusesMalformed(t *testing.T) {
	modern, legacy := newSoft(t, false), newSoft(t, true)
	bad := map[string]func() *KEKEKFile{
		"kekek_uuid in a soft file": func() *KEKEKFile {
			f := *legacy
			f.KEKEKUUID = "0b5ff1b1-4d0e-4e46-8d6a-2b9fd54d4e11"
			return &f
		},
		"both salt and kdf": func() *KEKEKFile {
			f := *modern
			f.KEKEKSalt = legacy.KEKEKSalt
			return &f
		},
		"salt without pkcs8": func() *KEKEKFile {
			f := *legacy
			f.KEKEKPKCS8 = nil
			return &f
		},
		"short salt": func() *KEKEKFile {
			f := *legacy
			f.KEKEKSalt = f.KEKEKSalt[:8]
			return &f
		},
		"unknown kdf": func() *KEKEKFile {
			f := *modern
			k := *f.KEKEKKDF
			k.Name = "scrypt"
			f.KEKEKKDF = &k
			return &f
		},
		"kdf memory beyond bound": func() *KEKEKFile {
			f := *modern
			k := *f.KEKEKKDF
			k.Memory = 1<<20 + 1
			f.KEKEKKDF = &k
			return &f
		},
		"kdf time zero": func() *KEKEKFile {
			f := *modern
			k := *f.KEKEKKDF
			k.Time = 0
			f.KEKEKKDF = &k
			return &f
		},
		"pkcs8 not an EncryptedPrivateKeyInfo": func() *KEKEKFile {
			f := *legacy
			f.KEKEKPKCS8 = []byte{0x30, 0x00}
			return &f
		},
	}
	for name, make := range bad {
		var buf bytes.Buffer
		Write(&buf, make())
		if _, err := ReadKEKEKFile(&buf); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

// TestLegacySoftKEKEKIndependently opens a --legacy-kek soft KEKEK file with
// an implementation of cryptech_backup's recipe written here from RFC 8018
// and RFC 5649, sharing no code with the package: PBKDF2-HMAC-SHA256 of the
// passphrase over kekek_salt, 8000 iterations, then AES key unwrap with
// padding of kekek_pkcs8's encryptedData.
func TestLegacySoftKEKEKIndependently(t *testing.T) {
	f := newSoft(t, true)
	key := pbkdf2SHA256([]byte(testPassphrase), f.KEKEKSalt, 8000, 32)
	// EncryptedPrivateKeyInfo: SEQUENCE { SEQUENCE { OID 2.16.840.1.101.3.4.1.48 }, OCTET STRING }
	prefix := []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x30}
	i := bytes.Index(f.KEKEKPKCS8, prefix)
	if i < 0 {
		t.Fatal("kekek_pkcs8 does not name id-aes256-wrap-pad")
	}
	rest := f.KEKEKPKCS8[i+len(prefix):]
	if rest[0] != 0x04 || rest[1] != 0x82 {
		t.Fatalf("no long OCTET STRING after the algorithm: % x", rest[:4])
	}
	n := int(rest[2])<<8 | int(rest[3])
	der := unwrapPad(t, key, rest[4:4+n])
	checkPKCS8Matches(t, der, f.KEKEKPubkey)
}

func pbkdf2SHA256(pass, salt []byte, iter, size int) []byte {
	var out []byte
	for block := uint32(1); len(out) < size; block++ {
		mac := hmac.New(sha256.New, pass)
		mac.Write(salt)
		mac.Write(binary.BigEndian.AppendUint32(nil, block))
		u := mac.Sum(nil)
		t := bytes.Clone(u)
		for range iter - 1 {
			mac = hmac.New(sha256.New, pass)
			mac.Write(u)
			u = mac.Sum(nil)
			for j := range t {
				t[j] ^= u[j]
			}
		}
		out = append(out, t...)
	}
	return out[:size]
}

// unwrapPad is RFC 5649 section 4.2, for more than one semiblock.
func unwrapPad(t *testing.T, kek, c []byte) []byte {
	block, err := aes.NewCipher(kek)
	if err != nil {
		t.Fatal(err)
	}
	n := len(c)/8 - 1
	a := binary.BigEndian.Uint64(c[:8])
	r := bytes.Clone(c[8:])
	buf := make([]byte, 16)
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			binary.BigEndian.PutUint64(buf, a^uint64(n*j+i))
			copy(buf[8:], r[8*(i-1):8*i])
			block.Decrypt(buf, buf)
			a = binary.BigEndian.Uint64(buf[:8])
			copy(r[8*(i-1):], buf[8:])
		}
	}
	if a>>32 != 0xa65959a6 {
		t.Fatalf("AIV %x: wrong key", a)
	}
	m := int(a & 0xffffffff)
	if m > len(r) || m <= len(r)-8 || !bytes.Equal(r[m:], make([]byte, len(r)-m)) {
		t.Fatalf("bad length %d or padding", m)
	}
	return r[:m]
}

// TestCryptechBackupSoftBundle imports a bundle that cryptech_backup made
// for a soft KEKEK of its own (testdata/cryptech_backup_soft/README.md):
// every key arrives under its UUID and signs under its source's public key,
// and the KEKEK does not stay.
func TestCryptechBackupSoftBundle(t *testing.T) {
	dir := "testdata/cryptech_backup_soft/"
	read := func(name string) []byte {
		data, err := os.ReadFile(dir + name)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	f, err := ReadKEKEKFile(bytes.NewReader(read("kekek.json")))
	if err != nil {
		t.Fatal(err)
	}
	if !f.IsSoft() || f.KEKEKKDF != nil || len(f.KEKEKSalt) != 16 {
		t.Fatalf("cryptech_backup's KEKEK file read as %+v", f)
	}
	// setup --soft --legacy-kek writes the same fields.
	var theirs, ours map[string]any
	json.Unmarshal(read("kekek.json"), &theirs)
	var buf bytes.Buffer
	Write(&buf, newSoft(t, true))
	json.Unmarshal(buf.Bytes(), &ours)
	if fmt.Sprint(slices.Sorted(maps.Keys(theirs))) != fmt.Sprint(slices.Sorted(maps.Keys(ours))) || theirs["comment"] != ours["comment"] {
		t.Errorf("cryptech_backup writes %v, setup --soft --legacy-kek %v", theirs, ours)
	}
	b, err := ReadBundle(bytes.NewReader(read("bundle.json")))
	if err != nil {
		t.Fatal(err)
	}
	pass := bytes.TrimSuffix(read("passphrase.txt"), []byte("\n"))
	var pubs []struct {
		UUID      string `json:"uuid"`
		Label     string `json:"label"`
		PublicKey []byte `json:"public_key"`
	}
	if err := json.Unmarshal(read("pubkeys.json"), &pubs); err != nil || len(pubs) != 3 {
		t.Fatalf("pubkeys.json: %d keys, %v", len(pubs), err)
	}

	checkNothingStored(t, b, string(pass)+"x", true)
	dst := hsmtest.New(t)
	if _, err := Import(ctx, dst, b, ImportOptions{}); !errors.Is(err, ErrLegacy) {
		t.Errorf("without --legacy-kek: %v", err)
	}
	res, err := Import(ctx, dst, b, ImportOptions{LegacyKEK: true, Passphrase: passphrase(string(pass))})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(pubs) {
		t.Fatalf("%d keys imported", len(res))
	}
	var moved []hsmapi.KeyInfo
	for _, p := range pubs {
		id, err := hsmapi.ParseUUID(p.UUID)
		if err != nil {
			t.Fatal(err)
		}
		info, err := hsmapi.DescribePublicKey(p.PublicKey, true)
		if err != nil {
			t.Fatal(err)
		}
		info.UUID, info.Label = id, p.Label
		moved = append(moved, info)
	}
	checkArrived(t, dst, moved)
	noKEKEKLeft(t, dst)
}

// A bundle for a soft KEKEK can be imported into any number of HSMs, and
// each would sign with the same HSS one-time indexes. Export refuses HSS
// keys for one before it splits anything, leaves them out when told to,
// with a word for each, and exports them only on the promise that one HSM
// will import the bundle.
func TestSoftKEKEKExportHSS(t *testing.T) {
	src, moved, _ := source(t)
	f := newSoft(t, false)
	i := slices.IndexFunc(moved, func(k hsmapi.KeyInfo) bool { return k.Type == hsmapi.KeyTypeHashsigPrivate })
	hss := moved[i]
	remaining := func() uint64 {
		t.Helper()
		k, err := src.Key(ctx, hss.UUID)
		if err != nil {
			t.Fatal(err)
		}
		return k.Hashsig.Remaining
	}
	before, count := remaining(), keyCount(t, src)
	hssIn := func(b *Bundle) bool {
		return slices.ContainsFunc(b.Keys, func(k BundleKey) bool { return k.UUID == hss.UUID.String() })
	}

	b, err := Export(ctx, src, f, ExportOptions{SkipExhausted: true})
	if !errors.Is(err, ErrHSSSoftKEKEK) || b != nil || !strings.Contains(err.Error(), "same one-time indexes of its 1 HSS keys") {
		t.Fatalf("got %v, want ErrHSSSoftKEKEK", err)
	}
	if got := remaining(); got != before {
		t.Errorf("the refused export split the HSS key: %d left, had %d", got, before)
	}
	if got := keyCount(t, src); got != count {
		t.Errorf("%d keys on the source, had %d", got, count)
	}

	var skipped []hsmapi.UUID
	b, err = Export(ctx, src, f, ExportOptions{SkipHSS: true, Skipped: func(k hsmapi.KeyInfo, why error) {
		if !errors.Is(why, ErrHSSSoftKEKEK) {
			t.Errorf("%s left out: %v", k.UUID, why)
		}
		skipped = append(skipped, k.UUID)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 1 || skipped[0] != hss.UUID || hssIn(b) || len(b.Keys) != len(moved)-1 {
		t.Errorf("skipped %v, %d keys in the bundle; want the HSS key %s left out of %d", skipped, len(b.Keys), hss.UUID, len(moved))
	}
	if got := remaining(); got != before {
		t.Errorf("the export without HSS keys split one: %d left, had %d", got, before)
	}
	// Any number of HSMs may import that one.
	for range 2 {
		if _, err := Import(ctx, hsmtest.New(t), roundTripBundle(t, b), ImportOptions{Passphrase: passphrase(testPassphrase)}); err != nil {
			t.Fatal(err)
		}
	}

	b, err = Export(ctx, src, f, ExportOptions{HSSSingleRestore: true})
	if err != nil {
		t.Fatal(err)
	}
	if !hssIn(b) {
		t.Fatal("the HSS key is not in the bundle")
	}
	if got := remaining(); got >= before {
		t.Errorf("the source kept %d signatures of %d", got, before)
	}
	dst := hsmtest.New(t)
	if _, err := Import(ctx, dst, roundTripBundle(t, b), ImportOptions{Passphrase: passphrase(testPassphrase)}); err != nil {
		t.Fatal(err)
	}
	checkArrived(t, dst, moved)

	// A KEKEK in an HSM needs no promise; told to, export leaves HSS keys
	// out for it too.
	skipped = nil
	b, err = Export(ctx, src, mustSetup(t, hsmtest.New(t), SetupOptions{}), ExportOptions{SkipHSS: true,
		Skipped: func(k hsmapi.KeyInfo, _ error) { skipped = append(skipped, k.UUID) }})
	if err != nil || hssIn(b) || len(skipped) != 1 {
		t.Errorf("SkipHSS for a KEKEK in an HSM: %v, skipped %v", err, skipped)
	}
}
