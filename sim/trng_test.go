package sim

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestTRNG(t *testing.T) {
	g, err := NewTRNG()
	if err != nil {
		t.Fatal(err)
	}
	a, b := make([]byte, 1000), make([]byte, 1000)
	for _, p := range [][]byte{a, b} {
		n, err := g.Read(p)
		if err != nil || n != len(p) {
			t.Fatalf("Read = %d, %v", n, err)
		}
	}
	if bytes.Equal(a, b) {
		t.Fatal("two reads returned the same bytes")
	}
	if n, err := g.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty Read = %d, %v", n, err)
	}
	var zero TRNG // usable: reads crypto/rand
	if _, err := zero.Read(a); err != nil {
		t.Fatal(err)
	}
}

// repeating returns the same bytes on every read.
type repeating struct{ b byte }

func (r repeating) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.b
	}
	return len(p), nil
}

// counter returns different, non-zero bytes one at a time.
type counter struct{ n byte }

func (c *counter) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.n++
	p[0] = c.n | 1
	return 1, nil
}

func TestTRNGHealthCheck(t *testing.T) {
	tests := []struct {
		name string
		src  io.Reader
		ok   bool
	}{
		{"all zero", repeating{0}, false},
		{"stuck", repeating{0x5A}, false},
		{"failing", iotest.ErrReader(errors.New("broken")), false},
		{"exhausted", bytes.NewReader(make([]byte, 40)), false},
		{"short reads", &counter{}, true},
	}
	for _, tt := range tests {
		_, err := newTRNG(tt.src)
		if tt.ok && err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if !tt.ok && !errors.Is(err, errTRNGHealth) {
			t.Errorf("%s: %v, want errTRNGHealth", tt.name, err)
		}
	}
}

func TestTRNGNeverShortWithoutError(t *testing.T) {
	g := &TRNG{src: io.MultiReader(bytes.NewReader([]byte{1, 2, 3}))}
	n, err := g.Read(make([]byte, 8))
	if err == nil {
		t.Fatalf("short source: Read = %d with no error", n)
	}
	if n != 3 {
		t.Fatalf("Read = %d, want the 3 bytes that were filled", n)
	}
	g = &TRNG{src: &counter{}}
	if n, err := g.Read(make([]byte, 100)); n != 100 || err != nil {
		t.Fatalf("one-byte source: Read = %d, %v", n, err)
	}
}
