package wire

import (
	"bytes"
	"reflect"
	"testing"
)

// Each extension message survives encoding and decoding, in its edge
// cases: a binding that is empty is not one that is absent, a bitmap keeps
// every bit.
func TestExtRoundTrip(t *testing.T) {
	add := ExtImportAddRequest{Batch: 3, UUID: bytes.Repeat([]byte{1}, 16), Label: "web", Flags: 9,
		Encryption: "rsa-oaep-sha256", PKCS8: []byte{1, 2, 3}, KEK: []byte{4}, Tag: []byte{5, 6}, Binding: []byte{}, SPKI: []byte{7}}
	for _, m := range []Args{
		&ExtCapabilitiesRequest{},
		&ExtCapabilitiesResponse{Version: ExtVersion, KEKEncryptions: []string{"rsa-oaep-sha256", "rsa-pkcs1v15"}},
		&ExtDamagedResponse{Blocks: []uint32{7, 9}},
		&ExtExportRequest{Pkey: 1, KEKEK: []byte{1, 2}, Encryption: "x"},
		&ExtExportRequest{Pkey: 1, KEKEK: []byte{1, 2}, Encryption: "x", Binding: []byte{}},
		&ExtExportRequest{Pkey: 1, Binding: []byte("bound")},
		&ExtExportResponse{PKCS8: []byte{1}, KEK: []byte{2}, Tag: []byte{3}},
		&ExtImportBeginRequest{KEKEK: bytes.Repeat([]byte{2}, 16)},
		&add,
		&ExtImportAdd2Request{ExtImportAddRequest: add, Attributes: []Attribute{{Type: 0x102, Value: []byte{1}}}},
		&ExtImportCommitResponse{Present: []bool{true, false, false, true, false, false, false, false, true}},
		&ExtGetAttributesResponse{Attributes: []Attribute{{Type: 3, Value: []byte("l")}}},
		&ExtIdentityRequest{},
		&ExtIdentityResponse{Manufacturer: "Cryptech Project (emulated)", Model: "Cryptech HSM", Serial: "0011223344556677", Label: ""},
		&ExtRefusalResponse{Reason: RefusalForbidden, Message: "forbidden: not trusted"},
		&ExtLoadSecretRequest{ExtGenerateSecretRequest: ExtGenerateSecretRequest{Bits: 256, Flags: 4, Label: "tag",
			Attributes: []Attribute{{Type: 0x102, Value: []byte{1}}}}, Value: bytes.Repeat([]byte{9}, 32)},
		&ExtTrustCandidateRequest{Previous: make([]byte, 16)},
		&ExtTrustCandidateResponse{ExtKeyInfoResponse: ExtKeyInfoResponse{UUID: bytes.Repeat([]byte{3}, 16), Type: 3, Curve: 1, Bits: 256, Flags: 0x400, Label: "kekek",
			SPKI: []byte{0x30}, HashsigRemaining: make([]byte, 8)}, Attributes: []Attribute{{Type: 0x86, Value: []byte{1}}}},
		&ExtMasterKeyStatusResponse{Set: 1, CheckValueKnown: 1, CheckValue: make([]byte, 8), OldCheckValues: [][]byte{bytes.Repeat([]byte{1}, 8)},
			OldRecords: []uint32{3}, Restoring: 1, ExtRestoreStatusResponse: ExtRestoreStatusResponse{ID: make([]byte, 16), PublicKey: make([]byte, 32),
				Received: 1, Threshold: 3, CheckValue: make([]byte, 8)}},
		&ExtMasterKeyBackupRequest{ID: "master", Threshold: 3, Shares: 5, Passphrases: [][]byte{[]byte("one"), []byte("two")}, KDFTime: 3, KDFMemoryKiB: 65536, KDFThreads: 4},
		&ExtRestoreSubmitRequest{Sealed: []byte{1, 2, 3}},
		&ExtMasterKeyRotateResponse{CheckValue: make([]byte, 8), OldCheckValue: bytes.Repeat([]byte{2}, 8), Resealed: 7, Skipped: 1},
		&ExtMasterKeyRetireRequest{CheckValue: make([]byte, 8)},
		&ExtUploadRequest{Offset: 16000, Data: []byte{1}},
		&ExtDownloadResponse{Total: 9, Data: []byte{1, 2}},
		&ExtLengthResponse{Length: 70000},
		&ExtListedKeyResponse{ExtKeyInfoResponse: ExtKeyInfoResponse{UUID: make([]byte, 16), Type: 3, Label: "k"}, Present: 1},
		&ExtListKeysRequest{Type: 3, Curve: 1, Mask: 4, Flags: 4, Attributes: []Attribute{{Type: 3, Value: []byte("k")}, {Type: 0x102, Absent: true}}},
	} {
		var e Encoder
		m.EncodeArgs(&e)
		got := reflect.New(reflect.TypeOf(m).Elem()).Interface().(Args)
		d := NewDecoder(e.Data())
		if err := got.DecodeArgs(d); err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if err := d.Finish(); err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%T:\n got %+v\nwant %+v", m, got, m)
		}
	}
}

// A bound of the extension messages is a malformed message, which the
// Decoder reports (and DecodeResponse with it), not a value cut short.
func TestExtBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		m    Args
	}{
		{"too many damaged blocks", unhex("00010001"), &ExtDamagedResponse{}},
		{"too many batch keys", unhex("00002711 00000000"), &ExtImportCommitResponse{}},
		{"bitmap too long", unhex("00000001 00000002 01000000"), &ExtImportCommitResponse{}},
		{"bitmap too short", unhex("00000009 00000001 01000000"), &ExtImportCommitResponse{}},
		{"attribute without a value", unhex("00000001 00000003 ffffffff"), &ExtGetAttributesResponse{}},
		{"identity field too long", append(unhex("00000101"), make([]byte, 260)...), &ExtIdentityResponse{}},
		{"refusal too long", append(unhex("00000002 00000801"), make([]byte, 2052)...), &ExtRefusalResponse{}},
		{"secret key too long", append(unhex("00000100 00000004 00000000 00000000 00000021"), make([]byte, 36)...), &ExtLoadSecretRequest{}},
		{"hss remaining too long", append(unhex("00000010"), append(make([]byte, 16), unhex("00000000 00000000 00000000 00000000 00000000 00000000 00000009")...)...), &ExtTrustCandidateResponse{}},
		{"too many old keys", unhex("00000001 00000001 00000000 00000041"), &ExtMasterKeyStatusResponse{}},
		{"check value too long", unhex("00000009"), &ExtMasterKeyRetireRequest{}},
		{"too many passphrases", unhex("00000001 6d000000 00000001 00000001 00000100"), &ExtMasterKeyBackupRequest{}},
		{"upload chunk too long", unhex("00000000 00003fe1"), &ExtUploadRequest{}},
		{"label too long", append(unhex("00000001 00000010 01010101 01010101 01010101 01010101 00000401"), make([]byte, 1028)...), &ExtImportAddRequest{}},
	} {
		d := NewDecoder(tc.in)
		tc.m.DecodeArgs(d)
		if st := statusOfErr(d.Finish()); st != StatusRPCProtocolError {
			t.Errorf("%s: %v, want %v", tc.name, d.Err(), StatusRPCProtocolError)
		}
	}
}
