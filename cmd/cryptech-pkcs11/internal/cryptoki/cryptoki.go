// Package cryptoki is the logic of the emulated HSM's PKCS#11 face: the
// state a PKCS#11 library keeps between calls (initialized or not, the
// slots, the sessions, who is logged in) and the answers, as return values
// of the specification. The cgo shims of cmd/cryptech-pkcs11 convert C
// arguments to Go and back and call a [Module]; nothing here knows C.
//
// PKCS#11 logs in an application, not a session: every session of a slot
// shares one login. So the application is the front end's client: each slot
// holds one frontend.Client from C_Initialize to C_Finalize, as each
// connection of the RPC face does.
//
// # Locks
//
// Module.login serializes logins and logouts, which wait for the token
// (a wrong PIN costs the HSM's delay); Module.mu guards the rest and is
// not held while the token works, except in Initialize, which opens the
// HSM under it so that two C_Initialize calls cannot both open one (no
// other call gets anywhere until it is done anyway). login is taken
// before mu, never after.
package cryptoki

import (
	"context"
	"errors"
	"sync"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// Version is the module's own version (CK_INFO.libraryVersion).
var Version = [2]byte{0, 1}

// A Token is the HSM behind a slot, as the module's opener found it.
type Token struct {
	// Opener makes the token sessions of the front end.
	Opener frontend.Opener
	// Close releases the HSM (for an emulated one, its directory's lock).
	Close func() error
	// Label, Manufacturer, Model and Serial are the token's CK_TOKEN_INFO
	// strings; each is cut to its field's length (32 bytes for Label and
	// Manufacturer, 16 for Model and Serial).
	Label, Manufacturer, Model, Serial string
	// MinPIN and MaxPIN bound the PINs the token takes.
	MinPIN, MaxPIN int
}

// An Opener finds the HSM at C_Initialize. Finalize closes what it opened.
type Opener func() (*Token, error)

// A Module is one loaded PKCS#11 library: it is uninitialized until
// Initialize and after Finalize, and may be initialized again.
type Module struct {
	open Opener

	login sync.Mutex

	mu   sync.Mutex
	slot *slot // nil while not initialized
	// objectSeq is the last object handle given (see objectTable).
	objectSeq uint
}

// New makes a module that finds its HSM with open.
func New(open Opener) *Module { return &Module{open: open} }

// The one slot there is so far; the config file of issue 11 brings more.
const slotID = 0

type slot struct {
	tok      *Token
	client   *frontend.Client
	user     hsmapi.User
	sessions map[uint]*session
	next     uint // last session handle given; handles are never reused
	objects  objectTable
}

type session struct {
	rw   bool
	find *findOp // the session's C_FindObjects, nil when none is active
	// ops are the session's active operations (operations.go).
	ops [opKinds]*operation
}

// InitArgs is what CK_C_INITIALIZE_ARGS says, as far as the module cares.
type InitArgs struct {
	// Mutexes counts the application's mutex functions that are set (of
	// CreateMutex, DestroyMutex, LockMutex, UnlockMutex).
	Mutexes int
	// Flags are the args' flags.
	Flags uint
	// Reserved: pReserved is not NULL.
	Reserved bool
}

// The flags of CK_C_INITIALIZE_ARGS.
const (
	FlagLibraryCantCreateOSThreads = 0x1
	FlagOSLockingOK                = 0x2
)

// Initialize is C_Initialize; args is nil when pInitArgs is NULL.
func (m *Module) Initialize(args *InitArgs) RV {
	if args != nil {
		if rv := args.check(); rv != OK {
			return rv
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slot != nil {
		return CryptokiAlreadyInitialized
	}
	tok, err := m.open()
	if err != nil {
		return GeneralError
	}
	c, err := frontend.New(tok.Opener).Open(context.Background())
	if err != nil {
		tok.Close()
		return GeneralError
	}
	m.slot = &slot{tok: tok, client: c, sessions: map[uint]*session{}}
	return OK
}

func (a *InitArgs) check() RV {
	if a.Reserved {
		return ArgumentsBad
	}
	switch {
	case a.Mutexes != 0 && a.Mutexes != 4:
		// The specification: all four or none.
		return ArgumentsBad
	case a.Flags&FlagLibraryCantCreateOSThreads != 0:
		// The Go runtime makes threads of its own whatever we are told.
		return NeedToCreateThreads
	case a.Mutexes == 4 && a.Flags&FlagOSLockingOK == 0:
		// Only the application's mutexes may be used; the module locks
		// with Go's.
		return CantLock
	}
	return OK
}

// Finalize is C_Finalize: every session is closed, the HSM released.
func (m *Module) Finalize(reserved bool) RV {
	if reserved {
		return ArgumentsBad
	}
	m.mu.Lock()
	s := m.slot
	m.slot = nil
	m.mu.Unlock()
	if s == nil {
		return CryptokiNotInitialized
	}
	err := errors.Join(s.client.Close(), s.tok.Close())
	if err != nil {
		return GeneralError
	}
	return OK
}

// withSlot runs f on slot id with m.mu held.
func (m *Module) withSlot(id uint, f func(*slot) RV) RV {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slot == nil {
		return CryptokiNotInitialized
	}
	if id != slotID {
		return SlotIDInvalid
	}
	return f(m.slot)
}

// withSession runs f on session h with m.mu held.
func (m *Module) withSession(h uint, f func(*slot, *session) RV) RV {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slot == nil {
		return CryptokiNotInitialized
	}
	ss, ok := m.slot.sessions[h]
	if !ok {
		return SessionHandleInvalid
	}
	return f(m.slot, ss)
}

// Initialized reports OK or CryptokiNotInitialized, for the calls that only
// need to know (C_GetInfo).
func (m *Module) Initialized() RV {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slot == nil {
		return CryptokiNotInitialized
	}
	return OK
}

// SlotList is C_GetSlotList: the slot IDs (every slot has its token).
func (m *Module) SlotList() ([]uint, RV) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slot == nil {
		return nil, CryptokiNotInitialized
	}
	return []uint{slotID}, OK
}

// Token is the token of slot id, for C_GetSlotInfo and C_GetTokenInfo.
func (m *Module) Token(id uint) (*Token, RV) {
	var t *Token
	rv := m.withSlot(id, func(s *slot) RV { t = s.tok; return OK })
	return t, rv
}

// Counts are the session counts of CK_TOKEN_INFO.
type Counts struct{ Sessions, RWSessions int }

// SessionCounts counts the open sessions of slot id.
func (m *Module) SessionCounts(id uint) (Counts, RV) {
	var n Counts
	rv := m.withSlot(id, func(s *slot) RV {
		for _, ss := range s.sessions {
			n.Sessions++
			if ss.rw {
				n.RWSessions++
			}
		}
		return OK
	})
	return n, rv
}

// The flags of C_OpenSession and CK_SESSION_INFO.
const (
	FlagRWSession     = 0x2
	FlagSerialSession = 0x4
)

// OpenSession is C_OpenSession (without notification callbacks, which
// this module never makes).
func (m *Module) OpenSession(id, flags uint) (uint, RV) {
	var h uint
	rv := m.withSlot(id, func(s *slot) RV {
		if flags&FlagSerialSession == 0 {
			return SessionParallelNotSupported
		}
		rw := flags&FlagRWSession != 0
		if !rw && s.user == hsmapi.UserSO {
			return SessionReadWriteSOExists
		}
		s.next++
		h = s.next
		s.sessions[h] = &session{rw: rw}
		return OK
	})
	return h, rv
}

// CloseSession is C_CloseSession.
func (m *Module) CloseSession(h uint) RV {
	m.login.Lock()
	defer m.login.Unlock()
	var closed, last *slot
	rv := m.withSession(h, func(s *slot, _ *session) RV {
		delete(s.sessions, h)
		closed = s
		if len(s.sessions) == 0 {
			last = s
		}
		return OK
	})
	if closed != nil {
		m.dropSessionObjects(closed, h)
	}
	if last != nil {
		m.logoutSlot(last)
	}
	return rv
}

// CloseAllSessions is C_CloseAllSessions.
func (m *Module) CloseAllSessions(id uint) RV {
	m.login.Lock()
	defer m.login.Unlock()
	var closed *slot
	rv := m.withSlot(id, func(s *slot) RV {
		clear(s.sessions)
		closed = s
		return OK
	})
	if closed != nil {
		m.logoutSlot(closed)
	}
	return rv
}

// logoutSlot ends the application's login when its last session closes,
// as the specification has it. Called with m.login held.
func (m *Module) logoutSlot(s *slot) {
	lockassert.Held(&m.login)
	m.mu.Lock()
	was := s.user
	s.user = hsmapi.UserNone
	m.endOperations(s)
	m.mu.Unlock()
	if was != hsmapi.UserNone {
		// The session is gone whatever the token says.
		s.client.Logout(context.Background())
	}
}

// The session states of CK_SESSION_INFO.
const (
	StateROPublic    = 0
	StateROUser      = 1
	StateRWPublic    = 2
	StateRWUser      = 3
	StateRWSO        = 4
	sessionInfoFlags = FlagSerialSession
)

// SessionInfo is what C_GetSessionInfo tells.
type SessionInfo struct {
	Slot, State, Flags uint
}

// SessionInfo is C_GetSessionInfo.
func (m *Module) SessionInfo(h uint) (SessionInfo, RV) {
	var info SessionInfo
	rv := m.withSession(h, func(s *slot, ss *session) RV {
		info = SessionInfo{Slot: slotID, Flags: sessionInfoFlags}
		if ss.rw {
			info.Flags |= FlagRWSession
		}
		switch {
		case s.user == hsmapi.UserSO:
			info.State = StateRWSO
		case s.user == hsmapi.UserNormal && ss.rw:
			info.State = StateRWUser
		case s.user == hsmapi.UserNormal:
			info.State = StateROUser
		case ss.rw:
			info.State = StateRWPublic
		default:
			info.State = StateROPublic
		}
		return OK
	})
	return info, rv
}

// The user types of C_Login.
const (
	UserSO              = 0
	UserUser            = 1
	UserContextSpecific = 2
)

// Login is C_Login: CKU_USER is the HSM's normal user, CKU_SO its SO.
func (m *Module) Login(h, userType uint, pin []byte) RV {
	m.login.Lock()
	defer m.login.Unlock()
	var s *slot
	var user hsmapi.User
	rv := m.withSession(h, func(sl *slot, _ *session) RV {
		switch userType {
		case UserSO:
			user = hsmapi.UserSO
		case UserUser:
			user = hsmapi.UserNormal
		case UserContextSpecific:
			// Only after an operation that asks for it, and none does yet.
			return OperationNotInitialized
		default:
			return UserTypeInvalid
		}
		switch sl.user {
		case user:
			return UserAlreadyLoggedIn
		case hsmapi.UserNone:
		default:
			return UserAnotherAlreadyLoggedIn
		}
		if user == hsmapi.UserSO {
			for _, ss := range sl.sessions {
				if !ss.rw {
					return SessionReadOnlyExists
				}
			}
		}
		if len(pin) < sl.tok.MinPIN || len(pin) > sl.tok.MaxPIN {
			return PINLenRange
		}
		s = sl
		return OK
	})
	if rv != OK {
		return rv
	}
	// The token checks the PIN, with its wrong-PIN delay, without m.mu.
	err := s.client.Login(context.Background(), user, pin)
	switch {
	case errors.Is(err, hsmapi.ErrPINIncorrect):
		return PINIncorrect
	case err != nil:
		return GeneralError
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slot != s {
		// Finalized meanwhile.
		return CryptokiNotInitialized
	}
	s.user = user
	return OK
}

// Logout is C_Logout.
func (m *Module) Logout(h uint) RV {
	m.login.Lock()
	defer m.login.Unlock()
	var s *slot
	rv := m.withSession(h, func(sl *slot, _ *session) RV {
		if sl.user == hsmapi.UserNone {
			return UserNotLoggedIn
		}
		s = sl
		return OK
	})
	if rv != OK {
		return rv
	}
	m.logoutSlot(s)
	return OK
}
