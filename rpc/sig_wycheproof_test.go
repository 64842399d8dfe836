package rpc

import (
	"crypto"
	"errors"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/testvectors"
)

// Wycheproof's ECDSA cases through the RPC face's signature conversions:
// a libhal client sends and receives r || s, Token.Verify takes DER.

// ecdsaGroup is the part of a group of Wycheproof's ecdsa_verify and
// ecdsa_p1363_verify schemas that the tests read.
type ecdsaGroup struct {
	PublicKey struct {
		Curve string
	}
	PublicKeyDer testvectors.Hex
	Sha          string
	Tests        []struct {
		testvectors.Case
		Msg, Sig testvectors.Hex
	}
}

// wycheproofCurve is the HSM's name of a Wycheproof curve.
func wycheproofCurve(t *testing.T, name string) hsmapi.Curve {
	t.Helper()
	c, ok := map[string]hsmapi.Curve{"secp256r1": hsmapi.CurveP256, "secp384r1": hsmapi.CurveP384, "secp521r1": hsmapi.CurveP521}[name]
	if !ok {
		t.Fatalf("curve %q is not one the HSM has", name)
	}
	return c
}

// runECDSA runs every case of a Wycheproof ECDSA file through verify, which
// gets the group's curve, the digest and the signature as the file has it,
// and must return nil for a case that must pass and an error wrapping
// hsmapi.ErrInvalidSignature for any other.
func runECDSA(t *testing.T, file, schema string, verify func(c hsmapi.Curve, spki, digest, sig []byte, h crypto.Hash) error) {
	f := testvectors.Load[ecdsaGroup](t, file, schema)
	var n testvectors.Tally
	for _, g := range f.TestGroups {
		c := wycheproofCurve(t, g.PublicKey.Curve)
		h := testvectors.Hash(t, g.Sha)
		for _, tc := range g.Tests {
			n.Add(tc.Case)
			err := verify(c, g.PublicKeyDer, testvectors.Digest(h, tc.Msg), tc.Sig, h)
			if testvectors.Expect(t, tc.Result, tc.Flags, nil) {
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

// TestECDSAP1363Wycheproof: r || s signatures, as PKEY_VERIFY receives them
// from a libhal client, converted as the server converts them and verified
// as the HSM verifies.
func TestECDSAP1363Wycheproof(t *testing.T) {
	for _, file := range testvectors.ECDSAP1363Files {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			runECDSA(t, file, "ecdsa_p1363_verify_schema_v1.json", func(c hsmapi.Curve, spki, digest, raw []byte, h crypto.Hash) error {
				der, err := ecdsaRawToDER(raw, curveSize(c))
				if err != nil {
					return err
				}
				return hsmapi.VerifySignature(spki, digest, der, h)
			})
		})
	}
}

// TestECDSADERWycheproof: DER signatures through both conversions, as
// Client.Verify sends them (DER to r || s for the key's curve) and the
// server hands them to the HSM (back to DER). What the client cannot
// convert is refused before it is sent, which is as good.
func TestECDSADERWycheproof(t *testing.T) {
	for _, file := range testvectors.ECDSAFiles {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			runECDSA(t, file, "ecdsa_verify_schema_v1.json", func(c hsmapi.Curve, spki, digest, der []byte, h crypto.Hash) error {
				raw, err := ecdsaDERToRaw(der, curveSize(c))
				if err != nil {
					return err
				}
				if der, err = ecdsaRawToDER(raw, curveSize(c)); err != nil {
					return err
				}
				return hsmapi.VerifySignature(spki, digest, der, h)
			})
		})
	}
}
