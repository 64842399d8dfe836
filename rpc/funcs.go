package rpc

import "strconv"

// Func is a libhal RPC function number, the first word of every request and
// response.
type Func uint32

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

// funcTable gives, for each function, its name (libhal's RPC_FUNC_ name
// without the prefix) and constructors for its request and response types.
var funcTable = [...]struct {
	name      string
	req, resp func() Args
}{
	FuncGetVersion: {"GET_VERSION",
		func() Args { return new(GetVersionRequest) }, func() Args { return new(GetVersionResponse) }},
	FuncGetRandom: {"GET_RANDOM",
		func() Args { return new(GetRandomRequest) }, func() Args { return new(GetRandomResponse) }},
	FuncSetPIN: {"SET_PIN",
		func() Args { return new(SetPINRequest) }, func() Args { return new(SetPINResponse) }},
	FuncLogin: {"LOGIN",
		func() Args { return new(LoginRequest) }, func() Args { return new(LoginResponse) }},
	FuncLogout: {"LOGOUT",
		func() Args { return new(LogoutRequest) }, func() Args { return new(LogoutResponse) }},
	FuncLogoutAll: {"LOGOUT_ALL",
		func() Args { return new(LogoutAllRequest) }, func() Args { return new(LogoutAllResponse) }},
	FuncIsLoggedIn: {"IS_LOGGED_IN",
		func() Args { return new(IsLoggedInRequest) }, func() Args { return new(IsLoggedInResponse) }},
	FuncHashGetDigestLen: {"HASH_GET_DIGEST_LEN",
		func() Args { return new(HashGetDigestLenRequest) }, func() Args { return new(HashGetDigestLenResponse) }},
	FuncHashGetDigestAlgorithmID: {"HASH_GET_DIGEST_ALGORITHM_ID",
		func() Args { return new(HashGetDigestAlgorithmIDRequest) }, func() Args { return new(HashGetDigestAlgorithmIDResponse) }},
	FuncHashGetAlgorithm: {"HASH_GET_ALGORITHM",
		func() Args { return new(HashGetAlgorithmRequest) }, func() Args { return new(HashGetAlgorithmResponse) }},
	FuncHashInitialize: {"HASH_INITIALIZE",
		func() Args { return new(HashInitializeRequest) }, func() Args { return new(HashInitializeResponse) }},
	FuncHashUpdate: {"HASH_UPDATE",
		func() Args { return new(HashUpdateRequest) }, func() Args { return new(HashUpdateResponse) }},
	FuncHashFinalize: {"HASH_FINALIZE",
		func() Args { return new(HashFinalizeRequest) }, func() Args { return new(HashFinalizeResponse) }},
	FuncPkeyLoad: {"PKEY_LOAD",
		func() Args { return new(PkeyLoadRequest) }, func() Args { return new(PkeyLoadResponse) }},
	FuncPkeyOpen: {"PKEY_OPEN",
		func() Args { return new(PkeyOpenRequest) }, func() Args { return new(PkeyOpenResponse) }},
	FuncPkeyGenerateRSA: {"PKEY_GENERATE_RSA",
		func() Args { return new(PkeyGenerateRSARequest) }, func() Args { return new(PkeyGenerateRSAResponse) }},
	FuncPkeyGenerateEC: {"PKEY_GENERATE_EC",
		func() Args { return new(PkeyGenerateECRequest) }, func() Args { return new(PkeyGenerateECResponse) }},
	FuncPkeyClose: {"PKEY_CLOSE",
		func() Args { return new(PkeyCloseRequest) }, func() Args { return new(PkeyCloseResponse) }},
	FuncPkeyDelete: {"PKEY_DELETE",
		func() Args { return new(PkeyDeleteRequest) }, func() Args { return new(PkeyDeleteResponse) }},
	FuncPkeyGetKeyType: {"PKEY_GET_KEY_TYPE",
		func() Args { return new(PkeyGetKeyTypeRequest) }, func() Args { return new(PkeyGetKeyTypeResponse) }},
	FuncPkeyGetKeyFlags: {"PKEY_GET_KEY_FLAGS",
		func() Args { return new(PkeyGetKeyFlagsRequest) }, func() Args { return new(PkeyGetKeyFlagsResponse) }},
	FuncPkeyGetPublicKeyLen: {"PKEY_GET_PUBLIC_KEY_LEN",
		func() Args { return new(PkeyGetPublicKeyLenRequest) }, func() Args { return new(PkeyGetPublicKeyLenResponse) }},
	FuncPkeyGetPublicKey: {"PKEY_GET_PUBLIC_KEY",
		func() Args { return new(PkeyGetPublicKeyRequest) }, func() Args { return new(PkeyGetPublicKeyResponse) }},
	FuncPkeySign: {"PKEY_SIGN",
		func() Args { return new(PkeySignRequest) }, func() Args { return new(PkeySignResponse) }},
	FuncPkeyVerify: {"PKEY_VERIFY",
		func() Args { return new(PkeyVerifyRequest) }, func() Args { return new(PkeyVerifyResponse) }},
	FuncPkeyMatch: {"PKEY_MATCH",
		func() Args { return new(PkeyMatchRequest) }, func() Args { return new(PkeyMatchResponse) }},
	FuncPkeyGetKeyCurve: {"PKEY_GET_KEY_CURVE",
		func() Args { return new(PkeyGetKeyCurveRequest) }, func() Args { return new(PkeyGetKeyCurveResponse) }},
	FuncPkeySetAttributes: {"PKEY_SET_ATTRIBUTES",
		func() Args { return new(PkeySetAttributesRequest) }, func() Args { return new(PkeySetAttributesResponse) }},
	FuncPkeyGetAttributes: {"PKEY_GET_ATTRIBUTES",
		func() Args { return new(PkeyGetAttributesRequest) }, func() Args { return new(PkeyGetAttributesResponse) }},
	FuncPkeyExport: {"PKEY_EXPORT",
		func() Args { return new(PkeyExportRequest) }, func() Args { return new(PkeyExportResponse) }},
	FuncPkeyImport: {"PKEY_IMPORT",
		func() Args { return new(PkeyImportRequest) }, func() Args { return new(PkeyImportResponse) }},
	FuncPkeyGenerateHashsig: {"PKEY_GENERATE_HASHSIG",
		func() Args { return new(PkeyGenerateHashsigRequest) }, func() Args { return new(PkeyGenerateHashsigResponse) }},
}

// String returns libhal's name for f without the RPC_FUNC_ prefix, such as
// "PKEY_SIGN", or "FUNC_<n>" for a number libhal does not define.
func (f Func) String() string {
	if int64(f) < int64(len(funcTable)) {
		return funcTable[f].name
	}
	return "FUNC_" + strconv.FormatUint(uint64(f), 10)
}

// NewRequest returns a pointer to the zero value of f's request type, ready
// for DecodeArgs, and false when f is not a libhal function (the server
// answers those with [StatusRPCBadFunction]).
func NewRequest(f Func) (Args, bool) {
	if int64(f) >= int64(len(funcTable)) {
		return nil, false
	}
	return funcTable[f].req(), true
}

// NewResponse returns a pointer to the zero value of f's response type, and
// false when f is not a libhal function. For [FuncPkeyGetAttributes], set
// [PkeyGetAttributesResponse.LengthsOnly] before decoding when the request's
// BufferLen was 0.
func NewResponse(f Func) (Args, bool) {
	if int64(f) >= int64(len(funcTable)) {
		return nil, false
	}
	return funcTable[f].resp(), true
}
