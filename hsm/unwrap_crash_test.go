package hsm

import (
	"bytes"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// TestUnwrapAttributesSurvivePowerCutAtEveryWrite cuts power at each flash
// write of an unwrap that gives the key a label and the attributes of both
// its PKCS#11 objects (as the module's C_UnwrapKey does for a key pair
// arriving from another token, its public object not modifiable and
// private): afterwards there is no new key, or the key with its label and
// every attribute, and it signs as the original. Never a key whose public
// object lacks its attributes, which nothing could give it afterwards.
func TestUnwrapAttributesSurvivePowerCutAtEveryWrite(t *testing.T) {
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
	eachPowerCut(t, "unwrap with attributes", base, func(s *Session) error {
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
				got, err := c.s.KeyAttributes(ctx, k.UUID)
				if err != nil {
					t.Fatal(err)
				}
				if k.Label != "arrived" {
					t.Errorf("%s: the key came back with label %q", c.name, k.Label)
				}
				for _, a := range given {
					if v, ok := attributeIn(got, a.Type); !ok || !bytes.Equal(v, a.Value) {
						t.Errorf("%s: attribute 0x%x came back as %x (present %v), want %x", c.name, a.Type, v, ok, a.Value)
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

func attributeIn(attrs []hsmapi.Attribute, typ uint32) ([]byte, bool) {
	for _, a := range attrs {
		if a.Type == typ {
			return a.Value, true
		}
	}
	return nil, false
}
