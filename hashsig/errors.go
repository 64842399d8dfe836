package hashsig

import "errors"

var (
	// ErrBadParameters: an unknown or inconsistent parameter set.
	ErrBadParameters = errors.New("hashsig: bad parameters")
	// ErrMalformed: a public key, signature or private key that does not
	// parse.
	ErrMalformed = errors.New("hashsig: malformed encoding")
	// ErrInvalidSignature: a signature that does not verify.
	ErrInvalidSignature = errors.New("hashsig: invalid signature")
	// ErrKeyExhausted: the key has no signature index left in its range
	// (HASHSIG_KEY_EXHAUSTED on the RPC face).
	ErrKeyExhausted = errors.New("hashsig: key exhausted")
	// ErrWiped: the key was wiped (Wipe) before or while it signed or
	// split; a signature it was building its trees for was abandoned, and
	// used no index.
	ErrWiped = errors.New("hashsig: key wiped")
	// ErrBadCache: a tree cache (PrivateKey.LoadCache) that is damaged,
	// belongs to another key or does not match the key's trees. The caller
	// ignores it and goes on without: the trees are rebuilt.
	ErrBadCache = errors.New("hashsig: bad tree cache")
	// ErrCannotSplit: the remaining range is too small to divide.
	ErrCannotSplit = errors.New("hashsig: remaining signatures too few to split")
)
