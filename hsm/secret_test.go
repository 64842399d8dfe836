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
	"sync"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/keywrap"
)

// softRSA is an RSA key the tests know the private half of, loaded into
// HSMs where a test must check a wrapping from outside.
var softRSA = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

var oaepSHA256 = hsmapi.OAEPParams{Hash: crypto.SHA256, MGFHash: crypto.SHA256}

const (
	wrapFlags   = hsmapi.FlagKeyEncipherment
	secretFlags = hsmapi.FlagKeyEncipherment | hsmapi.FlagExportable
)

// loadRSA loads softRSA with flags.
func loadRSA(t *testing.T, s *Session, flags hsmapi.Flags, attrs ...hsmapi.Attribute) hsmapi.KeyInfo {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(softRSA())
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: flags, Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// knownAES stores an AES key of the given value, unwrapped under softRSA
// (loaded to unwrap only), so that a test can check what it wraps.
func knownAES(t *testing.T, s *Session, value []byte, flags hsmapi.Flags) hsmapi.KeyInfo {
	t.Helper()
	rk := loadRSA(t, s, wrapFlags)
	blob, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &softRSA().PublicKey, value, nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.UnwrapKey(ctx, rk.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAOAEP, OAEP: oaepSHA256}, blob,
		hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeAES, Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKey(ctx, rk.UUID); err != nil {
		t.Fatal(err)
	}
	return k
}

func genAES(t *testing.T, s *Session, bits int, flags hsmapi.Flags, attrs ...hsmapi.Attribute) hsmapi.KeyInfo {
	t.Helper()
	k, err := s.GenerateSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: bits, Flags: flags, Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// attrsOf returns a key's attributes as a map.
func attrsOf(t *testing.T, s *Session, id hsmapi.UUID) map[uint32]string {
	t.Helper()
	list, err := s.KeyAttributes(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	m := map[uint32]string{}
	for _, a := range list {
		m[a.Type] = hex.EncodeToString(a.Value)
	}
	return m
}

func keyCount(t *testing.T, s *Session) int {
	t.Helper()
	return len(allKeys(t, s))
}

// allKeys lists the key pairs and the secret keys.
func allKeys(t *testing.T, s *Session) []hsmapi.KeyInfo {
	t.Helper()
	var all []hsmapi.KeyInfo
	for _, f := range []hsmapi.Filter{{}, {Type: hsmapi.KeyTypeAES}} {
		keys, err := s.Keys(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, keys...)
	}
	return all
}

func userSession(t *testing.T, h *HSM, u hsmapi.User, pin []byte) *Session {
	t.Helper()
	s := h.NewSession()
	if err := s.Login(ctx, u, pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestGenerateSecretKey: AES keys of each size, token and volatile, say
// what they are and claim what is true of them; a token key survives a
// restart and still unwraps what it wrapped; bad requests store nothing.
func TestGenerateSecretKey(t *testing.T) {
	h, dir := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	target := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags | hsmapi.FlagExportable})
	kwp := hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrapKWP}
	var blobs [][]byte
	var token []hsmapi.KeyInfo
	for _, bits := range []int{128, 192, 256} {
		for _, flags := range []hsmapi.Flags{wrapFlags, wrapFlags | hsmapi.FlagToken, secretFlags | hsmapi.FlagToken} {
			k := genAES(t, s, bits, flags)
			if k.Type != hsmapi.KeyTypeAES || k.Bits != bits || k.Flags != flags || k.PublicKey != nil {
				t.Errorf("%d bits %v: %+v", bits, flags, k)
			}
			exportable := "00"
			never := "01"
			if flags&hsmapi.FlagExportable != 0 {
				exportable, never = "01", "00"
			}
			want := map[uint32]string{hsmapi.CKAValueLen: hex.EncodeToString([]byte{0, 0, 0, 0, 0, 0, 0, byte(bits / 8)}), hsmapi.CKASensitive: "01", hsmapi.CKAExtractable: exportable, hsmapi.CKALocal: "01",
				hsmapi.CKAAlwaysSensitive: "01", hsmapi.CKANeverExtractable: never}
			got := attrsOf(t, s, k.UUID)
			for a, v := range want {
				if got[a] != v {
					t.Errorf("%d bits %v: attribute 0x%x = %q, want %q", bits, flags, a, got[a], v)
				}
			}
			if flags&hsmapi.FlagToken != 0 {
				blob, err := s.WrapKey(ctx, k.UUID, target.UUID, kwp)
				if err != nil {
					t.Fatal(err)
				}
				token, blobs = append(token, k), append(blobs, blob)
			}
		}
	}
	// Two keys of one size are not the same key.
	if _, err := s.UnwrapKey(ctx, token[0].UUID, kwp, blobs[1], hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeECPrivate, Flags: signFlags}); !errors.Is(err, hsmapi.ErrDecryption) {
		t.Errorf("unwrap under another AES key: %v, want ErrDecryption", err)
	}
	// Secret keys are listed only when asked for: the transfer and libhal's
	// clients know key pairs alone.
	if pairs, err := s.Keys(ctx, hsmapi.Filter{}); err != nil || len(pairs) != 1 || pairs[0].UUID != target.UUID {
		t.Errorf("Keys without a type lists %d keys, %v; want the one key pair", len(pairs), err)
	}
	if secrets, err := s.Keys(ctx, hsmapi.Filter{Type: hsmapi.KeyTypeAES}); err != nil || len(secrets) != 9 {
		t.Errorf("Keys of type AES lists %d keys, %v; want 9", len(secrets), err)
	}
	before := keyCount(t, s)
	for name, req := range map[string]hsmapi.SecretKeyRequest{
		"wrong value len":    {Bits: 128, Flags: wrapFlags, Attributes: []hsmapi.Attribute{{Type: hsmapi.CKAValueLen, Value: []byte{0, 0, 0, 0, 0, 0, 0, 32}}}},
		"64 bits":            {Bits: 64, Flags: wrapFlags},
		"0 bits":             {Flags: wrapFlags},
		"dataencipherment":   {Bits: 128, Flags: hsmapi.FlagDataEncipherment},
		"both encipherments": {Bits: 128, Flags: wrapFlags | hsmapi.FlagDataEncipherment},
		"digitalsignature":   {Bits: 128, Flags: hsmapi.FlagDigitalSignature},
		"unknown flag":       {Bits: 128, Flags: 1 << 20},
		"not sensitive":      {Bits: 128, Flags: wrapFlags, Attributes: []hsmapi.Attribute{{Type: hsmapi.CKASensitive, Value: []byte{0}}}},
		"extractable":        {Bits: 128, Flags: wrapFlags, Attributes: []hsmapi.Attribute{{Type: hsmapi.CKAExtractable, Value: []byte{1}}}},
		"not local":          {Bits: 128, Flags: wrapFlags, Attributes: []hsmapi.Attribute{{Type: hsmapi.CKALocal, Value: []byte{0}}}},
		"trusted":            {Bits: 128, Flags: wrapFlags, Attributes: []hsmapi.Attribute{{Type: hsmapi.CKATrusted, Value: []byte{1}}}},
		"label attribute":    {Bits: 128, Flags: wrapFlags, Attributes: []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte("x")}}},
	} {
		if _, err := s.GenerateSecretKey(ctx, req); err == nil {
			t.Errorf("%s: generated", name)
		}
	}
	if n := keyCount(t, s); n != before {
		t.Errorf("refused requests left %d keys, %d before", n, before)
	}
	if _, err := h.NewSession().GenerateSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 128, Flags: wrapFlags}); !errors.Is(err, hsmapi.ErrNotLoggedIn) {
		t.Errorf("without login: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	h.Close()
	h2, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	s2 := userSession(t, h2, hsmapi.UserNormal, userPIN)
	if n := keyCount(t, s2); n != 1+len(token) {
		t.Errorf("after restart: %d keys, want the %d token keys", n, 1+len(token))
	}
	for i, k := range token {
		u, err := s2.UnwrapKey(ctx, k.UUID, kwp, blobs[i], hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeECPrivate, Flags: signFlags})
		if err != nil {
			t.Fatalf("unwrap under %d-bit key after restart: %v", k.Bits, err)
		}
		checkSignsAs(t, s2, u.UUID, target.PublicKey)
	}
}

// checkSignsAs: key id signs, and the signature verifies under pub (the
// original key's public key), outside the HSM.
func checkSignsAs(t *testing.T, s *Session, id hsmapi.UUID, pub []byte) {
	t.Helper()
	digest := sha256.Sum256([]byte("signed by the unwrapped key"))
	sig, err := s.Sign(ctx, id, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := hsmapi.VerifyDigest(mustParsePublic(t, pub), digest[:], sig, crypto.SHA256); err != nil {
		t.Errorf("signature of the unwrapped key under the original public key: %v", err)
	}
}

func mustParsePublic(t *testing.T, der []byte) crypto.PublicKey {
	t.Helper()
	p, err := hsmapi.ParsePublicKey(der)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWrapUnwrapRoundTrip: each mechanism wraps each kind of key it can,
// and the blob unwraps into a key that is the original: a private key
// signs under the original's public key, an AES key opens what the
// original wrapped. The unwrapped key claims no history it lacks.
func TestWrapUnwrapRoundTrip(t *testing.T) {
	h, _ := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	exp := signFlags | hsmapi.FlagExportable
	targets := map[string]hsmapi.KeyInfo{
		"rsa": loadRSA(t, s, exp),
		"ec":  generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384, Flags: exp}),
		"aes": genAES(t, s, 256, secretFlags|hsmapi.FlagToken),
	}
	probe := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exp})
	aes := map[int]hsmapi.KeyInfo{128: genAES(t, s, 128, wrapFlags), 192: genAES(t, s, 192, wrapFlags), 256: genAES(t, s, 256, wrapFlags)}
	rsaW := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: wrapFlags})
	oaep1 := hsmapi.OAEPParams{Hash: crypto.SHA1, MGFHash: crypto.SHA1}
	oaepMix := hsmapi.OAEPParams{Hash: crypto.SHA384, MGFHash: crypto.SHA256, Label: []byte("label")}
	type wrapCase struct {
		name    string
		wrapper hsmapi.KeyInfo
		mech    hsmapi.WrapMechanism
		targets []string
	}
	var cases []wrapCase
	for bits, w := range aes {
		for _, m := range []hsmapi.Mechanism{hsmapi.MechAESKeyWrapKWP, hsmapi.MechAESKeyWrapPad} {
			cases = append(cases, wrapCase{"aes" + hex.EncodeToString([]byte{byte(bits)}), w, hsmapi.WrapMechanism{Mechanism: m}, []string{"rsa", "ec", "aes"}})
		}
		cases = append(cases, wrapCase{"aes-kw", w, hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrap}, []string{"aes"}})
	}
	cases = append(cases,
		wrapCase{"rsa-oaep-sha1", rsaW, hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAOAEP, OAEP: oaep1}, []string{"aes"}},
		wrapCase{"rsa-oaep-mixed", rsaW, hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAOAEP, OAEP: oaepMix}, []string{"aes"}},
		wrapCase{"rsa-aes-128", rsaW, hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAAESKeyWrap, OAEP: oaep1, AESKeyBits: 128}, []string{"rsa", "ec", "aes"}},
		wrapCase{"rsa-aes-256", rsaW, hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAAESKeyWrap, OAEP: oaepSHA256, AESKeyBits: 256}, []string{"rsa", "ec", "aes"}},
	)
	kwp := hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrapKWP}
	for _, c := range cases {
		for _, tn := range c.targets {
			target := targets[tn]
			blob, err := s.WrapKey(ctx, c.wrapper.UUID, target.UUID, c.mech)
			if err != nil {
				t.Errorf("%s wraps %s: %v", c.name, tn, err)
				continue
			}
			req := hsmapi.UnwrapRequest{Type: target.Type, Flags: signFlags}
			if tn == "aes" {
				req = hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeAES, Bits: 256, Flags: wrapFlags}
			}
			u, err := s.UnwrapKey(ctx, c.wrapper.UUID, c.mech, blob, req)
			if err != nil {
				t.Errorf("%s unwraps %s: %v", c.name, tn, err)
				continue
			}
			if tn == "aes" {
				// The copy opens what the original wraps.
				pb, err := s.WrapKey(ctx, target.UUID, probe.UUID, kwp)
				if err != nil {
					t.Fatal(err)
				}
				p, err := s.UnwrapKey(ctx, u.UUID, kwp, pb, hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeECPrivate, Flags: signFlags})
				if err != nil {
					t.Fatalf("%s: the unwrapped AES key does not open what the original wrapped: %v", c.name, err)
				}
				checkSignsAs(t, s, p.UUID, probe.PublicKey)
			} else {
				checkSignsAs(t, s, u.UUID, target.PublicKey)
			}
			got := attrsOf(t, s, u.UUID)
			for _, a := range []uint32{hsmapi.CKALocal, hsmapi.CKAAlwaysSensitive, hsmapi.CKANeverExtractable, hsmapi.CKAExtractable} {
				if got[a] != "00" {
					t.Errorf("%s/%s: unwrapped key's attribute 0x%x = %q, want false", c.name, tn, a, got[a])
				}
			}
			if got[hsmapi.CKASensitive] != "01" {
				t.Errorf("%s/%s: unwrapped key not sensitive", c.name, tn)
			}
			// Flipping any byte of the blob is refused, and stores nothing.
			n := keyCount(t, s)
			for _, i := range []int{0, len(blob) / 2, len(blob) - 1} {
				bad := bytes.Clone(blob)
				bad[i] ^= 0x01
				if _, err := s.UnwrapKey(ctx, c.wrapper.UUID, c.mech, bad, req); !errors.Is(err, hsmapi.ErrDecryption) {
					t.Errorf("%s/%s: a blob with byte %d flipped: %v; want ErrDecryption", c.name, tn, i, err)
				}
			}
			if keyCount(t, s) != n {
				t.Errorf("%s/%s: refused unwraps stored keys", c.name, tn)
			}
		}
	}
}

// TestWrapKnownAnswers: what the HSM wraps is what the standards say, as
// software outside it reads it: RFC 3394's test vectors for AES key wrap,
// and CKM_RSA_AES_KEY_WRAP both ways with an RSA key whose private half
// the test holds.
func TestWrapKnownAnswers(t *testing.T) {
	h, _ := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	for _, v := range []struct{ kek, key, want string }{
		// RFC 3394 4.1 and 4.6.
		{"000102030405060708090A0B0C0D0E0F", "00112233445566778899AABBCCDDEEFF", "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"},
		{"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
			"28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
	} {
		kek := knownAES(t, s, mustHex(v.kek), wrapFlags)
		key := knownAES(t, s, mustHex(v.key), hsmapi.FlagExportable)
		got, err := s.WrapKey(ctx, kek.UUID, key.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrap})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, mustHex(v.want)) {
			t.Errorf("AES key wrap of %s under %s = %X, want %s", v.key, v.kek, got, v.want)
		}
		// RFC 5649 of the same, as software unwraps it.
		got, err = s.WrapKey(ctx, kek.UUID, key.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrapPad})
		if err != nil {
			t.Fatal(err)
		}
		if plain, err := keywrap.UnwrapPad(mustHex(v.kek), got); err != nil || !bytes.Equal(plain, mustHex(v.key)) {
			t.Errorf("AES_KEY_WRAP_PAD is not RFC 5649: %x, %v", plain, err)
		}
	}

	// Outward: the HSM wraps an EC key for softRSA's public half (loaded
	// alone, as a public key); the test opens it with the private half.
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := s.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: ecDER, Flags: signFlags | hsmapi.FlagExportable})
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&softRSA().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := s.Import(ctx, hsmapi.ImportRequest{PublicKey: spki, Flags: wrapFlags})
	if err != nil {
		t.Fatal(err)
	}
	mech := hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAAESKeyWrap, OAEP: oaepSHA256, AESKeyBits: 256}
	blob, err := s.WrapKey(ctx, pub.Key.UUID, ecKey.UUID, mech)
	if err != nil {
		t.Fatal(err)
	}
	n := softRSA().Size()
	tmp, err := rsa.DecryptOAEP(sha256.New(), nil, softRSA(), blob[:n], nil)
	if err != nil || len(tmp) != 32 {
		t.Fatalf("the blob does not start with a 256-bit AES key under RSA-OAEP: %d bytes, %v", len(tmp), err)
	}
	plain, err := keywrap.UnwrapPad(tmp, blob[n:])
	if err != nil || !bytes.Equal(plain, ecDER) {
		t.Fatalf("the blob does not end with the PKCS#8 key under RFC 5649: %v", err)
	}
	// The public key alone cannot unwrap.
	if _, err := s.UnwrapKey(ctx, pub.Key.UUID, mech, blob, hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeECPrivate, Flags: signFlags}); !errors.Is(err, hsmapi.ErrUnsupportedKey) {
		t.Errorf("unwrap with a public key: %v", err)
	}

	// Inward: software wraps an RSA key for softRSA loaded in the HSM.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherDER, err := x509.MarshalPKCS8PrivateKey(other)
	if err != nil {
		t.Fatal(err)
	}
	tmp = make([]byte, 16)
	rand.Read(tmp)
	head, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &softRSA().PublicKey, tmp, nil)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := keywrap.WrapPad(tmp, otherDER)
	if err != nil {
		t.Fatal(err)
	}
	rk := loadRSA(t, s, wrapFlags)
	mech.AESKeyBits = 128
	u, err := s.UnwrapKey(ctx, rk.UUID, mech, append(head, tail...), hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeRSAPrivate, Flags: signFlags})
	if err != nil {
		t.Fatal(err)
	}
	otherSPKI, err := x509.MarshalPKIXPublicKey(&other.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	checkSignsAs(t, s, u.UUID, otherSPKI)
	// Asked for as the wrong type, or with the wrong AES key size, it is
	// refused.
	if _, err := s.UnwrapKey(ctx, rk.UUID, mech, append(head, tail...), hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeECPrivate, Flags: signFlags}); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("an RSA key unwrapped as EC: %v", err)
	}
	mech.AESKeyBits = 256
	if _, err := s.UnwrapKey(ctx, rk.UUID, mech, append(head, tail...), hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeRSAPrivate, Flags: signFlags}); !errors.Is(err, hsmapi.ErrDecryption) {
		t.Errorf("unwrap with the wrong AES key size: %v", err)
	}
}

// TestOAEPEncryptDecrypt: a key with dataencipherment encrypts and
// decrypts with RSA-OAEP, with each hash; software decrypts what it
// encrypts; a flipped byte is refused.
func TestOAEPEncryptDecrypt(t *testing.T) {
	h, _ := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	k := loadRSA(t, s, hsmapi.FlagDataEncipherment)
	msg := []byte("a secret message")
	for _, p := range []hsmapi.OAEPParams{
		{Hash: crypto.SHA1, MGFHash: crypto.SHA1},
		{Hash: crypto.SHA224, MGFHash: crypto.SHA224},
		oaepSHA256,
		{Hash: crypto.SHA384, MGFHash: crypto.SHA384, Label: []byte("l")},
		{Hash: crypto.SHA512, MGFHash: crypto.SHA1},
	} {
		ct, err := s.Encrypt(ctx, k.UUID, p, msg)
		if err != nil {
			t.Fatalf("%v: %v", p.Hash, err)
		}
		soft, err := softRSA().Decrypt(nil, ct, &rsa.OAEPOptions{Hash: p.Hash, MGFHash: p.MGFHash, Label: p.Label})
		if err != nil || !bytes.Equal(soft, msg) {
			t.Errorf("%v: software reads %q, %v", p.Hash, soft, err)
		}
		pt, err := s.Decrypt(ctx, k.UUID, p, ct)
		if err != nil || !bytes.Equal(pt, msg) {
			t.Errorf("%v: decrypt = %q, %v", p.Hash, pt, err)
		}
		ct[len(ct)/2] ^= 1
		if pt, err := s.Decrypt(ctx, k.UUID, p, ct); !errors.Is(err, hsmapi.ErrDecryption) || pt != nil {
			t.Errorf("%v: flipped ciphertext: %q, %v", p.Hash, pt, err)
		}
	}
	for name, p := range map[string]hsmapi.OAEPParams{"md5": {Hash: crypto.MD5, MGFHash: crypto.MD5}, "none": {}} {
		if _, err := s.Encrypt(ctx, k.UUID, p, msg); !errors.Is(err, hsmapi.ErrBadArguments) {
			t.Errorf("encrypt with %s: %v", name, err)
		}
	}
	ec := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDataEncipherment})
	if _, err := s.Encrypt(ctx, ec.UUID, oaepSHA256, msg); !errors.Is(err, hsmapi.ErrUnsupportedKey) {
		t.Errorf("encrypt with EC: %v", err)
	}
	signer := loadRSA(t, s, signFlags)
	if _, err := s.Decrypt(ctx, signer.UUID, oaepSHA256, make([]byte, 256)); !errors.Is(err, hsmapi.ErrForbidden) {
		t.Errorf("decrypt with a signing key: %v", err)
	}
}

func rsaPKCS8(k *rsa.PrivateKey) ([]byte, error) { return x509.MarshalPKCS8PrivateKey(k) }

// mustPublicSPKI is softRSA's public key, DER.
func mustPublicSPKI(t *testing.T) []byte {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(&softRSA().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return spki
}

// TestSecretKeygenSurvivesPowerCutAtEveryWrite cuts power at each flash
// write of an AES key generation: afterwards the key is there and wraps,
// or nothing is, and no flash block is lost.
func TestSecretKeygenSurvivesPowerCutAtEveryWrite(t *testing.T) {
	base, _ := newTestHSM(t)
	req := hsmapi.SecretKeyRequest{Bits: 256, Flags: wrapFlags | hsmapi.FlagToken, Label: "cut"}
	eachPowerCut(t, "AES keygen", base, func(s *Session) error {
		_, err := s.GenerateSecretKey(ctx, req)
		return err
	}, func(c powerCut) {
		keys := allKeys(t, c.s)
		switch len(keys) {
		case 0:
			if c.h.ks.Free() != c.free {
				t.Errorf("%s: no key, and %d free blocks of %d before", c.name, c.h.ks.Free(), c.free)
			}
		case 1:
			target := generate(t, c.s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagExportable | hsmapi.FlagDigitalSignature})
			if keys[0].Type != hsmapi.KeyTypeAES || keys[0].Label != "cut" {
				t.Errorf("%s: %+v", c.name, keys[0])
			} else if _, err := c.s.WrapKey(ctx, keys[0].UUID, target.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrapKWP}); err != nil {
				t.Errorf("%s: the key does not wrap: %v", c.name, err)
			}
		default:
			t.Errorf("%s: %d keys", c.name, len(keys))
		}
		if c.last && len(keys) != 1 {
			t.Errorf("%s (after the last write): key lost", c.name)
		}
	})
}

// TestUnwrapSurvivesPowerCutAtEveryWrite cuts power at each flash write of
// an unwrap into a token key that gives the key a label and the attributes
// of both its PKCS#11 objects (as the module's C_UnwrapKey does for a key
// pair arriving from another token, its public object not modifiable and
// private): afterwards the key is there with its label and every
// attribute, and signs as the original, or nothing new is, and no flash
// block is lost. Never a key whose public object lacks its attributes,
// which nothing could give it afterwards.
func TestUnwrapSurvivesPowerCutAtEveryWrite(t *testing.T) {
	base, _ := newTestHSM(t)
	s := login(t, base)
	w := genAES(t, s, 256, wrapFlags|hsmapi.FlagToken)
	orig := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags&^hsmapi.FlagToken | hsmapi.FlagExportable})
	kwp := hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrapKWP}
	blob, err := s.WrapKey(ctx, w.UUID, orig.UUID, kwp)
	if err != nil {
		t.Fatal(err)
	}
	given := []hsmapi.Attribute{
		{Type: hsmapi.CKAID, Value: []byte("arrived")},
		{Type: hsmapi.CKAModifiable, Value: []byte{0}},
		{Type: hsmapi.AttributePublicObject, Value: hsmapi.EncodeAttributes([]hsmapi.Attribute{
			{Type: hsmapi.CKAPrivate, Value: []byte{1}}, {Type: hsmapi.CKAID, Value: []byte("arrived")},
			{Type: hsmapi.CKAModifiable, Value: []byte{0}}, {Type: hsmapi.CKALabel, Value: []byte("arrived, public")}})},
	}
	req := hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeECPrivate, Flags: signFlags, Label: "arrived", Attributes: given}
	eachPowerCut(t, "unwrap", base, func(s *Session) error {
		_, err := s.UnwrapKey(ctx, w.UUID, kwp, blob, req)
		return err
	}, func(c powerCut) {
		keys := allKeys(t, c.s)
		switch len(keys) {
		case 1:
			if c.h.ks.Free() != c.free {
				t.Errorf("%s: no new key, and %d free blocks of %d before", c.name, c.h.ks.Free(), c.free)
			}
		case 2:
			for _, k := range keys {
				if k.UUID == w.UUID {
					continue
				}
				if k.Label != "arrived" {
					t.Errorf("%s: the key came back with label %q", c.name, k.Label)
				}
				got := attrsOf(t, c.s, k.UUID)
				for _, a := range given {
					if v, ok := got[a.Type]; !ok || v != hex.EncodeToString(a.Value) {
						t.Errorf("%s: attribute 0x%x came back as %s (present %v), want %x", c.name, a.Type, v, ok, a.Value)
					}
				}
				checkSignsAs(t, c.s, k.UUID, orig.PublicKey)
			}
		default:
			t.Errorf("%s: %d keys", c.name, len(keys))
		}
		if c.last && len(keys) != 2 {
			t.Errorf("%s (after the last write): key lost", c.name)
		}
	})
}

// TestLoadSecretKey: an AES key given in the clear is stored as one made
// here would be, but not local; its value is the one given (what it wraps
// is RFC 5649 under that value, as computed outside); exportable, it is
// wrapped as its value; requests that contradict themselves store
// nothing.
func TestLoadSecretKey(t *testing.T) {
	h, _ := newTestHSM(t)
	s := userSession(t, h, hsmapi.UserNormal, userPIN)
	value := bytes.Repeat([]byte{0x5a}, 32)
	k, err := s.LoadSecretKey(ctx, hsmapi.SecretKeyRequest{Bits: 256, Flags: secretFlags, Label: "loaded"}, value)
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := s.Attributes(ctx, k.UUID, []uint32{hsmapi.CKALocal, hsmapi.CKAAlwaysSensitive, hsmapi.CKANeverExtractable})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range attrs {
		if isTrue(a.Value) {
			t.Errorf("a loaded key has attribute 0x%x true", a.Type)
		}
	}
	if len(attrs) != 3 {
		t.Errorf("attributes %v", attrs)
	}
	kwp := hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrapKWP}
	inner := knownAES(t, s, bytes.Repeat([]byte{0xa5}, 16), secretFlags)
	got, err := s.WrapKey(ctx, k.UUID, inner.UUID, kwp)
	if err != nil {
		t.Fatal(err)
	}
	want, err := keywrap.WrapPad(value, bytes.Repeat([]byte{0xa5}, 16))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the loaded key wraps as another key would: %x, want %x", got, want)
	}
	self, err := s.WrapKey(ctx, inner.UUID, k.UUID, kwp)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := keywrap.WrapPad(bytes.Repeat([]byte{0xa5}, 16), value); !bytes.Equal(self, want) {
		t.Errorf("the loaded key is wrapped as %x, want its value wrapped, %x", self, want)
	}

	before, _ := s.Keys(ctx, hsmapi.Filter{})
	for name, c := range map[string]struct {
		req   hsmapi.SecretKeyRequest
		value []byte
	}{
		"bits and value disagree": {hsmapi.SecretKeyRequest{Bits: 128, Flags: secretFlags}, value},
		"no AES size":             {hsmapi.SecretKeyRequest{Bits: 160, Flags: secretFlags}, make([]byte, 20)},
		"wraps and encrypts":      {hsmapi.SecretKeyRequest{Bits: 256, Flags: secretFlags | hsmapi.FlagDataEncipherment}, value},
		"claims to be local":      {hsmapi.SecretKeyRequest{Bits: 256, Flags: secretFlags, Attributes: []hsmapi.Attribute{{Type: hsmapi.CKALocal, Value: []byte{1}}}}, value},
	} {
		if _, err := s.LoadSecretKey(ctx, c.req, c.value); !errors.Is(err, hsmapi.ErrBadArguments) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if after, _ := s.Keys(ctx, hsmapi.Filter{}); len(after) != len(before) {
		t.Errorf("refused loads stored %d keys", len(after)-len(before))
	}
}
