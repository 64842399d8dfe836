package cryptoki

import (
	"hash"
	"sync"

	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// An opKind is a kind of operation; a session has at most one active of
// each kind, as the specification has it.
type opKind int

const (
	opDigest opKind = iota
	opSign
	opVerify
	opEncrypt
	opDecrypt
	opKinds
)

// OpKind names a kind of operation outside the package (Abort).
type OpKind = opKind

// The kinds of operation, for Abort.
const (
	OpDigest  = opDigest
	OpSign    = opSign
	OpVerify  = opVerify
	OpEncrypt = opEncrypt
	OpDecrypt = opDecrypt
)

// Abort ends session h's active operation of kind k, if it has one: a
// call of an operation that fails ends it (PKCS#11: C_Sign "always
// terminates" it, a C_SignUpdate that "results in an error terminates"
// it, and so for the others), the calls that the C side refuses before the
// module sees them (a NULL pointer, an input too long) as well as those
// the module refuses.
func (m *Module) Abort(h uint, k OpKind) {
	if op, rv := m.activeOp(h, k); rv == OK {
		m.endOp(h, k, op)
		op.mu.Unlock()
	}
}

// An operation is a session's active operation of one kind, from its Init
// call to the call that ends it. It lives in the session (session.ops):
// closing the session, or logging out, ends it.
type operation struct {
	// mu serializes the calls on the operation. PKCS#11 leaves a session
	// to one thread at a time, but two that share one anyway must not
	// corrupt it. Taken before Module.mu, never after.
	mu sync.Mutex
	// ended: a call ended the operation while another waited for mu.
	ended bool

	mech *mechanism
	// parts: C_*Update was called, so the single-part call may not be.
	parts bool
	// hash is what a digest, or a signature mechanism that hashes, has
	// been given so far.
	hash hash.Hash
	// msg is what an HSS signature or verification has been given so far,
	// in parts: the message is signed whole.
	msg []byte
	// key is a signature or verification's key.
	key *sigKey
	// crypt is an encryption or decryption's key (crypt.go).
	crypt *cryptKey
}

// endOperations ends every operation of slot s's sessions (at logout: the
// key of an operation may be one the login let it use). Called with m.mu
// held.
func (m *Module) endOperations(s *slot) {
	lockassert.Held(&m.mu)
	for _, ss := range s.sessions {
		ss.ops = [opKinds]*operation{}
	}
}

// checkIdle fails with OperationActive when session ss has an operation of
// kind k: an Init must not replace it. For use inside withSession.
func (ss *session) checkIdle(k opKind) RV {
	if ss.ops[k] != nil {
		return OperationActive
	}
	return OK
}

// beginOp makes op session h's operation of kind k, unless one is active.
func (m *Module) beginOp(h uint, k opKind, op *operation) RV {
	return m.withSession(h, func(_ *slot, ss *session) RV {
		if rv := ss.checkIdle(k); rv != OK {
			return rv
		}
		ss.ops[k] = op
		return OK
	})
}

// activeOp returns session h's operation of kind k with its mu held: the
// caller unlocks it.
func (m *Module) activeOp(h uint, k opKind) (*operation, RV) {
	var op *operation
	rv := m.withSession(h, func(_ *slot, ss *session) RV {
		op = ss.ops[k]
		if op == nil {
			return OperationNotInitialized
		}
		return OK
	})
	if rv != OK {
		return nil, rv
	}
	op.mu.Lock()
	if op.ended {
		op.mu.Unlock()
		return nil, OperationNotInitialized
	}
	return op, OK
}

// endOp ends op, session h's operation of kind k, and forgets what it was
// given. Called with op.mu held.
func (m *Module) endOp(h uint, k opKind, op *operation) {
	lockassert.Held(&op.mu)
	op.ended = true
	clear(op.msg)
	op.msg, op.hash, op.key, op.crypt = nil, nil, nil, nil
	m.withSession(h, func(_ *slot, ss *session) RV {
		if ss.ops[k] == op {
			ss.ops[k] = nil
		}
		return OK
	})
}

// An Output is the application's buffer for a result, as the length
// protocol of PKCS#11 (2.40 section 5.2) has it.
type Output struct {
	// Query: the buffer is NULL; only the result's length is asked.
	Query bool
	// Room is the buffer's length in bytes.
	Room int
}

// deliver answers by the length protocol for a result of at most need
// bytes, which make makes: for a query, need; with less room than need,
// BufferTooSmall and need; in both cases nothing is made and the
// operation stays active. Otherwise make's result (or its failure), and
// the operation ends: deliver ends op whenever it calls make.
//
// need is computed from what the operation knows (the key's size, the
// hash's), never by making the result: an HSS signature made only to learn
// its length would spend a one-time key. Called with op.mu held.
func (m *Module) deliver(h uint, k opKind, op *operation, o Output, need int, make func() ([]byte, RV)) ([]byte, int, RV) {
	lockassert.Held(&op.mu)
	switch {
	case o.Query:
		return nil, need, OK
	case o.Room < need:
		return nil, need, BufferTooSmall
	}
	defer m.endOp(h, k, op)
	out, rv := make()
	if rv != OK {
		return nil, 0, rv
	}
	if len(out) > o.Room {
		// need was too small: a bug, but never an overrun.
		return nil, 0, GeneralError
	}
	return out, len(out), OK
}

// fail ends op with rv: a call that fails ends its operation, as the
// specification has it. Called with op.mu held.
func (m *Module) fail(h uint, k opKind, op *operation, rv RV) RV {
	lockassert.Held(&op.mu)
	m.endOp(h, k, op)
	return rv
}
