package cryptoki

import (
	"context"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// BenchmarkSignECDSA is C_SignInit and C_Sign on a P-256 key without the
// C boundary: what the module adds to the HSM's own signing.
func BenchmarkSignECDSA(b *testing.B) {
	m, h := moduleOn(b, newHSM(b))
	k, err := tokenOf(m).GenerateKey(context.Background(), hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature})
	if err != nil {
		b.Fatal(err)
	}
	priv, _ := objectsOf(b, m, h, k.UUID)
	digest := make([]byte, 32)
	for b.Loop() {
		if rv := m.SignInit(h, Mechanism{Type: MechECDSA}, priv); rv != OK {
			b.Fatal(rv)
		}
		if _, _, rv := m.Sign(h, digest, Output{Room: 64}); rv != OK {
			b.Fatal(rv)
		}
	}
}
