package cryptoki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"math/big"
	"sync"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/sigder"
)

// objectsOf finds the private and public key object handles of key id.
func objectsOf(t testing.TB, m *Module, h uint, id hsmapi.UUID) (priv, pub uint) {
	t.Helper()
	hs, objs, rv := m.listObjects(h)
	if rv != OK {
		t.Fatal(rv)
	}
	for _, oh := range hs {
		if o := objs[oh]; o.UUID == id {
			switch o.Class {
			case ClassPrivateKey:
				priv = oh
			case ClassPublicKey:
				pub = oh
			}
		}
	}
	if pub == 0 {
		t.Fatalf("no objects for key %s", id)
	}
	return priv, pub
}

// sign runs C_SignInit and C_Sign with room for the signature, asking its
// length first.
func sign(t *testing.T, m *Module, h uint, mech Mechanism, key uint, data []byte) []byte {
	t.Helper()
	if rv := m.SignInit(h, mech, key); rv != OK {
		t.Fatalf("SignInit %#x: %#x", mech.Type, rv)
	}
	_, n, rv := m.Sign(h, data, Output{Query: true})
	if rv != OK {
		t.Fatalf("Sign (length) %#x: %#x", mech.Type, rv)
	}
	sig, got, rv := m.Sign(h, data, Output{Room: n})
	if rv != OK || got != len(sig) || got > n {
		t.Fatalf("Sign %#x: %#x, %d bytes (said %d)", mech.Type, rv, got, n)
	}
	return sig
}

// signParts signs data in parts with C_SignUpdate and C_SignFinal.
func signParts(t *testing.T, m *Module, h uint, mech Mechanism, key uint, data []byte) []byte {
	t.Helper()
	if rv := m.SignInit(h, mech, key); rv != OK {
		t.Fatalf("SignInit %#x: %#x", mech.Type, rv)
	}
	for len(data) > 0 {
		n := min(len(data), 7)
		if rv := m.SignUpdate(h, data[:n]); rv != OK {
			t.Fatalf("SignUpdate %#x: %#x", mech.Type, rv)
		}
		data = data[n:]
	}
	_, n, rv := m.SignFinal(h, Output{Query: true})
	if rv != OK {
		t.Fatalf("SignFinal (length) %#x: %#x", mech.Type, rv)
	}
	sig, _, rv := m.SignFinal(h, Output{Room: n})
	if rv != OK {
		t.Fatalf("SignFinal %#x: %#x", mech.Type, rv)
	}
	return sig
}

func verify(m *Module, h uint, mech Mechanism, key uint, data, sig []byte) RV {
	if rv := m.VerifyInit(h, mech, key); rv != OK {
		return rv
	}
	return m.Verify(h, data, sig)
}

func verifyParts(m *Module, h uint, mech Mechanism, key uint, data, sig []byte) RV {
	if rv := m.VerifyInit(h, mech, key); rv != OK {
		return rv
	}
	for _, part := range [][]byte{data[:len(data)/2], data[len(data)/2:]} {
		if rv := m.VerifyUpdate(h, part); rv != OK {
			return rv
		}
	}
	return m.VerifyFinal(h, sig)
}

func hashOf(h crypto.Hash, msg []byte) []byte {
	d := h.New()
	d.Write(msg)
	return d.Sum(nil)
}

// ecdsaOK verifies a PKCS#11 r || s with crypto/ecdsa.
func ecdsaOK(pub *ecdsa.PublicKey, digest, sig []byte) bool {
	n := len(sig) / 2
	return len(sig) == 2*((pub.Curve.Params().BitSize+7)/8) &&
		ecdsa.Verify(pub, digest, new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:]))
}

func pss(h crypto.Hash, salt uint) *PSSParams {
	mechs := map[crypto.Hash]uint{crypto.SHA1: MechSHA1, crypto.SHA224: MechSHA224, crypto.SHA256: MechSHA256, crypto.SHA384: MechSHA384, crypto.SHA512: MechSHA512}
	return &PSSParams{Hash: mechs[h], MGF: mgf1[h], SaltLen: salt}
}

// TestSignatures signs with every signature mechanism through the module
// and checks each signature with Go's own verifiers under the key's public
// key; C_Verify accepts it and refuses it with a byte flipped; signing in
// parts gives a signature that verifies the same.
func TestSignatures(t *testing.T) {
	m, h := loggedIn(t)
	rsaKey := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048})
	hssKey := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate,
		Levels: []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}, {LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4}}})
	ecKeys := map[hsmapi.Curve]hsmapi.KeyInfo{}
	for _, c := range []hsmapi.Curve{hsmapi.CurveP256, hsmapi.CurveP384, hsmapi.CurveP521} {
		ecKeys[c] = generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: c})
	}
	pubOf := func(k hsmapi.KeyInfo) crypto.PublicKey {
		p, err := hsmapi.ParsePublicKey(k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	rsaPub := pubOf(rsaKey).(*rsa.PublicKey)
	msg := []byte("a message of some length, signed through the PKCS#11 module")

	type tc struct {
		name  string
		key   hsmapi.KeyInfo
		mech  Mechanism
		data  []byte
		check func(sig []byte) error
		// deterministic: signing twice gives the same bytes.
		deterministic, multi bool
	}
	var cases []tc
	for _, c := range []struct {
		mech uint
		h    crypto.Hash
	}{{MechSHA1RSAPKCS, crypto.SHA1}, {MechSHA224RSAPKCS, crypto.SHA224}, {MechSHA256RSAPKCS, crypto.SHA256}, {MechSHA384RSAPKCS, crypto.SHA384}, {MechSHA512RSAPKCS, crypto.SHA512}} {
		cases = append(cases, tc{fmt.Sprintf("%v RSA PKCS", c.h), rsaKey, Mechanism{Type: c.mech}, msg,
			func(sig []byte) error { return rsa.VerifyPKCS1v15(rsaPub, c.h, hashOf(c.h, msg), sig) }, true, true})
	}
	di, err := sigder.DigestInfo(crypto.SHA256, hashOf(crypto.SHA256, msg))
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, tc{"RSA PKCS raw DigestInfo", rsaKey, Mechanism{Type: MechRSAPKCS}, di,
		func(sig []byte) error {
			return rsa.VerifyPKCS1v15(rsaPub, crypto.SHA256, hashOf(crypto.SHA256, msg), sig)
		}, true, false})
	cases = append(cases, tc{"RSA PKCS raw data", rsaKey, Mechanism{Type: MechRSAPKCS}, msg[:20],
		func(sig []byte) error { return rsa.VerifyPKCS1v15(rsaPub, 0, msg[:20], sig) }, true, false})
	for _, c := range []struct {
		mech uint
		h    crypto.Hash
	}{{MechSHA1RSAPKCSPSS, crypto.SHA1}, {MechSHA224RSAPKCSPSS, crypto.SHA224}, {MechSHA256RSAPKCSPSS, crypto.SHA256}, {MechSHA384RSAPKCSPSS, crypto.SHA384}, {MechSHA512RSAPKCSPSS, crypto.SHA512}} {
		cases = append(cases, tc{fmt.Sprintf("%v RSA PSS", c.h), rsaKey, Mechanism{Type: c.mech, PSS: pss(c.h, uint(c.h.Size()))}, msg,
			func(sig []byte) error {
				return rsa.VerifyPSS(rsaPub, c.h, hashOf(c.h, msg), sig, &rsa.PSSOptions{SaltLength: c.h.Size()})
			}, false, true})
	}
	cases = append(cases, tc{"RSA PSS raw, salt 20", rsaKey, Mechanism{Type: MechRSAPKCSPSS, PSS: pss(crypto.SHA384, 20)}, hashOf(crypto.SHA384, msg),
		func(sig []byte) error {
			return rsa.VerifyPSS(rsaPub, crypto.SHA384, hashOf(crypto.SHA384, msg), sig, &rsa.PSSOptions{SaltLength: 20})
		}, false, false})
	for curve, k := range ecKeys {
		pub := pubOf(k).(*ecdsa.PublicKey)
		for _, c := range []struct {
			mech uint
			h    crypto.Hash
		}{{MechECDSASHA1, crypto.SHA1}, {MechECDSASHA224, crypto.SHA224}, {MechECDSASHA256, crypto.SHA256}, {MechECDSASHA384, crypto.SHA384}, {MechECDSASHA512, crypto.SHA512}} {
			cases = append(cases, tc{fmt.Sprintf("%v ECDSA %v", curve, c.h), k, Mechanism{Type: c.mech}, msg,
				func(sig []byte) error {
					if !ecdsaOK(pub, hashOf(c.h, msg), sig) {
						return fmt.Errorf("crypto/ecdsa refuses it")
					}
					return nil
				}, false, true})
		}
		cases = append(cases, tc{fmt.Sprintf("%v ECDSA raw", curve), k, Mechanism{Type: MechECDSA}, hashOf(crypto.SHA256, msg),
			func(sig []byte) error {
				if !ecdsaOK(pub, hashOf(crypto.SHA256, msg), sig) {
					return fmt.Errorf("crypto/ecdsa refuses it")
				}
				return nil
			}, false, false})
	}
	hssPub := pubOf(hssKey).(*hashsig.PublicKey)
	cases = append(cases, tc{"HSS", hssKey, Mechanism{Type: MechHSS}, msg,
		func(sig []byte) error { return hssPub.Verify(msg, sig) }, false, true})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			priv, pub := objectsOf(t, m, h, c.key.UUID)
			sig := sign(t, m, h, c.mech, priv, c.data)
			if err := c.check(sig); err != nil {
				t.Fatalf("the signature does not verify outside the module: %v", err)
			}
			if rv := verify(m, h, c.mech, pub, c.data, sig); rv != OK {
				t.Fatalf("C_Verify: %#x", rv)
			}
			for _, at := range []int{0, len(sig) / 2, len(sig) - 1} {
				bad := bytes.Clone(sig)
				bad[at] ^= 0x01
				if rv := verify(m, h, c.mech, pub, c.data, bad); rv != SignatureInvalid {
					t.Fatalf("C_Verify of a signature with byte %d flipped: %#x", at, rv)
				}
			}
			if rv := verify(m, h, c.mech, pub, c.data, sig[:len(sig)-1]); rv != SignatureLenRange {
				t.Fatalf("C_Verify of a short signature: %#x", rv)
			}
			if !c.multi {
				return
			}
			parts := signParts(t, m, h, c.mech, priv, c.data)
			if err := c.check(parts); err != nil {
				t.Fatalf("the signature made in parts does not verify: %v", err)
			}
			if c.deterministic && !bytes.Equal(parts, sig) {
				t.Fatal("signed in parts and in one part: different signatures")
			}
			if rv := verifyParts(m, h, c.mech, pub, c.data, sig); rv != OK {
				t.Fatalf("C_VerifyUpdate/Final: %#x", rv)
			}
			sig[0] ^= 1
			if rv := verifyParts(m, h, c.mech, pub, c.data, sig); rv != SignatureInvalid {
				t.Fatalf("C_VerifyUpdate/Final of a flipped signature: %#x", rv)
			}
		})
	}
}

// remaining is how many signatures an HSS key has left.
func remaining(t *testing.T, m *Module, id hsmapi.UUID) uint64 {
	t.Helper()
	k, err := tokenOf(m).Key(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return k.Hashsig.Remaining
}

// The length protocol: a query and a buffer too small leave the operation
// active and make nothing (an HSS key keeps its one-time keys); the call
// that delivers ends it.
func TestSignLengthProtocol(t *testing.T) {
	m, h := loggedIn(t)
	hss := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate,
		Levels: []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}})
	ec := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384})
	for _, c := range []struct {
		key  hsmapi.KeyInfo
		mech uint
		want int
	}{
		{hss, MechHSS, 4 + 4 + (4 + 32*35) + 4 + 5*32},
		{ec, MechECDSASHA256, 96},
	} {
		priv, _ := objectsOf(t, m, h, c.key.UUID)
		left := remaining(t, m, hss.UUID)
		for _, final := range []bool{false, true} {
			if rv := m.SignInit(h, Mechanism{Type: c.mech}, priv); rv != OK {
				t.Fatal(rv)
			}
			call := func(o Output) ([]byte, int, RV) {
				if final {
					return m.SignFinal(h, o)
				}
				return m.Sign(h, []byte("data"), o)
			}
			if final {
				if rv := m.SignUpdate(h, []byte("data")); rv != OK {
					t.Fatal(rv)
				}
			}
			if _, n, rv := call(Output{Query: true}); rv != OK || n != c.want {
				t.Fatalf("%#x: length %d %#x, want %d", c.mech, n, rv, c.want)
			}
			if _, n, rv := call(Output{Room: c.want - 1}); rv != BufferTooSmall || n != c.want {
				t.Fatalf("%#x: too small: %d %#x", c.mech, n, rv)
			}
			if got := remaining(t, m, hss.UUID); got != left {
				t.Fatalf("asking the length spent HSS signatures: %d left, had %d", got, left)
			}
			sig, n, rv := call(Output{Room: c.want + 10})
			if rv != OK || n != c.want || len(sig) != c.want {
				t.Fatalf("%#x: sign: %d bytes, %#x", c.mech, n, rv)
			}
			if _, _, rv := call(Output{Room: c.want}); rv != OperationNotInitialized {
				t.Fatalf("%#x: the operation outlived its signature: %#x", c.mech, rv)
			}
			if c.mech == MechHSS {
				left--
				if got := remaining(t, m, hss.UUID); got != left {
					t.Fatalf("one signature: %d left, want %d", got, left)
				}
			}
		}
	}
}

// What the specification refuses, refused with its return value.
func TestSignBadInput(t *testing.T) {
	m, h := loggedIn(t)
	rsaKey := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048})
	ec := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256})
	wrapOnly := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken})
	rsaPriv, rsaPub := objectsOf(t, m, h, rsaKey.UUID)
	ecPriv, ecPub := objectsOf(t, m, h, ec.UUID)
	wrapPriv, wrapPub := objectsOf(t, m, h, wrapOnly.UUID)

	initCases := []struct {
		name   string
		verify bool
		mech   Mechanism
		key    uint
		want   RV
	}{
		{"unknown mechanism", false, Mechanism{Type: 0x80000001}, ecPriv, MechanismInvalid},
		{"digest mechanism", false, Mechanism{Type: MechSHA256}, ecPriv, MechanismInvalid},
		{"no such key", false, Mechanism{Type: MechECDSA}, 1 << 30, KeyHandleInvalid},
		{"sign with a public key", false, Mechanism{Type: MechECDSA}, ecPub, KeyFunctionNotPermitted},
		{"verify with a private key", true, Mechanism{Type: MechECDSA}, ecPriv, KeyFunctionNotPermitted},
		{"EC key, RSA mechanism", false, Mechanism{Type: MechSHA256RSAPKCS}, ecPriv, KeyTypeInconsistent},
		{"RSA key, ECDSA", true, Mechanism{Type: MechECDSASHA256}, rsaPub, KeyTypeInconsistent},
		{"key without digitalsignature", false, Mechanism{Type: MechECDSA}, wrapPriv, KeyFunctionNotPermitted},
		{"verify, key without digitalsignature", true, Mechanism{Type: MechECDSA}, wrapPub, KeyFunctionNotPermitted},
		{"parameter to ECDSA", false, Mechanism{Type: MechECDSA, Param: []byte{1}}, ecPriv, MechanismParamInvalid},
		{"PSS without parameters", false, Mechanism{Type: MechRSAPKCSPSS}, rsaPriv, MechanismParamInvalid},
		{"PSS parameters of the wrong size", false, Mechanism{Type: MechRSAPKCSPSS, Param: []byte{1, 2, 3}}, rsaPriv, MechanismParamInvalid},
		{"PSS hash other than the mechanism's", false, Mechanism{Type: MechSHA256RSAPKCSPSS, PSS: pss(crypto.SHA384, 32)}, rsaPriv, MechanismParamInvalid},
		{"PSS hash not a digest", false, Mechanism{Type: MechRSAPKCSPSS, PSS: &PSSParams{Hash: MechECDSA, MGF: 2, SaltLen: 32}}, rsaPriv, MechanismParamInvalid},
		{"PSS MGF of another hash", true, Mechanism{Type: MechSHA256RSAPKCSPSS, PSS: &PSSParams{Hash: MechSHA256, MGF: mgf1[crypto.SHA1], SaltLen: 32}}, rsaPub, MechanismParamInvalid},
		{"PSS without salt", false, Mechanism{Type: MechSHA256RSAPKCSPSS, PSS: pss(crypto.SHA256, 0)}, rsaPriv, MechanismParamInvalid},
		{"PSS salt too long", false, Mechanism{Type: MechSHA256RSAPKCSPSS, PSS: pss(crypto.SHA256, 256-32-1)}, rsaPriv, MechanismParamInvalid},
	}
	for _, c := range initCases {
		init := m.SignInit
		if c.verify {
			init = m.VerifyInit
		}
		if rv := init(h, c.mech, c.key); rv != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, rv, c.want)
		}
		// Nothing was begun.
		if _, _, rv := m.Sign(h, []byte("x"), Output{Query: true}); rv != OperationNotInitialized {
			t.Fatalf("%s: a sign operation is active: %#x", c.name, rv)
		}
		if rv := m.Verify(h, []byte("x"), []byte("x")); rv != OperationNotInitialized {
			t.Fatalf("%s: a verify operation is active: %#x", c.name, rv)
		}
	}

	// One operation of a kind at a time.
	if rv := m.SignInit(h, Mechanism{Type: MechECDSA}, ecPriv); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.SignInit(h, Mechanism{Type: MechECDSA}, ecPriv); rv != OperationActive {
		t.Fatalf("second SignInit: %#x", rv)
	}
	// A raw mechanism takes one part only; the failure ends it.
	if rv := m.SignUpdate(h, []byte("x")); rv != FunctionNotSupported {
		t.Fatalf("SignUpdate of CKM_ECDSA: %#x", rv)
	}
	if _, _, rv := m.Sign(h, []byte("x"), Output{Query: true}); rv != OperationNotInitialized {
		t.Fatalf("after a failed SignUpdate: %#x", rv)
	}

	// Input of the wrong length ends the operation.
	for _, c := range []struct {
		mech Mechanism
		key  uint
		data []byte
	}{
		{Mechanism{Type: MechRSAPKCS}, rsaPriv, make([]byte, 256-10)},
		{Mechanism{Type: MechRSAPKCSPSS, PSS: pss(crypto.SHA256, 32)}, rsaPriv, make([]byte, 31)},
		{Mechanism{Type: MechECDSA}, ecPriv, nil},
		{Mechanism{Type: MechECDSA}, ecPriv, make([]byte, 65)},
	} {
		if rv := m.SignInit(h, c.mech, c.key); rv != OK {
			t.Fatal(rv)
		}
		if _, _, rv := m.Sign(h, c.data, Output{Room: 512}); rv != DataLenRange {
			t.Errorf("%#x with %d bytes: %#x", c.mech.Type, len(c.data), rv)
		}
		if _, _, rv := m.Sign(h, make([]byte, 32), Output{Room: 512}); rv != OperationNotInitialized {
			t.Errorf("%#x: a failed C_Sign left the operation active: %#x", c.mech.Type, rv)
		}
	}

	// C_Sign cannot finish what C_SignUpdate began.
	if rv := m.SignInit(h, Mechanism{Type: MechECDSASHA256}, ecPriv); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.SignUpdate(h, []byte("x")); rv != OK {
		t.Fatal(rv)
	}
	if _, _, rv := m.Sign(h, []byte("x"), Output{Room: 64}); rv != OperationActive {
		t.Fatalf("C_Sign after C_SignUpdate: %#x", rv)
	}

	// Logging out ends the operations; signing needs the login.
	if rv := m.SignInit(h, Mechanism{Type: MechECDSASHA256}, ecPriv); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.Logout(h); rv != OK {
		t.Fatal(rv)
	}
	if _, _, rv := m.Sign(h, []byte("x"), Output{Room: 64}); rv != OperationNotInitialized {
		t.Fatalf("C_Sign after logout: %#x", rv)
	}
	if rv := m.SignInit(h, Mechanism{Type: MechECDSASHA256}, ecPriv); rv != UserNotLoggedIn {
		t.Fatalf("SignInit logged out: %#x", rv)
	}
}

// Sessions signing at once, and two goroutines misusing one session: under
// -race, any operation state touched outside its lock shows; every
// signature made verifies.
func TestSignAcrossGoroutines(t *testing.T) {
	m, h := loggedIn(t)
	ec := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256})
	priv, pub := objectsOf(t, m, h, ec.UUID)
	mech := Mechanism{Type: MechECDSASHA256}
	msg := []byte("at once")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 4 {
		wg.Go(func() {
			s, rv := m.OpenSession(slotID, FlagSerialSession)
			if rv != OK {
				errs <- fmt.Errorf("goroutine %d: OpenSession: %#x", g, rv)
				return
			}
			defer m.CloseSession(s)
			for range 20 {
				if rv := m.SignInit(s, mech, priv); rv != OK {
					errs <- fmt.Errorf("goroutine %d: SignInit: %#x", g, rv)
					return
				}
				sig, _, rv := m.Sign(s, msg, Output{Room: 64})
				if rv != OK {
					errs <- fmt.Errorf("goroutine %d: Sign: %#x", g, rv)
					return
				}
				if rv := verify(m, s, mech, pub, msg, sig); rv != OK {
					errs <- fmt.Errorf("goroutine %d: Verify: %#x", g, rv)
				}
			}
		})
	}
	// Two goroutines on one session: each call either works or says the
	// operation is (not) there; nothing else.
	for g := range 2 {
		wg.Go(func() {
			for range 50 {
				switch rv := m.SignInit(h, mech, priv); rv {
				case OK, OperationActive:
				default:
					errs <- fmt.Errorf("shared %d: SignInit: %#x", g, rv)
				}
				switch rv := m.SignUpdate(h, msg); rv {
				case OK, OperationNotInitialized:
				default:
					errs <- fmt.Errorf("shared %d: SignUpdate: %#x", g, rv)
				}
				switch _, _, rv := m.SignFinal(h, Output{Room: 64}); rv {
				case OK, OperationNotInitialized:
				default:
					errs <- fmt.Errorf("shared %d: SignFinal: %#x", g, rv)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// An HSS key signs as many times as it has one-time keys, then refuses:
// CKR_KEY_EXHAUSTED, at C_SignInit once the module can tell.
func TestHSSExhausted(t *testing.T) {
	m, h := loggedIn(t)
	k := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate,
		Levels: []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}})
	priv, _ := objectsOf(t, m, h, k.UUID)
	for i := range 32 {
		sign(t, m, h, Mechanism{Type: MechHSS}, priv, fmt.Appendf(nil, "message %d", i))
	}
	if rv := m.SignInit(h, Mechanism{Type: MechHSS}, priv); rv != KeyExhausted {
		t.Fatalf("SignInit with no signature left: %#x", rv)
	}
}
