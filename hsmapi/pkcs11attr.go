package hsmapi

import (
	"encoding/binary"
	"errors"
	"slices"
)

// Key attributes carry the PKCS#11 attributes a key had on a PKCS#11 token,
// so that it arrives on the next token exactly as it left (same CKA_ID,
// usages and policy), through any number of emulated HSMs in between. They
// are stored the way Cryptech's PKCS#11 library stores them over libhal: as
// key attributes whose types are the CKA_ numbers, CK_BBOOL values as one
// byte (0 or 1), byte strings as they are.
//
// A key of this HSM is one key pair; on a PKCS#11 token it is two objects.
// The attributes at the CKA_ numbers are the private key object's (the key
// object's, for a public key alone); those of the public key object beside
// a private key travel in one attribute, AttributePublicObject, that holds
// them encoded by EncodeAttributes.
//
// The HSM's own flags (digitalsignature, keyencipherment, ...) still decide
// what the emulated HSM lets a key do; docs/bundle-format.md gives the
// mapping between the two.
const (
	CKAToken              uint32 = 0x001
	CKAPrivate            uint32 = 0x002
	CKALabel              uint32 = 0x003
	CKATrusted            uint32 = 0x086
	CKASubject            uint32 = 0x101
	CKAID                 uint32 = 0x102
	CKASensitive          uint32 = 0x103
	CKAEncrypt            uint32 = 0x104
	CKADecrypt            uint32 = 0x105
	CKAWrap               uint32 = 0x106
	CKAUnwrap             uint32 = 0x107
	CKASign               uint32 = 0x108
	CKASignRecover        uint32 = 0x109
	CKAVerify             uint32 = 0x10A
	CKAVerifyRecover      uint32 = 0x10B
	CKADerive             uint32 = 0x10C
	CKAStartDate          uint32 = 0x110
	CKAEndDate            uint32 = 0x111
	CKAValueLen           uint32 = 0x161
	CKAExtractable        uint32 = 0x162
	CKALocal              uint32 = 0x163
	CKANeverExtractable   uint32 = 0x164
	CKAAlwaysSensitive    uint32 = 0x165
	CKAKeyGenMechanism    uint32 = 0x166
	CKAModifiable         uint32 = 0x170
	CKACopyable           uint32 = 0x171
	CKADestroyable        uint32 = 0x172
	CKAAlwaysAuthenticate uint32 = 0x202
	CKAWrapWithTrusted    uint32 = 0x210

	// AttributePublicObject holds the attributes of the public key object
	// of a key pair, encoded by EncodeAttributes. The number is in
	// Cryptech's vendor range (0xC7B5xxxx), beside AttributeHashsigRemaining
	// of package rpc.
	AttributePublicObject uint32 = 0xC7B50002
)

// A FlagAttribute pairs a key flag with the attribute that grants the same
// on one object of a key pair.
type FlagAttribute struct {
	Attribute uint32
	Flag      Flags
}

// The mapping of docs/bundle-format.md: a key's flags are those of its
// private key object (or of its public key object alone), and each object
// of a key shows what its flags grant. FlagToken is CKA_TOKEN on both
// objects; FlagPublic has no counterpart. Callers do not modify these.
var (
	PrivateObjectFlags = []FlagAttribute{
		{CKAExtractable, FlagExportable},
		{CKASign, FlagDigitalSignature},
		{CKAUnwrap, FlagKeyEncipherment},
		{CKADecrypt, FlagDataEncipherment},
	}
	PublicObjectFlags = []FlagAttribute{
		{CKAVerify, FlagDigitalSignature},
		{CKAWrap, FlagKeyEncipherment},
		{CKAEncrypt, FlagDataEncipherment},
	}
)

// ErrBadAttributes: an encoded attribute list is malformed.
var ErrBadAttributes = errors.New("malformed attribute list")

// EncodeAttributes encodes a list of attributes (none deleted) as
// uint32 count, then per attribute uint32 type, uint32 length and the
// value, big-endian, in order of type. Types must be distinct.
func EncodeAttributes(attrs []Attribute) []byte {
	sorted := slices.Clone(attrs)
	slices.SortFunc(sorted, func(a, b Attribute) int { return cmpUint32(a.Type, b.Type) })
	size := 4
	for _, a := range sorted {
		size += 8 + len(a.Value)
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, size), uint32(len(sorted)))
	for _, a := range sorted {
		b = binary.BigEndian.AppendUint32(b, a.Type)
		b = binary.BigEndian.AppendUint32(b, uint32(len(a.Value)))
		b = append(b, a.Value...)
	}
	return b
}

// DecodeAttributes reverses EncodeAttributes, refusing anything that
// EncodeAttributes would not write: unsorted or repeated types, trailing
// bytes.
func DecodeAttributes(b []byte) ([]Attribute, error) {
	if len(b) < 4 {
		return nil, ErrBadAttributes
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(n)*8 > uint64(len(b)) {
		return nil, ErrBadAttributes
	}
	out := make([]Attribute, 0, n)
	for i := range n {
		if len(b) < 8 {
			return nil, ErrBadAttributes
		}
		t, l := binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
		b = b[8:]
		if uint64(l) > uint64(len(b)) || i > 0 && t <= out[i-1].Type {
			return nil, ErrBadAttributes
		}
		out = append(out, Attribute{Type: t, Value: append([]byte(nil), b[:l]...)})
		b = b[l:]
	}
	if len(b) != 0 {
		return nil, ErrBadAttributes
	}
	return out, nil
}

func cmpUint32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
