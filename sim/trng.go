package sim

// TRNG is the board's true random number generator. Read fills p with random
// bytes or fails; it never returns fewer bytes without an error.
type TRNG struct{}

// NewTRNG powers up the generator and runs its health check.
func NewTRNG() (*TRNG, error) { panic("TODO") }

func (t *TRNG) Read(p []byte) (int, error) { panic("TODO") }
