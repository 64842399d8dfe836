package hsm

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/testvectors"
)

// Wycheproof's signature verification cases, run through VerifySignature:
// the verification every backend's Verify and the CLI's checks share.

// sigGroup is the part of a group of Wycheproof's ecdsa_verify,
// rsassa_pkcs1_verify and rsassa_pss_verify schemas that the tests read.
type sigGroup struct {
	PublicKeyDer testvectors.Hex // SubjectPublicKeyInfo
	Sha          string
	MgfSha       string // PSS only
	SLen         int    // PSS only
	Tests        []struct {
		testvectors.Case
		Msg, Sig testvectors.Hex
	}
}

// runSignatures runs every case of a Wycheproof signature file: a case that
// must pass verifies, any other fails with exactly ErrInvalidSignature.
// opts gives the options a group's signatures are verified with.
func runSignatures(t *testing.T, file, schema string, opts func(sigGroup) crypto.SignerOpts, acceptable map[string]bool) {
	f := testvectors.Load[sigGroup](t, file, schema)
	var n testvectors.Tally
	for _, g := range f.TestGroups {
		h := testvectors.Hash(t, g.Sha)
		o := opts(g)
		if o.HashFunc() != h {
			t.Fatalf("%s: options hash with %v, the group with %v", file, o.HashFunc(), h)
		}
		for _, tc := range g.Tests {
			n.Add(tc.Case)
			err := hsmapi.VerifySignature(g.PublicKeyDer, testvectors.Digest(h, tc.Msg), tc.Sig, o)
			if testvectors.Expect(t, tc.Result, tc.Flags, acceptable) {
				if err != nil {
					t.Errorf("%s: %v: %v", file, tc.Case, err)
				}
			} else if !errors.Is(err, hsmapi.ErrInvalidSignature) {
				t.Errorf("%s: %v: got %v, want %v", file, tc.Case, err, hsmapi.ErrInvalidSignature)
			}
		}
	}
	n.Check(t, file, f.NumberOfTests)
}

// hashOpts verifies with the group's hash alone: ECDSA, and RSA with
// PKCS#1 v1.5.
func hashOpts(t *testing.T) func(sigGroup) crypto.SignerOpts {
	return func(g sigGroup) crypto.SignerOpts { return testvectors.Hash(t, g.Sha) }
}

// TestECDSAWycheproof: ASN.1 DER signatures, as Token.Sign makes them, on
// the three curves the HSM has, with the hashes Wycheproof pairs them with.
func TestECDSAWycheproof(t *testing.T) {
	for _, file := range testvectors.ECDSAFiles {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			runSignatures(t, file, "ecdsa_verify_schema_v1.json", hashOpts(t), nil)
		})
	}
}

// TestRSAPKCS1v15Wycheproof: RSASSA-PKCS1-v1_5 at 2048, 3072 and 4096 bits
// with every hash of the HSM's that Wycheproof has files for.
func TestRSAPKCS1v15Wycheproof(t *testing.T) {
	for _, file := range []string{
		"rsa_signature_2048_sha224_test.json",
		"rsa_signature_2048_sha256_test.json",
		"rsa_signature_2048_sha384_test.json",
		"rsa_signature_2048_sha512_test.json",
		"rsa_signature_2048_sha512_224_test.json",
		"rsa_signature_2048_sha512_256_test.json",
		"rsa_signature_3072_sha256_test.json",
		"rsa_signature_3072_sha384_test.json",
		"rsa_signature_3072_sha512_test.json",
		"rsa_signature_3072_sha512_256_test.json",
		"rsa_signature_4096_sha256_test.json",
		"rsa_signature_4096_sha384_test.json",
		"rsa_signature_4096_sha512_test.json",
		"rsa_signature_4096_sha512_256_test.json",
	} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			runSignatures(t, file, "rsassa_pkcs1_verify_schema_v1.json", hashOpts(t), map[string]bool{
				// A DigestInfo whose AlgorithmIdentifier leaves out the
				// NULL parameters. RFC 8017 section 9.2 note 1 allows
				// accepting it; the HSM, like crypto/rsa and libhal's
				// comparison with the DigestInfo it builds itself, takes
				// only the encoding with NULL.
				"MissingNull": false,
			})
		})
	}
}

// TestRSAPSSWycheproof: RSASSA-PSS with MGF1 of the message hash (the only
// MGF crypto/rsa has) and the salt length each file gives. Not run:
// rsa_pss_2048_sha256_mgf1_0_test.json, because a salt length of 0 in
// rsa.PSSOptions means "any length" (PSSSaltLengthAuto), so "exactly 0"
// cannot be asked for; the *_params files, whose keys are id-RSASSA-PSS
// keys, which the HSM does not hold; and the files whose MGF1 hash or hash
// the HSM does not have.
func TestRSAPSSWycheproof(t *testing.T) {
	for _, file := range []string{
		"rsa_pss_2048_sha1_mgf1_20_test.json",
		"rsa_pss_2048_sha256_mgf1_32_test.json",
		"rsa_pss_2048_sha384_mgf1_48_test.json",
		"rsa_pss_2048_sha512_224_mgf1_28_test.json",
		"rsa_pss_2048_sha512_256_mgf1_32_test.json",
		"rsa_pss_3072_sha256_mgf1_32_test.json",
		"rsa_pss_4096_sha256_mgf1_32_test.json",
		"rsa_pss_4096_sha384_mgf1_48_test.json",
		"rsa_pss_4096_sha512_mgf1_32_test.json",
		"rsa_pss_4096_sha512_mgf1_64_test.json",
	} {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			runSignatures(t, file, "rsassa_pss_verify_schema_v1.json", func(g sigGroup) crypto.SignerOpts {
				if g.MgfSha != g.Sha || g.SLen <= 0 {
					t.Fatalf("%s: MGF1 with %s for %s, salt of %d bytes: not a group this test can run", file, g.MgfSha, g.Sha, g.SLen)
				}
				return &rsa.PSSOptions{SaltLength: g.SLen, Hash: testvectors.Hash(t, g.Sha)}
			}, nil)
		})
	}
}
