package rpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// Secret keys, key wrapping and RSA-OAEP through the extensions
// (docs/key-policy.md): a plain libhal server, or one of this project's
// from before them, has none (ErrUnsupported).

var (
	_ hsmapi.SecretKeyGenerator = (*Client)(nil)
	_ hsmapi.KeyWrapper         = (*Client)(nil)
	_ hsmapi.Encrypter          = (*Client)(nil)
	_ hsmapi.Decrypter          = (*Client)(nil)
	_ hsmapi.TrustSetter        = (*Client)(nil)
	_ hsmapi.SecretKeyLoader    = (*Client)(nil)
	_ hsmapi.TrustLister        = (*Client)(nil)
)

// callV5 makes a call of extensions version 5, telling a server of an
// older version as ErrUnsupported.
func (c *Client) callV5(f wire.Func, what string, req, resp wire.Args) error {
	if c.ext == nil || c.ext.Version < 5 {
		return fmt.Errorf("%w: this server cannot %s", hsmapi.ErrUnsupported, what)
	}
	return c.call(f, req, resp)
}

// callSecret makes an extension call of this file's, telling a server
// without them as ErrUnsupported.
func (c *Client) callSecret(f wire.Func, req, resp wire.Args) error {
	if c.ext == nil {
		return fmt.Errorf("%w: a libhal server has no secret keys", hsmapi.ErrUnsupported)
	}
	err := c.call(f, req, resp)
	if errors.Is(err, wire.StatusRPCBadFunction) {
		return fmt.Errorf("%w: this server has no secret keys", hsmapi.ErrUnsupported)
	}
	return err
}

// wireAttributes puts a new key's attributes on the wire.
func wireAttributes(attrs []hsmapi.Attribute) []wire.Attribute {
	out := make([]wire.Attribute, len(attrs))
	for i, a := range attrs {
		out[i] = wire.Attribute{Type: a.Type, Value: a.Value, Absent: a.Delete}
	}
	return out
}

// newKey keeps the handle of a key the server made and describes it.
func (c *Client) newKey(r *wire.ExtNewKeyResponse) (hsmapi.KeyInfo, error) {
	if len(r.UUID) != len(hsmapi.UUID{}) {
		return hsmapi.KeyInfo{}, fmt.Errorf("%w: a %d-byte UUID", wire.StatusRPCProtocolError, len(r.UUID))
	}
	id := hsmapi.UUID(r.UUID)
	if _, err := c.remember(id, r.Pkey); err != nil {
		return hsmapi.KeyInfo{}, err
	}
	return c.Key(bg, id)
}

// GenerateSecretKey makes an AES key on the server.
func (c *Client) GenerateSecretKey(_ context.Context, req hsmapi.SecretKeyRequest) (hsmapi.KeyInfo, error) {
	var r wire.ExtNewKeyResponse
	err := c.callSecret(wire.FuncExtGenerateSecret, &wire.ExtGenerateSecretRequest{Bits: uint32(req.Bits), Flags: uint32(req.Flags),
		Label: req.Label, Attributes: wireAttributes(req.Attributes)}, &r)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate AES key: %w", err)
	}
	return c.newKey(&r)
}

// LoadSecretKey stores an AES key given in the clear on the server
// (EXT_LOAD_SECRET). The value travels on the connection as PKEY_LOAD's
// private keys do: in the clear on a Unix socket or loopback, under TLS
// otherwise (see docs/rpc.md).
func (c *Client) LoadSecretKey(_ context.Context, req hsmapi.SecretKeyRequest, value []byte) (hsmapi.KeyInfo, error) {
	var r wire.ExtNewKeyResponse
	err := c.callV5(wire.FuncExtLoadSecret, "load AES keys", &wire.ExtLoadSecretRequest{ExtGenerateSecretRequest: wire.ExtGenerateSecretRequest{
		Bits: uint32(req.Bits), Flags: uint32(req.Flags), Label: req.Label, Attributes: wireAttributes(req.Attributes)}, Value: value}, &r)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load AES key: %w", err)
	}
	return c.newKey(&r)
}

// WrapKey wraps a key under another on the server.
func (c *Client) WrapKey(_ context.Context, wrappingKey, id hsmapi.UUID, mech hsmapi.WrapMechanism) ([]byte, error) {
	w, err := c.openKey(wrappingKey)
	if err != nil {
		return nil, fmt.Errorf("wrap %s: %w", id, err)
	}
	k, err := c.openKey(id)
	if err != nil {
		return nil, fmt.Errorf("wrap %s: %w", id, err)
	}
	var r wire.ExtBytesResponse
	if err := c.callSecret(wire.FuncExtWrapKey, &wire.ExtWrapKeyRequest{Wrapping: w.handle, Pkey: k.handle, ExtMechanismRequest: wireMechanism(mech)}, &r); err != nil {
		return nil, fmt.Errorf("wrap %s under %s: %w", id, wrappingKey, err)
	}
	return r.Data, nil
}

// UnwrapKey unwraps a blob into a new key on the server.
func (c *Client) UnwrapKey(_ context.Context, unwrappingKey hsmapi.UUID, mech hsmapi.WrapMechanism, wrapped []byte, req hsmapi.UnwrapRequest) (hsmapi.KeyInfo, error) {
	w, err := c.openKey(unwrappingKey)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("unwrap: %w", err)
	}
	var r wire.ExtNewKeyResponse
	err = c.callSecret(wire.FuncExtUnwrapKey, &wire.ExtUnwrapKeyRequest{Unwrapping: w.handle, ExtMechanismRequest: wireMechanism(mech), Wrapped: wrapped,
		Type: uint32(req.Type), Bits: uint32(req.Bits), Flags: uint32(req.Flags), Label: req.Label, Attributes: wireAttributes(req.Attributes)}, &r)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("unwrap under %s: %w", unwrappingKey, err)
	}
	return c.newKey(&r)
}

// crypt is Encrypt and Decrypt.
func (c *Client) crypt(f wire.Func, what string, id hsmapi.UUID, p hsmapi.OAEPParams, in []byte) ([]byte, error) {
	k, err := c.openKey(id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var r wire.ExtBytesResponse
	mech := wireMechanism(hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAOAEP, OAEP: p})
	if err := c.callSecret(f, &wire.ExtCryptRequest{Pkey: k.handle, ExtMechanismRequest: mech, Data: in}, &r); err != nil {
		return nil, fmt.Errorf("%s with %s: %w", what, id, err)
	}
	return r.Data, nil
}

// Encrypt encrypts with RSA-OAEP on the server.
func (c *Client) Encrypt(_ context.Context, id hsmapi.UUID, p hsmapi.OAEPParams, plaintext []byte) ([]byte, error) {
	return c.crypt(wire.FuncExtEncrypt, "encrypt", id, p, plaintext)
}

// Decrypt decrypts RSA-OAEP on the server.
func (c *Client) Decrypt(_ context.Context, id hsmapi.UUID, p hsmapi.OAEPParams, ciphertext []byte) ([]byte, error) {
	return c.crypt(wire.FuncExtDecrypt, "decrypt", id, p, ciphertext)
}

// SetTrusted sets or clears CKA_TRUSTED on the server, as its SO.
func (c *Client) SetTrusted(_ context.Context, id hsmapi.UUID, trusted bool) error {
	var t uint32
	if trusted {
		t = 1
	}
	if err := c.callSecret(wire.FuncExtSetTrusted, &wire.ExtSetTrustedRequest{UUID: id[:], Trusted: t}, &wire.ExtEmptyResponse{}); err != nil {
		return fmt.Errorf("set CKA_TRUSTED of %s: %w", id, err)
	}
	return nil
}

// secretKeyInfo describes a secret key, which has no public key to ask
// for: its size is its CKA_VALUE_LEN.
func (c *Client) secretKeyInfo(id hsmapi.UUID, k openKey) (hsmapi.KeyInfo, error) {
	var flags wire.PkeyGetKeyFlagsResponse
	if err := c.call(wire.FuncPkeyGetKeyFlags, &wire.PkeyGetKeyFlagsRequest{Pkey: k.handle}, &flags); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("key %s: %w", id, err)
	}
	attrs, err := c.attributes(k.handle, []uint32{hsmapi.AttributeLabel, hsmapi.CKAValueLen})
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("key %s: %w", id, err)
	}
	info := hsmapi.KeyInfo{UUID: id, Type: k.typ, Flags: hsmapi.Flags(flags.Flags), Label: string(attrs[hsmapi.AttributeLabel])}
	if v := attrs[hsmapi.CKAValueLen]; len(v) == 8 {
		info.Bits = int(binary.BigEndian.Uint64(v)) * 8
	}
	return info, nil
}

// TrustCandidates lists the keys the server shows its security officer to
// mark trusted, one EXT_TRUST_CANDIDATE per key.
func (c *Client) TrustCandidates(context.Context) ([]hsmapi.TrustCandidate, error) {
	var out []hsmapi.TrustCandidate
	var prev hsmapi.UUID
	for {
		var r wire.ExtTrustCandidateResponse
		if err := c.callV5(wire.FuncExtTrustCandidate, "list keys to trust", &wire.ExtTrustCandidateRequest{Previous: prev[:]}, &r); err != nil {
			return nil, fmt.Errorf("list keys to trust: %w", err)
		}
		if len(r.UUID) == 0 {
			return out, nil
		}
		cand, err := trustCandidateOf(&r)
		if err != nil {
			return nil, fmt.Errorf("list keys to trust: %w", err)
		}
		// A server that answered out of order would keep this loop going.
		if bytes.Compare(cand.Key.UUID[:], prev[:]) <= 0 {
			return nil, fmt.Errorf("list keys to trust: %w: key %s after %s", wire.StatusRPCProtocolError, cand.Key.UUID, prev)
		}
		out = append(out, cand)
		prev = cand.Key.UUID
	}
}

// trustCandidateOf reads one EXT_TRUST_CANDIDATE answer.
func trustCandidateOf(r *wire.ExtTrustCandidateResponse) (hsmapi.TrustCandidate, error) {
	k, err := keyInfoOf(&r.ExtKeyInfoResponse)
	if err != nil {
		return hsmapi.TrustCandidate{}, err
	}
	c := hsmapi.TrustCandidate{Key: k, Attributes: make([]hsmapi.Attribute, 0, len(r.Attributes))}
	for _, a := range r.Attributes {
		c.Attributes = append(c.Attributes, hsmapi.Attribute{Type: a.Type, Value: a.Value})
	}
	return c, nil
}

// keyInfoOf reads a key's description off the wire.
func keyInfoOf(r *wire.ExtKeyInfoResponse) (hsmapi.KeyInfo, error) {
	if len(r.UUID) != len(hsmapi.UUID{}) {
		return hsmapi.KeyInfo{}, fmt.Errorf("%w: a %d-byte UUID", wire.StatusRPCProtocolError, len(r.UUID))
	}
	k := hsmapi.KeyInfo{Type: hsmapi.KeyType(r.Type)}
	switch {
	case len(r.SPKI) == 0:
	case k.Type == hsmapi.KeyTypeHashsigPrivate || k.Type == hsmapi.KeyTypeHashsigPublic:
		// An HSS key's levels are told by its public key alone.
		var err error
		if k, err = hsmapi.DescribePublicKey(r.SPKI, k.Type.IsPrivate()); err != nil {
			return hsmapi.KeyInfo{}, fmt.Errorf("key %x: %w", r.UUID, err)
		}
	default:
		// The server's type, curve and size are taken as they come, as Key
		// takes PKEY_GET_KEY_TYPE's: parsing every public key again was
		// most of what listing 10,000 keys cost the client.
		k.PublicKey = r.SPKI
	}
	k.UUID, k.Type, k.Curve, k.Bits = hsmapi.UUID(r.UUID), hsmapi.KeyType(r.Type), hsmapi.Curve(r.Curve), int(r.Bits)
	k.Flags, k.Label = hsmapi.Flags(r.Flags), r.Label
	if k.Hashsig != nil && k.Type.IsPrivate() {
		k.Hashsig.RemainingUnknown = len(r.HashsigRemaining) != 8
		if len(r.HashsigRemaining) == 8 {
			k.Hashsig.Remaining = binary.BigEndian.Uint64(r.HashsigRemaining)
		}
	}
	return k, nil
}
