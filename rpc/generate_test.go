package rpc

import (
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// TestGenerateWithAttributesOverRPC: libhal's generate takes no
// attributes, so the client sets them right after; a key the server will
// not give them is deleted again, never left without them.
func TestGenerateWithAttributesOverRPC(t *testing.T) {
	addr, _ := served(t)
	c := dialLogin(t, addr)
	id := hsmapi.Attribute{Type: hsmapi.CKAID, Value: []byte("app id")}
	k, err := c.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken, Label: "with attributes", Attributes: []hsmapi.Attribute{id}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.KeyAttributes(ctx, k.UUID)
	if err != nil || k.Label != "with attributes" || !hasAttribute(got, id) {
		t.Errorf("generated over RPC: label %q, attributes %v, %v", k.Label, got, err)
	}
	before, err := c.Keys(ctx, hsmapi.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	// CKA_EXTRACTABLE true without the exportable flag: the HSM refuses it.
	_, err = c.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken,
		Attributes: []hsmapi.Attribute{{Type: hsmapi.CKAExtractable, Value: []byte{1}}}})
	if err == nil {
		t.Error("attributes the HSM refuses: generated")
	}
	after, err := c.Keys(ctx, hsmapi.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("a key refused its attributes stayed: %d keys, %d before", len(after), len(before))
	}
}

func hasAttribute(list []hsmapi.Attribute, want hsmapi.Attribute) bool {
	for _, a := range list {
		if a.Type == want.Type && string(a.Value) == string(want.Value) {
			return true
		}
	}
	return false
}
