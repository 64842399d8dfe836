package rpc

// This file holds the arguments and results of the pkey functions (13 to
// 31). Key and hash handles are uints; UUIDs travel as bytes (16 of them,
// which the server, not this layer, checks).

// PkeyLoadRequest is PKEY_LOAD's arguments: uint session, bytes der,
// uint flags.
type PkeyLoadRequest struct {
	Session uint32
	DER     []byte
	Flags   uint32
}

func (m *PkeyLoadRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Session)
	e.Bytes(m.DER)
	e.Uint32(m.Flags)
}
func (m *PkeyLoadRequest) DecodeArgs(d *Decoder) error {
	m.Session = d.Uint32()
	m.DER = d.Bytes(MaxPacket)
	m.Flags = d.Uint32()
	return d.Err()
}

// PkeyLoadResponse is PKEY_LOAD's results: uint pkey, bytes uuid.
type PkeyLoadResponse struct {
	Pkey uint32
	UUID []byte
}

func (m *PkeyLoadResponse) EncodeArgs(e *Encoder) { encodeHandleUUID(e, m.Pkey, m.UUID) }
func (m *PkeyLoadResponse) DecodeArgs(d *Decoder) error {
	m.Pkey, m.UUID = decodeHandleUUID(d)
	return d.Err()
}

// PkeyOpenRequest is PKEY_OPEN's arguments: uint session, bytes uuid.
type PkeyOpenRequest struct {
	Session uint32
	UUID    []byte
}

func (m *PkeyOpenRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Session)
	e.Bytes(m.UUID)
}
func (m *PkeyOpenRequest) DecodeArgs(d *Decoder) error {
	m.Session = d.Uint32()
	m.UUID = d.Bytes(MaxPacket)
	return d.Err()
}

// PkeyOpenResponse is PKEY_OPEN's result: uint pkey.
type PkeyOpenResponse struct {
	Pkey uint32
}

func (m *PkeyOpenResponse) EncodeArgs(e *Encoder) { e.Uint32(m.Pkey) }
func (m *PkeyOpenResponse) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	return d.Err()
}

// PkeyGenerateRSARequest is PKEY_GENERATE_RSA's arguments: uint session,
// uint keylen (in bits), bytes exponent (big-endian), uint flags.
type PkeyGenerateRSARequest struct {
	Session, KeyLen uint32
	Exponent        []byte
	Flags           uint32
}

func (m *PkeyGenerateRSARequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Session)
	e.Uint32(m.KeyLen)
	e.Bytes(m.Exponent)
	e.Uint32(m.Flags)
}
func (m *PkeyGenerateRSARequest) DecodeArgs(d *Decoder) error {
	m.Session = d.Uint32()
	m.KeyLen = d.Uint32()
	m.Exponent = d.Bytes(MaxPacket)
	m.Flags = d.Uint32()
	return d.Err()
}

// PkeyGenerateRSAResponse is PKEY_GENERATE_RSA's results: uint pkey,
// bytes uuid.
type PkeyGenerateRSAResponse struct {
	Pkey uint32
	UUID []byte
}

func (m *PkeyGenerateRSAResponse) EncodeArgs(e *Encoder) { encodeHandleUUID(e, m.Pkey, m.UUID) }
func (m *PkeyGenerateRSAResponse) DecodeArgs(d *Decoder) error {
	m.Pkey, m.UUID = decodeHandleUUID(d)
	return d.Err()
}

// PkeyGenerateECRequest is PKEY_GENERATE_EC's arguments: uint session,
// uint curve, uint flags.
type PkeyGenerateECRequest struct {
	Session, Curve, Flags uint32
}

func (m *PkeyGenerateECRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Session)
	e.Uint32(m.Curve)
	e.Uint32(m.Flags)
}
func (m *PkeyGenerateECRequest) DecodeArgs(d *Decoder) error {
	m.Session = d.Uint32()
	m.Curve = d.Uint32()
	m.Flags = d.Uint32()
	return d.Err()
}

// PkeyGenerateECResponse is PKEY_GENERATE_EC's results: uint pkey,
// bytes uuid.
type PkeyGenerateECResponse struct {
	Pkey uint32
	UUID []byte
}

func (m *PkeyGenerateECResponse) EncodeArgs(e *Encoder) { encodeHandleUUID(e, m.Pkey, m.UUID) }
func (m *PkeyGenerateECResponse) DecodeArgs(d *Decoder) error {
	m.Pkey, m.UUID = decodeHandleUUID(d)
	return d.Err()
}

// PkeyGenerateHashsigRequest is PKEY_GENERATE_HASHSIG's arguments:
// uint session, uint L (levels), uint lms_type, uint lmots_type, uint flags.
type PkeyGenerateHashsigRequest struct {
	Session, L, LMSType, LMOTSType, Flags uint32
}

func (m *PkeyGenerateHashsigRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Session)
	e.Uint32(m.L)
	e.Uint32(m.LMSType)
	e.Uint32(m.LMOTSType)
	e.Uint32(m.Flags)
}
func (m *PkeyGenerateHashsigRequest) DecodeArgs(d *Decoder) error {
	m.Session = d.Uint32()
	m.L = d.Uint32()
	m.LMSType = d.Uint32()
	m.LMOTSType = d.Uint32()
	m.Flags = d.Uint32()
	return d.Err()
}

// PkeyGenerateHashsigResponse is PKEY_GENERATE_HASHSIG's results:
// uint pkey, bytes uuid.
type PkeyGenerateHashsigResponse struct {
	Pkey uint32
	UUID []byte
}

func (m *PkeyGenerateHashsigResponse) EncodeArgs(e *Encoder) { encodeHandleUUID(e, m.Pkey, m.UUID) }
func (m *PkeyGenerateHashsigResponse) DecodeArgs(d *Decoder) error {
	m.Pkey, m.UUID = decodeHandleUUID(d)
	return d.Err()
}

// PkeyCloseRequest is PKEY_CLOSE's argument: uint pkey.
type PkeyCloseRequest struct {
	Pkey uint32
}

func (m *PkeyCloseRequest) EncodeArgs(e *Encoder) { e.Uint32(m.Pkey) }
func (m *PkeyCloseRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	return d.Err()
}

// PkeyCloseResponse is PKEY_CLOSE's (empty) result.
type PkeyCloseResponse struct{}

func (*PkeyCloseResponse) EncodeArgs(*Encoder)         {}
func (*PkeyCloseResponse) DecodeArgs(d *Decoder) error { return d.Err() }

// PkeyDeleteRequest is PKEY_DELETE's argument: uint pkey.
type PkeyDeleteRequest struct {
	Pkey uint32
}

func (m *PkeyDeleteRequest) EncodeArgs(e *Encoder) { e.Uint32(m.Pkey) }
func (m *PkeyDeleteRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	return d.Err()
}

// PkeyDeleteResponse is PKEY_DELETE's (empty) result.
type PkeyDeleteResponse struct{}

func (*PkeyDeleteResponse) EncodeArgs(*Encoder)         {}
func (*PkeyDeleteResponse) DecodeArgs(d *Decoder) error { return d.Err() }

// PkeyGetKeyTypeRequest is PKEY_GET_KEY_TYPE's argument: uint pkey.
type PkeyGetKeyTypeRequest struct {
	Pkey uint32
}

func (m *PkeyGetKeyTypeRequest) EncodeArgs(e *Encoder) { e.Uint32(m.Pkey) }
func (m *PkeyGetKeyTypeRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	return d.Err()
}

// PkeyGetKeyTypeResponse is PKEY_GET_KEY_TYPE's result: uint type.
type PkeyGetKeyTypeResponse struct {
	Type uint32
}

func (m *PkeyGetKeyTypeResponse) EncodeArgs(e *Encoder) { e.Uint32(m.Type) }
func (m *PkeyGetKeyTypeResponse) DecodeArgs(d *Decoder) error {
	m.Type = d.Uint32()
	return d.Err()
}

// PkeyGetKeyFlagsRequest is PKEY_GET_KEY_FLAGS's argument: uint pkey.
type PkeyGetKeyFlagsRequest struct {
	Pkey uint32
}

func (m *PkeyGetKeyFlagsRequest) EncodeArgs(e *Encoder) { e.Uint32(m.Pkey) }
func (m *PkeyGetKeyFlagsRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	return d.Err()
}

// PkeyGetKeyFlagsResponse is PKEY_GET_KEY_FLAGS's result: uint flags.
type PkeyGetKeyFlagsResponse struct {
	Flags uint32
}

func (m *PkeyGetKeyFlagsResponse) EncodeArgs(e *Encoder) { e.Uint32(m.Flags) }
func (m *PkeyGetKeyFlagsResponse) DecodeArgs(d *Decoder) error {
	m.Flags = d.Uint32()
	return d.Err()
}

// PkeyGetKeyCurveRequest is PKEY_GET_KEY_CURVE's argument: uint pkey.
type PkeyGetKeyCurveRequest struct {
	Pkey uint32
}

func (m *PkeyGetKeyCurveRequest) EncodeArgs(e *Encoder) { e.Uint32(m.Pkey) }
func (m *PkeyGetKeyCurveRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	return d.Err()
}

// PkeyGetKeyCurveResponse is PKEY_GET_KEY_CURVE's result: uint curve.
type PkeyGetKeyCurveResponse struct {
	Curve uint32
}

func (m *PkeyGetKeyCurveResponse) EncodeArgs(e *Encoder) { e.Uint32(m.Curve) }
func (m *PkeyGetKeyCurveResponse) DecodeArgs(d *Decoder) error {
	m.Curve = d.Uint32()
	return d.Err()
}

// PkeyGetPublicKeyLenRequest is PKEY_GET_PUBLIC_KEY_LEN's argument:
// uint pkey.
type PkeyGetPublicKeyLenRequest struct {
	Pkey uint32
}

func (m *PkeyGetPublicKeyLenRequest) EncodeArgs(e *Encoder) { e.Uint32(m.Pkey) }
func (m *PkeyGetPublicKeyLenRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	return d.Err()
}

// PkeyGetPublicKeyLenResponse is PKEY_GET_PUBLIC_KEY_LEN's result: uint len.
type PkeyGetPublicKeyLenResponse struct {
	Len uint32
}

func (m *PkeyGetPublicKeyLenResponse) EncodeArgs(e *Encoder) { e.Uint32(m.Len) }
func (m *PkeyGetPublicKeyLenResponse) DecodeArgs(d *Decoder) error {
	m.Len = d.Uint32()
	return d.Err()
}

// PkeyGetPublicKeyRequest is PKEY_GET_PUBLIC_KEY's arguments: uint pkey,
// uint max.
type PkeyGetPublicKeyRequest struct {
	Pkey, Max uint32
}

func (m *PkeyGetPublicKeyRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Pkey)
	e.Uint32(m.Max)
}
func (m *PkeyGetPublicKeyRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	m.Max = d.Uint32()
	return d.Err()
}

// PkeyGetPublicKeyResponse is PKEY_GET_PUBLIC_KEY's result: bytes, a DER
// SubjectPublicKeyInfo.
type PkeyGetPublicKeyResponse struct {
	DER []byte
}

func (m *PkeyGetPublicKeyResponse) EncodeArgs(e *Encoder) { e.Bytes(m.DER) }
func (m *PkeyGetPublicKeyResponse) DecodeArgs(d *Decoder) error {
	m.DER = d.Bytes(MaxPacket)
	return d.Err()
}

// PkeySignRequest is PKEY_SIGN's arguments: uint pkey, uint hash (a hash
// handle, 0 for none), bytes data (the digest, or an RSA DigestInfo, when
// hash is 0), uint max (the longest signature the caller accepts).
type PkeySignRequest struct {
	Pkey, Hash uint32
	Data       []byte
	Max        uint32
}

func (m *PkeySignRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Pkey)
	e.Uint32(m.Hash)
	e.Bytes(m.Data)
	e.Uint32(m.Max)
}
func (m *PkeySignRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	m.Hash = d.Uint32()
	m.Data = d.Bytes(MaxPacket)
	m.Max = d.Uint32()
	return d.Err()
}

// PkeySignResponse is PKEY_SIGN's result: bytes signature (r || s for
// ECDSA).
type PkeySignResponse struct {
	Signature []byte
}

func (m *PkeySignResponse) EncodeArgs(e *Encoder) { e.Bytes(m.Signature) }
func (m *PkeySignResponse) DecodeArgs(d *Decoder) error {
	m.Signature = d.Bytes(MaxPacket)
	return d.Err()
}

// PkeyVerifyRequest is PKEY_VERIFY's arguments: uint pkey, uint hash,
// bytes data, bytes signature.
type PkeyVerifyRequest struct {
	Pkey, Hash      uint32
	Data, Signature []byte
}

func (m *PkeyVerifyRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Pkey)
	e.Uint32(m.Hash)
	e.Bytes(m.Data)
	e.Bytes(m.Signature)
}
func (m *PkeyVerifyRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	m.Hash = d.Uint32()
	m.Data = d.Bytes(MaxPacket)
	m.Signature = d.Bytes(MaxPacket)
	return d.Err()
}

// PkeyVerifyResponse is PKEY_VERIFY's (empty) result; a bad signature is
// the status [StatusInvalidSignature].
type PkeyVerifyResponse struct{}

func (*PkeyVerifyResponse) EncodeArgs(*Encoder)         {}
func (*PkeyVerifyResponse) DecodeArgs(d *Decoder) error { return d.Err() }

// PkeyMatchRequest is PKEY_MATCH's arguments: uint session, uint type,
// uint curve, uint mask, uint flags, attributes, uint state, uint max,
// bytes previous_uuid. The first call of a search has State 0 and an
// all-zero Previous; later ones pass back the State and the last UUID
// returned.
type PkeyMatchRequest struct {
	Session, Type, Curve, Mask, Flags uint32
	Attributes                        []Attribute
	State, Max                        uint32
	Previous                          []byte
}

func (m *PkeyMatchRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Session)
	e.Uint32(m.Type)
	e.Uint32(m.Curve)
	e.Uint32(m.Mask)
	e.Uint32(m.Flags)
	encodeAttributes(e, m.Attributes)
	e.Uint32(m.State)
	e.Uint32(m.Max)
	e.Bytes(m.Previous)
}
func (m *PkeyMatchRequest) DecodeArgs(d *Decoder) error {
	m.Session = d.Uint32()
	m.Type = d.Uint32()
	m.Curve = d.Uint32()
	m.Mask = d.Uint32()
	m.Flags = d.Uint32()
	m.Attributes = decodeAttributes(d)
	m.State = d.Uint32()
	m.Max = d.Uint32()
	m.Previous = d.Bytes(MaxPacket)
	return d.Err()
}

// PkeyMatchResponse is PKEY_MATCH's results: uint state, uint n, n x bytes
// uuid.
type PkeyMatchResponse struct {
	State uint32
	UUIDs [][]byte
}

func (m *PkeyMatchResponse) EncodeArgs(e *Encoder) {
	e.Uint32(m.State)
	e.Uint32(uint32(len(m.UUIDs)))
	for _, u := range m.UUIDs {
		e.Bytes(u)
	}
}
func (m *PkeyMatchResponse) DecodeArgs(d *Decoder) error {
	m.State = d.Uint32()
	m.UUIDs = nil
	if n := d.count(4); n > 0 {
		m.UUIDs = make([][]byte, n)
		for i := range m.UUIDs {
			m.UUIDs[i] = d.Bytes(MaxPacket)
		}
	}
	if d.err != nil {
		m.UUIDs = nil
	}
	return d.Err()
}

// PkeySetAttributesRequest is PKEY_SET_ATTRIBUTES's arguments: uint pkey,
// attributes. An Absent attribute is deleted.
type PkeySetAttributesRequest struct {
	Pkey       uint32
	Attributes []Attribute
}

func (m *PkeySetAttributesRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Pkey)
	encodeAttributes(e, m.Attributes)
}
func (m *PkeySetAttributesRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	m.Attributes = decodeAttributes(d)
	return d.Err()
}

// PkeySetAttributesResponse is PKEY_SET_ATTRIBUTES's (empty) result.
type PkeySetAttributesResponse struct{}

func (*PkeySetAttributesResponse) EncodeArgs(*Encoder)         {}
func (*PkeySetAttributesResponse) DecodeArgs(d *Decoder) error { return d.Err() }

// PkeyGetAttributesRequest is PKEY_GET_ATTRIBUTES's arguments: uint pkey,
// uint n, n x uint type, uint buffer_len. A BufferLen of 0 asks for the
// lengths of the values instead of the values.
type PkeyGetAttributesRequest struct {
	Pkey      uint32
	Types     []uint32
	BufferLen uint32
}

func (m *PkeyGetAttributesRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Pkey)
	e.Uint32(uint32(len(m.Types)))
	for _, t := range m.Types {
		e.Uint32(t)
	}
	e.Uint32(m.BufferLen)
}
func (m *PkeyGetAttributesRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	m.Types = nil
	if n := d.count(4); n > 0 {
		m.Types = make([]uint32, n)
		for i := range m.Types {
			m.Types[i] = d.Uint32()
		}
	}
	m.BufferLen = d.Uint32()
	if d.err != nil {
		m.Types = nil
	}
	return d.Err()
}

// PkeyGetAttributesResponse is PKEY_GET_ATTRIBUTES's results: uint n, then
// n x (uint type, bytes value), or, when LengthsOnly, n x (uint type,
// uint length) with the lengths in [Attribute.Length].
//
// The wire does not say which form it carries: the request's BufferLen
// does. Set LengthsOnly before DecodeArgs when that BufferLen was 0; it is
// not itself sent.
type PkeyGetAttributesResponse struct {
	Attributes  []Attribute
	LengthsOnly bool
}

func (m *PkeyGetAttributesResponse) EncodeArgs(e *Encoder) {
	if m.LengthsOnly {
		encodeAttributeLengths(e, m.Attributes)
	} else {
		encodeAttributes(e, m.Attributes)
	}
}
func (m *PkeyGetAttributesResponse) DecodeArgs(d *Decoder) error {
	if m.LengthsOnly {
		m.Attributes = decodeAttributeLengths(d)
	} else {
		m.Attributes = decodeAttributes(d)
	}
	return d.Err()
}

// PkeyExportRequest is PKEY_EXPORT's arguments: uint pkey, uint kekek,
// uint pkcs8_max, uint kek_max.
type PkeyExportRequest struct {
	Pkey, KEKEK, PKCS8Max, KEKMax uint32
}

func (m *PkeyExportRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Pkey)
	e.Uint32(m.KEKEK)
	e.Uint32(m.PKCS8Max)
	e.Uint32(m.KEKMax)
}
func (m *PkeyExportRequest) DecodeArgs(d *Decoder) error {
	m.Pkey = d.Uint32()
	m.KEKEK = d.Uint32()
	m.PKCS8Max = d.Uint32()
	m.KEKMax = d.Uint32()
	return d.Err()
}

// PkeyExportResponse is PKEY_EXPORT's results: bytes pkcs8 (the wrapped
// key), bytes kek (the encrypted KEK).
type PkeyExportResponse struct {
	PKCS8, KEK []byte
}

func (m *PkeyExportResponse) EncodeArgs(e *Encoder) {
	e.Bytes(m.PKCS8)
	e.Bytes(m.KEK)
}
func (m *PkeyExportResponse) DecodeArgs(d *Decoder) error {
	m.PKCS8 = d.Bytes(MaxPacket)
	m.KEK = d.Bytes(MaxPacket)
	return d.Err()
}

// PkeyImportRequest is PKEY_IMPORT's arguments: uint session, uint kekek,
// bytes pkcs8, bytes kek, uint flags.
type PkeyImportRequest struct {
	Session, KEKEK uint32
	PKCS8, KEK     []byte
	Flags          uint32
}

func (m *PkeyImportRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Session)
	e.Uint32(m.KEKEK)
	e.Bytes(m.PKCS8)
	e.Bytes(m.KEK)
	e.Uint32(m.Flags)
}
func (m *PkeyImportRequest) DecodeArgs(d *Decoder) error {
	m.Session = d.Uint32()
	m.KEKEK = d.Uint32()
	m.PKCS8 = d.Bytes(MaxPacket)
	m.KEK = d.Bytes(MaxPacket)
	m.Flags = d.Uint32()
	return d.Err()
}

// PkeyImportResponse is PKEY_IMPORT's results: uint pkey, bytes uuid.
type PkeyImportResponse struct {
	Pkey uint32
	UUID []byte
}

func (m *PkeyImportResponse) EncodeArgs(e *Encoder) { encodeHandleUUID(e, m.Pkey, m.UUID) }
func (m *PkeyImportResponse) DecodeArgs(d *Decoder) error {
	m.Pkey, m.UUID = decodeHandleUUID(d)
	return d.Err()
}

// encodeHandleUUID appends the results shared by the functions that create
// a key: uint pkey, bytes uuid.
func encodeHandleUUID(e *Encoder, pkey uint32, uuid []byte) {
	e.Uint32(pkey)
	e.Bytes(uuid)
}

// decodeHandleUUID reads what encodeHandleUUID writes.
func decodeHandleUUID(d *Decoder) (pkey uint32, uuid []byte) {
	pkey = d.Uint32()
	uuid = d.Bytes(MaxPacket)
	return pkey, uuid
}
