package cryptoki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"testing"
)

// A bare P-256 point whose X starts 0x3F also reads as a DER OCTET STRING
// of 63 bytes; it must still be taken as the point (this failed one
// TestCreateObject run in 256 before ecPoint).
func TestECPointAmbiguous(t *testing.T) {
	var k *ecdsa.PrivateKey
	for {
		var err error
		if k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
		if raw, _ := k.PublicKey.Bytes(); raw[1] == 0x3F {
			break
		}
	}
	raw, _ := k.PublicKey.Bytes()
	der, _ := asn1.Marshal(raw)
	for name, v := range map[string][]byte{"bare": raw, "DER": der} {
		p, ok := ecPoint(elliptic.P256(), v)
		if !ok || !p.Equal(&k.PublicKey) {
			t.Errorf("%s point %x: %v %v", name, v[:4], ok, p)
		}
	}
	if _, ok := ecPoint(elliptic.P256(), raw[:40]); ok {
		t.Error("a truncated point was taken")
	}
}
