package keywrap

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/hsmkit/cryptech-backup/internal/testvectors"
)

type rfcVector struct {
	Name    string
	KEK     testvectors.Hex
	Key     testvectors.Hex
	Wrapped testvectors.Hex
}

// loadRFCVectors reads testdata/keywrap_rfc.json: the vectors printed in
// RFC 3394 section 4 and RFC 5649 section 6, typed in from the RFCs.
func loadRFCVectors(tb testing.TB) (kw, kwp []rfcVector) {
	tb.Helper()
	data, err := os.ReadFile("testdata/keywrap_rfc.json")
	if err != nil {
		tb.Fatal(err)
	}
	var v struct{ RFC3394, RFC5649 []rfcVector }
	if err := json.Unmarshal(data, &v); err != nil {
		tb.Fatal(err)
	}
	if len(v.RFC3394) != 6 || len(v.RFC5649) != 2 {
		tb.Fatalf("testdata/keywrap_rfc.json: %d RFC 3394 and %d RFC 5649 vectors, want 6 and 2", len(v.RFC3394), len(v.RFC5649))
	}
	return v.RFC3394, v.RFC5649
}

// A wrapping scheme as the tests see it.
type scheme struct {
	name         string
	wrap, unwrap func(kek, in []byte) ([]byte, error)
	// ptLenOK and ctLenOK say which plaintext and ciphertext lengths the
	// scheme can have at all: the public facts behind ErrLength.
	ptLenOK, ctLenOK func(n int) bool
}

var (
	kw = scheme{
		name: "KW", wrap: Wrap, unwrap: Unwrap,
		ptLenOK: func(n int) bool { return n%8 == 0 && n >= 16 },
		ctLenOK: func(n int) bool { return n%8 == 0 && n >= 24 },
	}
	kwp = scheme{
		name: "KWP", wrap: WrapPad, unwrap: UnwrapPad,
		ptLenOK: func(n int) bool { return n >= 1 },
		ctLenOK: func(n int) bool { return n%8 == 0 && n >= 16 },
	}
)

// checkRefused checks that unwrapping ct under kek failed without output,
// with ErrLength if no wrapping has the length of ct and
// ErrIntegrity otherwise.
func (s scheme) checkRefused(t *testing.T, what string, kek, ct []byte) {
	t.Helper()
	want := ErrIntegrity
	if !s.ctLenOK(len(ct)) {
		want = ErrLength
	}
	got, err := s.unwrap(kek, ct)
	if got != nil || !errors.Is(err, want) {
		t.Errorf("%s: %s: unwrap(%d bytes) = %x, %v; want nil, %v", s.name, what, len(ct), got, err, want)
	}
}

func TestKeyWrapRFCVectors(t *testing.T) {
	vkw, vkwp := loadRFCVectors(t)
	for _, c := range []struct {
		s       scheme
		vectors []rfcVector
	}{{kw, vkw}, {kwp, vkwp}} {
		for _, v := range c.vectors {
			got, err := c.s.wrap(v.KEK, v.Key)
			if err != nil || !bytes.Equal(got, v.Wrapped) {
				t.Errorf("%s %s: wrap = %x, %v; want %x", c.s.name, v.Name, got, err, []byte(v.Wrapped))
			}
			got, err = c.s.unwrap(v.KEK, v.Wrapped)
			if err != nil || !bytes.Equal(got, v.Key) {
				t.Errorf("%s %s: unwrap = %x, %v; want %x", c.s.name, v.Name, got, err, []byte(v.Key))
			}
			// Every single-bit change to the ciphertext, and a wrong KEK,
			// must fail the integrity check.
			ct := bytes.Clone(v.Wrapped)
			for i := range 8 * len(ct) {
				ct[i/8] ^= 1 << (i % 8)
				c.s.checkRefused(t, fmt.Sprintf("%s, bit %d flipped", v.Name, i), v.KEK, ct)
				ct[i/8] ^= 1 << (i % 8)
			}
			kek := bytes.Clone(v.KEK)
			kek[0] ^= 0x80
			c.s.checkRefused(t, v.Name+", wrong KEK", kek, v.Wrapped)
		}
	}
}

// keywrapGroup is the part of a group of Wycheproof's keywrap_test_schema_v1
// that the tests read.
type keywrapGroup struct {
	KeySize int
	Tests   []struct {
		testvectors.Case
		Key, Msg, Ct testvectors.Hex
	}
}

// runWycheproof runs every case of a Wycheproof key wrap file: a case that
// must pass unwraps to its message and wraps back to its ciphertext; any
// other is refused, with the error checkRefused wants.
func (s scheme) runWycheproof(t *testing.T, file string, acceptable map[string]bool) {
	f := testvectors.Load[keywrapGroup](t, file, "keywrap_test_schema_v1.json")
	var n testvectors.Tally
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			n.Add(tc.Case)
			what := tc.String()
			if 8*len(tc.Key) != g.KeySize {
				t.Errorf("%s: %s: %d-byte key in a group of %d-bit keys", s.name, what, len(tc.Key), g.KeySize)
			}
			if testvectors.Expect(t, tc.Result, tc.Flags, acceptable) {
				got, err := s.unwrap(tc.Key, tc.Ct)
				if err != nil || !bytes.Equal(got, tc.Msg) {
					t.Errorf("%s: %s: unwrap = %x, %v; want %x", s.name, what, got, err, []byte(tc.Msg))
				}
				got, err = s.wrap(tc.Key, tc.Msg)
				if err != nil || !bytes.Equal(got, tc.Ct) {
					t.Errorf("%s: %s: wrap = %x, %v; want %x", s.name, what, got, err, []byte(tc.Ct))
				}
			} else {
				s.checkRefused(t, what, tc.Key, tc.Ct)
			}
			// Whatever the verdict, a message of a length the scheme cannot
			// wrap is refused as such.
			if !s.ptLenOK(len(tc.Msg)) {
				if got, err := s.wrap(tc.Key, tc.Msg); got != nil || !errors.Is(err, ErrLength) {
					t.Errorf("%s: %s: wrap(%d bytes) = %x, %v; want nil, %v", s.name, what, len(tc.Msg), got, err, ErrLength)
				}
			}
		}
	}
	n.Check(t, file, f.NumberOfTests)
}

func TestKeyWrapWycheproof(t *testing.T) {
	kw.runWycheproof(t, "aes_wrap_test.json", map[string]bool{
		// An 8-byte key. RFC 3394 and SP 800-38F KW need at least two
		// semiblocks, and Wrap documents plaintexts of 16 bytes or more;
		// a single semiblock is what KWP is for (its one-block case keeps
		// the length in the AIV). So wrapping refuses the key and unwrapping
		// refuses the 16-byte ciphertext, both with ErrLength.
		"ShortKey": false,
	})
}

func TestKeyWrapPadWycheproof(t *testing.T) {
	kwp.runWycheproof(t, "aes_kwp_test.json", map[string]bool{
		// Keys shorter than 16 bytes. They are "valid" in the current file;
		// should a later version mark them acceptable, WrapPad wraps any
		// length from one byte, as RFC 5649 intends, so they must work.
		"SmallKey": true,
	})
}

// naiveCheckKWP is the integrity check of RFC 5649 written the obvious,
// variable-time way, as a reference for checkKWP.
func naiveCheckKWP(a *[8]byte, r []byte) (uint32, bool) {
	if !bytes.Equal(a[:4], []byte{0xa6, 0x59, 0x59, 0xa6}) {
		return 0, false
	}
	mli := binary.BigEndian.Uint32(a[4:])
	if uint64(mli) <= uint64(len(r))-8 || uint64(mli) > uint64(len(r)) {
		return 0, false
	}
	for _, c := range r[mli:] {
		if c != 0 {
			return 0, false
		}
	}
	return mli, true
}

func TestKeyWrapPadIntegrityCheck(t *testing.T) {
	cases := 0
	for _, n := range []int{1, 2, 3, 16} {
		mlis := []uint32{0, 1 << 31, 1<<32 - 1}
		for m := 8*(n-1) - 2; m <= 8*n+9; m++ {
			if m >= 0 {
				mlis = append(mlis, uint32(m))
			}
		}
		for _, mli := range mlis {
			for _, prefix := range [][4]byte{kwpAIV, {0xa6, 0xa6, 0xa6, 0xa6}, {0xa7, 0x59, 0x59, 0xa6}, {0xa6, 0x59, 0x59, 0xa7}} {
				// bad = -1: the last semiblock is all zero; otherwise that
				// byte of it is set.
				for bad := -1; bad < 8; bad++ {
					var a [8]byte
					copy(a[:4], prefix[:])
					binary.BigEndian.PutUint32(a[4:], mli)
					r := make([]byte, 8*n)
					for i := range 8 * (n - 1) {
						r[i] = byte(i + 1)
					}
					if bad >= 0 {
						r[8*(n-1)+bad] = 0x5a
					}
					wantMLI, wantOK := naiveCheckKWP(&a, r)
					gotMLI, gotOK := checkKWP(&a, r)
					if (gotOK != 0 && gotOK != 1) || (gotOK == 1) != wantOK || (wantOK && gotMLI != wantMLI) {
						t.Errorf("n=%d prefix=%x mli=%d bad=%d: checkKWP = %d, %d; want %v, %d", n, prefix, mli, bad, gotMLI, gotOK, wantOK, wantMLI)
					}
					cases++

					// And the same through UnwrapPad, on a ciphertext
					// built with this AIV and padded plaintext.
					kek := make([]byte, 16)
					ct := wrapRaw(t, kek, a, r)
					got, err := UnwrapPad(kek, ct)
					switch {
					case wantOK && (err != nil || !bytes.Equal(got, r[:wantMLI])):
						t.Errorf("n=%d mli=%d bad=%d: unwrap = %x, %v; want %x", n, mli, bad, got, err, r[:wantMLI])
					case !wantOK && (got != nil || !errors.Is(err, ErrIntegrity)):
						t.Errorf("n=%d prefix=%x mli=%d bad=%d: unwrap = %x, %v; want %v", n, prefix, mli, bad, got, err, ErrIntegrity)
					}
				}
			}
		}
	}
	t.Logf("%d cases", cases)
}

// wrapRaw wraps the padded plaintext r with an arbitrary initial value a,
// the way WrapPad would for a well-formed one.
func wrapRaw(t *testing.T, kek []byte, a [8]byte, r []byte) []byte {
	block, err := aes.NewCipher(kek)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 8+len(r))
	copy(out[8:], r)
	if len(r) == 8 {
		copy(out, a[:])
		block.Encrypt(out, out)
		return out
	}
	wrapBlocks(block, &a, out[8:])
	copy(out, a[:])
	return out
}

func TestKeyWrapBadLengths(t *testing.T) {
	kek := make([]byte, 32)
	for _, s := range []scheme{kw, kwp} {
		pt := bytes.Repeat([]byte{0x42}, 40)
		ct, err := s.wrap(kek, pt)
		if err != nil {
			t.Fatal(err)
		}
		for i := range len(ct) {
			s.checkRefused(t, fmt.Sprintf("truncated to %d", i), kek, ct[:i])
		}
		for i := 1; i <= 24; i++ {
			long := append(bytes.Clone(ct), ct[:i]...)
			s.checkRefused(t, fmt.Sprintf("extended by %d", i), kek, long)
		}
		for _, n := range []int{0, 1, 8, 15, 17, 20, 31, 33, 64} {
			bad := make([]byte, n)
			if got, err := s.wrap(bad, pt); got != nil || !errors.Is(err, ErrLength) {
				t.Errorf("%s: wrap with a %d-byte KEK = %x, %v", s.name, n, got, err)
			}
			if got, err := s.unwrap(bad, ct); got != nil || !errors.Is(err, ErrLength) {
				t.Errorf("%s: unwrap with a %d-byte KEK = %x, %v", s.name, n, got, err)
			}
		}
		for n := range 33 {
			if s.ptLenOK(n) {
				continue
			}
			if got, err := s.wrap(kek, pt[:n]); got != nil || !errors.Is(err, ErrLength) {
				t.Errorf("%s: wrap(%d bytes) = %x, %v", s.name, n, got, err)
			}
		}
	}
}

func TestKeyWrapPadRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{'k', 'w', 'p'}))
	for _, kekLen := range []int{16, 24, 32} {
		kek := make([]byte, kekLen)
		for n := 1; n <= 200; n++ {
			for i := range kek {
				kek[i] = byte(rng.Uint32())
			}
			pt := make([]byte, n)
			for i := range pt {
				pt[i] = byte(rng.Uint32())
			}
			saved := bytes.Clone(pt)
			ct, err := WrapPad(kek, pt)
			if err != nil {
				t.Fatalf("KEK %d, length %d: wrap: %v", kekLen, n, err)
			}
			if want := 8 + (n+7)/8*8; len(ct) != want {
				t.Errorf("KEK %d, length %d: ciphertext is %d bytes, want %d", kekLen, n, len(ct), want)
			}
			savedCT := bytes.Clone(ct)
			got, err := UnwrapPad(kek, ct)
			if err != nil || !bytes.Equal(got, pt) || cap(got) != n {
				t.Fatalf("KEK %d, length %d: unwrap = %x (cap %d), %v; want %x", kekLen, n, got, cap(got), err, pt)
			}
			// The inputs are left alone and the outputs are fresh.
			if !bytes.Equal(pt, saved) || !bytes.Equal(ct, savedCT) {
				t.Fatalf("KEK %d, length %d: an input was modified", kekLen, n)
			}
			got[0] ^= 0xff
			if !bytes.Equal(pt, saved) || !bytes.Equal(ct, savedCT) {
				t.Fatalf("KEK %d, length %d: the output aliases an input", kekLen, n)
			}
		}
	}
}

func TestKeyWrapSelfTest(t *testing.T) {
	if err := SelfTest(); err != nil {
		t.Fatal(err)
	}
}

func FuzzKeyUnwrapPad(f *testing.F) {
	_, vkwp := loadRFCVectors(f)
	for _, v := range vkwp {
		f.Add([]byte(v.KEK), []byte(v.Wrapped))
		f.Add([]byte(v.KEK), []byte(v.Wrapped[:len(v.Wrapped)-1]))
	}
	f.Add(make([]byte, 16), make([]byte, 16))
	f.Add(make([]byte, 17), make([]byte, 24))
	f.Fuzz(func(t *testing.T, kek, ct []byte) {
		pt, err := UnwrapPad(kek, ct)
		if err != nil {
			want := ErrIntegrity
			if k := len(kek); (k != 16 && k != 24 && k != 32) || !kwp.ctLenOK(len(ct)) {
				want = ErrLength
			}
			if pt != nil || !errors.Is(err, want) {
				t.Fatalf("unwrap = %x, %v; want nil, %v", pt, err, want)
			}
		} else if again, err := WrapPad(kek, pt); err != nil || !bytes.Equal(again, ct) {
			t.Fatalf("unwrapped %x, which wraps to %x, %v; want %x", pt, again, err, ct)
		}
		// Random ciphertexts hardly ever unwrap, so also take ct as a
		// plaintext: whatever wraps must unwrap to itself.
		if wrapped, err := WrapPad(kek, ct); err == nil {
			if back, err := UnwrapPad(kek, wrapped); err != nil || !bytes.Equal(back, ct) {
				t.Fatalf("%x wraps to %x, which unwraps to %x, %v", ct, wrapped, back, err)
			}
		}
	})
}

// benchPlaintext is about the size of an RSA-2048 private key in PKCS #8.
const benchPlaintext = 1218

func BenchmarkKeyWrapPad(b *testing.B) {
	kek := make([]byte, 32)
	pt := make([]byte, benchPlaintext)
	b.SetBytes(benchPlaintext)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := WrapPad(kek, pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyUnwrapPad(b *testing.B) {
	kek := make([]byte, 32)
	ct, err := WrapPad(kek, make([]byte, benchPlaintext))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchPlaintext)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnwrapPad(kek, ct); err != nil {
			b.Fatal(err)
		}
	}
}
