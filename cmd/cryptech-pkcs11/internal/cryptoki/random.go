package cryptoki

import (
	"context"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// rng is the randomness of the slot of session h: its token's
// (hsmapi.RandomReader: the emulated HSM's TRNG, a libhal HSM's
// GET_RANDOM), or RandomNoRNG when the token has none. The module never
// makes random bytes of its own for an application.
func (m *Module) rng(h uint) (hsmapi.RandomReader, RV) {
	var r hsmapi.RandomReader
	rv := m.withSession(h, func(s *slot, _ *session) RV {
		var ok bool
		if r, ok = s.client.Token().(hsmapi.RandomReader); !ok {
			return RandomNoRNG
		}
		return OK
	})
	return r, rv
}

// HasRNG reports whether slot id's token has a random number generator
// (CKF_RNG of CK_TOKEN_INFO).
func (m *Module) HasRNG(id uint) (bool, RV) {
	var ok bool
	rv := m.withSlot(id, func(s *slot) RV {
		_, ok = s.client.Token().(hsmapi.RandomReader)
		return OK
	})
	return ok, rv
}

// GenerateRandom is C_GenerateRandom: p filled from the token's random
// number generator. It needs no login, as libhal's GET_RANDOM needs none.
// p is the application's buffer; on failure it is cleared, so that no
// part of it passes for random.
func (m *Module) GenerateRandom(h uint, p []byte) RV {
	r, rv := m.rng(h)
	if rv != OK {
		return rv
	}
	if err := r.Random(context.Background(), p); err != nil {
		clear(p)
		return DeviceError
	}
	return OK
}

// SeedRandom is C_SeedRandom: a TRNG takes no seed.
func (m *Module) SeedRandom(h uint) RV {
	if _, rv := m.rng(h); rv != OK {
		return rv
	}
	return RandomSeedNotSupported
}
