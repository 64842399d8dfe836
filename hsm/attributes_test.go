package hsm

import (
	"errors"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// rawLabel is a label no file or command line may give: not UTF-8, with a
// NUL, a newline and an escape sequence.
const rawLabel = "\xff\x00label\n\x1b[31m"

func TestAttributesPersistAndMatch(t *testing.T) {
	h, dir := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags, Label: "first"})
	other := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	hss := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags})
	if err := s.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: 0x101, Value: []byte("id-1")}, {Type: hsmapi.AttributeLabel, Value: []byte("renamed")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAttributes(ctx, hss.UUID, []hsmapi.Attribute{{Type: 0x101, Value: []byte("hss")}}); err != nil {
		t.Fatal(err)
	}
	signHSS(t, s, hss.UUID, "after set attributes")
	got, err := s.Attributes(ctx, k.UUID, []uint32{hsmapi.AttributeLabel, 0x101})
	if err != nil || string(got[0].Value) != "renamed" || string(got[1].Value) != "id-1" {
		t.Fatalf("attributes: %v %v", got, err)
	}
	if _, err := s.Attributes(ctx, other.UUID, []uint32{0x101}); !errors.Is(err, hsmapi.ErrAttributeNotFound) {
		t.Errorf("missing attribute: %v", err)
	}
	matched, err := s.Keys(ctx, hsmapi.Filter{Attributes: []hsmapi.Attribute{{Type: 0x101, Value: []byte("id-1")}}})
	if err != nil || len(matched) != 1 || matched[0].UUID != k.UUID {
		t.Errorf("match by attribute: %v %v", matched, err)
	}
	// A label set as an attribute is any bytes, as libhal stores it.
	if err := s.SetAttributes(ctx, other.UUID, []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte(rawLabel)}}); err != nil {
		t.Errorf("label of any bytes: %v", err)
	}
	if err := s.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: make([]byte, hsmapi.MaxAttributeSize+1)}}); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("oversized label: %v", err)
	}
	if err := s.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: 0x102, Value: make([]byte, hsmapi.MaxAttributeSize+1)}}); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("oversized attribute: %v", err)
	}
	s.Close()
	h.Close()

	h2, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	s2 := login(t, h2)
	info, _ := s2.Key(ctx, k.UUID)
	if info.Label != "renamed" {
		t.Errorf("label after restart: %q", info.Label)
	}
	if info, _ := s2.Key(ctx, other.UUID); info.Label != rawLabel {
		t.Errorf("label of any bytes after restart: %q", info.Label)
	}
	if err := s2.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: 0x101, Delete: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Attributes(ctx, k.UUID, []uint32{0x101}); !errors.Is(err, hsmapi.ErrAttributeNotFound) {
		t.Errorf("deleted attribute: %v", err)
	}
	hi, _ := s2.Key(ctx, hss.UUID)
	if hi.Hashsig.Remaining != 1023 {
		t.Errorf("HSS key after attributes and restart: %d left, want 1023", hi.Hashsig.Remaining)
	}
	if v, err := s2.Attributes(ctx, hss.UUID, []uint32{0x101}); err != nil || string(v[0].Value) != "hss" {
		t.Errorf("HSS key's attribute after its state was persisted: %v %v", v, err)
	}
}

// TestVolatileKeyAttributesAreBounded: a volatile key, never stored, holds
// no more attributes than a flash block would.
func TestVolatileKeyAttributesAreBounded(t *testing.T) {
	h, _ := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature})
	value := make([]byte, hsmapi.MaxAttributeSize)
	var err error
	n := 0
	for ; n < 100 && err == nil; n++ {
		err = s.SetAttributes(ctx, k.UUID, []hsmapi.Attribute{{Type: 0x80000000 + uint32(n), Value: value}})
	}
	if !errors.Is(err, hsmapi.ErrBadArguments) || n > keystore.MaxDataSize/hsmapi.MaxAttributeSize+1 {
		t.Fatalf("%d attributes of %d bytes on a volatile key, then %v", n, hsmapi.MaxAttributeSize, err)
	}
}
