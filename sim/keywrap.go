package sim

import "errors"

// ErrKeyWrapLength reports an input whose length no wrapping can have. It is
// about public facts (sizes) and may be told apart from integrity failures.
var ErrKeyWrapLength = errors.New("sim: key wrap: bad input length")

// ErrKeyWrapIntegrity reports a wrapped key that failed its integrity check:
// wrong KEK, modified ciphertext, bad padding. Every such failure returns this
// one error, checked in constant time, so callers cannot learn which part
// failed.
var ErrKeyWrapIntegrity = errors.New("sim: key unwrap: integrity check failed")

// KeyWrap wraps plaintext under kek with the AES key wrap of RFC 3394 and its
// default initial value. kek is 16, 24 or 32 bytes; plaintext a multiple of 8
// bytes, at least 16.
func KeyWrap(kek, plaintext []byte) ([]byte, error) { panic("TODO") }

// KeyUnwrap reverses [KeyWrap].
func KeyUnwrap(kek, ciphertext []byte) ([]byte, error) { panic("TODO") }

// KeyWrapPad wraps plaintext (1 byte or more, any length) under kek with AES
// key wrap with padding, RFC 5649.
func KeyWrapPad(kek, plaintext []byte) ([]byte, error) { panic("TODO") }

// KeyUnwrapPad reverses [KeyWrapPad].
func KeyUnwrapPad(kek, ciphertext []byte) ([]byte, error) { panic("TODO") }
