package wire

import "strconv"

// Func is a libhal RPC function number, the first word of every request and
// response. messages.go lists them.
type Func uint32

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
