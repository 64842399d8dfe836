package rpc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

var bg = context.Background()

// call runs one of the 32 libhal functions for this connection.
func (c *serverConn) call(req Args) (Args, error) {
	s := c.sess
	switch r := req.(type) {
	case *GetVersionRequest:
		return &GetVersionResponse{Version: Version}, nil
	case *GetRandomRequest:
		// As libhal: the answer must fit in a packet. No bytes is an empty
		// answer, as libhal's hal_rpc_get_random gives its callers (its
		// rpc_server.c would say RPC_PACKET_OVERFLOW, but libhal's own
		// clients never ask it).
		if r.N > MaxPacket-headerSize-4 {
			return nil, StatusRPCPacketOverflow
		}
		data := make([]byte, r.N)
		if err := c.srv.hsm.Random(data); err != nil {
			return nil, StatusCSPRNGBroken
		}
		return &GetRandomResponse{Data: data}, nil
	case *SetPINRequest:
		defer clear(r.PIN)
		return &SetPINResponse{}, s.SetPIN(bg, hsmapi.User(r.User), r.PIN)
	case *LoginRequest:
		defer clear(r.PIN)
		// PIN checks take turns HSM-wide; one still waiting for its turn
		// when the connection stops gives up.
		err := s.Login(c.context(), hsmapi.User(r.User), r.PIN)
		if errors.Is(err, context.Canceled) {
			return nil, StatusNotReady
		}
		return &LoginResponse{}, err
	case *LogoutRequest:
		// The import batches need a login: they go with it.
		err := s.Logout(bg)
		c.dropImports()
		return &LogoutResponse{}, err
	case *LogoutAllRequest:
		// Logging everybody out is for wheel alone (libhal lets anyone).
		if s.User() != hsmapi.UserWheel {
			return nil, hsmapi.ErrForbidden
		}
		c.srv.logoutAll()
		return &LogoutAllResponse{}, nil
	case *IsLoggedInRequest:
		if r.User != uint32(hsmapi.UserNormal) && r.User != uint32(hsmapi.UserSO) && r.User != uint32(hsmapi.UserWheel) {
			return nil, fmt.Errorf("%w: no such user %d", hsmapi.ErrBadArguments, r.User)
		}
		if s.User() == hsmapi.UserNone || uint32(s.User()) != r.User {
			return nil, StatusForbidden
		}
		return &IsLoggedInResponse{}, nil

	case *HashGetDigestLenRequest:
		h, _, _, err := digestAlgorithm(r.Alg)
		if err != nil {
			return nil, err
		}
		return &HashGetDigestLenResponse{Len: uint32(h.Size())}, nil
	case *HashGetDigestAlgorithmIDRequest:
		_, _, oid, err := digestAlgorithm(r.Alg)
		if err != nil {
			return nil, err
		}
		der := algorithmIDDER(oid)
		if uint32(len(der)) > r.Max {
			return nil, StatusResultTooLong
		}
		return &HashGetDigestAlgorithmIDResponse{DER: der}, nil
	case *HashInitializeRequest:
		return c.hashInitialize(r)
	case *HashUpdateRequest:
		st, err := c.hash(r.Hash)
		if err != nil {
			return nil, err
		}
		st.h.Write(r.Data)
		return &HashUpdateResponse{}, nil
	case *HashGetAlgorithmRequest:
		st, err := c.hash(r.Hash)
		if err != nil {
			return nil, err
		}
		return &HashGetAlgorithmResponse{Alg: st.alg}, nil
	case *HashFinalizeRequest:
		st, err := c.hash(r.Hash)
		if err != nil {
			return nil, err
		}
		if int(r.Len) != st.hash.Size() {
			return nil, fmt.Errorf("%w: digest is %d bytes, not %d", hsmapi.ErrBadArguments, st.hash.Size(), r.Len)
		}
		c.closeHash(r.Hash)
		return &HashFinalizeResponse{Digest: st.h.Sum(nil)}, nil

	case *PkeyLoadRequest:
		return c.load(r)
	case *PkeyOpenRequest:
		id, err := uuidOf(r.UUID)
		if err != nil {
			return nil, err
		}
		if _, err := s.Key(bg, id); err != nil {
			return nil, err
		}
		if err := c.roomForPkey(); err != nil {
			return nil, err
		}
		return &PkeyOpenResponse{Pkey: c.openPkey(id)}, nil
	case *PkeyGenerateRSARequest:
		// libhal's checks, in its order and with its statuses.
		if r.KeyLen == 0 || r.KeyLen%8 != 0 || len(r.Exponent) == 0 || !hsmapi.Flags(r.Flags).Valid() {
			return nil, fmt.Errorf("%w: key length %d, %d-byte exponent, flags 0x%x", hsmapi.ErrBadArguments, r.KeyLen, len(r.Exponent), r.Flags)
		}
		if !isF4(r.Exponent) {
			return nil, fmt.Errorf("%w: only e = 65537", hsmapi.ErrUnsupportedKey)
		}
		if r.KeyLen != 2048 && r.KeyLen != 3072 && r.KeyLen != 4096 {
			return nil, fmt.Errorf("%w: this HSM generates RSA keys of 2048, 3072 and 4096 bits", hsmapi.ErrUnsupportedKey)
		}
		return c.generate(hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: int(r.KeyLen), Flags: hsmapi.Flags(r.Flags)})
	case *PkeyGenerateECRequest:
		return c.generate(hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.Curve(r.Curve), Flags: hsmapi.Flags(r.Flags)})
	case *PkeyGenerateHashsigRequest:
		if r.L < 1 || r.L > hashsig.MaxLevels {
			return nil, fmt.Errorf("%w: %d levels", hsmapi.ErrBadArguments, r.L)
		}
		levels := make([]hashsig.Level, r.L)
		for i := range levels {
			levels[i] = hashsig.Level{LMS: hashsig.LMSType(r.LMSType), LMOTS: hashsig.LMOTSType(r.LMOTSType)}
		}
		return c.generate(hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: levels, Flags: hsmapi.Flags(r.Flags)})
	case *PkeyCloseRequest:
		if _, err := c.pkey(r.Pkey); err != nil {
			return nil, err
		}
		c.closePkey(r.Pkey)
		return &PkeyCloseResponse{}, nil
	case *PkeyDeleteRequest:
		id, err := c.pkey(r.Pkey)
		if err != nil {
			return nil, err
		}
		if err := s.DeleteKey(bg, id); err != nil {
			return nil, err
		}
		c.closePkey(r.Pkey)
		return &PkeyDeleteResponse{}, nil
	case *PkeyGetKeyTypeRequest:
		k, err := c.pkeyInfo(r.Pkey)
		return &PkeyGetKeyTypeResponse{Type: uint32(k.Type)}, err
	case *PkeyGetKeyFlagsRequest:
		k, err := c.pkeyInfo(r.Pkey)
		return &PkeyGetKeyFlagsResponse{Flags: uint32(k.Flags)}, err
	case *PkeyGetKeyCurveRequest:
		k, err := c.pkeyInfo(r.Pkey)
		return &PkeyGetKeyCurveResponse{Curve: uint32(k.Curve)}, err
	case *PkeyGetPublicKeyLenRequest:
		// libhal answers 0 for a handle it does not know, never an error.
		k, err := c.pkeyInfo(r.Pkey)
		if err != nil {
			return &PkeyGetPublicKeyLenResponse{}, nil
		}
		der, err := libhalSPKI(k)
		return &PkeyGetPublicKeyLenResponse{Len: uint32(len(der))}, err
	case *PkeyGetPublicKeyRequest:
		if r.Max > MaxPacket-headerSize-4 {
			return nil, StatusRPCPacketOverflow
		}
		k, err := c.pkeyInfo(r.Pkey)
		if err != nil {
			return nil, err
		}
		der, err := libhalSPKI(k)
		if err != nil {
			return nil, err
		}
		if uint32(len(der)) > r.Max {
			return nil, StatusResultTooLong
		}
		return &PkeyGetPublicKeyResponse{DER: der}, nil
	case *PkeySignRequest:
		return c.sign(r)
	case *PkeyVerifyRequest:
		return c.verify(r)
	case *PkeyMatchRequest:
		return c.match(r)
	case *PkeySetAttributesRequest:
		return c.setAttributes(r)
	case *PkeyGetAttributesRequest:
		return c.getAttributes(r)
	case *PkeyExportRequest:
		return c.export(r)
	case *PkeyImportRequest:
		return c.importKey(r)
	}
	return nil, StatusRPCBadFunction
}

// libhalSPKI is a key's SubjectPublicKeyInfo as libhal writes it: for an HSS
// key libhal's own encoding (see hashsig.MarshalLibhalPKIXPublicKey), which
// is all a Cryptech HSM's clients read; RFC 9708's everywhere else.
func libhalSPKI(k hsmapi.KeyInfo) ([]byte, error) {
	if k.Hashsig == nil {
		return k.PublicKey, nil
	}
	pk, err := hashsig.ParsePKIXPublicKey(k.PublicKey)
	if err != nil {
		return nil, err
	}
	return hashsig.MarshalLibhalPKIXPublicKey(pk), nil
}

func uuidOf(b []byte) (hsmapi.UUID, error) {
	if len(b) != len(hsmapi.UUID{}) {
		return hsmapi.UUID{}, StatusKeyNameTooLong
	}
	return hsmapi.UUID(b), nil
}

// isF4 reports whether a big-endian exponent is 65537.
func isF4(e []byte) bool {
	return new(big.Int).SetBytes(e).Cmp(big.NewInt(65537)) == 0
}

// load is PKEY_LOAD: a public key (SubjectPublicKeyInfo) or, as libhal
// takes it too, a private key in the clear (PKCS#8 PrivateKeyInfo), which
// is stored marked not made here (CKA_LOCAL false; see
// hsmapi.PrivateKeyLoader). HSS private keys are refused: a copy of a
// stateful key loaded beside the original would sign twice with one index.
func (c *serverConn) load(r *PkeyLoadRequest) (Args, error) {
	defer clear(r.DER)
	if len(r.DER) == 0 {
		return nil, fmt.Errorf("%w: no key", hsmapi.ErrBadArguments)
	}
	if err := c.roomForPkey(); err != nil {
		return nil, err
	}
	var k hsmapi.KeyInfo
	var err error
	if isPrivateKeyInfo(r.DER) {
		k, err = c.sess.LoadPrivateKey(bg, hsmapi.LoadRequest{PKCS8: r.DER, Flags: hsmapi.Flags(r.Flags)})
	} else {
		var res hsmapi.ImportResult
		res, err = c.sess.Import(bg, hsmapi.ImportRequest{PublicKey: r.DER, Flags: hsmapi.Flags(r.Flags)})
		k = res.Key
	}
	if err != nil {
		return nil, err
	}
	return &PkeyLoadResponse{Pkey: c.openPkey(k.UUID), UUID: k.UUID[:]}, nil
}

// isPrivateKeyInfo tells a PKCS#8 PrivateKeyInfo from a
// SubjectPublicKeyInfo, as libhal's hal_asn1_guess_key_type does: the first
// begins with its version, an INTEGER, the second with a SEQUENCE.
func isPrivateKeyInfo(der []byte) bool {
	var outer, first asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &outer); err != nil || len(rest) != 0 ||
		outer.Class != asn1.ClassUniversal || outer.Tag != asn1.TagSequence {
		return false
	}
	if _, err := asn1.Unmarshal(outer.Bytes, &first); err != nil {
		return false
	}
	return first.Class == asn1.ClassUniversal && first.Tag == asn1.TagInteger
}

func (c *serverConn) generate(req hsmapi.GenerateRequest) (Args, error) {
	if err := c.roomForPkey(); err != nil {
		return nil, err
	}
	k, err := c.sess.GenerateKey(bg, req)
	if err != nil {
		return nil, err
	}
	return &PkeyGenerateRSAResponse{Pkey: c.openPkey(k.UUID), UUID: k.UUID[:]}, nil
}

func (c *serverConn) hashInitialize(r *HashInitializeRequest) (Args, error) {
	h, newHash, _, err := digestAlgorithm(r.Alg)
	if err != nil {
		return nil, err
	}
	st := &hashState{alg: r.Alg, hash: h, h: newHash()}
	if len(r.HMACKey) > 0 {
		st.h = hmac.New(newHash, r.HMACKey)
		clear(r.HMACKey)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.hashes) >= c.srv.limits.hashes {
		return nil, StatusAllocationFailure
	}
	handle := c.newHandle()
	c.hashes[handle] = st
	return &HashInitializeResponse{Hash: handle}, nil
}

func (c *serverConn) hash(handle uint32) (*hashState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.hashes[handle]
	if !ok {
		return nil, fmt.Errorf("%w: no hash handle %d", hsmapi.ErrBadArguments, handle)
	}
	return st, nil
}

func (c *serverConn) closeHash(handle uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.hashes, handle)
}

// signedInput turns PKEY_SIGN's and PKEY_VERIFY's hash handle and data into
// what Token.Sign takes: with a hash handle, its digest; without, the data,
// which is a DigestInfo for RSA (signed as it is), a digest for ECDSA, the
// message for an HSS key. An HSS key given a hash handle signs the digest's
// bytes as its message, as libhal's pkey_local_sign_hashsig does: what a
// libhal client hashes on the HSM is too long to send whole.
func (c *serverConn) signedInput(k hsmapi.KeyInfo, hashHandle uint32, data []byte) ([]byte, crypto.SignerOpts, error) {
	// libhal takes one or the other, never both or neither.
	if (hashHandle == 0) == (len(data) == 0) {
		return nil, nil, fmt.Errorf("%w: give a hash handle or data, not both or neither", hsmapi.ErrBadArguments)
	}
	if hashHandle == 0 {
		return data, crypto.Hash(0), nil
	}
	st, err := c.hash(hashHandle)
	if err != nil {
		return nil, nil, err
	}
	c.closeHash(hashHandle)
	if k.Hashsig != nil {
		return st.h.Sum(nil), crypto.Hash(0), nil
	}
	return st.h.Sum(nil), st.hash, nil
}

func (c *serverConn) sign(r *PkeySignRequest) (Args, error) {
	if r.Max > MaxPacket-headerSize-4 {
		return nil, StatusRPCPacketOverflow
	}
	k, err := c.pkeyInfo(r.Pkey)
	if err != nil {
		return nil, err
	}
	data, opts, err := c.signedInput(k, r.Hash, r.Data)
	if err != nil {
		return nil, err
	}
	sig, err := c.sess.Sign(bg, k.UUID, data, opts)
	if err != nil {
		return nil, err
	}
	if k.Type == hsmapi.KeyTypeECPrivate {
		if sig, err = ecdsaDERToRaw(sig, curveSize(k.Curve)); err != nil {
			return nil, err
		}
	}
	if uint32(len(sig)) > r.Max {
		return nil, StatusResultTooLong
	}
	return &PkeySignResponse{Signature: sig}, nil
}

func (c *serverConn) verify(r *PkeyVerifyRequest) (Args, error) {
	k, err := c.pkeyInfo(r.Pkey)
	if err != nil {
		return nil, err
	}
	// libhal verifies only with keys meant to: digitalsignature.
	if k.Flags&hsmapi.FlagDigitalSignature == 0 {
		return nil, fmt.Errorf("%w: key lacks digitalsignature", hsmapi.ErrForbidden)
	}
	data, opts, err := c.signedInput(k, r.Hash, r.Data)
	if err != nil {
		return nil, err
	}
	sig := r.Signature
	if k.Curve != hsmapi.CurveNone {
		if sig, err = ecdsaRawToDER(sig, curveSize(k.Curve)); err != nil {
			return nil, err
		}
	}
	return &PkeyVerifyResponse{}, c.sess.Verify(bg, k.UUID, data, sig, opts)
}

// match answers a page of PKEY_MATCH: the matching keys whose UUIDs come
// after previous, at most max of them.
func (c *serverConn) match(r *PkeyMatchRequest) (Args, error) {
	f := hsmapi.Filter{Type: hsmapi.KeyType(r.Type), Curve: hsmapi.Curve(r.Curve), Mask: hsmapi.Flags(r.Mask), Flags: hsmapi.Flags(r.Flags)}
	for _, a := range r.Attributes {
		if !a.Absent {
			f.Attributes = append(f.Attributes, hsmapi.Attribute{Type: a.Type, Value: a.Value})
		}
	}
	if len(r.Previous) != len(hsmapi.UUID{}) {
		return nil, StatusKeyNameTooLong
	}
	if r.Max == 0 {
		return nil, fmt.Errorf("%w: room for no keys", hsmapi.ErrBadArguments)
	}
	resp := &PkeyMatchResponse{State: r.State + 1}
	// libhal finds no keys, rather than failing, for a client not logged in.
	if u := c.sess.User(); u != hsmapi.UserNormal && u != hsmapi.UserWheel {
		return resp, nil
	}
	keys, err := c.sess.Keys(bg, f)
	if err != nil {
		return nil, err
	}
	start := 0
	if prev := hsmapi.UUID(r.Previous); !prev.IsZero() {
		start, _ = slices.BinarySearchFunc(keys, prev, func(k hsmapi.KeyInfo, id hsmapi.UUID) int { return bytes.Compare(k.UUID[:], id[:]) })
		if start < len(keys) && keys[start].UUID == prev {
			start++
		}
	}
	for _, k := range keys[start:] {
		if uint32(len(resp.UUIDs)) >= r.Max {
			break
		}
		resp.UUIDs = append(resp.UUIDs, append([]byte(nil), k.UUID[:]...))
	}
	return resp, nil
}

// kekekSPKI checks that a handle names a key fit to be a KEKEK, as libhal
// does (an RSA key with keyencipherment), and returns its public key.
func (c *serverConn) kekekSPKI(handle uint32) ([]byte, error) {
	k, err := c.pkeyInfo(handle)
	if err != nil {
		return nil, err
	}
	if k.Flags&hsmapi.FlagKeyEncipherment == 0 {
		return nil, fmt.Errorf("%w: KEKEK lacks keyencipherment", hsmapi.ErrForbidden)
	}
	if k.Type != hsmapi.KeyTypeRSAPrivate && k.Type != hsmapi.KeyTypeRSAPublic {
		return nil, fmt.Errorf("%w: KEKEK is not an RSA key", hsmapi.ErrUnsupportedKey)
	}
	return k.PublicKey, nil
}

// export is libhal's PKEY_EXPORT: the KEK encrypted with PKCS#1 v1.5, the
// only encryption libhal knows (the extension offers the others).
func (c *serverConn) export(r *PkeyExportRequest) (Args, error) {
	id, err := c.pkey(r.Pkey)
	if err != nil {
		return nil, err
	}
	spki, err := c.kekekSPKI(r.KEKEK)
	if err != nil {
		return nil, err
	}
	kekek, err := hsmapi.ParseKEKEK(spki)
	if err != nil {
		return nil, err
	}
	w, err := c.sess.Export(bg, hsmapi.ExportRequest{Key: id, KEKEKPublicKey: kekek, Encryption: hsmapi.KEKPKCS1v15})
	if err != nil {
		return nil, err
	}
	if uint32(len(w.EncryptedKey)) > r.PKCS8Max || uint32(len(w.EncryptedKEK)) > r.KEKMax {
		return nil, StatusResultTooLong
	}
	return &PkeyExportResponse{PKCS8: w.EncryptedKey, KEK: w.EncryptedKEK}, nil
}

// importKey is libhal's PKEY_IMPORT: a fresh UUID, the KEK encryption read
// from the encrypted KEK itself.
func (c *serverConn) importKey(r *PkeyImportRequest) (Args, error) {
	kekek, err := c.pkey(r.KEKEK)
	if err != nil {
		return nil, err
	}
	if err := c.roomForPkey(); err != nil {
		return nil, err
	}
	enc, err := hsmapi.KEKEncryptionOfEPKI(r.KEK)
	if err != nil {
		return nil, err
	}
	res, err := c.sess.Import(bg, hsmapi.ImportRequest{KEKEKUUID: kekek, Wrapped: hsmapi.WrappedKey{EncryptedKey: r.PKCS8, EncryptedKEK: r.KEK},
		Encryption: enc, Flags: hsmapi.Flags(r.Flags)})
	if err != nil {
		return nil, err
	}
	return &PkeyImportResponse{Pkey: c.openPkey(res.Key.UUID), UUID: res.Key.UUID[:]}, nil
}
