package rpc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// The extensions for secret keys, key wrapping and RSA-OAEP
// (docs/key-policy.md), answered through the client's key handles.

// mechanismOf reads a mechanism off the wire.
func mechanismOf(m wire.ExtMechanismRequest) (hsmapi.WrapMechanism, error) {
	w := hsmapi.WrapMechanism{Mechanism: hsmapi.Mechanism(m.Mechanism), AESKeyBits: int(m.AESBits)}
	if m.Hash != 0 || m.MGF != 0 || len(m.OAEPLabel) != 0 {
		p, err := hsmapi.OAEPFromPKCS11(m.Hash, m.MGF, m.OAEPLabel)
		if err != nil {
			return w, err
		}
		w.OAEP = p
	}
	return w, nil
}

// wireMechanism puts a mechanism on the wire.
func wireMechanism(w hsmapi.WrapMechanism) wire.ExtMechanismRequest {
	h, mgf := w.OAEP.PKCS11()
	return wire.ExtMechanismRequest{Mechanism: uint32(w.Mechanism), Hash: h, MGF: mgf, OAEPLabel: w.OAEP.Label, AESBits: uint32(w.AESKeyBits)}
}

// attributesOf reads attributes a new key is given, none absent.
func attributesOf(in []wire.Attribute) ([]hsmapi.Attribute, error) {
	attrs := make([]hsmapi.Attribute, len(in))
	for i, a := range in {
		if a.Absent {
			return nil, fmt.Errorf("%w: attribute 0x%x without a value", hsmapi.ErrBadArguments, a.Type)
		}
		attrs[i] = hsmapi.Attribute{Type: a.Type, Value: a.Value}
	}
	return attrs, nil
}

func newKeyResponse(h uint32, k hsmapi.KeyInfo) *wire.ExtNewKeyResponse {
	return &wire.ExtNewKeyResponse{Pkey: h, UUID: k.UUID[:]}
}

func (c *serverConn) extGenerateSecret(r *wire.ExtGenerateSecretRequest) (wire.Args, error) {
	attrs, err := attributesOf(r.Attributes)
	if err != nil {
		return nil, err
	}
	h, k, err := c.fe.GenerateSecretKey(bg, hsmapi.SecretKeyRequest{Bits: int(r.Bits), Flags: hsmapi.Flags(r.Flags), Label: r.Label, Attributes: attrs})
	if err != nil {
		return nil, err
	}
	return newKeyResponse(h, k), nil
}

// extLoadSecret stores an AES key that came in the clear, as PKEY_LOAD
// stores a private key.
func (c *serverConn) extLoadSecret(r *wire.ExtLoadSecretRequest) (wire.Args, error) {
	defer clear(r.Value)
	attrs, err := attributesOf(r.Attributes)
	if err != nil {
		return nil, err
	}
	h, k, err := c.fe.LoadSecretKey(bg, hsmapi.SecretKeyRequest{Bits: int(r.Bits), Flags: hsmapi.Flags(r.Flags), Label: r.Label, Attributes: attrs}, r.Value)
	if err != nil {
		return nil, err
	}
	return newKeyResponse(h, k), nil
}

func (c *serverConn) extWrapKey(r *wire.ExtWrapKeyRequest) (wire.Args, error) {
	m, err := mechanismOf(r.ExtMechanismRequest)
	if err != nil {
		return nil, err
	}
	out, err := c.fe.WrapKey(bg, r.Wrapping, r.Pkey, m)
	if err != nil {
		return nil, err
	}
	return &wire.ExtBytesResponse{Data: out}, nil
}

func (c *serverConn) extUnwrapKey(r *wire.ExtUnwrapKeyRequest) (wire.Args, error) {
	m, err := mechanismOf(r.ExtMechanismRequest)
	if err != nil {
		return nil, err
	}
	attrs, err := attributesOf(r.Attributes)
	if err != nil {
		return nil, err
	}
	req := hsmapi.UnwrapRequest{Type: hsmapi.KeyType(r.Type), Bits: int(r.Bits), Flags: hsmapi.Flags(r.Flags), Label: r.Label, Attributes: attrs}
	h, k, err := c.fe.UnwrapKey(bg, r.Unwrapping, m, r.Wrapped, req)
	if err != nil {
		return nil, err
	}
	return newKeyResponse(h, k), nil
}

// oaepOf is the RSA-OAEP of an encrypt or decrypt request.
func oaepOf(m wire.ExtMechanismRequest) (hsmapi.OAEPParams, error) {
	if hsmapi.Mechanism(m.Mechanism) != hsmapi.MechRSAOAEP {
		return hsmapi.OAEPParams{}, fmt.Errorf("%w: data is encrypted with RSA-OAEP only, not mechanism 0x%x", hsmapi.ErrBadArguments, m.Mechanism)
	}
	w, err := mechanismOf(m)
	return w.OAEP, err
}

func (c *serverConn) extEncrypt(r *wire.ExtCryptRequest) (wire.Args, error) {
	p, err := oaepOf(r.ExtMechanismRequest)
	if err != nil {
		return nil, err
	}
	out, err := c.fe.Encrypt(bg, r.Pkey, p, r.Data)
	if err != nil {
		return nil, err
	}
	return &wire.ExtBytesResponse{Data: out}, nil
}

func (c *serverConn) extDecrypt(r *wire.ExtCryptRequest) (wire.Args, error) {
	p, err := oaepOf(r.ExtMechanismRequest)
	if err != nil {
		return nil, err
	}
	out, err := c.fe.Decrypt(bg, r.Pkey, p, r.Data)
	if err != nil {
		return nil, err
	}
	return &wire.ExtBytesResponse{Data: out}, nil
}

func (c *serverConn) extSetTrusted(r *wire.ExtSetTrustedRequest) (wire.Args, error) {
	if r.Trusted > 1 {
		return nil, fmt.Errorf("%w: trusted is 0 or 1, not %d", hsmapi.ErrBadArguments, r.Trusted)
	}
	id, err := uuidOf(r.UUID)
	if err != nil {
		return nil, err
	}
	ts, ok := c.fe.Token().(hsmapi.TrustSetter)
	if !ok {
		return nil, fmt.Errorf("set CKA_TRUSTED: %w", hsmapi.ErrUnsupported)
	}
	return &wire.ExtEmptyResponse{}, ts.SetTrusted(bg, id, r.Trusted == 1)
}

// extTrustCandidate answers the first key after r.Previous, in UUID order,
// that the security officer may mark trusted: one key per answer, as a
// key's attributes may take most of a packet.
func (c *serverConn) extTrustCandidate(r *wire.ExtTrustCandidateRequest) (wire.Args, error) {
	prev, err := uuidOf(r.Previous)
	if err != nil {
		return nil, err
	}
	tl, ok := c.fe.Token().(hsmapi.TrustLister)
	if !ok {
		return nil, fmt.Errorf("list keys to trust: %w", hsmapi.ErrUnsupported)
	}
	cands, err := tl.TrustCandidates(bg)
	if err != nil {
		return nil, err
	}
	i, found := slices.BinarySearchFunc(cands, prev, func(c hsmapi.TrustCandidate, id hsmapi.UUID) int { return bytes.Compare(c.Key.UUID[:], id[:]) })
	if found {
		i++
	}
	if i == len(cands) {
		return &wire.ExtTrustCandidateResponse{}, nil
	}
	resp := &wire.ExtTrustCandidateResponse{ExtKeyInfoResponse: wireKeyInfo(cands[i].Key)}
	for _, a := range cands[i].Attributes {
		resp.Attributes = append(resp.Attributes, wire.Attribute{Type: a.Type, Value: a.Value})
	}
	return resp, nil
}

// wireKeyInfo describes a key on the wire.
func wireKeyInfo(k hsmapi.KeyInfo) wire.ExtKeyInfoResponse {
	r := wire.ExtKeyInfoResponse{UUID: k.UUID[:], Type: uint32(k.Type), Curve: uint32(k.Curve), Bits: uint32(k.Bits),
		Flags: uint32(k.Flags), Label: k.Label, SPKI: k.PublicKey}
	if k.Hashsig != nil && k.Type.IsPrivate() && !k.Hashsig.RemainingUnknown {
		r.HashsigRemaining = binary.BigEndian.AppendUint64(nil, k.Hashsig.Remaining)
	}
	return r
}
