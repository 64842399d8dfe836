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

	"github.com/hsmkit/cryptech-backup/internal/testvectors"
)

const kekekFlags = FlagKeyEncipherment | FlagToken

// pair is a source and a destination HSM, with a KEKEK on the destination.
type pair struct {
	src, dst *Session
	dstHSM   *HSM
	kekek    KeyInfo
}

func newPair(t *testing.T) pair {
	t.Helper()
	srcHSM, _ := newTestHSM(t)
	dstHSM, _ := newTestHSM(t)
	p := pair{src: login(t, srcHSM), dst: login(t, dstHSM), dstHSM: dstHSM}
	p.kekek = generate(t, p.dst, GenerateRequest{Type: KeyTypeRSAPrivate, Bits: 2048, Flags: kekekFlags})
	return p
}

func (p pair) export(t *testing.T, k KeyInfo, enc KEKEncryption, binding []byte) WrappedKey {
	t.Helper()
	w, err := p.src.Export(ctx, ExportRequest{Key: k.UUID, KEKEK: p.kekek.PublicKey, Encryption: enc, Binding: binding})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	return w
}

func (p pair) importReq(k KeyInfo, w WrappedKey, enc KEKEncryption, binding []byte) ImportRequest {
	return ImportRequest{KEKEK: p.kekek.UUID, Wrapped: w, Encryption: enc, Binding: binding,
		UUID: k.UUID, Label: k.Label, Flags: k.Flags, PublicKey: k.PublicKey}
}

// keyCount is how many keys the destination holds.
func (p pair) keyCount(t *testing.T) int {
	t.Helper()
	keys, err := p.dst.Keys(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

func TestTransferEveryKeyTypeAndKEKEncryption(t *testing.T) {
	p := newPair(t)
	reqs := []GenerateRequest{
		{Type: KeyTypeRSAPrivate, Bits: 2048},
		{Type: KeyTypeRSAPrivate, Bits: 3072},
		{Type: KeyTypeECPrivate, Curve: CurveP256},
		{Type: KeyTypeECPrivate, Curve: CurveP384},
		{Type: KeyTypeECPrivate, Curve: CurveP521},
	}
	for _, enc := range KEKEncryptions {
		for _, req := range reqs {
			t.Run(fmt.Sprintf("%s/%v-%d-%v", enc, req.Type, req.Bits, req.Curve), func(t *testing.T) {
				req.Flags, req.Label = signFlags|FlagExportable, "moved"
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
				if err := VerifySignature(k.PublicKey, digest[:], sig, crypto.SHA256); err != nil {
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
	k := generate(t, p.src, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags | FlagExportable})
	for _, tc := range []struct {
		enc    KEKEncryption
		algHex string // the KEK's AlgorithmIdentifier, DER
	}{
		{KEKPKCS1v15, "300b06092a864886f70d010101"},
		{KEKOAEPSHA1, "300d06092a864886f70d0101073000"},
		{KEKOAEPSHA256, "303c06092a864886f70d010107302fa00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500"},
	} {
		w := p.export(t, k, tc.enc, nil)
		// The wrapped key: EncryptedPrivateKeyInfo with id-aes256-wrap-pad, no parameters.
		wantPrefix, _ := hex.DecodeString("060960864801650304013004")
		e, err := parseEPKI(w.PKCS8)
		if err != nil || !bytes.Contains(w.PKCS8, wantPrefix[:11]) || !e.Algorithm.Algorithm.Equal(oidAES256WrapPad) || len(e.Algorithm.Parameters.FullBytes) != 0 {
			t.Errorf("%s: pkcs8 is not EncryptedPrivateKeyInfo(id-aes256-wrap-pad): %x", tc.enc, w.PKCS8)
		}
		kekEPKI, err := parseEPKI(w.KEK)
		if err != nil {
			t.Fatal(err)
		}
		algDER, _ := hex.DecodeString(tc.algHex)
		if !bytes.HasPrefix(w.KEK[4:], algDER) {
			t.Errorf("%s: KEK algorithm is %x, want %s", tc.enc, w.KEK[4:4+len(algDER)], tc.algHex)
		}
		if len(kekEPKI.EncryptedData) != 256 {
			t.Errorf("%s: encrypted KEK has %d bytes, want the modulus size", tc.enc, len(kekEPKI.EncryptedData))
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
	k := generate(t, p.src, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags | FlagExportable})
	binding := []byte("binding")
	kekekPub, _ := x509.ParsePKIXPublicKey(p.kekek.PublicKey)

	for _, enc := range KEKEncryptions {
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
		otherKEK, err := encryptKEK(rand.Reader, kekekPub.(*rsa.PublicKey), enc, bytes.Repeat([]byte{7}, KEKSize))
		if err != nil {
			t.Fatal(err)
		}
		cases := map[string]ImportRequest{}
		add := func(name string, mod func(r *ImportRequest)) {
			r := p.importReq(k, WrappedKey{PKCS8: w.PKCS8, KEK: w.KEK, Tag: w.Tag}, enc, binding)
			mod(&r)
			cases[name] = r
		}
		add("kek ciphertext flipped", func(r *ImportRequest) { r.Wrapped.KEK = flip(w.KEK, len(w.KEK)-1) })
		add("kek of wrong length", func(r *ImportRequest) { r.Wrapped.KEK = shortKEK })
		add("other kek", func(r *ImportRequest) { r.Wrapped.KEK = otherKEK })
		add("pkcs8 flipped", func(r *ImportRequest) { r.Wrapped.PKCS8 = flip(w.PKCS8, len(w.PKCS8)-3) })
		add("tag flipped", func(r *ImportRequest) { r.Wrapped.Tag = flip(w.Tag, 0) })
		add("tag missing", func(r *ImportRequest) { r.Wrapped.Tag = nil })
		add("binding changed", func(r *ImportRequest) { r.Binding = []byte("binding!") })
		for name, req := range cases {
			_, err := p.dst.Import(ctx, req)
			if !errors.Is(err, ErrDecryption) {
				t.Errorf("%s/%s: got %v, want ErrDecryption", enc, name, err)
				continue
			}
			want := fmt.Sprintf("import key 0 (%s): %v", k.UUID, ErrDecryption)
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
	stays := generate(t, p.src, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags})
	k := generate(t, p.src, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags | FlagExportable})
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecSPKI, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	for _, tc := range []struct {
		name string
		req  ExportRequest
		want error
	}{
		{"not exportable", ExportRequest{Key: stays.UUID, KEKEK: p.kekek.PublicKey, Encryption: KEKOAEPSHA256}, ErrNotExportable},
		{"unknown key", ExportRequest{Key: UUID{1}, KEKEK: p.kekek.PublicKey, Encryption: KEKOAEPSHA256}, ErrKeyNotFound},
		{"EC KEKEK", ExportRequest{Key: k.UUID, KEKEK: ecSPKI, Encryption: KEKOAEPSHA256}, ErrUnsupportedKey},
		{"garbage KEKEK", ExportRequest{Key: k.UUID, KEKEK: []byte{0x30, 0x00}, Encryption: KEKOAEPSHA256}, ErrUnsupportedKey},
		{"unknown encryption", ExportRequest{Key: k.UUID, KEKEK: p.kekek.PublicKey, Encryption: "rot13"}, ErrBadArguments},
	} {
		if _, err := p.src.Export(ctx, tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestImportRefusals(t *testing.T) {
	p := newPair(t)
	k := generate(t, p.src, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags | FlagExportable})
	w := p.export(t, k, KEKOAEPSHA256, nil)
	noKE := generate(t, p.dst, GenerateRequest{Type: KeyTypeRSAPrivate, Bits: 2048, Flags: FlagDigitalSignature | FlagToken})
	ecKEKEK := generate(t, p.dst, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: kekekFlags})
	other := generate(t, p.dst, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags})
	before := p.keyCount(t)
	for _, tc := range []struct {
		name string
		mod  func(r *ImportRequest)
		want error
	}{
		{"KEKEK without keyencipherment", func(r *ImportRequest) { r.KEKEK = noKE.UUID }, ErrForbidden},
		{"EC KEKEK", func(r *ImportRequest) { r.KEKEK = ecKEKEK.UUID }, ErrUnsupportedKey},
		{"unknown KEKEK", func(r *ImportRequest) { r.KEKEK = UUID{9} }, ErrKeyNotFound},
		{"UUID of another key", func(r *ImportRequest) { r.UUID = other.UUID }, ErrKeyNameInUse},
		{"wrong declared encryption", func(r *ImportRequest) { r.Encryption = KEKOAEPSHA1 }, ErrBadArguments},
		{"public key of another key", func(r *ImportRequest) { r.PublicKey = other.PublicKey }, ErrBadArguments},
		{"unknown flags", func(r *ImportRequest) { r.Flags = 1 << 12 }, ErrBadArguments},
		{"reserved UUID", func(r *ImportRequest) { r.UUID = UUID{15: 3} }, ErrBadArguments},
		{"label longer than a key keeps", func(r *ImportRequest) { r.Label = strings.Repeat("l", MaxRawLabelLength+1) }, ErrBadArguments},
		{"kek not DER", func(r *ImportRequest) { r.Wrapped.KEK = []byte("junk") }, ErrBadArguments},
		{"pkcs8 not DER", func(r *ImportRequest) { r.Wrapped.PKCS8 = w.PKCS8[:len(w.PKCS8)-1] }, ErrBadArguments},
	} {
		req := p.importReq(k, w, KEKOAEPSHA256, nil)
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
	for _, label := range []string{rawLabel, "a\x00b\xffc\u202e", strings.Repeat("\xfe", MaxRawLabelLength)} {
		k := generate(t, p.src, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags | FlagExportable})
		if err := p.src.SetAttributes(ctx, k.UUID, []Attribute{{Type: AttributeLabel, Value: []byte(label)}}); err != nil {
			t.Fatal(err)
		}
		k.Label = label
		w := p.export(t, k, KEKOAEPSHA256, nil)
		res, err := p.dst.Import(ctx, p.importReq(k, w, KEKOAEPSHA256, nil))
		if err != nil {
			t.Fatalf("import with label %q: %v", label, err)
		}
		if res.Key.Label != label {
			t.Errorf("imported with label %q, want %q", res.Key.Label, label)
		}
		got, err := p.dst.Attributes(ctx, k.UUID, []uint32{AttributeLabel})
		if err != nil || string(got[0].Value) != label {
			t.Errorf("label attribute %v (%v), want %q", got, err, label)
		}
	}
	if _, err := p.dst.GenerateKey(ctx, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags, Label: rawLabel}); !errors.Is(err, ErrBadArguments) {
		t.Errorf("generate with label %q: %v", rawLabel, err)
	}
}

func TestImportBatchIsAllOrNothing(t *testing.T) {
	p := newPair(t)
	var reqs []ImportRequest
	for range 3 {
		k := generate(t, p.src, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags | FlagExportable})
		reqs = append(reqs, p.importReq(k, p.export(t, k, KEKOAEPSHA256, nil), KEKOAEPSHA256, nil))
	}
	bad := bytes.Clone(reqs[2].Wrapped.PKCS8)
	bad[len(bad)-1] ^= 1
	reqs[2].Wrapped.PKCS8 = bad
	if _, err := p.dst.ImportBatch(ctx, reqs); !errors.Is(err, ErrDecryption) {
		t.Fatalf("got %v, want ErrDecryption", err)
	}
	if n := p.keyCount(t); n != 1 {
		t.Errorf("a failed batch stored %d keys", n-1)
	}
	dup := []ImportRequest{reqs[0], reqs[0]}
	if _, err := p.dst.ImportBatch(ctx, dup); !errors.Is(err, ErrBadArguments) {
		t.Errorf("batch naming one UUID twice: got %v", err)
	}
}

// TestImportBatchSurvivesPowerCutAtEveryWrite cuts power at each flash write
// of a three-key import; after the reboot the HSM opens and holds all three
// keys or none.
func TestImportBatchSurvivesPowerCutAtEveryWrite(t *testing.T) {
	p := newPair(t)
	var reqs []ImportRequest
	for range 3 {
		k := generate(t, p.src, GenerateRequest{Type: KeyTypeECPrivate, Curve: CurveP256, Flags: signFlags | FlagExportable})
		reqs = append(reqs, p.importReq(k, p.export(t, k, KEKOAEPSHA256, nil), KEKOAEPSHA256, nil))
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
	if err := s.Login(ctx, UserWheel, wheelPIN); err != nil {
		t.Fatal(err)
	}
	return h, s
}

func TestKEKAlgorithmRoundTrip(t *testing.T) {
	for _, enc := range KEKEncryptions {
		alg, err := kekAlgorithm(enc)
		if err != nil {
			t.Fatal(err)
		}
		der := marshalEPKI(alg, []byte{1})
		e, err := parseEPKI(der)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := kekEncryptionOf(e.Algorithm); err != nil || got != enc {
			t.Errorf("%s came back as %q, %v", enc, got, err)
		}
	}
	// Other spellings of the same parameters, and ones that are refused.
	for _, tc := range []struct {
		hex  string
		want KEKEncryption
	}{
		{"300d06092a864886f70d0101010500", KEKPKCS1v15},
		{"300b06092a864886f70d010107", ""}, // OAEP needs its parameters
		// SHA-256 with absent rather than NULL hash parameters.
		{"303806092a864886f70d010107302ba00d300b0609608648016503040201a11a301806092a864886f70d010108300b0609608648016503040201", KEKOAEPSHA256},
		// SHA-256 hash with the default MGF1-SHA-1: a mix we refuse.
		{"301e06092a864886f70d0101073011a00f300d06096086480165030402010500", ""},
		// pSourceAlgorithm present (an OAEP label).
		{"301f06092a864886f70d0101073012a210300e06092a864886f70d0101090401aa", ""},
		{"300b06092a864886f70d010102", ""}, // not an encryption algorithm
	} {
		der, _ := hex.DecodeString(tc.hex)
		var alg algorithmIdentifier
		if _, err := asn1Unmarshal(der, &alg); err != nil {
			t.Fatalf("%s: %v", tc.hex, err)
		}
		got, err := kekEncryptionOf(alg)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("%s: got %q, %v; want %q", tc.hex, got, err, tc.want)
		}
	}
}

// Every bit of an encrypted KEK's encoding outside the ciphertext counts:
// a flipped one is refused when the KEK is read, before any decryption.
func TestEncryptedKEKRefusesEveryFlippedBit(t *testing.T) {
	ct := bytes.Repeat([]byte{0x5a}, 256)
	for _, enc := range KEKEncryptions {
		der, err := EncryptedKEK(enc, ct)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ParseEncryptedKEK(der, enc); err != nil || !bytes.Equal(got, ct) {
			t.Fatalf("%s: %v", enc, err)
		}
		header := len(der) - len(ct)
		for i := range header * 8 {
			mut := bytes.Clone(der)
			mut[i/8] ^= 1 << (i % 8)
			if _, err := ParseEncryptedKEK(mut, enc); err == nil {
				t.Errorf("%s: bit %d of byte %d flipped: accepted (% x)", enc, i%8, i/8, mut[:header])
			}
		}
	}
}

func TestEPKIBadLengths(t *testing.T) {
	der := marshalEPKI(algorithmIdentifier{Algorithm: oidAES256WrapPad}, bytes.Repeat([]byte{1}, 40))
	for i := range len(der) {
		if _, err := parseEPKI(der[:i]); err == nil {
			t.Errorf("EncryptedPrivateKeyInfo cut to %d bytes parsed", i)
		}
	}
	if _, err := parseEPKI(append(bytes.Clone(der), 0)); err == nil {
		t.Error("trailing data accepted")
	}
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
	modes := map[[2]string]KEKEncryption{{"SHA-1", "SHA-1"}: KEKOAEPSHA1, {"SHA-256", "SHA-256"}: KEKOAEPSHA256}
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
				alg, err := kekAlgorithm(enc)
				if err != nil {
					t.Fatal(err)
				}
				for _, tc := range g.Tests {
					n.Add(tc.Case)
					pass := testvectors.Expect(t, tc.Result, tc.Flags, nil)
					pt, err := decryptOAEP(priv, oaepHash(enc), tc.Ct, tc.Label)
					switch {
					case pass && (err != nil || !bytes.Equal(pt, tc.Msg)):
						t.Errorf("%s: %v: decryptOAEP = %x, %v; want %x", c.file, tc.Case, pt, err, []byte(tc.Msg))
					case !pass && (pt != nil || err != ErrDecryption):
						t.Errorf("%s: %v: decryptOAEP = %x, %v; want exactly ErrDecryption", c.file, tc.Case, pt, err)
					}
					kek, err := decryptKEK(rand.Reader, priv, enc, marshalEPKI(alg, tc.Ct))
					if pass && len(tc.Label) == 0 && len(tc.Msg) == KEKSize {
						keks++
						if err != nil || !bytes.Equal(kek, tc.Msg) {
							t.Errorf("%s: %v: decryptKEK = %x, %v; want %x", c.file, tc.Case, kek, err, []byte(tc.Msg))
						}
					} else if kek != nil || (err != ErrDecryption && !(len(tc.Ct) == 0 && errors.Is(err, ErrBadArguments))) {
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
	der := marshalEPKI(algorithmIdentifier{Algorithm: oidRSAEncryption}, bad)
	kek1, err := decryptKEK(rand.Reader, priv, KEKPKCS1v15, der)
	if err != nil {
		t.Fatalf("bad padding reported at decryption: %v", err)
	}
	kek2, _ := decryptKEK(rand.Reader, priv, KEKPKCS1v15, der)
	if len(kek1) != KEKSize || bytes.Equal(kek1, kek2) {
		t.Error("bad padding did not give a fresh random KEK each time")
	}
	if _, err := decryptKEK(rand.Reader, priv, KEKOAEPSHA256, der); !errors.Is(err, ErrBadArguments) {
		t.Errorf("PKCS#1 v1.5 KEK accepted where OAEP was expected: %v", err)
	}
}
