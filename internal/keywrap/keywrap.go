// Package keywrap is AES key wrap: RFC 3394, and RFC 5649 with padding.
// It is the emulated board's key wrap core (package sim runs its self test
// at power-on), and the software side of a transfer uses it too (the soft
// KEKEK of package backup): one implementation, importing nothing of the
// emulator, so that the contract's users need not link it.
package keywrap

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
)

// ErrLength reports an input whose length no wrapping can have. It is
// about public facts (sizes) and may be told apart from integrity failures.
var ErrLength = errors.New("keywrap: key wrap: bad input length")

// ErrIntegrity reports a wrapped key that failed its integrity check:
// wrong KEK, modified ciphertext, bad padding. Every such failure returns this
// one error, checked in constant time, so callers cannot learn which part
// failed.
var ErrIntegrity = errors.New("keywrap: key unwrap: integrity check failed")

// kwIV is the default initial value of RFC 3394 section 2.2.3.1.
var kwIV = [8]byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}

// kwpAIV is the constant first half of the alternative initial value of
// RFC 5649 section 3; the second half is the 32-bit message length indicator.
var kwpAIV = [4]byte{0xa6, 0x59, 0x59, 0xa6}

// Wrap wraps plaintext under kek with the AES key wrap of RFC 3394 and its
// default initial value. kek is 16, 24 or 32 bytes; plaintext a multiple of 8
// bytes, at least 16.
func Wrap(kek, plaintext []byte) ([]byte, error) {
	block, err := newKEK(kek)
	if err != nil {
		return nil, err
	}
	if len(plaintext)%8 != 0 || len(plaintext) < 16 {
		return nil, fmt.Errorf("%w: plaintext is %d bytes, not a multiple of 8 of at least 16", ErrLength, len(plaintext))
	}
	out := make([]byte, 8+len(plaintext))
	a := kwIV
	copy(out[8:], plaintext)
	wrapBlocks(block, &a, out[8:])
	copy(out[:8], a[:])
	return out, nil
}

// Unwrap reverses [Wrap].
func Unwrap(kek, ciphertext []byte) ([]byte, error) {
	block, err := newKEK(kek)
	if err != nil {
		return nil, err
	}
	if len(ciphertext)%8 != 0 || len(ciphertext) < 24 {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes, not a multiple of 8 of at least 24", ErrLength, len(ciphertext))
	}
	var a [8]byte
	copy(a[:], ciphertext[:8])
	r := make([]byte, len(ciphertext)-8)
	copy(r, ciphertext[8:])
	unwrapBlocks(block, &a, r)
	// The recovered initial value is the whole integrity check of RFC 3394.
	// Compare it in constant time, so that the position of the first wrong
	// byte does not show in the timing.
	ok := subtle.ConstantTimeCompare(a[:], kwIV[:])
	clear(a[:])
	if ok != 1 {
		clear(r)
		return nil, ErrIntegrity
	}
	return r, nil
}

// WrapPad wraps plaintext (1 byte or more, any length) under kek with AES
// key wrap with padding, RFC 5649.
func WrapPad(kek, plaintext []byte) ([]byte, error) {
	block, err := newKEK(kek)
	if err != nil {
		return nil, err
	}
	m := len(plaintext)
	if m == 0 || uint64(m) > math.MaxUint32 {
		return nil, fmt.Errorf("%w: plaintext is %d bytes, not 1 to 2^32-1", ErrLength, m)
	}
	var a [8]byte
	copy(a[:4], kwpAIV[:])
	binary.BigEndian.PutUint32(a[4:], uint32(m))
	padded := (m + 7) &^ 7
	out := make([]byte, 8+padded)
	copy(out[8:], plaintext) // the padding is already zero
	if padded == 8 {
		// RFC 5649 section 4.1: a single 64-bit block is encrypted with AES
		// in ECB mode together with the AIV.
		copy(out[:8], a[:])
		block.Encrypt(out, out)
		return out, nil
	}
	wrapBlocks(block, &a, out[8:])
	copy(out[:8], a[:])
	return out, nil
}

// UnwrapPad reverses [WrapPad].
func UnwrapPad(kek, ciphertext []byte) ([]byte, error) {
	block, err := newKEK(kek)
	if err != nil {
		return nil, err
	}
	// At most 2^32 padded bytes: the MLI is 32 bits.
	if len(ciphertext)%8 != 0 || len(ciphertext) < 16 || uint64(len(ciphertext)-8) > 1<<32 {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes, not a multiple of 8 of at least 16", ErrLength, len(ciphertext))
	}
	var a [8]byte
	r := make([]byte, len(ciphertext)-8)
	if len(ciphertext) == 16 {
		var buf [16]byte
		block.Decrypt(buf[:], ciphertext)
		copy(a[:], buf[:8])
		copy(r, buf[8:])
		clear(buf[:])
	} else {
		copy(a[:], ciphertext[:8])
		copy(r, ciphertext[8:])
		unwrapBlocks(block, &a, r)
	}
	mli, ok := checkKWP(&a, r)
	clear(a[:])
	if ok != 1 {
		clear(r)
		return nil, ErrIntegrity
	}
	plaintext := make([]byte, mli)
	copy(plaintext, r)
	clear(r)
	return plaintext, nil
}

// checkKWP is the integrity check of RFC 5649 section 3 on an unwrapped AIV a
// and padded plaintext r (8n bytes): a starts with A65959A6, its MLI (the
// last 4 bytes) satisfies 8(n-1) < MLI <= 8n, and the 8n-MLI padding bytes at
// the end of r are zero. It returns ok == 1 if all hold, and the MLI.
//
// a and r are secret until the check passes, and r is a key. The check
// therefore runs in constant time: all three conditions are evaluated with
// crypto/subtle, without branches or indexing that depend on their values,
// and only the combined verdict is branched on by the caller. Returning at
// the first fault would let anyone who can submit ciphertexts to the HSM
// learn from the timing which condition failed, which amounts to a
// padding oracle on the wrapped key.
func checkKWP(a *[8]byte, r []byte) (mli uint32, ok int) {
	ok = subtle.ConstantTimeCompare(a[:4], kwpAIV[:])

	// 8(n-1) < MLI <= 8n exactly when padLen = 8n - MLI is in [0, 7]. In
	// uint64 arithmetic an MLI above 8n wraps padLen around to a huge value,
	// so both bounds come down to "every bit of padLen above the low three is
	// zero".
	mli = binary.BigEndian.Uint32(a[4:])
	padLen := uint64(len(r)) - uint64(mli)
	var high, zero [8]byte
	binary.BigEndian.PutUint64(high[:], padLen&^7)
	ok &= subtle.ConstantTimeCompare(high[:], zero[:])

	// Byte i of the last semiblock is padding when i >= 8 - padLen. When the
	// range check failed, padLen&7 is meaningless, but ok is already 0.
	p := int(padLen & 7)
	for i, c := range r[len(r)-8:] {
		isPad := subtle.ConstantTimeLessOrEq(8-p, i)
		isZero := subtle.ConstantTimeByteEq(c, 0)
		ok &= 1 ^ (isPad & (1 ^ isZero))
	}
	return mli, ok
}

// newKEK checks the size of kek and expands it.
func newKEK(kek []byte) (cipher.Block, error) {
	switch len(kek) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w: KEK is %d bytes, not 16, 24 or 32", ErrLength, len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("keywrap: key wrap: %w", err)
	}
	return block, nil
}

// wrapBlocks is the wrapping process W of RFC 3394 section 2.2.1, in its
// index-based form, applied in place: on entry a is the initial value and r
// the n >= 2 plaintext semiblocks; on return a is C0 and r holds C1..Cn.
func wrapBlocks(block cipher.Block, a *[8]byte, r []byte) {
	n := uint64(len(r) / 8)
	var b [16]byte
	copy(b[:8], a[:])
	for j := range uint64(6) {
		for i := uint64(1); i <= n; i++ {
			ri := r[8*(i-1) : 8*i]
			copy(b[8:], ri)
			block.Encrypt(b[:], b[:])
			binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(b[:8])^(n*j+i))
			copy(ri, b[8:])
		}
	}
	copy(a[:], b[:8])
	clear(b[:])
}

// unwrapBlocks is the unwrapping process W^-1 of RFC 3394 section 2.2.2,
// in place: on entry a is C0 and r holds C1..Cn; on return a is the
// recovered initial value (not yet checked) and r the plaintext semiblocks.
func unwrapBlocks(block cipher.Block, a *[8]byte, r []byte) {
	n := uint64(len(r) / 8)
	var b [16]byte
	copy(b[:8], a[:])
	for j := uint64(6); j > 0; j-- {
		for i := n; i > 0; i-- {
			ri := r[8*(i-1) : 8*i]
			binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(b[:8])^(n*(j-1)+i))
			copy(b[8:], ri)
			block.Decrypt(b[:], b[:])
			copy(ri, b[8:])
		}
	}
	copy(a[:], b[:8])
	clear(b[:])
}

// SelfTest is the known-answer test of the key wrap core, run by the
// board at power-on. The first example of RFC 5649 section 6 (20 bytes under
// a 192-bit KEK, through the full wrapping process W that RFC 3394 shares)
// must wrap to the published ciphertext and unwrap back, and the ciphertext
// with one bit flipped must be refused.
func SelfTest() error {
	kek, _ := hex.DecodeString("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	key, _ := hex.DecodeString("c37b7e6492584340bed12207808941155068f738")
	want, _ := hex.DecodeString("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a")

	// bytes.Equal is fine here: these are published constants, not secrets.
	got, err := WrapPad(kek, key)
	if err != nil || !bytes.Equal(got, want) {
		return errors.New("keywrap: key wrap self test failed: wrap")
	}
	got, err = UnwrapPad(kek, want)
	if err != nil || !bytes.Equal(got, key) {
		return errors.New("keywrap: key wrap self test failed: unwrap")
	}
	want[len(want)-1] ^= 1
	if _, err := UnwrapPad(kek, want); !errors.Is(err, ErrIntegrity) {
		return errors.New("keywrap: key wrap self test failed: modified ciphertext accepted")
	}
	return nil
}
