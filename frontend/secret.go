package frontend

import (
	"context"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// Secret keys, wrapping and RSA-OAEP through key handles, for the faces
// that name keys by handle. The token decides what each key may do (see
// docs/key-policy.md); a token without the operation answers
// hsmapi.ErrUnsupported.

// tokenAs returns the client's token as the optional interface T.
func tokenAs[T any](c *Client, what string) (T, error) {
	t, ok := c.tok.(T)
	if !ok {
		return t, fmt.Errorf("%s: %w", what, hsmapi.ErrUnsupported)
	}
	return t, nil
}

// GenerateSecretKey makes an AES key and opens a handle on it.
func (c *Client) GenerateSecretKey(ctx context.Context, req hsmapi.SecretKeyRequest) (uint32, hsmapi.KeyInfo, error) {
	g, err := tokenAs[hsmapi.SecretKeyGenerator](c, "generate AES key")
	if err != nil {
		return 0, hsmapi.KeyInfo{}, err
	}
	return c.Create(func(hsmapi.Token) (hsmapi.KeyInfo, error) { return g.GenerateSecretKey(ctx, req) })
}

// LoadSecretKey stores an AES key given in the clear and opens a handle
// on it. value is the caller's to clear.
func (c *Client) LoadSecretKey(ctx context.Context, req hsmapi.SecretKeyRequest, value []byte) (uint32, hsmapi.KeyInfo, error) {
	l, err := tokenAs[hsmapi.SecretKeyLoader](c, "load AES key")
	if err != nil {
		return 0, hsmapi.KeyInfo{}, err
	}
	return c.Create(func(hsmapi.Token) (hsmapi.KeyInfo, error) { return l.LoadSecretKey(ctx, req, value) })
}

// WrapKey wraps the key behind handle key under the one behind wrapping.
func (c *Client) WrapKey(ctx context.Context, wrapping, key uint32, mech hsmapi.WrapMechanism) ([]byte, error) {
	w, err := tokenAs[hsmapi.KeyWrapper](c, "wrap key")
	if err != nil {
		return nil, err
	}
	wk, err := c.Key(wrapping)
	if err != nil {
		return nil, err
	}
	k, err := c.Key(key)
	if err != nil {
		return nil, err
	}
	return w.WrapKey(ctx, wk.UUID, k.UUID, mech)
}

// UnwrapKey unwraps a blob under the key behind handle unwrapping into a
// new key, and opens a handle on it.
func (c *Client) UnwrapKey(ctx context.Context, unwrapping uint32, mech hsmapi.WrapMechanism, wrapped []byte, req hsmapi.UnwrapRequest) (uint32, hsmapi.KeyInfo, error) {
	w, err := tokenAs[hsmapi.KeyWrapper](c, "unwrap key")
	if err != nil {
		return 0, hsmapi.KeyInfo{}, err
	}
	uk, err := c.Key(unwrapping)
	if err != nil {
		return 0, hsmapi.KeyInfo{}, err
	}
	return c.Create(func(hsmapi.Token) (hsmapi.KeyInfo, error) { return w.UnwrapKey(ctx, uk.UUID, mech, wrapped, req) })
}

// Encrypt encrypts with RSA-OAEP under the key behind a handle.
func (c *Client) Encrypt(ctx context.Context, h uint32, p hsmapi.OAEPParams, plaintext []byte) ([]byte, error) {
	e, err := tokenAs[hsmapi.Encrypter](c, "encrypt")
	if err != nil {
		return nil, err
	}
	k, err := c.Key(h)
	if err != nil {
		return nil, err
	}
	return e.Encrypt(ctx, k.UUID, p, plaintext)
}

// Decrypt decrypts RSA-OAEP with the key behind a handle.
func (c *Client) Decrypt(ctx context.Context, h uint32, p hsmapi.OAEPParams, ciphertext []byte) ([]byte, error) {
	d, err := tokenAs[hsmapi.Decrypter](c, "decrypt")
	if err != nil {
		return nil, err
	}
	k, err := c.Key(h)
	if err != nil {
		return nil, err
	}
	return d.Decrypt(ctx, k.UUID, p, ciphertext)
}
