package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/testvectors"
)

const kekekFlags = hsmapi.FlagKeyEncipherment | hsmapi.FlagToken

// pair is a source and a destination HSM, with a KEKEK on the destination.
type pair struct {
	src, dst *Session
	dstHSM   *HSM
	kekek    hsmapi.KeyInfo
}

func newPair(t *testing.T) pair {
	t.Helper()
	srcHSM, _ := newTestHSM(t)
	dstHSM, _ := newTestHSM(t)
	p := pair{src: login(t, srcHSM), dst: login(t, dstHSM), dstHSM: dstHSM}
	p.kekek = generate(t, p.dst, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: kekekFlags})
	return p
}

func (p pair) export(t *testing.T, k hsmapi.KeyInfo, enc hsmapi.KEKEncryption, binding []byte) hsmapi.WrappedKey {
	t.Helper()
	w, err := p.src.Export(ctx, hsmapi.ExportRequest{Key: k.UUID, KEKEKPublicKey: parseKEKEK(t, p.kekek.PublicKey), Encryption: enc, Binding: binding})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	return w
}

func (p pair) importReq(k hsmapi.KeyInfo, w hsmapi.WrappedKey, enc hsmapi.KEKEncryption, binding []byte) hsmapi.ImportRequest {
	return hsmapi.ImportRequest{KEKEKUUID: p.kekek.UUID, Wrapped: w, Encryption: enc, Binding: binding,
		UUID: k.UUID, Label: k.Label, Flags: k.Flags, PublicKey: k.PublicKey}
}

// keyCount is how many keys the destination holds.
func (p pair) keyCount(t *testing.T) int {
	t.Helper()
	keys, err := p.dst.Keys(ctx, hsmapi.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

func TestTransferEveryKeyTypeAndKEKEncryption(t *testing.T) {
	p := newPair(t)
	reqs := []hsmapi.GenerateRequest{
		{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048},
		{Type: hsmapi.KeyTypeRSAPrivate, Bits: 3072},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384},
		{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP521},
	}
	for _, enc := range hsmapi.KEKEncryptions {
		for _, req := range reqs {
			t.Run(fmt.Sprintf("%s/%v-%d-%v", enc, req.Type, req.Bits, req.Curve), func(t *testing.T) {
				req.Flags, req.Label = signFlags|hsmapi.FlagExportable, "moved"
				k := generate(t, p.src, req)
				binding := []byte("bundle metadata " + k.UUID.String())
				w := p.export(t, k, enc, binding)
				res, err := p.dst.Import(ctx, p.importReq(k, w, enc, binding))
				if err != nil {
					t.Fatalf("import: %v", err)
				}
				got := res.Key
				if res.Present || got.UUID != k.UUID || got.Label != "moved" || got.Flags != k.Flags || got.Type != k.Type || !bytes.Equal(got.PublicKey, k.PublicKey) {
					t.Fatalf("imported %+v (present %v) from %+v", got, res.Present, k)
				}
				digest := sha256.Sum256([]byte("signed on the destination"))
				sig, err := p.dst.Sign(ctx, k.UUID, digest[:], crypto.SHA256)
				if err != nil {
					t.Fatal(err)
				}
				if err := hsmapi.VerifySignature(k.PublicKey, digest[:], sig, crypto.SHA256); err != nil {
					t.Errorf("destination's signature does not verify under the source's public key: %v", err)
				}
				// Importing again is harmless.
				again, err := p.dst.Import(ctx, p.importReq(k, w, enc, binding))
				if err != nil || !again.Present {
					t.Errorf("second import: present=%v err=%v", again.Present, err)
				}
			})
		}
	}
}

func TestExportFormat(t *testing.T) {
	p := newPair(t)
	k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
	for _, tc := range []struct {
		enc    hsmapi.KEKEncryption
		algHex string // the KEK's AlgorithmIdentifier, DER
	}{
		{hsmapi.KEKPKCS1v15, "300b06092a864886f70d010101"},
		{hsmapi.KEKOAEPSHA1, "300d06092a864886f70d0101073000"},
		{hsmapi.KEKOAEPSHA256, "303c06092a864886f70d010107302fa00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500"},
	} {
		w := p.export(t, k, tc.enc, nil)
		// The wrapped key: EncryptedPrivateKeyInfo with id-aes256-wrap-pad, no parameters.
		wantPrefix, _ := hex.DecodeString("060960864801650304013004")
		if _, err := hsmapi.ParseEncryptedKey(w.EncryptedKey); err != nil || !bytes.Contains(w.EncryptedKey, wantPrefix[:11]) {
			t.Errorf("%s: pkcs8 is not EncryptedPrivateKeyInfo(id-aes256-wrap-pad): %x", tc.enc, w.EncryptedKey)
		}
		kekCT, err := hsmapi.ParseEncryptedKEK(w.EncryptedKEK, tc.enc)
		if err != nil {
			t.Fatal(err)
		}
		algDER, _ := hex.DecodeString(tc.algHex)
		if !bytes.HasPrefix(w.EncryptedKEK[4:], algDER) {
			t.Errorf("%s: KEK algorithm is %x, want %s", tc.enc, w.EncryptedKEK[4:4+len(algDER)], tc.algHex)
		}
		if len(kekCT) != 256 {
			t.Errorf("%s: encrypted KEK has %d bytes, want the modulus size", tc.enc, len(kekCT))
		}
		if w.Tag != nil {
			t.Errorf("%s: tag without a binding", tc.enc)
		}
	}
}

// TestDecryptionFailuresLookAlike: whatever step fails to open a wrapped
// key, the caller gets the same error, so the import cannot serve as an
// oracle.
func TestDecryptionFailuresLookAlike(t *testing.T) {
	p := newPair(t)
	k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
	binding := []byte("binding")
	kekekPub, _ := x509.ParsePKIXPublicKey(p.kekek.PublicKey)

	for _, enc := range hsmapi.KEKEncryptions {
		w := p.export(t, k, enc, binding)
		flip := func(b []byte, i int) []byte {
			c := bytes.Clone(b)
			c[i] ^= 0x01
			return c
		}
		// A KEK of the wrong length, properly encrypted.
		shortKEK, err := encryptKEK(rand.Reader, kekekPub.(*rsa.PublicKey), enc, make([]byte, 16))
		if err != nil {
			t.Fatal(err)
		}
		// The right KEK encrypted to the KEKEK, but the wrong KEK (a fresh one).
		otherKEK, err := encryptKEK(rand.Reader, kekekPub.(*rsa.PublicKey), enc, bytes.Repeat([]byte{7}, hsmapi.KEKSize))
		if err != nil {
			t.Fatal(err)
		}
		cases := map[string]hsmapi.ImportRequest{}
		add := func(name string, mod func(r *hsmapi.ImportRequest)) {
			r := p.importReq(k, hsmapi.WrappedKey{EncryptedKey: w.EncryptedKey, EncryptedKEK: w.EncryptedKEK, Tag: w.Tag}, enc, binding)
			mod(&r)
			cases[name] = r
		}
		add("kek ciphertext flipped", func(r *hsmapi.ImportRequest) { r.Wrapped.EncryptedKEK = flip(w.EncryptedKEK, len(w.EncryptedKEK)-1) })
		add("kek of wrong length", func(r *hsmapi.ImportRequest) { r.Wrapped.EncryptedKEK = shortKEK })
		add("other kek", func(r *hsmapi.ImportRequest) { r.Wrapped.EncryptedKEK = otherKEK })
		add("pkcs8 flipped", func(r *hsmapi.ImportRequest) { r.Wrapped.EncryptedKey = flip(w.EncryptedKey, len(w.EncryptedKey)-3) })
		add("tag flipped", func(r *hsmapi.ImportRequest) { r.Wrapped.Tag = flip(w.Tag, 0) })
		add("tag missing", func(r *hsmapi.ImportRequest) { r.Wrapped.Tag = nil })
		add("binding changed", func(r *hsmapi.ImportRequest) { r.Binding = []byte("binding!") })
		for name, req := range cases {
			_, err := p.dst.Import(ctx, req)
			if !errors.Is(err, hsmapi.ErrDecryption) {
				t.Errorf("%s/%s: got %v, want ErrDecryption", enc, name, err)
				continue
			}
			want := fmt.Sprintf("import key 0 (%s): %v", k.UUID, hsmapi.ErrDecryption)
			if err.Error() != want {
				t.Errorf("%s/%s: error %q tells more than %q", enc, name, err, want)
			}
		}
	}
	if n := p.keyCount(t); n != 1 {
		t.Errorf("failed imports stored keys: destination holds %d keys, want only the KEKEK", n)
	}
}

func TestExportRefusals(t *testing.T) {
	p := newPair(t)
	stays := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecSPKI, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	for _, tc := range []struct {
		name string
		req  hsmapi.ExportRequest
		want error
	}{
		{"not exportable", hsmapi.ExportRequest{Key: stays.UUID, KEKEKPublicKey: parseKEKEK(t, p.kekek.PublicKey), Encryption: hsmapi.KEKOAEPSHA256}, hsmapi.ErrNotExportable},
		{"unknown key", hsmapi.ExportRequest{Key: hsmapi.UUID{1}, KEKEKPublicKey: parseKEKEK(t, p.kekek.PublicKey), Encryption: hsmapi.KEKOAEPSHA256}, hsmapi.ErrKeyNotFound},
		{"no KEKEK", hsmapi.ExportRequest{Key: k.UUID, Encryption: hsmapi.KEKOAEPSHA256}, hsmapi.ErrBadArguments},
		{"unknown encryption", hsmapi.ExportRequest{Key: k.UUID, KEKEKPublicKey: parseKEKEK(t, p.kekek.PublicKey), Encryption: "rot13"}, hsmapi.ErrBadArguments},
	} {
		if _, err := p.src.Export(ctx, tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	// A KEKEK that cannot carry a KEK is refused when it is parsed, once
	// for a whole export.
	for name, spki := range map[string][]byte{"EC KEKEK": ecSPKI, "garbage KEKEK": {0x30, 0x00}} {
		if _, err := hsmapi.ParseKEKEK(spki); !errors.Is(err, hsmapi.ErrUnsupportedKey) {
			t.Errorf("%s: got %v, want %v", name, err, hsmapi.ErrUnsupportedKey)
		}
	}
}

func TestImportRefusals(t *testing.T) {
	p := newPair(t)
	k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
	w := p.export(t, k, hsmapi.KEKOAEPSHA256, nil)
	noKE := generate(t, p.dst, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken})
	ecKEKEK := generate(t, p.dst, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: kekekFlags})
	other := generate(t, p.dst, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	before := p.keyCount(t)
	for _, tc := range []struct {
		name string
		mod  func(r *hsmapi.ImportRequest)
		want error
	}{
		{"KEKEK without keyencipherment", func(r *hsmapi.ImportRequest) { r.KEKEKUUID = noKE.UUID }, hsmapi.ErrForbidden},
		{"EC KEKEK", func(r *hsmapi.ImportRequest) { r.KEKEKUUID = ecKEKEK.UUID }, hsmapi.ErrUnsupportedKey},
		{"unknown KEKEK", func(r *hsmapi.ImportRequest) { r.KEKEKUUID = hsmapi.UUID{9} }, hsmapi.ErrKeyNotFound},
		{"UUID of another key", func(r *hsmapi.ImportRequest) { r.UUID = other.UUID }, hsmapi.ErrKeyNameInUse},
		{"wrong declared encryption", func(r *hsmapi.ImportRequest) { r.Encryption = hsmapi.KEKOAEPSHA1 }, hsmapi.ErrBadArguments},
		{"public key of another key", func(r *hsmapi.ImportRequest) { r.PublicKey = other.PublicKey }, hsmapi.ErrBadArguments},
		{"unknown flags", func(r *hsmapi.ImportRequest) { r.Flags = 1 << 12 }, hsmapi.ErrBadArguments},
		{"reserved UUID", func(r *hsmapi.ImportRequest) { r.UUID = hsmapi.UUID{15: 3} }, hsmapi.ErrBadArguments},
		{"label longer than a key keeps", func(r *hsmapi.ImportRequest) { r.Label = strings.Repeat("l", hsmapi.MaxRawLabelLength+1) }, hsmapi.ErrBadArguments},
		{"kek not DER", func(r *hsmapi.ImportRequest) { r.Wrapped.EncryptedKEK = []byte("junk") }, hsmapi.ErrBadArguments},
		{"pkcs8 not DER", func(r *hsmapi.ImportRequest) { r.Wrapped.EncryptedKey = w.EncryptedKey[:len(w.EncryptedKey)-1] }, hsmapi.ErrBadArguments},
	} {
		req := p.importReq(k, w, hsmapi.KEKOAEPSHA256, nil)
		tc.mod(&req)
		if _, err := p.dst.Import(ctx, req); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if n := p.keyCount(t); n != before {
		t.Errorf("refused imports changed the keystore: %d keys, had %d", n, before)
	}
}

// TestImportKeepsAnyLabel: a key whose label a libhal client set to bytes
// no file or command line may give arrives with exactly those bytes; the
// label a new key is made with keeps CheckLabel's rules.
func TestImportKeepsAnyLabel(t *testing.T) {
	p := newPair(t)
	for _, label := range []string{rawLabel, "a\x00b\xffc\u202e", strings.Repeat("\xfe", hsmapi.MaxRawLabelLength)} {
		k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
		if err := p.src.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte(label)}}); err != nil {
			t.Fatal(err)
		}
		k.Label = label
		w := p.export(t, k, hsmapi.KEKOAEPSHA256, nil)
		res, err := p.dst.Import(ctx, p.importReq(k, w, hsmapi.KEKOAEPSHA256, nil))
		if err != nil {
			t.Fatalf("import with label %q: %v", label, err)
		}
		if res.Key.Label != label {
			t.Errorf("imported with label %q, want %q", res.Key.Label, label)
		}
		got, err := p.dst.Attributes(ctx, k.UUID, []uint32{hsmapi.AttributeLabel})
		if err != nil || string(got[0].Value) != label {
			t.Errorf("label attribute %v (%v), want %q", got, err, label)
		}
	}
	if _, err := p.dst.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags, Label: rawLabel}); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("generate with label %q: %v", rawLabel, err)
	}
}

func TestImportBatchIsAllOrNothing(t *testing.T) {
	p := newPair(t)
	var reqs []hsmapi.ImportRequest
	for range 3 {
		k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
		reqs = append(reqs, p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil))
	}
	bad := bytes.Clone(reqs[2].Wrapped.EncryptedKey)
	bad[len(bad)-1] ^= 1
	reqs[2].Wrapped.EncryptedKey = bad
	if _, err := p.dst.ImportBatch(ctx, reqs); !errors.Is(err, hsmapi.ErrDecryption) {
		t.Fatalf("got %v, want ErrDecryption", err)
	}
	if n := p.keyCount(t); n != 1 {
		t.Errorf("a failed batch stored %d keys", n-1)
	}
	dup := []hsmapi.ImportRequest{reqs[0], reqs[0]}
	if _, err := p.dst.ImportBatch(ctx, dup); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("batch naming one UUID twice: got %v", err)
	}
}

// TestImportBatchSurvivesPowerCutAtEveryWrite cuts power at each flash write
// of a three-key import; after the reboot the HSM opens and holds all three
// keys or none.
func TestImportBatchSurvivesPowerCutAtEveryWrite(t *testing.T) {
	p := newPair(t)
	var reqs []hsmapi.ImportRequest
	for range 3 {
		k := generate(t, p.src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
		reqs = append(reqs, p.importReq(k, p.export(t, k, hsmapi.KEKOAEPSHA256, nil), hsmapi.KEKOAEPSHA256, nil))
	}
	// Count the writes of a successful import on a copy of the destination.
	writes := func() int {
		h, s := p.freshDestination(t)
		defer h.Close()
		before := h.board.Flash.Writes()
		if _, err := s.ImportBatch(ctx, reqs); err != nil {
			t.Fatal(err)
		}
		return h.board.Flash.Writes() - before
	}()
	if writes < 2 {
		t.Fatalf("import made %d flash writes; expected a transaction", writes)
	}
	for cut := range writes + 1 {
		for _, torn := range []bool{false, true} {
			h, s := p.freshDestination(t)
			dir := h.board.Dir
			h.board.Flash.CutPowerAfter(cut, torn)
			_, err := s.ImportBatch(ctx, reqs)
			if cut < writes && err == nil {
				t.Errorf("cut %d: import succeeded through a power cut", cut)
			}
			h.Close()
			h2, err := Open(dir, testOptions)
			if err != nil {
				t.Fatalf("cut %d torn %v: HSM does not open after the power cut: %v", cut, torn, err)
			}
			s2 := login(t, h2)
			found := 0
			for _, r := range reqs {
				if _, err := s2.Key(ctx, r.UUID); err == nil {
					found++
				}
			}
			if found != 0 && found != len(reqs) {
				t.Errorf("cut %d torn %v: %d of %d keys present", cut, torn, found, len(reqs))
			}
			if cut >= writes && found != len(reqs) {
				t.Errorf("cut %d (after the last write): keys lost", cut)
			}
			s2.Close()
			h2.Close()
		}
	}
}

// freshDestination clones the destination HSM's state directory, so each
// power cut starts from the same keystore.
func (p pair) freshDestination(t *testing.T) (*HSM, *Session) {
	t.Helper()
	dir := t.TempDir()
	if err := p.dstHSM.board.Flash.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := copyDir(p.dstHSM.board.Dir, dir); err != nil {
		t.Fatal(err)
	}
	h, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	s := h.NewSession()
	if err := s.Login(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
		t.Fatal(err)
	}
	return h, s
}

// oaepGroup is the part of a group of Wycheproof's rsaes_oaep_decrypt schema
// that the test reads.
type oaepGroup struct {
	KeySize         int
	Sha, MgfSha     string
	PrivateKeyPkcs8 testvectors.Hex
	Tests           []struct {
		testvectors.Case
		Msg, Ct, Label testvectors.Hex
	}
}

// TestOAEPWycheproof runs RSA-OAEP decryption, which every KEK encrypted to
// a KEKEK of this HSM goes through, on Wycheproof's cases for the two OAEP
// modes of a KEK (SHA-1 and SHA-256, each with MGF1 of the same hash) at
// 2048, 3072 and 4096 bits. decryptOAEP, the primitive, must decrypt every
// case that must pass to its message and refuse every other with exactly
// ErrDecryption. decryptKEK, given each ciphertext as a bundle's encrypted
// KEK, must yield a KEK only from a case that must pass, has no label and a
// message of KEKSize bytes, and refuse all others with exactly
// ErrDecryption.
func TestOAEPWycheproof(t *testing.T) {
	modes := map[[2]string]hsmapi.KEKEncryption{{"SHA-1", "SHA-1"}: hsmapi.KEKOAEPSHA1, {"SHA-256", "SHA-256"}: hsmapi.KEKOAEPSHA256}
	sizes := map[int]bool{2048: true, 3072: true, 4096: true}
	for _, c := range []struct {
		file string
		all  bool // every group is one the HSM decrypts; else those are picked
	}{
		{"rsa_oaep_2048_sha1_mgf1sha1_test.json", true},
		{"rsa_oaep_2048_sha256_mgf1sha256_test.json", true},
		{"rsa_oaep_3072_sha256_mgf1sha256_test.json", true},
		{"rsa_oaep_4096_sha256_mgf1sha256_test.json", true},
		// Wycheproof's files of SHA-1 with MGF1-SHA1 stop at 2048 bits; its
		// misc file has a few cases of every mode at every size.
		{"rsa_oaep_misc_test.json", false},
	} {
		t.Run(c.file, func(t *testing.T) {
			t.Parallel()
			f := testvectors.Load[oaepGroup](t, c.file, "rsaes_oaep_decrypt_schema_v1.json")
			var n testvectors.Tally
			want, keks := 0, 0
			covered := map[string]bool{}
			for _, g := range f.TestGroups {
				enc, ok := modes[[2]string{g.Sha, g.MgfSha}]
				if !ok || !sizes[g.KeySize] {
					if c.all {
						t.Fatalf("%s: a group of %d bits, %s with MGF1-%s", c.file, g.KeySize, g.Sha, g.MgfSha)
					}
					continue
				}
				covered[fmt.Sprintf("%s/%d", enc, g.KeySize)] = true
				want += len(g.Tests)
				key, err := x509.ParsePKCS8PrivateKey(g.PrivateKeyPkcs8)
				if err != nil {
					t.Fatalf("%s: %v", c.file, err)
				}
				priv := key.(*rsa.PrivateKey)
				for _, tc := range g.Tests {
					n.Add(tc.Case)
					pass := testvectors.Expect(t, tc.Result, tc.Flags, nil)
					pt, err := decryptOAEP(priv, oaepHash(enc), tc.Ct, tc.Label)
					switch {
					case pass && (err != nil || !bytes.Equal(pt, tc.Msg)):
						t.Errorf("%s: %v: decryptOAEP = %x, %v; want %x", c.file, tc.Case, pt, err, []byte(tc.Msg))
					case !pass && (pt != nil || err != hsmapi.ErrDecryption):
						t.Errorf("%s: %v: decryptOAEP = %x, %v; want exactly ErrDecryption", c.file, tc.Case, pt, err)
					}
					der, err := hsmapi.MarshalEncryptedKEK(enc, tc.Ct)
					if err != nil {
						t.Fatal(err)
					}
					kek, err := decryptKEK(rand.Reader, priv, enc, der)
					if pass && len(tc.Label) == 0 && len(tc.Msg) == hsmapi.KEKSize {
						keks++
						if err != nil || !bytes.Equal(kek, tc.Msg) {
							t.Errorf("%s: %v: decryptKEK = %x, %v; want %x", c.file, tc.Case, kek, err, []byte(tc.Msg))
						}
					} else if kek != nil || (err != hsmapi.ErrDecryption && !(len(tc.Ct) == 0 && errors.Is(err, hsmapi.ErrBadArguments))) {
						// An empty ciphertext makes a malformed
						// EncryptedPrivateKeyInfo, refused before any
						// decryption: its length is no secret.
						t.Errorf("%s: %v: decryptKEK = %x, %v; want exactly ErrDecryption", c.file, tc.Case, kek, err)
					}
				}
			}
			if !c.all && len(covered) != len(modes)*len(sizes) {
				t.Errorf("%s: cases for %d of the %d modes and sizes: %v", c.file, len(covered), len(modes)*len(sizes), covered)
			}
			if !c.all {
				t.Logf("%s: %d cases of other modes or sizes not run", c.file, f.NumberOfTests-want)
			} else {
				want = f.NumberOfTests
			}
			n.Check(t, c.file, want)
			t.Logf("%s: %d decrypted to a KEK", c.file, keks)
		})
	}
}

// TestLegacyKEKBadPaddingFailsAtUnwrap: a PKCS#1 v1.5 KEK with bad padding
// is not reported at decryption; a random KEK takes its place.
func TestLegacyKEKBadPaddingFailsAtUnwrap(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// A ciphertext whose plaintext is not PKCS#1 v1.5 padded: raw RSA of 0x00 0x01 ...
	bad := make([]byte, priv.Size())
	bad[len(bad)-1] = 2
	der, err := hsmapi.MarshalEncryptedKEK(hsmapi.KEKPKCS1v15, bad)
	if err != nil {
		t.Fatal(err)
	}
	kek1, err := decryptKEK(rand.Reader, priv, hsmapi.KEKPKCS1v15, der)
	if err != nil {
		t.Fatalf("bad padding reported at decryption: %v", err)
	}
	kek2, _ := decryptKEK(rand.Reader, priv, hsmapi.KEKPKCS1v15, der)
	if len(kek1) != hsmapi.KEKSize || bytes.Equal(kek1, kek2) {
		t.Error("bad padding did not give a fresh random KEK each time")
	}
	if _, err := decryptKEK(rand.Reader, priv, hsmapi.KEKOAEPSHA256, der); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("PKCS#1 v1.5 KEK accepted where OAEP was expected: %v", err)
	}
}
