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
// Module.login serializes logins, logouts and PIN changes, which wait for
// the token (a wrong PIN costs the HSM's delay); Module.mu guards the rest
// and is not held while the token works, except in Initialize, which opens
// the HSMs under it so that two C_Initialize calls cannot both open one
// (no other call gets anywhere until it is done anyway), and in
// InitToken, so that no session opens while the token is re-initialized.
// login is taken before mu, never after.
package cryptoki

import (
	"context"
	"errors"
	"fmt"
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
	// Identity is what CK_TOKEN_INFO shows (each string cut to its
	// field's length: 32 bytes for Label and Manufacturer, 16 for Model
	// and Serial). The opener sets what to show of an HSM that cannot tell
	// its own (hsmapi.Identifier, over libhal's RPC to a Cryptech HSM);
	// Initialize puts the HSM's in its place.
	Identity hsmapi.Identity
	// Label, when not empty, names the token whatever the HSM calls
	// itself (the config file's label).
	Label string
	// MinPIN and MaxPIN bound the PINs the token takes.
	MinPIN, MaxPIN int
}

// pinLenOK reports whether a PIN of pin's length could be the token's.
func (t *Token) pinLenOK(pin []byte) bool { return len(pin) >= t.MinPIN && len(pin) <= t.MaxPIN }

// An Opener finds the HSMs at C_Initialize, one Token per slot in slot
// order: all of them, or an error and none (it closes what it opened).
// Finalize closes them.
type Opener func() ([]*Token, error)

// A Module is one loaded PKCS#11 library: it is uninitialized until
// Initialize and after Finalize, and may be initialized again.
type Module struct {
	open Opener
	// Log, when set, is told why C_Initialize failed: all the application
	// learns is CKR_GENERAL_ERROR, which PKCS#11 leaves no room to explain.
	Log func(error)

	login sync.Mutex

	mu    sync.Mutex
	slots []*slot // nil while not initialized; slot i has ID i
	// sessions finds each open session's slot: session handles are
	// unique across the module, never reused while it is initialized.
	sessions map[uint]*slot
	next     uint // last session handle given
	// objectSeq is the last object handle given (see objectTable).
	objectSeq uint
}

// New makes a module that finds its HSMs with open.
func New(open Opener) *Module { return &Module{open: open} }

// slotID is the first slot's ID, the only one of a module on one HSM.
const slotID = 0

type slot struct {
	id       uint
	tok      *Token
	client   *frontend.Client
	user     hsmapi.User
	sessions map[uint]*session
	objects  objectTable
	// gone: finalized. A call that let go of m.mu while the token
	// worked checks it before it changes the slot.
	gone bool
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

// Initialize is C_Initialize; args is nil when pInitArgs is NULL. It
// opens every HSM or none: when one fails, those opened are closed again.
func (m *Module) Initialize(args *InitArgs) RV {
	if args != nil {
		if rv := args.check(); rv != OK {
			return rv
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slots != nil {
		return CryptokiAlreadyInitialized
	}
	toks, err := m.open()
	if err == nil && len(toks) == 0 {
		err = errors.New("no HSM")
	}
	if err != nil {
		m.log(err)
		return GeneralError
	}
	slots := make([]*slot, 0, len(toks))
	for i, tok := range toks {
		s, err := openSlot(uint(i), tok)
		if err != nil {
			m.log(fmt.Errorf("slot %d: %w", i, err))
			for _, s := range slots {
				s.close()
			}
			for _, t := range toks[i+1:] {
				t.Close()
			}
			return GeneralError
		}
		slots = append(slots, s)
	}
	m.slots = slots
	m.sessions = map[uint]*slot{}
	m.next = 0
	return OK
}

func (m *Module) log(err error) {
	if m.Log != nil {
		m.Log(err)
	}
}

// openSlot starts the front end's client on tok, and learns what the HSM
// says it is. On failure it closes tok.
func openSlot(id uint, tok *Token) (*slot, error) {
	ctx := context.Background()
	c, err := frontend.New(tok.Opener).Open(ctx)
	if err != nil {
		tok.Close()
		return nil, err
	}
	s := &slot{id: id, tok: tok, client: c, sessions: map[uint]*session{}}
	if idr, ok := c.Token().(hsmapi.Identifier); ok {
		id, err := idr.Identity(ctx)
		switch {
		case err == nil:
			tok.Identity = id
		case !errors.Is(err, hsmapi.ErrUnsupported):
			s.close()
			return nil, fmt.Errorf("identity: %w", err)
		}
	}
	if tok.Label != "" {
		tok.Identity.Label = tok.Label
	}
	return s, nil
}

// close ends the slot's client and releases its HSM.
func (s *slot) close() error {
	return errors.Join(s.client.Close(), s.tok.Close())
}

// check answers CK_C_INITIALIZE_ARGS. CKF_LIBRARY_CANT_CREATE_OS_THREADS
// is taken: the module starts no thread of its own, and the Go runtime's
// threads, which it starts when the library loads and as it needs, are
// not the application's to forbid. NSS and GnuTLS (p11-kit) pass that
// flag whenever they load a module; CKR_NEED_TO_CREATE_THREADS would keep
// the module from both.
func (a *InitArgs) check() RV {
	if a.Reserved {
		return ArgumentsBad
	}
	switch {
	case a.Mutexes != 0 && a.Mutexes != 4:
		// The specification: all four or none.
		return ArgumentsBad
	case a.Mutexes == 4 && a.Flags&FlagOSLockingOK == 0:
		// Only the application's mutexes may be used; the module locks
		// with Go's.
		return CantLock
	}
	return OK
}

// Finalize is C_Finalize: every session is closed, every HSM released.
func (m *Module) Finalize(reserved bool) RV {
	if reserved {
		return ArgumentsBad
	}
	m.mu.Lock()
	slots := m.slots
	m.slots, m.sessions = nil, nil
	for _, s := range slots {
		s.gone = true
	}
	m.mu.Unlock()
	if slots == nil {
		return CryptokiNotInitialized
	}
	var errs []error
	for _, s := range slots {
		errs = append(errs, s.close())
	}
	if errors.Join(errs...) != nil {
		return GeneralError
	}
	return OK
}

// withSlot runs f on slot id with m.mu held.
func (m *Module) withSlot(id uint, f func(*slot) RV) RV {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slots == nil {
		return CryptokiNotInitialized
	}
	if id >= uint(len(m.slots)) {
		return SlotIDInvalid
	}
	return f(m.slots[id])
}

// withSession runs f on session h with m.mu held.
func (m *Module) withSession(h uint, f func(*slot, *session) RV) RV {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slots == nil {
		return CryptokiNotInitialized
	}
	s, ok := m.sessions[h]
	if !ok {
		return SessionHandleInvalid
	}
	return f(s, s.sessions[h])
}

// sessionValid is OK for an open session of an initialized module. The
// functions that check their mechanism or template before they need the
// session call it first, so that a bad or closed handle is
// CKR_SESSION_HANDLE_INVALID (and a call before C_Initialize
// CKR_CRYPTOKI_NOT_INITIALIZED) whatever else is wrong.
func (m *Module) sessionValid(h uint) RV {
	return m.withSession(h, func(*slot, *session) RV { return OK })
}

// Initialized reports OK or CryptokiNotInitialized, for the calls that only
// need to know (C_GetInfo).
func (m *Module) Initialized() RV {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slots == nil {
		return CryptokiNotInitialized
	}
	return OK
}

// SlotList is C_GetSlotList: the slot IDs, 0 to n-1 in the order the
// opener gave the HSMs. Every slot has its token, so tokenPresent changes
// nothing.
func (m *Module) SlotList() ([]uint, RV) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.slots == nil {
		return nil, CryptokiNotInitialized
	}
	ids := make([]uint, len(m.slots))
	for i := range ids {
		ids[i] = uint(i)
	}
	return ids, OK
}

// Token is the token of slot id, for C_GetSlotInfo and C_GetTokenInfo: a
// copy, as C_InitToken may rename it.
func (m *Module) Token(id uint) (*Token, RV) {
	var t Token
	rv := m.withSlot(id, func(s *slot) RV { t = *s.tok; return OK })
	return &t, rv
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
		m.next++
		h = m.next
		s.sessions[h] = &session{rw: rw}
		m.sessions[h] = s
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
		delete(m.sessions, h)
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
		for h := range s.sessions {
			delete(m.sessions, h)
		}
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
	s.objects.forgetFacts()
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
		info = SessionInfo{Slot: s.id, Flags: sessionInfoFlags}
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
		if !sl.tok.pinLenOK(pin) {
			return PINLenRange
		}
		s = sl
		return OK
	})
	if rv != OK {
		return rv
	}
	// The token checks the PIN, with its wrong-PIN delay, without m.mu.
	if rv := pinRV(s.client.Login(context.Background(), user, pin)); rv != OK {
		return rv
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.gone {
		// Finalized meanwhile.
		return CryptokiNotInitialized
	}
	s.user = user
	s.objects.forgetFacts()
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
