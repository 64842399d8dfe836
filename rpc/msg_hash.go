package rpc

// This file holds the arguments and results of the hash functions (7 to
// 12). A hash handle is a uint; 0 means none.

// HashGetDigestLenRequest is HASH_GET_DIGEST_LEN's argument: uint alg.
type HashGetDigestLenRequest struct {
	Alg uint32
}

func (m *HashGetDigestLenRequest) EncodeArgs(e *Encoder) { e.Uint32(m.Alg) }
func (m *HashGetDigestLenRequest) DecodeArgs(d *Decoder) error {
	m.Alg = d.Uint32()
	return d.Err()
}

// HashGetDigestLenResponse is HASH_GET_DIGEST_LEN's result: uint len.
type HashGetDigestLenResponse struct {
	Len uint32
}

func (m *HashGetDigestLenResponse) EncodeArgs(e *Encoder) { e.Uint32(m.Len) }
func (m *HashGetDigestLenResponse) DecodeArgs(d *Decoder) error {
	m.Len = d.Uint32()
	return d.Err()
}

// HashGetDigestAlgorithmIDRequest is HASH_GET_DIGEST_ALGORITHM_ID's
// arguments: uint alg, uint max (the longest answer the caller accepts).
type HashGetDigestAlgorithmIDRequest struct {
	Alg, Max uint32
}

func (m *HashGetDigestAlgorithmIDRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Alg)
	e.Uint32(m.Max)
}
func (m *HashGetDigestAlgorithmIDRequest) DecodeArgs(d *Decoder) error {
	m.Alg = d.Uint32()
	m.Max = d.Uint32()
	return d.Err()
}

// HashGetDigestAlgorithmIDResponse is HASH_GET_DIGEST_ALGORITHM_ID's result:
// bytes, a DER AlgorithmIdentifier.
type HashGetDigestAlgorithmIDResponse struct {
	DER []byte
}

func (m *HashGetDigestAlgorithmIDResponse) EncodeArgs(e *Encoder) { e.Bytes(m.DER) }
func (m *HashGetDigestAlgorithmIDResponse) DecodeArgs(d *Decoder) error {
	m.DER = d.Bytes(MaxPacket)
	return d.Err()
}

// HashGetAlgorithmRequest is HASH_GET_ALGORITHM's argument: uint hash.
type HashGetAlgorithmRequest struct {
	Hash uint32
}

func (m *HashGetAlgorithmRequest) EncodeArgs(e *Encoder) { e.Uint32(m.Hash) }
func (m *HashGetAlgorithmRequest) DecodeArgs(d *Decoder) error {
	m.Hash = d.Uint32()
	return d.Err()
}

// HashGetAlgorithmResponse is HASH_GET_ALGORITHM's result: uint alg.
type HashGetAlgorithmResponse struct {
	Alg uint32
}

func (m *HashGetAlgorithmResponse) EncodeArgs(e *Encoder) { e.Uint32(m.Alg) }
func (m *HashGetAlgorithmResponse) DecodeArgs(d *Decoder) error {
	m.Alg = d.Uint32()
	return d.Err()
}

// HashInitializeRequest is HASH_INITIALIZE's arguments: uint session,
// uint alg, bytes hmac_key (empty for a plain hash).
type HashInitializeRequest struct {
	Session, Alg uint32
	HMACKey      []byte
}

func (m *HashInitializeRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Session)
	e.Uint32(m.Alg)
	e.Bytes(m.HMACKey)
}
func (m *HashInitializeRequest) DecodeArgs(d *Decoder) error {
	m.Session = d.Uint32()
	m.Alg = d.Uint32()
	m.HMACKey = d.Bytes(MaxPacket)
	return d.Err()
}

// HashInitializeResponse is HASH_INITIALIZE's result: uint hash.
type HashInitializeResponse struct {
	Hash uint32
}

func (m *HashInitializeResponse) EncodeArgs(e *Encoder) { e.Uint32(m.Hash) }
func (m *HashInitializeResponse) DecodeArgs(d *Decoder) error {
	m.Hash = d.Uint32()
	return d.Err()
}

// HashUpdateRequest is HASH_UPDATE's arguments: uint hash, bytes data.
type HashUpdateRequest struct {
	Hash uint32
	Data []byte
}

func (m *HashUpdateRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Hash)
	e.Bytes(m.Data)
}
func (m *HashUpdateRequest) DecodeArgs(d *Decoder) error {
	m.Hash = d.Uint32()
	m.Data = d.Bytes(MaxPacket)
	return d.Err()
}

// HashUpdateResponse is HASH_UPDATE's (empty) result.
type HashUpdateResponse struct{}

func (*HashUpdateResponse) EncodeArgs(*Encoder)         {}
func (*HashUpdateResponse) DecodeArgs(d *Decoder) error { return d.Err() }

// HashFinalizeRequest is HASH_FINALIZE's arguments: uint hash, uint len (the
// digest length the caller expects).
type HashFinalizeRequest struct {
	Hash, Len uint32
}

func (m *HashFinalizeRequest) EncodeArgs(e *Encoder) {
	e.Uint32(m.Hash)
	e.Uint32(m.Len)
}
func (m *HashFinalizeRequest) DecodeArgs(d *Decoder) error {
	m.Hash = d.Uint32()
	m.Len = d.Uint32()
	return d.Err()
}

// HashFinalizeResponse is HASH_FINALIZE's result: bytes digest.
type HashFinalizeResponse struct {
	Digest []byte
}

func (m *HashFinalizeResponse) EncodeArgs(e *Encoder) { e.Bytes(m.Digest) }
func (m *HashFinalizeResponse) DecodeArgs(d *Decoder) error {
	m.Digest = d.Bytes(MaxPacket)
	return d.Err()
}
