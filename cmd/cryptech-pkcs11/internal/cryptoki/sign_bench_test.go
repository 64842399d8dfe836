package cryptoki

import (
	"context"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// BenchmarkSignECDSA and BenchmarkSignRSA are C_SignInit and C_Sign on a
// P-256 and an RSA-2048 key without the C boundary: the HSM's own signing,
// and what the module adds to it.
func BenchmarkSignECDSA(b *testing.B) {
	benchSign(b, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256}, MechECDSA, 32)
}

func BenchmarkSignRSA(b *testing.B) {
	benchSign(b, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048}, MechRSAPKCS, 51)
}

func benchSign(b *testing.B, req hsmapi.GenerateRequest, mech uint, n int) {
	m, h := moduleOn(b, newHSM(b))
	req.Flags = hsmapi.FlagDigitalSignature
	k, err := tokenOf(m).GenerateKey(context.Background(), req)
	if err != nil {
		b.Fatal(err)
	}
	priv, _ := objectsOf(b, m, h, k.UUID)
	digest := make([]byte, n)
	for b.Loop() {
		if rv := m.SignInit(h, Mechanism{Type: mech}, priv); rv != OK {
			b.Fatal(rv)
		}
		if _, _, rv := m.Sign(h, digest, Output{Room: 512}); rv != OK {
			b.Fatal(rv)
		}
	}
}
