package sim

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// healthSampleSize is the size of each sample the power-on health check draws.
const healthSampleSize = 32

// errTRNGHealth reports a generator that failed its power-on health check.
var errTRNGHealth = errors.New("sim: trng: health check failed")

// TRNG is the board's true random number generator. Read fills p with random
// bytes or fails; it never returns fewer bytes without an error.
type TRNG struct {
	src io.Reader // nil means crypto/rand
}

// NewTRNG powers up the generator and runs its health check.
func NewTRNG() (*TRNG, error) { return newTRNG(rand.Reader) }

// newTRNG runs the health check on src and returns a TRNG reading from it.
// Tests pass a broken source to see the check fail.
func newTRNG(src io.Reader) (*TRNG, error) {
	t := &TRNG{src: src}
	if err := t.healthCheck(); err != nil {
		return nil, err
	}
	return t, nil
}

// healthCheck draws two samples: each must not be all zero and the two must
// differ. It catches a source that is stuck or returns nothing useful; it is
// no statistical test of randomness (crypto/rand is trusted for that).
func (t *TRNG) healthCheck() error {
	var a, b [healthSampleSize]byte
	if _, err := t.Read(a[:]); err != nil {
		return fmt.Errorf("%w: %w", errTRNGHealth, err)
	}
	if _, err := t.Read(b[:]); err != nil {
		return fmt.Errorf("%w: %w", errTRNGHealth, err)
	}
	// The samples are discarded, but they are random bytes all the same.
	defer clear(a[:])
	defer clear(b[:])
	var zero [healthSampleSize]byte
	switch {
	case a == zero || b == zero:
		return fmt.Errorf("%w: all-zero output", errTRNGHealth)
	case a == b:
		return fmt.Errorf("%w: repeated output", errTRNGHealth)
	}
	return nil
}

func (t *TRNG) Read(p []byte) (int, error) {
	src := t.src
	if src == nil {
		src = rand.Reader
	}
	n, err := io.ReadFull(src, p)
	if err != nil {
		return n, fmt.Errorf("sim: trng: %w", err)
	}
	return n, nil
}
