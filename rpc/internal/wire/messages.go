package wire

//go:generate go run ./internal/msggen -in messages.go -out messages_gen.go

// This file describes every function: its number, and its request and
// response types, whose fields are the arguments and results in wire order
// (after func and client, and for a response status). msggen writes their
// EncodeArgs and DecodeArgs methods and the table behind NewRequest and
// NewResponse (messages_gen.go) from it; TestGeneratedIsCurrent fails when
// the two disagree.
//
// A field's Go type says how it travels:
//
//	uint32       uint
//	[]byte       bytes
//	string       bytes
//	[]Attribute  uint n, n x (uint type, bytes value or uint AttributeNil)
//	[][]byte     uint n, n x bytes
//	[]uint32     uint n, n x uint
//	[]string     uint n, n x bytes
//	embedded T   T's fields
//
// and its tag `xdr:"..."` refines that: max=B bounds a bytes item or each
// item of a list (MaxPacket when not given); count=B bounds the items of a
// list; optional sends a []byte as uint has, bytes value, so that nil and
// empty differ; bitmap sends a []bool as uint n, bytes (bit i of byte i/8,
// least significant first); values refuses attributes without a value;
// lengths=F sends attributes as uint n, n x (uint type, uint length) when
// the bool field F is set; "-" is a field that is not on the wire.
//
// Decoding fails with the Decoder's sticky error: a bound exceeded or
// anything malformed wraps StatusRPCProtocolError, input cut short
// StatusXDRBufferOverflow.

// The libhal RPC functions. The numbers are libhal's rpc_func_num_t.
const (
	FuncGetVersion               Func = 0
	FuncGetRandom                Func = 1
	FuncSetPIN                   Func = 2
	FuncLogin                    Func = 3
	FuncLogout                   Func = 4
	FuncLogoutAll                Func = 5
	FuncIsLoggedIn               Func = 6
	FuncHashGetDigestLen         Func = 7
	FuncHashGetDigestAlgorithmID Func = 8
	FuncHashGetAlgorithm         Func = 9
	FuncHashInitialize           Func = 10
	FuncHashUpdate               Func = 11
	FuncHashFinalize             Func = 12
	FuncPkeyLoad                 Func = 13
	FuncPkeyOpen                 Func = 14
	FuncPkeyGenerateRSA          Func = 15
	FuncPkeyGenerateEC           Func = 16
	FuncPkeyClose                Func = 17
	FuncPkeyDelete               Func = 18
	FuncPkeyGetKeyType           Func = 19
	FuncPkeyGetKeyFlags          Func = 20
	FuncPkeyGetPublicKeyLen      Func = 21
	FuncPkeyGetPublicKey         Func = 22
	FuncPkeySign                 Func = 23
	FuncPkeyVerify               Func = 24
	FuncPkeyMatch                Func = 25
	FuncPkeyGetKeyCurve          Func = 26
	FuncPkeySetAttributes        Func = 27
	FuncPkeyGetAttributes        Func = 28
	FuncPkeyExport               Func = 29
	FuncPkeyImport               Func = 30
	FuncPkeyGenerateHashsig      Func = 31
)

// Extension functions: what package backup needs that libhal's 32 functions
// cannot carry. A real Cryptech HSM answers RPC_BAD_FUNCTION. docs/rpc.md
// has the layouts.
const (
	// FuncExtCapabilities -> uint version, uint n, n x bytes KEK encryption.
	FuncExtCapabilities Func = 0x10000
	// FuncExtExport: uint pkey, bytes kekek_spki, bytes encryption, uint
	// has_binding, bytes binding -> bytes pkcs8, bytes kek, bytes tag.
	FuncExtExport Func = 0x10001
	// FuncExtImportBegin: bytes kekek_uuid -> uint batch.
	FuncExtImportBegin Func = 0x10002
	// FuncExtImportAdd: uint batch, bytes uuid, bytes label, uint flags,
	// bytes encryption, bytes pkcs8, bytes kek, bytes tag, uint has_binding,
	// bytes binding, bytes spki -> nothing.
	FuncExtImportAdd Func = 0x10003
	// FuncExtImportCommit: uint batch -> uint n, bytes present (a bitmap, bit
	// i of byte i/8, least significant first: key i was already there). All
	// the batch's keys are stored in one keystore transaction, or none; keys
	// keep the UUIDs they were added with.
	FuncExtImportCommit Func = 0x10004
	// FuncExtDamaged -> uint n, n x uint block: the flash blocks that failed
	// their CRC at power-on, whose keys cannot be read (an export asks, so
	// as not to leave them out without a word).
	FuncExtDamaged Func = 0x10005
	// FuncExtGetAttributes (version 2): uint pkey -> uint n, n x (uint type,
	// bytes value): every attribute of the key, ordered by type.
	FuncExtGetAttributes Func = 0x10006
	// FuncExtImportAdd2 (version 2): EXT_IMPORT_ADD's arguments, then
	// uint n, n x (uint type, bytes value): the key's attributes, stored
	// with it in the batch's one transaction.
	FuncExtImportAdd2 Func = 0x10007
	// FuncExtIdentity (version 3) -> bytes manufacturer, bytes model,
	// bytes serial, bytes label: what the HSM says it is, which libhal's
	// functions cannot tell.
	FuncExtIdentity Func = 0x10008
	// Secret keys, key wrapping and RSA-OAEP (docs/key-policy.md). A
	// mechanism travels as uint mechanism (a CKM_ number), uint hash (a
	// CKM_SHA* number), uint mgf (a CKG_MGF1_* number), bytes label, uint
	// aes_bits; the hash, mgf and label as CK_RSA_PKCS_OAEP_PARAMS has
	// them. A server without them answers RPC_BAD_FUNCTION.

	// FuncExtGenerateSecret: uint bits, uint flags, bytes label, attributes
	// -> uint pkey, bytes uuid.
	FuncExtGenerateSecret Func = 0x10009
	// FuncExtWrapKey: uint wrapping pkey, uint pkey, mechanism -> bytes
	// wrapped.
	FuncExtWrapKey Func = 0x1000A
	// FuncExtUnwrapKey: uint unwrapping pkey, mechanism, bytes wrapped,
	// uint type, uint bits, uint flags, bytes label, attributes -> uint
	// pkey, bytes uuid.
	FuncExtUnwrapKey Func = 0x1000B
	// FuncExtEncrypt: uint pkey, mechanism (RSA-OAEP), bytes data -> bytes
	// ciphertext.
	FuncExtEncrypt Func = 0x1000C
	// FuncExtDecrypt: uint pkey, mechanism (RSA-OAEP), bytes ciphertext ->
	// bytes data.
	FuncExtDecrypt Func = 0x1000D
	// FuncExtSetTrusted: bytes uuid, uint trusted -> nothing (the security
	// officer's, who opens no key handles: libhal lets only users of keys
	// open them).
	FuncExtSetTrusted Func = 0x1000E
	// FuncExtRefusal (version 5) -> uint reason, bytes message: why the
	// request before it on the connection was answered FORBIDDEN, which
	// libhal's one status cannot tell (RefusalNone, RefusalNotLoggedIn,
	// RefusalForbidden, RefusalNotExportable).
	FuncExtRefusal Func = 0x1000F
	// FuncExtLoadSecret (version 5): EXT_GENERATE_SECRET's arguments, then
	// bytes value -> uint pkey, bytes uuid: an AES key given in the clear
	// (PKCS#11's C_CreateObject), as PKEY_LOAD takes a private key.
	FuncExtLoadSecret Func = 0x10010
	// FuncExtTrustCandidate (version 5): bytes previous uuid -> the first
	// key after it, in UUID order, that the security officer may mark
	// trusted (uuid empty when there is none): bytes uuid, uint type, uint
	// curve, uint bits, uint flags, bytes label, bytes spki, bytes
	// hss_remaining, attributes.
	FuncExtTrustCandidate Func = 0x10011

	// The master key's life and keys stored outside the HSM (version 6).
	// libhal defines no functions for either. A file or list longer than
	// a packet travels through the connection's upload and download
	// buffers (EXT_UPLOAD, EXT_DOWNLOAD); every failed answer of these
	// functions is explained by EXT_REFUSAL.

	// FuncExtMasterKeyStatus -> uint set, uint check_known, bytes check
	// value, old keys (uint n, n x bytes check value; uint n, n x uint
	// records), uint restoring, restore status.
	FuncExtMasterKeyStatus Func = 0x10012
	// FuncExtMasterKeyBackup: bytes id, uint threshold, uint shares, uint
	// n, n x bytes passphrase, uint kdf_time, uint kdf_memory_kib, uint
	// kdf_threads -> uint length: the key file, in the download buffer.
	FuncExtMasterKeyBackup Func = 0x10013
	// FuncExtMasterKeyZeroize -> nothing.
	FuncExtMasterKeyZeroize Func = 0x10014
	// FuncExtRestoreBegin -> restore status: bytes session id, bytes HPKE
	// public key, uint received, uint threshold, bytes check value, uint
	// done.
	FuncExtRestoreBegin Func = 0x10015
	// FuncExtRestoreSubmit: bytes sealed share (package sharetransit) ->
	// restore status.
	FuncExtRestoreSubmit Func = 0x10016
	// FuncExtRestoreAbort -> nothing.
	FuncExtRestoreAbort Func = 0x10017
	// FuncExtMasterKeyRotate -> bytes check value, bytes old check value,
	// uint resealed, uint skipped.
	FuncExtMasterKeyRotate Func = 0x10018
	// FuncExtMasterKeyRetire: bytes check value -> nothing.
	FuncExtMasterKeyRetire Func = 0x10019
	// FuncExtUpload: uint offset, bytes data -> nothing: appends to the
	// connection's upload buffer (offset 0 starts it anew).
	FuncExtUpload Func = 0x1001A
	// FuncExtDownload: uint offset -> uint total, bytes data: the
	// download buffer from offset, as much as a packet holds.
	FuncExtDownload Func = 0x1001B
	// FuncExtStoreKeys: the upload holds n x 16-byte UUIDs -> uint length:
	// the stored-keys file, in the download buffer.
	FuncExtStoreKeys Func = 0x1001C
	// FuncExtCheckStored: the upload holds a stored-keys file -> uint
	// length: its keys (a key list), in the download buffer.
	FuncExtCheckStored Func = 0x1001D
	// FuncExtRestoreKeys: the upload holds a stored-keys file -> uint
	// length: the keys restored (a key list), in the download buffer.
	FuncExtRestoreKeys Func = 0x1001E

	// FuncExtListKeys (version 7): uint type, uint curve, uint mask, uint
	// flags, attributes (PKEY_MATCH's filter) -> uint length: the matching
	// keys, described (a key list, present 0), in UUID order, in the
	// download buffer; so that listing N keys takes one request and as
	// many downloads as the list has packets, not PKEY_MATCH's pages and
	// several requests per key.
	FuncExtListKeys Func = 0x1001F
)

// ExtVersion is the version of the extension functions: 2 added
// EXT_GET_ATTRIBUTES and EXT_IMPORT_ADD2, 3 EXT_IDENTITY, 4 the secret
// keys, key wrapping and RSA-OAEP (EXT_GENERATE_SECRET to EXT_SET_TRUSTED),
// 5 EXT_REFUSAL, EXT_LOAD_SECRET and EXT_TRUST_CANDIDATE, 6 the master
// key and stored keys (EXT_MASTERKEY_STATUS to EXT_RESTORE_KEYS), 7
// EXT_LIST_KEYS.
const ExtVersion = 7

// Bounds of the extension functions' fields.
const (
	// MaxEncryptionName bounds the name of a KEK encryption.
	MaxEncryptionName = 64
	// MaxLabel bounds a key's label: any label a key may have, as an import
	// carries what a libhal client set on the source (the emulator's
	// MaxRawLabelLength).
	MaxLabel = 1024
	// MaxDamagedBlocks bounds EXT_DAMAGED's answer: the blocks of the
	// largest flash (the emulator's sim.MaxBlocks).
	MaxDamagedBlocks = 65536
	// MaxImportBatch bounds the keys of one import batch, as backup bounds a
	// bundle.
	MaxImportBatch = 10_000
	// MaxIdentityField bounds each string of EXT_IDENTITY's answer: far
	// more than the PKCS#11 fields they fill (32 bytes at most).
	MaxIdentityField = 256
	// MaxRefusal bounds EXT_REFUSAL's message.
	MaxRefusal = 2048
	// MaxSecretKey bounds EXT_LOAD_SECRET's value: an AES-256 key.
	MaxSecretKey = 32
	// MaxCheckValue bounds a master key's check value (8 bytes).
	MaxCheckValue = 8
	// MaxOldKeys bounds the old-key ring of EXT_MASTERKEY_STATUS (the
	// emulator's holds 8).
	MaxOldKeys = 64
	// MaxShares bounds the shares of a backup (an index is a byte).
	MaxShares = 255
	// MaxShareID bounds a backup's name for its shares.
	MaxShareID = 256
	// MaxPassphrase bounds one custodian's passphrase.
	MaxPassphrase = 1024
	// MaxHPKEKey bounds a restore session's public key (X25519: 32).
	MaxHPKEKey = 256
	// MaxSealedShare bounds a sealed share (about 150 bytes).
	MaxSealedShare = 1024
	// MaxTransferChunk is the most EXT_DOWNLOAD answers at once, and what
	// the client sends in one EXT_UPLOAD: a packet less the header, the
	// total and the length.
	MaxTransferChunk = MaxPacket - 32
)

// EXT_REFUSAL's reasons for a FORBIDDEN answer.
const (
	// RefusalNone: the request before was not answered FORBIDDEN.
	RefusalNone = 0
	// RefusalNotLoggedIn: the connection is not logged in as a user that
	// may ask it.
	RefusalNotLoggedIn = 1
	// RefusalForbidden: the user, the key's usages or the key policy
	// forbid it; the message says which.
	RefusalForbidden = 2
	// RefusalNotExportable: the key is not exportable.
	RefusalNotExportable = 3

	// Version 6: why a function of the master key or stored keys failed,
	// whatever its status.

	// RefusalNotThisHSM: a stored-keys file of another HSM, or of a
	// master key this HSM no longer holds.
	RefusalNotThisHSM = 4
	// RefusalMasterKeySet: a restore asked of an HSM whose master key is
	// set.
	RefusalMasterKeySet = 5
	// RefusalNoRestore: a share submitted with no restore session open.
	RefusalNoRestore = 6
	// RefusalShareRefused: the restore session refused the share.
	RefusalShareRefused = 7
	// RefusalFailed: any other failure; the message says what.
	RefusalFailed = 8
)

// The miscellaneous functions (0 to 6): version, random numbers, PINs and
// login state.

// GetVersionRequest is GET_VERSION's request; it has no arguments.
type GetVersionRequest struct{}

// GetVersionResponse is GET_VERSION's result: uint version (libhal answers
// 0x01010100).
type GetVersionResponse struct {
	Version uint32
}

// GetRandomRequest is GET_RANDOM's argument: uint n, the number of bytes
// wanted.
type GetRandomRequest struct {
	N uint32
}

// GetRandomResponse is GET_RANDOM's result: bytes data.
type GetRandomResponse struct {
	Data []byte
}

// SetPINRequest is SET_PIN's arguments: uint user, bytes pin.
type SetPINRequest struct {
	User uint32
	PIN  []byte
}

// SetPINResponse is SET_PIN's (empty) result.
type SetPINResponse struct{}

// LoginRequest is LOGIN's arguments: uint user, bytes pin.
type LoginRequest struct {
	User uint32
	PIN  []byte
}

// LoginResponse is LOGIN's (empty) result.
type LoginResponse struct{}

// LogoutRequest is LOGOUT's request; it has no arguments (the client field
// of the header says who logs out).
type LogoutRequest struct{}

// LogoutResponse is LOGOUT's (empty) result.
type LogoutResponse struct{}

// LogoutAllRequest is LOGOUT_ALL's request; it has no arguments.
type LogoutAllRequest struct{}

// LogoutAllResponse is LOGOUT_ALL's (empty) result.
type LogoutAllResponse struct{}

// IsLoggedInRequest is IS_LOGGED_IN's argument: uint user.
type IsLoggedInRequest struct {
	User uint32
}

// IsLoggedInResponse is IS_LOGGED_IN's (empty) result: the status is the
// answer, OK when the user is logged in and [StatusForbidden] otherwise.
type IsLoggedInResponse struct{}

// The hash functions (7 to 12). A hash handle is a uint; 0 means none.

// HashGetDigestLenRequest is HASH_GET_DIGEST_LEN's argument: uint alg.
type HashGetDigestLenRequest struct {
	Alg uint32
}

// HashGetDigestLenResponse is HASH_GET_DIGEST_LEN's result: uint len.
type HashGetDigestLenResponse struct {
	Len uint32
}

// HashGetDigestAlgorithmIDRequest is HASH_GET_DIGEST_ALGORITHM_ID's
// arguments: uint alg, uint max (the longest answer the caller accepts).
type HashGetDigestAlgorithmIDRequest struct {
	Alg, Max uint32
}

// HashGetDigestAlgorithmIDResponse is HASH_GET_DIGEST_ALGORITHM_ID's result:
// bytes, a DER AlgorithmIdentifier.
type HashGetDigestAlgorithmIDResponse struct {
	DER []byte
}

// HashGetAlgorithmRequest is HASH_GET_ALGORITHM's argument: uint hash.
type HashGetAlgorithmRequest struct {
	Hash uint32
}

// HashGetAlgorithmResponse is HASH_GET_ALGORITHM's result: uint alg.
type HashGetAlgorithmResponse struct {
	Alg uint32
}

// HashInitializeRequest is HASH_INITIALIZE's arguments: uint session,
// uint alg, bytes hmac_key (empty for a plain hash).
type HashInitializeRequest struct {
	Session, Alg uint32
	HMACKey      []byte
}

// HashInitializeResponse is HASH_INITIALIZE's result: uint hash.
type HashInitializeResponse struct {
	Hash uint32
}

// HashUpdateRequest is HASH_UPDATE's arguments: uint hash, bytes data.
type HashUpdateRequest struct {
	Hash uint32
	Data []byte
}

// HashUpdateResponse is HASH_UPDATE's (empty) result.
type HashUpdateResponse struct{}

// HashFinalizeRequest is HASH_FINALIZE's arguments: uint hash, uint len (the
// digest length the caller expects).
type HashFinalizeRequest struct {
	Hash, Len uint32
}

// HashFinalizeResponse is HASH_FINALIZE's result: bytes digest.
type HashFinalizeResponse struct {
	Digest []byte
}

// The pkey functions (13 to 31). Key and hash handles are uints; UUIDs
// travel as bytes (16 of them, which the server, not this layer, checks).

// PkeyLoadRequest is PKEY_LOAD's arguments: uint session, bytes der,
// uint flags.
type PkeyLoadRequest struct {
	Session uint32
	DER     []byte
	Flags   uint32
}

// PkeyLoadResponse is PKEY_LOAD's results: uint pkey, bytes uuid.
type PkeyLoadResponse struct {
	Pkey uint32
	UUID []byte
}

// PkeyOpenRequest is PKEY_OPEN's arguments: uint session, bytes uuid.
type PkeyOpenRequest struct {
	Session uint32
	UUID    []byte
}

// PkeyOpenResponse is PKEY_OPEN's result: uint pkey.
type PkeyOpenResponse struct {
	Pkey uint32
}

// PkeyGenerateRSARequest is PKEY_GENERATE_RSA's arguments: uint session,
// uint keylen (in bits), bytes exponent (big-endian), uint flags.
type PkeyGenerateRSARequest struct {
	Session, KeyLen uint32
	Exponent        []byte
	Flags           uint32
}

// PkeyGenerateRSAResponse is PKEY_GENERATE_RSA's results: uint pkey,
// bytes uuid.
type PkeyGenerateRSAResponse struct {
	Pkey uint32
	UUID []byte
}

// PkeyGenerateECRequest is PKEY_GENERATE_EC's arguments: uint session,
// uint curve, uint flags.
type PkeyGenerateECRequest struct {
	Session, Curve, Flags uint32
}

// PkeyGenerateECResponse is PKEY_GENERATE_EC's results: uint pkey,
// bytes uuid.
type PkeyGenerateECResponse struct {
	Pkey uint32
	UUID []byte
}

// PkeyGenerateHashsigRequest is PKEY_GENERATE_HASHSIG's arguments:
// uint session, uint L (levels), uint lms_type, uint lmots_type, uint flags.
type PkeyGenerateHashsigRequest struct {
	Session, L, LMSType, LMOTSType, Flags uint32
}

// PkeyGenerateHashsigResponse is PKEY_GENERATE_HASHSIG's results:
// uint pkey, bytes uuid.
type PkeyGenerateHashsigResponse struct {
	Pkey uint32
	UUID []byte
}

// PkeyCloseRequest is PKEY_CLOSE's argument: uint pkey.
type PkeyCloseRequest struct {
	Pkey uint32
}

// PkeyCloseResponse is PKEY_CLOSE's (empty) result.
type PkeyCloseResponse struct{}

// PkeyDeleteRequest is PKEY_DELETE's argument: uint pkey.
type PkeyDeleteRequest struct {
	Pkey uint32
}

// PkeyDeleteResponse is PKEY_DELETE's (empty) result.
type PkeyDeleteResponse struct{}

// PkeyGetKeyTypeRequest is PKEY_GET_KEY_TYPE's argument: uint pkey.
type PkeyGetKeyTypeRequest struct {
	Pkey uint32
}

// PkeyGetKeyTypeResponse is PKEY_GET_KEY_TYPE's result: uint type.
type PkeyGetKeyTypeResponse struct {
	Type uint32
}

// PkeyGetKeyFlagsRequest is PKEY_GET_KEY_FLAGS's argument: uint pkey.
type PkeyGetKeyFlagsRequest struct {
	Pkey uint32
}

// PkeyGetKeyFlagsResponse is PKEY_GET_KEY_FLAGS's result: uint flags.
type PkeyGetKeyFlagsResponse struct {
	Flags uint32
}

// PkeyGetKeyCurveRequest is PKEY_GET_KEY_CURVE's argument: uint pkey.
type PkeyGetKeyCurveRequest struct {
	Pkey uint32
}

// PkeyGetKeyCurveResponse is PKEY_GET_KEY_CURVE's result: uint curve.
type PkeyGetKeyCurveResponse struct {
	Curve uint32
}

// PkeyGetPublicKeyLenRequest is PKEY_GET_PUBLIC_KEY_LEN's argument:
// uint pkey.
type PkeyGetPublicKeyLenRequest struct {
	Pkey uint32
}

// PkeyGetPublicKeyLenResponse is PKEY_GET_PUBLIC_KEY_LEN's result: uint len.
type PkeyGetPublicKeyLenResponse struct {
	Len uint32
}

// PkeyGetPublicKeyRequest is PKEY_GET_PUBLIC_KEY's arguments: uint pkey,
// uint max.
type PkeyGetPublicKeyRequest struct {
	Pkey, Max uint32
}

// PkeyGetPublicKeyResponse is PKEY_GET_PUBLIC_KEY's result: bytes, a DER
// SubjectPublicKeyInfo.
type PkeyGetPublicKeyResponse struct {
	DER []byte
}

// PkeySignRequest is PKEY_SIGN's arguments: uint pkey, uint hash (a hash
// handle, 0 for none), bytes data (the digest, or an RSA DigestInfo, when
// hash is 0), uint max (the longest signature the caller accepts).
type PkeySignRequest struct {
	Pkey, Hash uint32
	Data       []byte
	Max        uint32
}

// PkeySignResponse is PKEY_SIGN's result: bytes signature (r || s for
// ECDSA).
type PkeySignResponse struct {
	Signature []byte
}

// PkeyVerifyRequest is PKEY_VERIFY's arguments: uint pkey, uint hash,
// bytes data, bytes signature.
type PkeyVerifyRequest struct {
	Pkey, Hash      uint32
	Data, Signature []byte
}

// PkeyVerifyResponse is PKEY_VERIFY's (empty) result; a bad signature is
// the status [StatusInvalidSignature].
type PkeyVerifyResponse struct{}

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

// PkeyMatchResponse is PKEY_MATCH's results: uint state, uint n, n x bytes
// uuid.
type PkeyMatchResponse struct {
	State uint32
	UUIDs [][]byte
}

// PkeySetAttributesRequest is PKEY_SET_ATTRIBUTES's arguments: uint pkey,
// attributes. An Absent attribute is deleted.
type PkeySetAttributesRequest struct {
	Pkey       uint32
	Attributes []Attribute
}

// PkeySetAttributesResponse is PKEY_SET_ATTRIBUTES's (empty) result.
type PkeySetAttributesResponse struct{}

// PkeyGetAttributesRequest is PKEY_GET_ATTRIBUTES's arguments: uint pkey,
// uint n, n x uint type, uint buffer_len. A BufferLen of 0 asks for the
// lengths of the values instead of the values.
type PkeyGetAttributesRequest struct {
	Pkey      uint32
	Types     []uint32
	BufferLen uint32
}

// PkeyGetAttributesResponse is PKEY_GET_ATTRIBUTES's results: uint n, then
// n x (uint type, bytes value), or, when LengthsOnly, n x (uint type,
// uint length) with the lengths in [Attribute.Length].
//
// The wire does not say which form it carries: the request's BufferLen
// does. Set LengthsOnly before DecodeArgs when that BufferLen was 0; it is
// not itself sent.
type PkeyGetAttributesResponse struct {
	Attributes  []Attribute `xdr:"lengths=LengthsOnly"`
	LengthsOnly bool        `xdr:"-"`
}

// PkeyExportRequest is PKEY_EXPORT's arguments: uint pkey, uint kekek,
// uint pkcs8_max, uint kek_max.
type PkeyExportRequest struct {
	Pkey, KEKEK, PKCS8Max, KEKMax uint32
}

// PkeyExportResponse is PKEY_EXPORT's results: bytes pkcs8 (the wrapped
// key), bytes kek (the encrypted KEK).
type PkeyExportResponse struct {
	PKCS8, KEK []byte
}

// PkeyImportRequest is PKEY_IMPORT's arguments: uint session, uint kekek,
// bytes pkcs8, bytes kek, uint flags.
type PkeyImportRequest struct {
	Session, KEKEK uint32
	PKCS8, KEK     []byte
	Flags          uint32
}

// PkeyImportResponse is PKEY_IMPORT's results: uint pkey, bytes uuid.
type PkeyImportResponse struct {
	Pkey uint32
	UUID []byte
}

// The extension functions (0x10000 up).

// ExtCapabilitiesRequest is EXT_CAPABILITIES's request; it has no
// arguments.
type ExtCapabilitiesRequest struct{}

// ExtCapabilitiesResponse is EXT_CAPABILITIES's results: uint version,
// uint n, n x bytes, the names of the KEK encryptions the server offers.
type ExtCapabilitiesResponse struct {
	Version        uint32
	KEKEncryptions []string `xdr:"max=MaxEncryptionName"`
}

// ExtDamagedRequest is EXT_DAMAGED's request; it has no arguments.
type ExtDamagedRequest struct{}

// ExtDamagedResponse is EXT_DAMAGED's result: uint n, n x uint block.
type ExtDamagedResponse struct {
	Blocks []uint32 `xdr:"count=MaxDamagedBlocks"`
}

// ExtExportRequest is EXT_EXPORT's arguments: uint pkey, bytes kekek (a
// SubjectPublicKeyInfo), bytes encryption, then the binding (nil: none).
type ExtExportRequest struct {
	Pkey       uint32
	KEKEK      []byte
	Encryption string `xdr:"max=MaxEncryptionName"`
	Binding    []byte `xdr:"optional"`
}

// ExtExportResponse is EXT_EXPORT's results: bytes pkcs8 (the wrapped
// key), bytes kek (the encrypted KEK), bytes tag.
type ExtExportResponse struct {
	PKCS8, KEK, Tag []byte
}

// ExtImportBeginRequest is EXT_IMPORT_BEGIN's argument: bytes kekek, the
// KEKEK's UUID.
type ExtImportBeginRequest struct {
	KEKEK []byte `xdr:"max=16"`
}

// ExtImportBeginResponse is EXT_IMPORT_BEGIN's result: uint batch.
type ExtImportBeginResponse struct {
	Batch uint32
}

// ExtImportAddRequest is EXT_IMPORT_ADD's arguments: one key of a batch.
// Binding nil is none.
type ExtImportAddRequest struct {
	Batch           uint32
	UUID            []byte `xdr:"max=16"`
	Label           string `xdr:"max=MaxLabel"`
	Flags           uint32
	Encryption      string `xdr:"max=MaxEncryptionName"`
	PKCS8, KEK, Tag []byte
	Binding         []byte `xdr:"optional"`
	SPKI            []byte
}

// ExtImportAdd2Request is EXT_IMPORT_ADD2's arguments: EXT_IMPORT_ADD's,
// then the key's attributes (none absent).
type ExtImportAdd2Request struct {
	ExtImportAddRequest
	Attributes []Attribute
}

// ExtImportAddResponse is the (empty) result of EXT_IMPORT_ADD and
// EXT_IMPORT_ADD2.
type ExtImportAddResponse struct{}

// ExtImportCommitRequest is EXT_IMPORT_COMMIT's argument: uint batch.
type ExtImportCommitRequest struct {
	Batch uint32
}

// ExtImportCommitResponse is EXT_IMPORT_COMMIT's result: Present[i] says
// key i of the batch was already there, and left alone.
type ExtImportCommitResponse struct {
	Present []bool `xdr:"bitmap,count=MaxImportBatch"`
}

// ExtGetAttributesRequest is EXT_GET_ATTRIBUTES's argument: uint pkey.
type ExtGetAttributesRequest struct {
	Pkey uint32
}

// ExtGetAttributesResponse is EXT_GET_ATTRIBUTES's result: every attribute
// of the key, as PKEY_GET_ATTRIBUTES would give each, ordered by type.
type ExtGetAttributesResponse struct {
	Attributes []Attribute `xdr:"values"`
}

// ExtIdentityRequest is EXT_IDENTITY's request; it has no arguments.
type ExtIdentityRequest struct{}

// ExtIdentityResponse is EXT_IDENTITY's results: bytes manufacturer,
// bytes model, bytes serial, bytes label.
type ExtIdentityResponse struct {
	Manufacturer string `xdr:"max=MaxIdentityField"`
	Model        string `xdr:"max=MaxIdentityField"`
	Serial       string `xdr:"max=MaxIdentityField"`
	Label        string `xdr:"max=MaxIdentityField"`
}

// ExtMechanismRequest is the part of the wrap, unwrap, encrypt and decrypt
// requests that says how a key is wrapped or data encrypted: a CKM_ number,
// then CK_RSA_PKCS_OAEP_PARAMS's hash, mgf and label, and
// CKM_RSA_AES_KEY_WRAP's AES key size (zero where they mean nothing).
type ExtMechanismRequest struct {
	Mechanism, Hash, MGF uint32
	OAEPLabel            []byte `xdr:"max=MaxLabel"`
	AESBits              uint32
}

// ExtGenerateSecretRequest is EXT_GENERATE_SECRET's arguments.
type ExtGenerateSecretRequest struct {
	Bits, Flags uint32
	Label       string `xdr:"max=MaxLabel"`
	Attributes  []Attribute
}

// ExtNewKeyResponse is the results of EXT_GENERATE_SECRET and
// EXT_UNWRAP_KEY: uint pkey, bytes uuid.
type ExtNewKeyResponse struct {
	Pkey uint32
	UUID []byte `xdr:"max=16"`
}

// ExtWrapKeyRequest is EXT_WRAP_KEY's arguments.
type ExtWrapKeyRequest struct {
	Wrapping, Pkey uint32
	ExtMechanismRequest
}

// ExtBytesResponse is the result of EXT_WRAP_KEY, EXT_ENCRYPT and
// EXT_DECRYPT: bytes.
type ExtBytesResponse struct {
	Data []byte
}

// ExtUnwrapKeyRequest is EXT_UNWRAP_KEY's arguments.
type ExtUnwrapKeyRequest struct {
	Unwrapping uint32
	ExtMechanismRequest
	Wrapped           []byte
	Type, Bits, Flags uint32
	Label             string `xdr:"max=MaxLabel"`
	Attributes        []Attribute
}

// ExtCryptRequest is the arguments of EXT_ENCRYPT and EXT_DECRYPT.
type ExtCryptRequest struct {
	Pkey uint32
	ExtMechanismRequest
	Data []byte
}

// ExtSetTrustedRequest is EXT_SET_TRUSTED's arguments.
type ExtSetTrustedRequest struct {
	UUID    []byte `xdr:"max=16"`
	Trusted uint32 // 1 or 0
}

// ExtEmptyResponse is the empty result of EXT_SET_TRUSTED.
type ExtEmptyResponse struct{}

// ExtRefusalRequest is EXT_REFUSAL's request; it has no arguments.
type ExtRefusalRequest struct{}

// ExtRefusalResponse is EXT_REFUSAL's results: uint reason, bytes message
// (the HSM's words for RefusalForbidden and RefusalNotExportable, empty
// otherwise).
type ExtRefusalResponse struct {
	Reason  uint32
	Message string `xdr:"max=MaxRefusal"`
}

// ExtLoadSecretRequest is EXT_LOAD_SECRET's arguments: EXT_GENERATE_SECRET's,
// then the key's value.
type ExtLoadSecretRequest struct {
	ExtGenerateSecretRequest
	Value []byte `xdr:"max=MaxSecretKey"`
}

// ExtTrustCandidateRequest is EXT_TRUST_CANDIDATE's argument: the UUID the
// answer follows (16 zero bytes for the first).
type ExtTrustCandidateRequest struct {
	Previous []byte `xdr:"max=16"`
}

// ExtTrustCandidateResponse is EXT_TRUST_CANDIDATE's results: one key the
// security officer may mark trusted, or an empty UUID after the last.
type ExtTrustCandidateResponse struct {
	ExtKeyInfoResponse
	Attributes []Attribute `xdr:"values"`
}

// ExtMasterKeyStatusRequest is EXT_MASTERKEY_STATUS's request; it has no
// arguments.
type ExtMasterKeyStatusRequest struct{}

// ExtMasterKeyStatusResponse is EXT_MASTERKEY_STATUS's results. The old
// keys' check values and record counts are two lists of one length;
// the restore status means something when Restoring is 1.
type ExtMasterKeyStatusResponse struct {
	Set, CheckValueKnown uint32
	CheckValue           []byte   `xdr:"max=MaxCheckValue"`
	OldCheckValues       [][]byte `xdr:"max=MaxCheckValue,count=MaxOldKeys"`
	OldRecords           []uint32 `xdr:"count=MaxOldKeys"`
	Restoring            uint32
	ExtRestoreStatusResponse
}

// ExtRestoreStatusResponse is a restore session: the results of
// EXT_RESTORE_BEGIN and EXT_RESTORE_SUBMIT.
type ExtRestoreStatusResponse struct {
	ID                  []byte `xdr:"max=16"`
	PublicKey           []byte `xdr:"max=MaxHPKEKey"`
	Received, Threshold uint32
	CheckValue          []byte `xdr:"max=MaxCheckValue"`
	Done                uint32
}

// ExtMasterKeyBackupRequest is EXT_MASTERKEY_BACKUP's arguments: the
// custodians' passphrases travel as LOGIN's PINs do.
type ExtMasterKeyBackupRequest struct {
	ID                                string `xdr:"max=MaxShareID"`
	Threshold, Shares                 uint32
	Passphrases                       [][]byte `xdr:"max=MaxPassphrase,count=MaxShares"`
	KDFTime, KDFMemoryKiB, KDFThreads uint32
}

// ExtLengthResponse is the result of the functions that answer through the
// download buffer: uint length, what it holds now.
type ExtLengthResponse struct {
	Length uint32
}

// ExtMasterKeyZeroizeRequest is EXT_MASTERKEY_ZEROIZE's request; it has no
// arguments.
type ExtMasterKeyZeroizeRequest struct{}

// ExtRestoreBeginRequest is EXT_RESTORE_BEGIN's request; it has no
// arguments.
type ExtRestoreBeginRequest struct{}

// ExtRestoreSubmitRequest is EXT_RESTORE_SUBMIT's argument: one share,
// sealed to the restore session.
type ExtRestoreSubmitRequest struct {
	Sealed []byte `xdr:"max=MaxSealedShare"`
}

// ExtRestoreAbortRequest is EXT_RESTORE_ABORT's request; it has no
// arguments.
type ExtRestoreAbortRequest struct{}

// ExtMasterKeyRotateRequest is EXT_MASTERKEY_ROTATE's request; it has no
// arguments.
type ExtMasterKeyRotateRequest struct{}

// ExtMasterKeyRotateResponse is EXT_MASTERKEY_ROTATE's results.
type ExtMasterKeyRotateResponse struct {
	CheckValue        []byte `xdr:"max=MaxCheckValue"`
	OldCheckValue     []byte `xdr:"max=MaxCheckValue"`
	Resealed, Skipped uint32
}

// ExtMasterKeyRetireRequest is EXT_MASTERKEY_RETIRE's argument: the old
// key's check value.
type ExtMasterKeyRetireRequest struct {
	CheckValue []byte `xdr:"max=MaxCheckValue"`
}

// ExtUploadRequest is EXT_UPLOAD's arguments: where the data goes in the
// upload buffer (its length so far, or 0 to start anew), and the data.
type ExtUploadRequest struct {
	Offset uint32
	Data   []byte `xdr:"max=MaxTransferChunk"`
}

// ExtDownloadRequest is EXT_DOWNLOAD's argument: where to read from.
type ExtDownloadRequest struct {
	Offset uint32
}

// ExtDownloadResponse is EXT_DOWNLOAD's results: the download buffer's
// length, and its bytes from the offset on, as many as a packet holds.
type ExtDownloadResponse struct {
	Total uint32
	Data  []byte `xdr:"max=MaxTransferChunk"`
}

// ExtStoreKeysRequest is EXT_STORE_KEYS's request; its UUIDs are in the
// upload buffer.
type ExtStoreKeysRequest struct{}

// ExtCheckStoredRequest is EXT_CHECK_STORED's request; the file is in the
// upload buffer.
type ExtCheckStoredRequest struct{}

// ExtRestoreKeysRequest is EXT_RESTORE_KEYS's request; the file is in the
// upload buffer.
type ExtRestoreKeysRequest struct{}

// ExtListKeysRequest is EXT_LIST_KEYS's arguments: PKEY_MATCH's filter.
type ExtListKeysRequest struct {
	Type, Curve, Mask, Flags uint32
	Attributes               []Attribute
}

// ExtKeyInfoResponse describes a key: EXT_TRUST_CANDIDATE's answer begins
// with it, and a key list (the download of EXT_CHECK_STORED and
// EXT_RESTORE_KEYS) is uint n, n x (ExtKeyInfoResponse, uint present).
type ExtKeyInfoResponse struct {
	UUID                     []byte `xdr:"max=16"`
	Type, Curve, Bits, Flags uint32
	Label                    string `xdr:"max=MaxLabel"`
	SPKI                     []byte
	// HashsigRemaining is an HSS private key's remaining signatures, 8
	// bytes big-endian; empty for other keys.
	HashsigRemaining []byte `xdr:"max=8"`
}

// ExtListedKeyResponse is one key of a key list: the key, and 1 when it
// was in the keystore already (a restore left it alone).
type ExtListedKeyResponse struct {
	ExtKeyInfoResponse
	Present uint32
}
