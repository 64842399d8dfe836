package wire

import "strconv"

// Status is a libhal status code, the third word of every response. The
// values and their HAL_ERROR_ names are fixed by libhal's hal_error_t; a
// Status other than [StatusOK] is also an error, so callers can return it
// directly and test for it with errors.Is.
type Status uint32

// The libhal status codes, in libhal's order.
const (
	StatusOK                     Status = 0
	StatusBadArguments           Status = 1
	StatusUnsupportedKey         Status = 2
	StatusIOSetupFailed          Status = 3
	StatusIOTimeout              Status = 4
	StatusIOUnexpected           Status = 5
	StatusIOOSError              Status = 6
	StatusIOBadCount             Status = 7
	StatusCSPRNGBroken           Status = 8
	StatusKeywrapBadMagic        Status = 9
	StatusKeywrapBadLength       Status = 10
	StatusKeywrapBadPadding      Status = 11
	StatusImpossible             Status = 12
	StatusAllocationFailure      Status = 13
	StatusResultTooLong          Status = 14
	StatusASN1ParseFailed        Status = 15
	StatusKeyNotOnCurve          Status = 16
	StatusInvalidSignature       Status = 17
	StatusCoreNotFound           Status = 18
	StatusCoreBusy               Status = 19
	StatusKeystoreAccess         Status = 20
	StatusKeyNotFound            Status = 21
	StatusKeyNameInUse           Status = 22
	StatusNoKeySlotsAvailable    Status = 23
	StatusPINIncorrect           Status = 24
	StatusNoClientSlotsAvailable Status = 25
	StatusForbidden              Status = 26
	StatusXDRBufferOverflow      Status = 27
	StatusRPCTransport           Status = 28
	StatusRPCPacketOverflow      Status = 29
	StatusRPCBadFunction         Status = 30
	StatusKeyNameTooLong         Status = 31
	StatusMasterkeyNotSet        Status = 32
	StatusMasterkeyFail          Status = 33
	StatusMasterkeyBadLength     Status = 34
	StatusKSDriverNotFound       Status = 35
	StatusKeystoreBadCRC         Status = 36
	StatusKeystoreBadBlockType   Status = 37
	StatusKeystoreLostData       Status = 38
	StatusBadAttributeLength     Status = 39
	StatusAttributeNotFound      Status = 40
	StatusNoKeyIndexSlots        Status = 41
	StatusKSIndexUUIDMisordered  Status = 42
	StatusKeystoreWrongBlockType Status = 43
	StatusRPCProtocolError       Status = 44
	StatusNotImplemented         Status = 45
	StatusCoreReassigned         Status = 46
	StatusAssertionFailed        Status = 47
	StatusHashsigKeyExhausted    Status = 48
	StatusNotReady               Status = 49
	StatusTamper                 Status = 50
)

// statusInfo holds, for each status, the suffix of its libhal name (after
// HAL_ERROR_) and a short description in our own words.
var statusInfo = [...]struct{ name, text string }{
	StatusOK:                     {"", "ok"},
	StatusBadArguments:           {"BAD_ARGUMENTS", "bad arguments"},
	StatusUnsupportedKey:         {"UNSUPPORTED_KEY", "unsupported key type or length"},
	StatusIOSetupFailed:          {"IO_SETUP_FAILED", "cannot set up i/o with the fpga"},
	StatusIOTimeout:              {"IO_TIMEOUT", "i/o with the fpga timed out"},
	StatusIOUnexpected:           {"IO_UNEXPECTED", "unexpected answer from the fpga"},
	StatusIOOSError:              {"IO_OS_ERROR", "operating system error in fpga i/o"},
	StatusIOBadCount:             {"IO_BAD_COUNT", "bad byte count"},
	StatusCSPRNGBroken:           {"CSPRNG_BROKEN", "random number generator failed"},
	StatusKeywrapBadMagic:        {"KEYWRAP_BAD_MAGIC", "key unwrap: bad magic number"},
	StatusKeywrapBadLength:       {"KEYWRAP_BAD_LENGTH", "key unwrap: length out of range"},
	StatusKeywrapBadPadding:      {"KEYWRAP_BAD_PADDING", "key unwrap: nonzero padding"},
	StatusImpossible:             {"IMPOSSIBLE", "internal error that cannot happen"},
	StatusAllocationFailure:      {"ALLOCATION_FAILURE", "out of memory"},
	StatusResultTooLong:          {"RESULT_TOO_LONG", "result does not fit the buffer"},
	StatusASN1ParseFailed:        {"ASN1_PARSE_FAILED", "cannot parse asn.1"},
	StatusKeyNotOnCurve:          {"KEY_NOT_ON_CURVE", "ec point is not on the curve"},
	StatusInvalidSignature:       {"INVALID_SIGNATURE", "invalid signature"},
	StatusCoreNotFound:           {"CORE_NOT_FOUND", "fpga core not found"},
	StatusCoreBusy:               {"CORE_BUSY", "fpga core busy"},
	StatusKeystoreAccess:         {"KEYSTORE_ACCESS", "cannot access the keystore"},
	StatusKeyNotFound:            {"KEY_NOT_FOUND", "key not found"},
	StatusKeyNameInUse:           {"KEY_NAME_IN_USE", "key name already in use"},
	StatusNoKeySlotsAvailable:    {"NO_KEY_SLOTS_AVAILABLE", "no key slots left"},
	StatusPINIncorrect:           {"PIN_INCORRECT", "pin incorrect"},
	StatusNoClientSlotsAvailable: {"NO_CLIENT_SLOTS_AVAILABLE", "no client slots left"},
	StatusForbidden:              {"FORBIDDEN", "forbidden"},
	StatusXDRBufferOverflow:      {"XDR_BUFFER_OVERFLOW", "xdr data runs past the end of the buffer"},
	StatusRPCTransport:           {"RPC_TRANSPORT", "rpc transport error"},
	StatusRPCPacketOverflow:      {"RPC_PACKET_OVERFLOW", "rpc packet too large"},
	StatusRPCBadFunction:         {"RPC_BAD_FUNCTION", "unknown rpc function"},
	StatusKeyNameTooLong:         {"KEY_NAME_TOO_LONG", "key name has the wrong length"},
	StatusMasterkeyNotSet:        {"MASTERKEY_NOT_SET", "master key not set"},
	StatusMasterkeyFail:          {"MASTERKEY_FAIL", "master key failure"},
	StatusMasterkeyBadLength:     {"MASTERKEY_BAD_LENGTH", "master key has a bad length"},
	StatusKSDriverNotFound:       {"KS_DRIVER_NOT_FOUND", "keystore driver not found"},
	StatusKeystoreBadCRC:         {"KEYSTORE_BAD_CRC", "keystore block has a bad crc"},
	StatusKeystoreBadBlockType:   {"KEYSTORE_BAD_BLOCK_TYPE", "keystore block type not supported"},
	StatusKeystoreLostData:       {"KEYSTORE_LOST_DATA", "keystore lost data"},
	StatusBadAttributeLength:     {"BAD_ATTRIBUTE_LENGTH", "bad attribute length"},
	StatusAttributeNotFound:      {"ATTRIBUTE_NOT_FOUND", "attribute not found"},
	StatusNoKeyIndexSlots:        {"NO_KEY_INDEX_SLOTS", "no key index slots left"},
	StatusKSIndexUUIDMisordered:  {"KS_INDEX_UUID_MISORDERED", "keystore index out of order"},
	StatusKeystoreWrongBlockType: {"KEYSTORE_WRONG_BLOCK_TYPE", "keystore block of the wrong type"},
	StatusRPCProtocolError:       {"RPC_PROTOCOL_ERROR", "rpc protocol error"},
	StatusNotImplemented:         {"NOT_IMPLEMENTED", "not implemented"},
	StatusCoreReassigned:         {"CORE_REASSIGNED", "fpga core reassigned"},
	StatusAssertionFailed:        {"ASSERTION_FAILED", "assertion failed"},
	StatusHashsigKeyExhausted:    {"HASHSIG_KEY_EXHAUSTED", "hash-based key has no signatures left"},
	StatusNotReady:               {"NOT_READY", "not ready"},
	StatusTamper:                 {"TAMPER", "tamper detected"},
}

// Name returns libhal's name for s: "HAL_OK", "HAL_ERROR_KEY_NOT_FOUND",
// and "HAL_ERROR_<n>" for a code this package does not know.
func (s Status) Name() string {
	switch {
	case s == StatusOK:
		return "HAL_OK"
	case int64(s) < int64(len(statusInfo)):
		return "HAL_ERROR_" + statusInfo[s].name
	default:
		return "HAL_ERROR_" + strconv.FormatUint(uint64(s), 10)
	}
}

// Error returns a short description followed by libhal's name, for example
// "key not found (HAL_ERROR_KEY_NOT_FOUND)".
func (s Status) Error() string {
	if int64(s) < int64(len(statusInfo)) {
		return statusInfo[s].text + " (" + s.Name() + ")"
	}
	return "unknown libhal status " + strconv.FormatUint(uint64(s), 10) + " (" + s.Name() + ")"
}
