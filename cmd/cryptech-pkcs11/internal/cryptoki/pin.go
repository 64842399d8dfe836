package cryptoki

import (
	"context"
	"errors"
	"strings"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// PIN changes. Each PIN the token checks, it checks as a login does: in
// the HSM's turn and with its wrong-PIN delay.

// SetPIN is C_SetPIN: the PIN of the user logged in changes, or, in a
// public session, the normal user's (CKU_USER), as the specification has
// it. The old PIN is checked on a token session of its own, as a login of
// that user, so that the slot's login, which every session of the
// application shares, does not change while it is checked; that session
// then sets the new PIN, as the HSM lets a user set its own.
func (m *Module) SetPIN(h uint, oldPIN, newPIN []byte) RV {
	m.login.Lock()
	defer m.login.Unlock()
	var s *slot
	var user hsmapi.User
	rv := m.withSession(h, func(sl *slot, ss *session) RV {
		if !ss.rw {
			return SessionReadOnly
		}
		if !sl.tok.pinLenOK(newPIN) {
			return PINLenRange
		}
		s, user = sl, sl.user
		if user == hsmapi.UserNone {
			user = hsmapi.UserNormal
		}
		return OK
	})
	if rv != OK {
		return rv
	}
	if !s.tok.pinLenOK(oldPIN) {
		// No PIN has that length: nothing for the token to check.
		return PINIncorrect
	}
	ctx := context.Background()
	tok, err := s.tok.Opener.Open(ctx)
	if err != nil {
		return GeneralError
	}
	defer tok.Close()
	setter, ok := tok.(hsmapi.PINSetter)
	if !ok {
		return FunctionNotSupported
	}
	if rv := pinRV(tok.Login(ctx, user, oldPIN)); rv != OK {
		return rv
	}
	return pinRV(setter.SetPIN(ctx, user, newPIN))
}

// InitPIN is C_InitPIN: the SO, logged in, sets the normal user's PIN.
func (m *Module) InitPIN(h uint, pin []byte) RV {
	m.login.Lock()
	defer m.login.Unlock()
	var s *slot
	rv := m.withSession(h, func(sl *slot, ss *session) RV {
		if sl.user != hsmapi.UserSO {
			return UserNotLoggedIn
		}
		if !ss.rw {
			return SessionReadOnly // never: the SO has R/W sessions only
		}
		if !sl.tok.pinLenOK(pin) {
			return PINLenRange
		}
		s = sl
		return OK
	})
	if rv != OK {
		return rv
	}
	// The slot's client is logged in as the SO, who may set the user's
	// PIN (m.login keeps it so).
	err := s.client.SetPIN(context.Background(), hsmapi.UserNormal, pin)
	if errors.Is(err, hsmapi.ErrUnsupported) {
		return FunctionNotSupported
	}
	return pinRV(err)
}

// LabelLen is the length of C_InitToken's label: 32 bytes, padded with
// blanks.
const LabelLen = 32

// InitToken is C_InitToken on a token that can be re-initialized
// (hsmapi.TokenInitializer: the emulated HSM in-process): given the SO's
// PIN, every key goes and the HSM takes the label. Other tokens (over RPC)
// answer CKR_FUNCTION_NOT_SUPPORTED. No session of the slot may be open,
// and none opens meanwhile (the HSM's wrong-PIN delay, when the PIN is
// wrong): the whole call runs inside withSlot, under m.mu.
func (m *Module) InitToken(id uint, soPIN []byte, label [LabelLen]byte) RV {
	return m.withSlot(id, func(s *slot) RV {
		if len(s.sessions) > 0 {
			return SessionExists
		}
		init, ok := s.client.Token().(hsmapi.TokenInitializer)
		if !ok {
			return FunctionNotSupported
		}
		if !s.tok.pinLenOK(soPIN) {
			return PINIncorrect
		}
		name := strings.TrimRight(string(label[:]), " ")
		if hsmapi.CheckTokenLabel(name) != nil {
			return ArgumentsBad
		}
		if rv := pinRV(init.InitToken(context.Background(), soPIN, name)); rv != OK {
			return rv
		}
		s.objects.forgetFacts()
		if s.tok.Label == "" {
			// A label the config file gives still names the token.
			s.tok.Identity.Label = name
		}
		return OK
	})
}

// pinRV is the answer to a PIN check or change.
func pinRV(err error) RV {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, hsmapi.ErrPINIncorrect):
		return PINIncorrect
	case errors.Is(err, hsmapi.ErrUnsupported):
		return FunctionNotSupported
	}
	return GeneralError
}
