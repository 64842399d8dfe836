package rpc

import (
	"errors"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// statusErrors pairs the HSM's errors with the libhal statuses that carry
// them, both ways: the server answers an error with its status, the client
// turns a status back into the error callers test with errors.Is.
var statusErrors = []struct {
	err    error
	status Status
}{
	{hsmapi.ErrBadArguments, StatusBadArguments},
	{hsmapi.ErrBadUUID, StatusBadArguments},
	{hsmapi.ErrKeyNotFound, StatusKeyNotFound},
	{hsmapi.ErrKeyNameInUse, StatusKeyNameInUse},
	// After ErrKeyNameInUse, which a client turns the status back into:
	// libhal has one answer for a key it holds already.
	{hsm.ErrHashsigRangeUsed, StatusKeyNameInUse},
	{hsmapi.ErrNotLoggedIn, StatusForbidden},
	{hsmapi.ErrForbidden, StatusForbidden},
	{hsmapi.ErrNotExportable, StatusForbidden},
	{hsmapi.ErrPINIncorrect, StatusPINIncorrect},
	{hsmapi.ErrUnsupportedKey, StatusUnsupportedKey},
	{hsmapi.ErrUnsupported, StatusNotImplemented},
	// libhal reports a failed key unwrap this way, whatever failed.
	{hsmapi.ErrDecryption, StatusKeywrapBadMagic},
	{hsmapi.ErrInvalidSignature, StatusInvalidSignature},
	{hsmapi.ErrKeystoreFull, StatusNoKeySlotsAvailable},
	{hsmapi.ErrTamper, StatusMasterkeyNotSet},
	{hsmapi.ErrKeyExhausted, StatusHashsigKeyExhausted},
	{hsmapi.ErrAttributeNotFound, StatusAttributeNotFound},
	{hsmapi.ErrDamaged, StatusKeystoreBadCRC},
}

// statusOf is the status a server answers err with.
func statusOf(err error) Status {
	if err == nil {
		return StatusOK
	}
	var st Status
	if errors.As(err, &st) {
		return st
	}
	for _, se := range statusErrors {
		if errors.Is(err, se.err) {
			return se.status
		}
	}
	return StatusImpossible
}

// statusError is what a client returns for a status other than OK: the
// status itself, and the HSM error it stands for, so that errors.Is works
// with either.
type statusError struct {
	status Status
	err    error
}

func (e *statusError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return e.status.Error()
}

func (e *statusError) Unwrap() []error {
	if e.err != nil {
		return []error{e.status, e.err}
	}
	return []error{e.status}
}

func errorOf(st Status) error {
	if st == StatusOK {
		return nil
	}
	for _, se := range statusErrors {
		if se.status == st {
			return &statusError{st, se.err}
		}
	}
	return &statusError{status: st}
}
