package frontend

import (
	"context"
	"crypto"
	"crypto/hmac"
	_ "crypto/sha1" // the hashes libhal's clients may open
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
	"hash"
	"sync"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// A Client is one client of a face: its token session, its login, and the
// handles it has open. Handles of keys, hashes and import batches are
// numbered from 1 in one sequence; 0 is never one. A Client is safe for
// concurrent use, but a face serves a client one request at a time (see
// RoomForKey).
type Client struct {
	f      *Frontend
	tok    hsmapi.Token
	limits Limits

	// mu guards the fields below. It is taken after Frontend.mu, never
	// before, and never held while the token works.
	mu         sync.Mutex
	user       hsmapi.User
	next       uint32
	keys       map[uint32]KeyHandle
	hashes     map[uint32]*Hash
	batches    map[uint32]*batch
	batchBytes int // what the open batches hold (batch.bytes)
	closed     bool
}

// Token is the client's token session, for what keeps no state here.
func (c *Client) Token() hsmapi.Token { return c.tok }

// Close logs the client out and forgets everything it held; it is safe to
// call twice.
func (c *Client) Close() error {
	c.f.mu.Lock()
	delete(c.f.clients, c)
	c.f.mu.Unlock()
	c.mu.Lock()
	closed := c.closed
	c.closed = true
	c.user = hsmapi.UserNone
	clear(c.keys)
	clear(c.hashes)
	clear(c.batches)
	c.batchBytes = 0
	c.mu.Unlock()
	if closed {
		return nil
	}
	return c.tok.Close()
}

// Login logs the client in as user.
func (c *Client) Login(ctx context.Context, user hsmapi.User, pin []byte) error {
	if err := c.tok.Login(ctx, user, pin); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.user = user
	return nil
}

// Logout ends the client's login. Its import batches need the login: they
// go with it.
func (c *Client) Logout(ctx context.Context) error {
	err := c.tok.Logout(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.user = hsmapi.UserNone
	clear(c.batches)
	c.batchBytes = 0
	return err
}

// User is who the client is logged in as.
func (c *Client) User() hsmapi.User {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// SetPIN changes a user's PIN, when the token can.
func (c *Client) SetPIN(ctx context.Context, user hsmapi.User, pin []byte) error {
	p, ok := c.tok.(hsmapi.PINSetter)
	if !ok {
		return fmt.Errorf("set PIN: %w", hsmapi.ErrUnsupported)
	}
	return p.SetPIN(ctx, user, pin)
}

// newHandle is the next handle. Called with c.mu held.
func (c *Client) newHandle() uint32 {
	lockassert.Held(&c.mu)
	c.next++
	if c.next == 0 {
		c.next++
	}
	return c.next
}

// KeyHandle is what a key handle names: a key, and the facts of it that
// never change, so that using the handle needs no lookup of its own
// (libhal's key slots keep them too).
type KeyHandle struct {
	UUID    hsmapi.UUID
	Type    hsmapi.KeyType
	Curve   hsmapi.Curve
	Flags   hsmapi.Flags
	Hashsig bool
}

// RoomForKey fails with ErrNoKeyHandles when the client holds as many key
// handles as it may. Whatever opens a handle asks first, before it makes
// or stores anything: a face serves a client one request at a time, so the
// room is still there when the handle is opened.
func (c *Client) RoomForKey() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.keys) >= c.limits.KeyHandles {
		return ErrNoKeyHandles
	}
	return nil
}

// OpenKey opens a handle on a key the token has described.
func (c *Client) OpenKey(k hsmapi.KeyInfo) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.newHandle()
	c.keys[h] = KeyHandle{UUID: k.UUID, Type: k.Type, Curve: k.Curve, Flags: k.Flags, Hashsig: k.Hashsig != nil}
	return h
}

// Create opens a handle on the key that make makes or stores, once there
// is room for one.
func (c *Client) Create(make func(hsmapi.Token) (hsmapi.KeyInfo, error)) (uint32, hsmapi.KeyInfo, error) {
	if err := c.RoomForKey(); err != nil {
		return 0, hsmapi.KeyInfo{}, err
	}
	k, err := make(c.tok)
	if err != nil {
		return 0, hsmapi.KeyInfo{}, err
	}
	return c.OpenKey(k), k, nil
}

// Key returns what a key handle names, or an error wrapping
// hsmapi.ErrKeyNotFound.
func (c *Client) Key(h uint32) (KeyHandle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.keys[h]
	if !ok {
		return KeyHandle{}, fmt.Errorf("%w: no key handle %d", hsmapi.ErrKeyNotFound, h)
	}
	return k, nil
}

// KeyInfo describes the key behind a handle, as the token tells it now.
func (c *Client) KeyInfo(ctx context.Context, h uint32) (hsmapi.KeyInfo, error) {
	k, err := c.Key(h)
	if err != nil {
		return hsmapi.KeyInfo{}, err
	}
	return c.tok.Key(ctx, k.UUID)
}

// CloseKey closes a key handle.
func (c *Client) CloseKey(h uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.keys[h]; !ok {
		return fmt.Errorf("%w: no key handle %d", hsmapi.ErrKeyNotFound, h)
	}
	delete(c.keys, h)
	return nil
}

// DeleteKey deletes the key behind a handle, and closes the handle.
func (c *Client) DeleteKey(ctx context.Context, h uint32) error {
	k, err := c.Key(h)
	if err != nil {
		return err
	}
	if err := c.tok.DeleteKey(ctx, k.UUID); err != nil {
		return err
	}
	return c.CloseKey(h)
}

// A Hash is an open hash or HMAC.
type Hash struct {
	Alg crypto.Hash
	hash.Hash
}

// NewHash opens a hash of alg, an HMAC when key is not empty (NewHash
// clears key). It fails with ErrNoRoom when the client holds as many
// hashes as it may.
func (c *Client) NewHash(alg crypto.Hash, key []byte) (uint32, error) {
	if !alg.Available() {
		return 0, fmt.Errorf("%w: no hash %v", hsmapi.ErrBadArguments, alg)
	}
	st := &Hash{Alg: alg, Hash: alg.New()}
	if len(key) > 0 {
		st.Hash = hmac.New(alg.New, key)
		clear(key)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.hashes) >= c.limits.HashHandles {
		return 0, fmt.Errorf("%w: %d hashes open", ErrNoRoom, len(c.hashes))
	}
	h := c.newHandle()
	c.hashes[h] = st
	return h, nil
}

// Hash returns an open hash, or an error wrapping hsmapi.ErrBadArguments.
func (c *Client) Hash(h uint32) (*Hash, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.hashes[h]
	if !ok {
		return nil, fmt.Errorf("%w: no hash handle %d", hsmapi.ErrBadArguments, h)
	}
	return st, nil
}

// CloseHash closes a hash handle.
func (c *Client) CloseHash(h uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.hashes, h)
}

// signedInput turns a hash handle or data into what Token.Sign takes: with
// a hash handle, its digest (and the handle is closed); without, the data,
// which is a DigestInfo for RSA (signed as it is), a digest for ECDSA, the
// message for an HSS key. An HSS key given a hash handle signs the digest's
// bytes as its message, as libhal's pkey_local_sign_hashsig does: what a
// libhal client hashes on the HSM is too long to send whole.
func (c *Client) signedInput(k KeyHandle, hashHandle uint32, data []byte) ([]byte, crypto.SignerOpts, error) {
	// libhal takes one or the other, never both or neither.
	if (hashHandle == 0) == (len(data) == 0) {
		return nil, nil, fmt.Errorf("%w: give a hash handle or data, not both or neither", hsmapi.ErrBadArguments)
	}
	if hashHandle == 0 {
		return data, crypto.Hash(0), nil
	}
	st, err := c.Hash(hashHandle)
	if err != nil {
		return nil, nil, err
	}
	c.CloseHash(hashHandle)
	if k.Hashsig {
		return st.Sum(nil), crypto.Hash(0), nil
	}
	return st.Sum(nil), st.Alg, nil
}

// Sign signs with the key behind a handle what a hash handle or data give
// (see signedInput), and tells what the handle names, for the face to put
// the signature in its form. It looks the key up once: in the token's Sign.
func (c *Client) Sign(ctx context.Context, h, hashHandle uint32, data []byte) ([]byte, KeyHandle, error) {
	k, err := c.Key(h)
	if err != nil {
		return nil, k, err
	}
	in, opts, err := c.signedInput(k, hashHandle, data)
	if err != nil {
		return nil, k, err
	}
	sig, err := c.tok.Sign(ctx, k.UUID, in, opts)
	return sig, k, err
}

// Verify checks a signature with the key behind a handle, over what a hash
// handle or data give (see signedInput). sig gives the signature in the
// token's form for the key. As libhal, it verifies only with keys meant
// to: digitalsignature.
func (c *Client) Verify(ctx context.Context, h, hashHandle uint32, data []byte, sig func(KeyHandle) ([]byte, error)) error {
	k, err := c.Key(h)
	if err != nil {
		return err
	}
	if k.Flags&hsmapi.FlagDigitalSignature == 0 {
		return fmt.Errorf("%w: key lacks digitalsignature", hsmapi.ErrForbidden)
	}
	in, opts, err := c.signedInput(k, hashHandle, data)
	if err != nil {
		return err
	}
	s, err := sig(k)
	if err != nil {
		return err
	}
	return c.tok.Verify(ctx, k.UUID, in, s, opts)
}
