package hsm

import (
	"crypto"
	"crypto/sha256"
	"slices"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// TestKeygenAttributesSurvivePowerCutAtEveryWrite cuts power at each flash
// write of a key generation that gives the key a label and attributes (as
// C_GenerateKeyPair does): afterwards there is no key, or the key with its
// label and every attribute, and it signs. Never a key without them, which
// an application finding keys by CKA_ID would never find again.
func TestKeygenAttributesSurvivePowerCutAtEveryWrite(t *testing.T) {
	base, _ := newTestHSM(t)
	attrs := []hsmapi.Attribute{
		{Type: hsmapi.CKAID, Value: []byte("application key 1")},
		{Type: hsmapi.CKASign, Value: []byte{1}},
		{Type: hsmapi.AttributePublicObject, Value: hsmapi.EncodeAttributes([]hsmapi.Attribute{
			{Type: hsmapi.CKAID, Value: []byte("application key 1")}, {Type: hsmapi.CKAVerify, Value: []byte{1}}})},
	}
	req := hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags, Label: "cut", Attributes: attrs}
	eachPowerCut(t, "keygen", base, func(s *Session) error {
		_, err := s.GenerateKey(ctx, req)
		return err
	}, func(c powerCut) {
		keys, err := c.s.Keys(ctx, hsmapi.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		switch len(keys) {
		case 0:
			if c.h.ks.Free() != c.free {
				t.Errorf("%s: no key, and %d free blocks of %d before", c.name, c.h.ks.Free(), c.free)
			}
		case 1:
			k := keys[0]
			got, err := c.s.KeyAttributes(ctx, k.UUID)
			if err != nil {
				t.Fatal(err)
			}
			if k.Label != "cut" || !slices.EqualFunc(got, attrs, func(a, b hsmapi.Attribute) bool { return a.Type == b.Type && string(a.Value) == string(b.Value) }) {
				t.Errorf("%s: the key came back with label %q and attributes %v", c.name, k.Label, got)
			}
			digest := sha256.Sum256([]byte("after the cut"))
			sig, err := c.s.Sign(ctx, k.UUID, digest[:], crypto.SHA256)
			if err == nil {
				err = hsmapi.VerifySignature(k.PublicKey, digest[:], sig, crypto.SHA256)
			}
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
		default:
			t.Errorf("%s: %d keys", c.name, len(keys))
		}
		if c.last && len(keys) != 1 {
			t.Errorf("%s (after the last write): key lost", c.name)
		}
	})
}
