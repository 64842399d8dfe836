package rpc

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
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
	for _, se := range statusErrors {
		if errors.Is(err, se.err) {
			return se.status
		}
	}
	return wire.StatusImpossible
}

// refusalOf is what EXT_REFUSAL tells of a request answered with status st
// for err: libhal's one FORBIDDEN stands for not logged in and for every
// refusal of a user that is. The message is the HSM's own words, from the
// sentinel on (never a PIN or a key: error texts hold neither); a client
// not logged in learns only that.
func refusalOf(st wire.Status, err error) wire.ExtRefusalResponse {
	if st != wire.StatusForbidden {
		return wire.ExtRefusalResponse{}
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

// refusalError is a client's error for a FORBIDDEN answer that r explains;
// nil when r does not (a reason this client does not know).
func refusalError(r *wire.ExtRefusalResponse) error {
	var sentinel error
	switch r.Reason {
	case wire.RefusalNotLoggedIn:
		return &statusError{wire.StatusForbidden, hsmapi.ErrNotLoggedIn}
	case wire.RefusalForbidden:
		sentinel = hsmapi.ErrForbidden
	case wire.RefusalNotExportable:
		sentinel = hsmapi.ErrNotExportable
	default:
		return nil
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
	return &statusError{wire.StatusForbidden, err}
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
