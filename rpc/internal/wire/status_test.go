package wire

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"testing"
)

// referenceStatuses is the status list of REFERENCE.md, "Status codes".
const referenceStatuses = `
0 OK, 1 BAD_ARGUMENTS, 2 UNSUPPORTED_KEY, 3 IO_SETUP_FAILED, 4 IO_TIMEOUT,
5 IO_UNEXPECTED, 6 IO_OS_ERROR, 7 IO_BAD_COUNT, 8 CSPRNG_BROKEN,
9 KEYWRAP_BAD_MAGIC, 10 KEYWRAP_BAD_LENGTH, 11 KEYWRAP_BAD_PADDING,
12 IMPOSSIBLE, 13 ALLOCATION_FAILURE, 14 RESULT_TOO_LONG, 15 ASN1_PARSE_FAILED,
16 KEY_NOT_ON_CURVE, 17 INVALID_SIGNATURE, 18 CORE_NOT_FOUND, 19 CORE_BUSY,
20 KEYSTORE_ACCESS, 21 KEY_NOT_FOUND, 22 KEY_NAME_IN_USE,
23 NO_KEY_SLOTS_AVAILABLE, 24 PIN_INCORRECT, 25 NO_CLIENT_SLOTS_AVAILABLE,
26 FORBIDDEN, 27 XDR_BUFFER_OVERFLOW, 28 RPC_TRANSPORT, 29 RPC_PACKET_OVERFLOW,
30 RPC_BAD_FUNCTION, 31 KEY_NAME_TOO_LONG, 32 MASTERKEY_NOT_SET,
33 MASTERKEY_FAIL, 34 MASTERKEY_BAD_LENGTH, 35 KS_DRIVER_NOT_FOUND,
36 KEYSTORE_BAD_CRC, 37 KEYSTORE_BAD_BLOCK_TYPE, 38 KEYSTORE_LOST_DATA,
39 BAD_ATTRIBUTE_LENGTH, 40 ATTRIBUTE_NOT_FOUND, 41 NO_KEY_INDEX_SLOTS,
42 KS_INDEX_UUID_MISORDERED, 43 KEYSTORE_WRONG_BLOCK_TYPE, 44 RPC_PROTOCOL_ERROR,
45 NOT_IMPLEMENTED, 46 CORE_REASSIGNED, 47 ASSERTION_FAILED,
48 HASHSIG_KEY_EXHAUSTED, 49 NOT_READY, 50 TAMPER.`

func TestStatusNames(t *testing.T) {
	m := regexp.MustCompile(`(\d+) ([A-Z0-9_]+)`).FindAllStringSubmatch(referenceStatuses, -1)
	if len(m) != 51 {
		t.Fatalf("parsed %d statuses", len(m))
	}
	for i, kv := range m {
		n, _ := strconv.Atoi(kv[1])
		if n != i {
			t.Fatalf("status list out of order at %d", n)
		}
		want := "HAL_ERROR_" + kv[2]
		if n == 0 {
			want = "HAL_OK"
		}
		if got := Status(n).Name(); got != want {
			t.Errorf("Status(%d).Name() = %s, want %s", n, got, want)
		}
	}
	if len(statusInfo) != 51 {
		t.Errorf("statusInfo has %d entries", len(statusInfo))
	}
	for s, info := range statusInfo {
		if info.text == "" {
			t.Errorf("Status(%d) has no description", s)
		}
	}
}

func TestStatusConstants(t *testing.T) {
	// Spot checks of the Go names against the numbers.
	for _, tc := range []struct {
		s    Status
		want uint32
	}{
		{StatusOK, 0}, {StatusBadArguments, 1}, {StatusUnsupportedKey, 2},
		{StatusResultTooLong, 14}, {StatusInvalidSignature, 17}, {StatusKeyNotFound, 21},
		{StatusKeyNameInUse, 22}, {StatusPINIncorrect, 24}, {StatusForbidden, 26},
		{StatusXDRBufferOverflow, 27}, {StatusRPCPacketOverflow, 29}, {StatusRPCBadFunction, 30},
		{StatusAttributeNotFound, 40}, {StatusRPCProtocolError, 44}, {StatusNotImplemented, 45},
		{StatusHashsigKeyExhausted, 48}, {StatusTamper, 50},
	} {
		if uint32(tc.s) != tc.want {
			t.Errorf("%s = %d, want %d", tc.s.Name(), uint32(tc.s), tc.want)
		}
	}
}

func TestStatusError(t *testing.T) {
	if got, want := StatusKeyNotFound.Error(), "key not found (HAL_ERROR_KEY_NOT_FOUND)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := Status(77).Error(), "unknown libhal status 77 (HAL_ERROR_77)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	err := fmt.Errorf("open key: %w", StatusKeyNotFound)
	if !errors.Is(err, StatusKeyNotFound) || errors.Is(err, StatusForbidden) {
		t.Error("errors.Is does not see the status")
	}
	var st Status
	if !errors.As(err, &st) || st != StatusKeyNotFound {
		t.Errorf("errors.As: %v", st)
	}
}
