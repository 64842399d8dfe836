package rpc

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
	"github.com/hsmkit/cryptech-backup/storefile"
)

// statusErrors pairs the HSM's errors with the libhal statuses that carry
// them, both ways: the server answers an error with its status, the client
// turns a status back into the error callers test with errors.Is.
var statusErrors = []struct {
	err    error
	status wire.Status
}{
	{hsmapi.ErrBadArguments, wire.StatusBadArguments},
	{hsmapi.ErrBadUUID, wire.StatusBadArguments},
	{storefile.ErrMalformed, wire.StatusBadArguments},
	{hsmapi.ErrKeyNotFound, wire.StatusKeyNotFound},
	{hsmapi.ErrKeyNameInUse, wire.StatusKeyNameInUse},
	// After ErrKeyNameInUse, which a client turns the status back into:
	// libhal has one answer for a key it holds already.
	{hsmapi.ErrHashsigRangeUsed, wire.StatusKeyNameInUse},
	{hsmapi.ErrNotLoggedIn, wire.StatusForbidden},
	{hsmapi.ErrForbidden, wire.StatusForbidden},
	{hsmapi.ErrNotExportable, wire.StatusForbidden},
	{hsmapi.ErrPINIncorrect, wire.StatusPINIncorrect},
	{hsmapi.ErrUnsupportedKey, wire.StatusUnsupportedKey},
	{hsmapi.ErrUnsupported, wire.StatusNotImplemented},
	// libhal reports a failed key unwrap this way, whatever failed.
	{hsmapi.ErrDecryption, wire.StatusKeywrapBadMagic},
	{hsmapi.ErrInvalidSignature, wire.StatusInvalidSignature},
	{hsmapi.ErrKeystoreFull, wire.StatusNoKeySlotsAvailable},
	{hsmapi.ErrTamper, wire.StatusMasterkeyNotSet},
	{hsmapi.ErrKeyExhausted, wire.StatusHashsigKeyExhausted},
	{hsmapi.ErrAttributeNotFound, wire.StatusAttributeNotFound},
	{hsmapi.ErrDamaged, wire.StatusKeystoreBadCRC},
}

// storageErrors are the master key's and stored keys' errors, which libhal
// has no statuses for: they are answered MASTERKEY_FAIL, and EXT_REFUSAL
// tells the client which (refusalOf). Before statusErrors, whose
// sentinels they may come with.
var storageErrors = []struct {
	err    error
	reason uint32
}{
	{hsmapi.ErrNotThisHSM, wire.RefusalNotThisHSM},
	{hsmapi.ErrMasterKeySet, wire.RefusalMasterKeySet},
	{hsmapi.ErrNoRestore, wire.RefusalNoRestore},
	{hsmapi.ErrShareRefused, wire.RefusalShareRefused},
}

// explained reports whether EXT_REFUSAL explains every failed answer of f,
// not FORBIDDEN alone: the functions of version 6.
func explained(f wire.Func) bool {
	return f >= wire.FuncExtMasterKeyStatus && f <= wire.FuncExtRestoreKeys
}

// frontendStatuses are the libhal statuses of the front end's limits, as
// libhal answers when a table of its is full. (A client gets the statuses
// alone.)
var frontendStatuses = []struct {
	err    error
	status wire.Status
}{
	{frontend.ErrNoKeyHandles, wire.StatusNoKeySlotsAvailable},
	{frontend.ErrNoRoom, wire.StatusAllocationFailure},
}

// statusOf is the status a server answers err with.
func statusOf(err error) wire.Status {
	if err == nil {
		return wire.StatusOK
	}
	var st wire.Status
	if errors.As(err, &st) {
		return st
	}
	for _, se := range frontendStatuses {
		if errors.Is(err, se.err) {
			return se.status
		}
	}
	for _, se := range storageErrors {
		if errors.Is(err, se.err) {
			return wire.StatusMasterkeyFail
		}
	}
	for _, se := range statusErrors {
		if errors.Is(err, se.err) {
			return se.status
		}
	}
	return wire.StatusImpossible
}

// refusalOf is what EXT_REFUSAL tells of a request of f answered with
// status st for err: libhal's one FORBIDDEN stands for not logged in and
// for every refusal of a user that is, and the version 6 functions' every
// failure is told too. The message is the HSM's own words, from the
// sentinel on (never a PIN, a passphrase, a share or a key: error texts
// hold none); a client not logged in learns only that.
func refusalOf(f wire.Func, st wire.Status, err error) wire.ExtRefusalResponse {
	if st != wire.StatusForbidden && (st == wire.StatusOK || !explained(f)) {
		return wire.ExtRefusalResponse{}
	}
	if st != wire.StatusForbidden {
		for _, se := range storageErrors {
			if errors.Is(err, se.err) {
				return wire.ExtRefusalResponse{Reason: se.reason, Message: refusalText(err, se.err)}
			}
		}
		return wire.ExtRefusalResponse{Reason: wire.RefusalFailed, Message: clip(err.Error())}
	}
	switch {
	case errors.Is(err, hsmapi.ErrNotLoggedIn):
		return wire.ExtRefusalResponse{Reason: wire.RefusalNotLoggedIn}
	case errors.Is(err, hsmapi.ErrNotExportable):
		return wire.ExtRefusalResponse{Reason: wire.RefusalNotExportable, Message: refusalText(err, hsmapi.ErrNotExportable)}
	}
	return wire.ExtRefusalResponse{Reason: wire.RefusalForbidden, Message: refusalText(err, hsmapi.ErrForbidden)}
}

// refusalText is the text of the error in err's chain that wraps sentinel,
// from the sentinel's words on (what comes before is the context of the
// server's callers, which the client adds its own of), at most
// wire.MaxRefusal bytes.
func refusalText(err, sentinel error) string {
	var walk func(e error) (string, bool)
	walk = func(e error) (string, bool) {
		var next []error
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			next = []error{u.Unwrap()}
		case interface{ Unwrap() []error }:
			next = u.Unwrap()
		}
		for _, n := range next {
			if n == sentinel {
				s := e.Error()
				if i := strings.Index(s, sentinel.Error()); i >= 0 {
					s = s[i:]
				}
				return s, true
			}
			if n != nil {
				if s, ok := walk(n); ok {
					return s, true
				}
			}
		}
		return "", false
	}
	s, _ := walk(err)
	return clip(s)
}

// clip cuts s to wire.MaxRefusal bytes, never within a character.
func clip(s string) string {
	if len(s) > wire.MaxRefusal {
		cut := wire.MaxRefusal
		for cut > wire.MaxRefusal-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
			cut-- // never within a character
		}
		s = s[:cut]
	}
	return s
}

// refusedError is a client's error for a FORBIDDEN answer whose reason
// the server told (EXT_REFUSAL): the server's words, and the sentinel.
type refusedError struct {
	msg      string
	sentinel error
}

func (e *refusedError) Error() string { return e.msg }
func (e *refusedError) Unwrap() error { return e.sentinel }

// explainedError is a client's error for an answer of status st that r
// explains; nil when r does not (a reason this client does not know, or
// none).
func explainedError(st wire.Status, r *wire.ExtRefusalResponse) error {
	var sentinel error
	switch r.Reason {
	case wire.RefusalNotLoggedIn:
		return &statusError{wire.StatusForbidden, hsmapi.ErrNotLoggedIn}
	case wire.RefusalForbidden:
		sentinel = hsmapi.ErrForbidden
	case wire.RefusalNotExportable:
		sentinel = hsmapi.ErrNotExportable
	case wire.RefusalFailed:
		// The status's own error, with the server's words.
		var se *statusError
		if errors.As(errorOf(st), &se) {
			sentinel = se.err
		}
	default:
		for _, se := range storageErrors {
			if se.reason == r.Reason {
				sentinel = se.err
			}
		}
		if sentinel == nil {
			return nil
		}
	}
	var err error = sentinel
	if r.Message != "" {
		// The server's words reach a terminal: nothing in them may move
		// the cursor or start a line.
		msg := strings.Map(func(c rune) rune {
			if c == utf8.RuneError || !unicode.IsPrint(c) {
				return '?'
			}
			return c
		}, r.Message)
		err = &refusedError{msg, sentinel}
	}
	if err == nil {
		return nil
	}
	return &statusError{st, err}
}

// statusError is what a client returns for a status other than OK: the
// status itself, and the HSM error it stands for, so that errors.Is works
// with either.
type statusError struct {
	status wire.Status
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

func errorOf(st wire.Status) error {
	if st == wire.StatusOK {
		return nil
	}
	for _, se := range statusErrors {
		if se.status == st {
			return &statusError{st, se.err}
		}
	}
	return &statusError{status: st}
}

// Status is a libhal status code. A Client's error for a status other than
// OK wraps it, so that callers can test for one with errors.Is.
type Status = wire.Status

// The statuses callers of a Client branch on.
const (
	// StatusKeyNameInUse: the server holds a key under that UUID already
	// (and over RPC that is all a client learns of why).
	StatusKeyNameInUse = wire.StatusKeyNameInUse
	// StatusRPCTransport: the connection failed; the request may or may not
	// have been carried out.
	StatusRPCTransport = wire.StatusRPCTransport
)
