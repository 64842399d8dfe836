package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/p11module"
	"github.com/hsmkit/cryptech-backup/internal/testtool"
)

// pkcs11-tool makes keys on the module and signs with them; OpenSSL
// verifies each signature under the public key pkcs11-tool reads off the
// module, and refuses it with a byte flipped; pkcs11-tool's own --verify
// (C_Verify in the module) agrees both ways.
func TestPKCS11ToolSignsOpenSSLVerifies(t *testing.T) {
	tool := testtool.Require(t, "pkcs11-tool", "opensc")
	openssl := testtool.Require(t, "openssl", "openssl")
	lib := buildModule(t)
	newHSM(t)
	dir := t.TempDir()
	pin := string(hsmtest.PIN)
	run := func(name string, args ...string) (string, error) {
		out, err := exec.Command(name, args...).CombinedOutput()
		return string(out), err
	}
	p11 := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := run(tool, append([]string{"--module", lib, "--login", "--pin", pin}, args...)...)
		if err != nil {
			t.Fatalf("pkcs11-tool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, bytes.Repeat([]byte("signed by pkcs11-tool through the module\n"), 50), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id, keyType, mech string
		// verify are openssl dgst's arguments besides the key and files.
		verify []string
		extra  []string
	}{
		{"01", "EC:prime256v1", "ECDSA-SHA256", []string{"-sha256"}, []string{"--signature-format", "openssl"}},
		// (pkcs11-tool of OpenSC 0.23 cannot read a P-384 public key off
		// any module, SoftHSM2's included: "cannot create EVP_PKEY".)
		{"02", "EC:secp521r1", "ECDSA-SHA512", []string{"-sha512"}, []string{"--signature-format", "openssl"}},
		{"03", "rsa:2048", "SHA256-RSA-PKCS", []string{"-sha256"}, nil},
		{"03", "", "SHA512-RSA-PKCS-PSS", []string{"-sha512", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:64"},
			[]string{"--mgf", "MGF1-SHA512"}},
	} {
		t.Run(c.mech, func(t *testing.T) {
			if c.keyType != "" {
				p11(t, "--keypairgen", "--key-type", c.keyType, "--id", c.id, "--label", "key-"+c.id)
			}
			pubDER := filepath.Join(dir, c.id+".der")
			p11(t, "--read-object", "--type", "pubkey", "--id", c.id, "--output-file", pubDER)
			pubPEM := filepath.Join(dir, c.id+".pem")
			if out, err := run(openssl, "pkey", "-pubin", "-inform", "DER", "-in", pubDER, "-out", pubPEM); err != nil {
				t.Fatalf("openssl pkey: %v\n%s", err, out)
			}
			sig := filepath.Join(dir, c.mech+".sig")
			p11(t, append([]string{"--sign", "--mechanism", c.mech, "--id", c.id, "--input-file", in, "--output-file", sig}, c.extra...)...)
			verify := func(sigFile string) (string, error) {
				return run(openssl, append(append([]string{"dgst"}, c.verify...), "-verify", pubPEM, "-signature", sigFile, in)...)
			}
			if out, err := verify(sig); err != nil || !strings.Contains(out, "Verified OK") {
				t.Fatalf("openssl does not verify the module's signature: %v\n%s", err, out)
			}
			p11(t, append([]string{"--verify", "--mechanism", c.mech, "--id", c.id, "--input-file", in, "--signature-file", sig}, c.extra...)...)

			b, err := os.ReadFile(sig)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-1] ^= 1
			bad := filepath.Join(dir, c.mech+".bad")
			if err := os.WriteFile(bad, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := verify(bad); err == nil {
				t.Fatalf("openssl verifies a flipped signature:\n%s", out)
			}
			out, err := run(tool, append([]string{"--module", lib, "--login", "--pin", pin, "--verify", "--mechanism", c.mech,
				"--id", c.id, "--input-file", in, "--signature-file", bad}, c.extra...)...)
			if err == nil && !strings.Contains(out, "Invalid signature") {
				t.Fatalf("pkcs11-tool --verify accepts a flipped signature:\n%s", out)
			}
		})
	}
	// (pkcs11-tool --test: TestPKCS11ToolTest.)
}

// Through the built module with miekg/pkcs11: single and multi-part
// signatures verify with crypto/*, digests equal crypto/sha*'s, random
// bytes come, and the token says it has an RNG.
func TestModuleSignDigestRandom(t *testing.T) {
	p, s := loggedInModule(t)
	ti, err := p.GetTokenInfo(0)
	if err != nil || ti.Flags&pkcs11.CKF_RNG == 0 {
		t.Fatalf("token info: flags %#x, %v", ti.Flags, err)
	}
	r, err := p.GenerateRandom(s, 40000)
	if err != nil || len(r) != 40000 || bytes.Equal(r[39968:], make([]byte, 32)) {
		t.Fatalf("GenerateRandom: %d bytes, %v", len(r), err)
	}
	wantErr(t, "SeedRandom", p.SeedRandom(s, []byte("seed")), pkcs11.CKR_RANDOM_SEED_NOT_SUPPORTED)

	msg := bytes.Repeat([]byte("through the module "), 100)
	if err := p.DigestInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_SHA384, nil)}); err != nil {
		t.Fatal(err)
	}
	if err := p.DigestUpdate(s, msg[:100]); err != nil {
		t.Fatal(err)
	}
	if err := p.DigestUpdate(s, msg[100:]); err != nil {
		t.Fatal(err)
	}
	d, err := p.DigestFinal(s)
	if want := sha512.Sum384(msg); err != nil || !bytes.Equal(d, want[:]) {
		t.Fatalf("SHA-384 in parts: %x %v", d, err)
	}

	ecPub, ecPriv := keyPair(t, p, s, pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS,
		[]byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}))
	rsaPub, rsaPriv := keyPair(t, p, s, pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, 2048),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}))
	ec := publicKey(t, p, s, ecPub).(*ecdsa.PublicKey)
	rk := publicKey(t, p, s, rsaPub).(*rsa.PublicKey)
	h := sha256.Sum256(msg)
	for _, c := range []struct {
		name      string
		mech      *pkcs11.Mechanism
		priv, pub pkcs11.ObjectHandle
		check     func([]byte) bool
	}{
		{"ECDSA-SHA256", pkcs11.NewMechanism(pkcs11.CKM_ECDSA_SHA256, nil), ecPriv, ecPub, func(sig []byte) bool {
			return len(sig) == 64 && ecdsa.Verify(ec, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
		}},
		{"SHA256-RSA-PKCS-PSS", pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS_PSS, pkcs11.NewPSSParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, 32)), rsaPriv, rsaPub,
			func(sig []byte) bool {
				return rsa.VerifyPSS(rk, crypto.SHA256, h[:], sig, &rsa.PSSOptions{SaltLength: 32}) == nil
			}},
		{"SHA256-RSA-PKCS", pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS, nil), rsaPriv, rsaPub, func(sig []byte) bool {
			return rsa.VerifyPKCS1v15(rk, crypto.SHA256, h[:], sig) == nil
		}},
	} {
		m := []*pkcs11.Mechanism{c.mech}
		if err := p.SignInit(s, m, c.priv); err != nil {
			t.Fatalf("%s: SignInit: %v", c.name, err)
		}
		one, err := p.Sign(s, msg)
		if err != nil || !c.check(one) {
			t.Fatalf("%s: the signature does not verify: %v", c.name, err)
		}
		if err := p.SignInit(s, m, c.priv); err != nil {
			t.Fatal(err)
		}
		for _, part := range [][]byte{msg[:1], msg[1:500], msg[500:]} {
			if err := p.SignUpdate(s, part); err != nil {
				t.Fatalf("%s: SignUpdate: %v", c.name, err)
			}
		}
		parts, err := p.SignFinal(s)
		if err != nil || !c.check(parts) {
			t.Fatalf("%s: the signature in parts does not verify: %v", c.name, err)
		}
		if err := p.VerifyInit(s, m, c.pub); err != nil {
			t.Fatal(err)
		}
		if err := p.Verify(s, msg, one); err != nil {
			t.Fatalf("%s: C_Verify: %v", c.name, err)
		}
		one[3] ^= 1
		if err := p.VerifyInit(s, m, c.pub); err != nil {
			t.Fatal(err)
		}
		wantErr(t, c.name+": C_Verify of a flipped signature", p.Verify(s, msg, one), pkcs11.CKR_SIGNATURE_INVALID)
	}
	// PSS parameters that disagree with the mechanism, through C.
	bad := pkcs11.NewMechanism(pkcs11.CKM_SHA256_RSA_PKCS_PSS, pkcs11.NewPSSParams(pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512, 32))
	wantErr(t, "PSS with another hash", p.SignInit(s, []*pkcs11.Mechanism{bad}, rsaPriv), pkcs11.CKR_MECHANISM_PARAM_INVALID)
}

// loggedInModule loads the built module on a new emulated HSM and opens a
// R/W session logged in as the user; cleanup finalizes and unloads it.
func loggedInModule(t *testing.T) (*pkcs11.Ctx, pkcs11.SessionHandle) {
	t.Helper()
	newHSM(t)
	return loggedIn(t)
}

// loggedInModuleOverRPC is loggedInModule with the HSM behind an RPC
// server in this process.
func loggedInModuleOverRPC(t *testing.T) (*pkcs11.Ctx, pkcs11.SessionHandle) {
	t.Helper()
	serveHSM(t, p11module.NewHSM(t))
	return loggedIn(t)
}

// loggedIn loads the built module on the HSM the environment names and
// opens a R/W session logged in as the user.
func loggedIn(t *testing.T) (*pkcs11.Ctx, pkcs11.SessionHandle) {
	t.Helper()
	lib := buildModule(t)
	p := pkcs11.New(lib)
	if p == nil {
		t.Fatal("pkcs11.New failed")
	}
	t.Cleanup(p.Destroy)
	if err := p.Initialize(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Finalize() })
	s, err := p.OpenSession(0, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Login(s, pkcs11.CKU_USER, string(hsmtest.PIN)); err != nil {
		t.Fatal(err)
	}
	return p, s
}

func keyPair(t *testing.T, p *pkcs11.Ctx, s pkcs11.SessionHandle, mech uint, pub ...*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle) {
	t.Helper()
	pub = append(pub, pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true))
	priv := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true)}
	pk, sk, err := p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pub, priv)
	if err != nil {
		t.Fatalf("GenerateKeyPair: %v", err)
	}
	return pk, sk
}

// publicKey reads a public key object's CKA_PUBLIC_KEY_INFO.
func publicKey(t *testing.T, p *pkcs11.Ctx, s pkcs11.SessionHandle, o pkcs11.ObjectHandle) crypto.PublicKey {
	t.Helper()
	attrs, err := p.GetAttributeValue(s, o, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_KEY_INFO, nil)})
	if err != nil {
		t.Fatalf("CKA_PUBLIC_KEY_INFO: %v", err)
	}
	pub, err := x509.ParsePKIXPublicKey(attrs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// HSS through the module: a length query spends no one-time key (miekg's
// Sign asks the length first, and each signature costs exactly one), in
// one part and in several; the signatures verify under the public key
// read off the module (CKA_VALUE, RFC 8554).
func TestModuleHSS(t *testing.T) {
	p, s := loggedInModule(t)
	const (
		mechHSSKeyGen     = 0x4032
		mechHSS           = 0x4033
		attrLevels        = 0x617
		attrLMSTypes      = 0x61A
		attrLMOTSTypes    = 0x61B
		attrKeysRemaining = 0x61C
	)
	ulongs := func(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }
	pub, priv, err := p.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mechHSSKeyGen, nil)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true)},
		[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false), pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(attrLevels, 1),
			pkcs11.NewAttribute(attrLMSTypes, ulongs(uint64(hashsig.LMS_SHA256_M32_H5))),
			pkcs11.NewAttribute(attrLMOTSTypes, ulongs(uint64(hashsig.LMOTS_SHA256_N32_W8)))})
	if err != nil {
		t.Fatalf("generate an HSS key: %v", err)
	}
	remaining := func() uint64 {
		t.Helper()
		a, err := p.GetAttributeValue(s, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(attrKeysRemaining, nil)})
		if err != nil || len(a[0].Value) != 8 {
			t.Fatalf("CKA_HSS_KEYS_REMAINING: %v", err)
		}
		return binary.NativeEndian.Uint64(a[0].Value)
	}
	a, err := p.GetAttributeValue(s, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		t.Fatal(err)
	}
	pk, err := hashsig.ParsePublicKey(a[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	m := []*pkcs11.Mechanism{pkcs11.NewMechanism(mechHSS, nil)}
	msg := bytes.Repeat([]byte("HSS through the module "), 40)
	before := remaining()
	if err := p.SignInit(s, m, priv); err != nil {
		t.Fatal(err)
	}
	one, err := p.Sign(s, msg)
	if err != nil || pk.Verify(msg, one) != nil {
		t.Fatalf("HSS in one part: %v", err)
	}
	if err := p.SignInit(s, m, priv); err != nil {
		t.Fatal(err)
	}
	for _, part := range [][]byte{msg[:10], msg[10:]} {
		if err := p.SignUpdate(s, part); err != nil {
			t.Fatal(err)
		}
	}
	parts, err := p.SignFinal(s)
	if err != nil || pk.Verify(msg, parts) != nil {
		t.Fatalf("HSS in parts: %v", err)
	}
	if got := remaining(); got != before-2 {
		t.Fatalf("two signatures took %d one-time keys", before-got)
	}
	if err := p.VerifyInit(s, m, pub); err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(s, msg, parts); err != nil {
		t.Fatalf("C_Verify: %v", err)
	}
	parts[len(parts)-1] ^= 1
	if err := p.VerifyInit(s, m, pub); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "C_Verify of a flipped HSS signature", p.Verify(s, msg, parts), pkcs11.CKR_SIGNATURE_INVALID)
}
