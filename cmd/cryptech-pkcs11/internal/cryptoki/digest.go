package cryptoki

// Digests are computed in the module: a hash holds nothing secret, and the
// libhal RPC would carry every byte to the HSM and back for nothing.
// (libhal's own PKCS#11 library hashes on the client side too.)
//
// Inputs are the application's buffers, read only during the call.

// DigestInit is C_DigestInit.
func (m *Module) DigestInit(h uint, mech Mechanism) RV {
	var op *operation
	rv := m.withSession(h, func(s *slot, ss *session) RV {
		if rv := ss.checkIdle(opDigest); rv != OK {
			return rv
		}
		d, rv := slotMechanism(s, mech.Type, MechFlagDigest)
		if rv != OK {
			return rv
		}
		if mech.Param != nil || mech.PSS != nil {
			return MechanismParamInvalid
		}
		op = &operation{mech: d, hash: d.hash.New()}
		return OK
	})
	if rv != OK {
		return rv
	}
	return m.beginOp(h, opDigest, op)
}

// Digest is C_Digest: data digested in one part.
func (m *Module) Digest(h uint, data []byte, o Output) ([]byte, int, RV) {
	op, rv := m.activeOp(h, opDigest)
	if rv != OK {
		return nil, 0, rv
	}
	defer op.mu.Unlock()
	if op.parts {
		// C_Digest cannot finish what C_DigestUpdate began.
		return nil, 0, m.fail(h, opDigest, op, OperationActive)
	}
	return m.deliver(h, opDigest, op, o, op.hash.Size(), func() ([]byte, RV) {
		op.hash.Write(data)
		return op.hash.Sum(nil), OK
	})
}

// DigestUpdate is C_DigestUpdate.
func (m *Module) DigestUpdate(h uint, part []byte) RV {
	op, rv := m.activeOp(h, opDigest)
	if rv != OK {
		return rv
	}
	defer op.mu.Unlock()
	op.parts = true
	op.hash.Write(part)
	return OK
}

// DigestKey is C_DigestKey. Every key of the HSM is sensitive, and a
// public key object has no CKA_VALUE to digest: none can be digested
// (CKR_KEY_INDIGESTIBLE), and the operation ends, as a failed
// C_DigestUpdate ends it.
func (m *Module) DigestKey(h, key uint) RV {
	op, rv := m.activeOp(h, opDigest)
	if rv != OK {
		return rv
	}
	defer op.mu.Unlock()
	if _, rv := m.keyObject(h, key); rv != OK {
		if rv == ObjectHandleInvalid {
			rv = KeyHandleInvalid
		}
		return m.fail(h, opDigest, op, rv)
	}
	return m.fail(h, opDigest, op, KeyIndigestible)
}

// DigestFinal is C_DigestFinal.
func (m *Module) DigestFinal(h uint, o Output) ([]byte, int, RV) {
	op, rv := m.activeOp(h, opDigest)
	if rv != OK {
		return nil, 0, rv
	}
	defer op.mu.Unlock()
	return m.deliver(h, opDigest, op, o, op.hash.Size(), func() ([]byte, RV) {
		return op.hash.Sum(nil), OK
	})
}
