package hsmapi

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func TestAttributesEncodeRoundTrip(t *testing.T) {
	attrs := []Attribute{
		{Type: CKAVerify, Value: []byte{1}},
		{Type: CKAID, Value: []byte{0x0a, 0x01}},
		{Type: CKAEncrypt, Value: []byte{0}},
		{Type: 0xFFFFFFFF, Value: nil},
	}
	enc := EncodeAttributes(attrs)
	got, err := DecodeAttributes(enc)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(attrs)
	slices.SortFunc(want, func(a, b Attribute) int { return cmpUint32(a.Type, b.Type) })
	if len(got) != len(want) {
		t.Fatalf("got %d attributes, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Type != want[i].Type || !bytes.Equal(got[i].Value, want[i].Value) {
			t.Errorf("attribute %d: got %x=%x, want %x=%x", i, got[i].Type, got[i].Value, want[i].Type, want[i].Value)
		}
	}
	// Every truncation and every extension is refused.
	for n := range len(enc) {
		if _, err := DecodeAttributes(enc[:n]); !errors.Is(err, ErrBadAttributes) {
			t.Errorf("truncated to %d bytes: %v", n, err)
		}
	}
	if _, err := DecodeAttributes(append(enc, 0)); !errors.Is(err, ErrBadAttributes) {
		t.Errorf("extended: %v", err)
	}
	// Unsorted or repeated types are not what EncodeAttributes writes.
	twice := EncodeAttributes([]Attribute{{Type: 5, Value: []byte{1}}})
	twice = append(twice, twice[4:]...)
	twice[3] = 2
	if _, err := DecodeAttributes(twice); !errors.Is(err, ErrBadAttributes) {
		t.Errorf("repeated type: %v", err)
	}
}
