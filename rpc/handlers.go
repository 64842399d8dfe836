package rpc

import (
	"bytes"
	"context"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/sigder"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

var bg = context.Background()

// handler runs one function for a connection: it decodes the function's
// arguments, all of them, then answers.
type handler func(c *serverConn, d *wire.Decoder) (wire.Args, error)

// on makes the handler of a function from what answers its request R.
func on[R any, P interface {
	*R
	wire.Args
}](answer func(c *serverConn, r P) (wire.Args, error)) handler {
	return func(c *serverConn, d *wire.Decoder) (wire.Args, error) {
		r := P(new(R))
		if err := r.DecodeArgs(d); err != nil {
			return nil, err
		}
		if err := d.Finish(); err != nil {
			return nil, err
		}
		return answer(c, r)
	}
}

// handlers answer every function this server knows: libhal's 32 and the
// extensions (ext.go). Any other answers RPC_BAD_FUNCTION.
var handlers = map[wire.Func]handler{
	wire.FuncGetVersion:               on((*serverConn).getVersion),
	wire.FuncGetRandom:                on((*serverConn).getRandom),
	wire.FuncSetPIN:                   on((*serverConn).setPIN),
	wire.FuncLogin:                    on((*serverConn).login),
	wire.FuncLogout:                   on((*serverConn).logout),
	wire.FuncLogoutAll:                on((*serverConn).logoutAll),
	wire.FuncIsLoggedIn:               on((*serverConn).isLoggedIn),
	wire.FuncHashGetDigestLen:         on((*serverConn).hashGetDigestLen),
	wire.FuncHashGetDigestAlgorithmID: on((*serverConn).hashGetDigestAlgorithmID),
	wire.FuncHashGetAlgorithm:         on((*serverConn).hashGetAlgorithm),
	wire.FuncHashInitialize:           on((*serverConn).hashInitialize),
	wire.FuncHashUpdate:               on((*serverConn).hashUpdate),
	wire.FuncHashFinalize:             on((*serverConn).hashFinalize),
	wire.FuncPkeyLoad:                 on((*serverConn).load),
	wire.FuncPkeyOpen:                 on((*serverConn).open),
	wire.FuncPkeyGenerateRSA:          on((*serverConn).generateRSA),
	wire.FuncPkeyGenerateEC:           on((*serverConn).generateEC),
	wire.FuncPkeyClose:                on((*serverConn).close),
	wire.FuncPkeyDelete:               on((*serverConn).delete),
	wire.FuncPkeyGetKeyType:           on((*serverConn).getKeyType),
	wire.FuncPkeyGetKeyFlags:          on((*serverConn).getKeyFlags),
	wire.FuncPkeyGetPublicKeyLen:      on((*serverConn).getPublicKeyLen),
	wire.FuncPkeyGetPublicKey:         on((*serverConn).getPublicKey),
	wire.FuncPkeySign:                 on((*serverConn).sign),
	wire.FuncPkeyVerify:               on((*serverConn).verify),
	wire.FuncPkeyMatch:                on((*serverConn).match),
	wire.FuncPkeyGetKeyCurve:          on((*serverConn).getKeyCurve),
	wire.FuncPkeySetAttributes:        on((*serverConn).setAttributes),
	wire.FuncPkeyGetAttributes:        on((*serverConn).getAttributes),
	wire.FuncPkeyExport:               on((*serverConn).export),
	wire.FuncPkeyImport:               on((*serverConn).importKey),
	wire.FuncPkeyGenerateHashsig:      on((*serverConn).generateHashsig),

	wire.FuncExtCapabilities:  on((*serverConn).extCapabilities),
	wire.FuncExtDamaged:       on((*serverConn).extDamaged),
	wire.FuncExtExport:        on((*serverConn).extExport),
	wire.FuncExtImportBegin:   on((*serverConn).extImportBegin),
	wire.FuncExtImportAdd:     on((*serverConn).extImportAdd),
	wire.FuncExtImportAdd2:    on((*serverConn).extImportAdd2),
	wire.FuncExtImportCommit:  on((*serverConn).extImportCommit),
	wire.FuncExtGetAttributes: on((*serverConn).extGetAttributes),
	wire.FuncExtIdentity:      on((*serverConn).extIdentity),

	wire.FuncExtGenerateSecret: on((*serverConn).extGenerateSecret),
	wire.FuncExtWrapKey:        on((*serverConn).extWrapKey),
	wire.FuncExtUnwrapKey:      on((*serverConn).extUnwrapKey),
	wire.FuncExtEncrypt:        on((*serverConn).extEncrypt),
	wire.FuncExtDecrypt:        on((*serverConn).extDecrypt),
	wire.FuncExtSetTrusted:     on((*serverConn).extSetTrusted),

	wire.FuncExtRefusal:        on((*serverConn).extRefusal),
	wire.FuncExtLoadSecret:     on((*serverConn).extLoadSecret),
	wire.FuncExtTrustCandidate: on((*serverConn).extTrustCandidate),

	wire.FuncExtMasterKeyStatus:  on((*serverConn).extMasterKeyStatus),
	wire.FuncExtMasterKeyBackup:  on((*serverConn).extMasterKeyBackup),
	wire.FuncExtMasterKeyZeroize: on((*serverConn).extMasterKeyZeroize),
	wire.FuncExtRestoreBegin:     on((*serverConn).extRestoreBegin),
	wire.FuncExtRestoreSubmit:    on((*serverConn).extRestoreSubmit),
	wire.FuncExtRestoreAbort:     on((*serverConn).extRestoreAbort),
	wire.FuncExtMasterKeyRotate:  on((*serverConn).extMasterKeyRotate),
	wire.FuncExtMasterKeyRetire:  on((*serverConn).extMasterKeyRetire),
	wire.FuncExtUpload:           on((*serverConn).extUpload),
	wire.FuncExtDownload:         on((*serverConn).extDownload),
	wire.FuncExtStoreKeys:        on((*serverConn).extStoreKeys),
	wire.FuncExtCheckStored:      on((*serverConn).extCheckStored),
	wire.FuncExtRestoreKeys:      on((*serverConn).extRestoreKeys),

	wire.FuncExtListKeys: on((*serverConn).extListKeys),
}

func (c *serverConn) getVersion(*wire.GetVersionRequest) (wire.Args, error) {
	return &wire.GetVersionResponse{Version: Version}, nil
}

func (c *serverConn) getRandom(r *wire.GetRandomRequest) (wire.Args, error) {
	// As libhal: the answer must fit in a packet. No bytes is an empty
	// answer, as libhal's hal_rpc_get_random gives its callers (its
	// rpc_server.c would say RPC_PACKET_OVERFLOW, but libhal's own
	// clients never ask it).
	if r.N > wire.MaxPacket-headerSize-4 {
		return nil, wire.StatusRPCPacketOverflow
	}
	data := make([]byte, r.N)
	if err := c.srv.front.Random(data); err != nil {
		if errors.Is(err, hsmapi.ErrUnsupported) {
			return nil, err
		}
		return nil, wire.StatusCSPRNGBroken
	}
	return &wire.GetRandomResponse{Data: data}, nil
}

func (c *serverConn) setPIN(r *wire.SetPINRequest) (wire.Args, error) {
	defer clear(r.PIN)
	return &wire.SetPINResponse{}, c.fe.SetPIN(bg, hsmapi.User(r.User), r.PIN)
}

func (c *serverConn) login(r *wire.LoginRequest) (wire.Args, error) {
	defer clear(r.PIN)
	// PIN checks take turns HSM-wide; one still waiting for its turn
	// when the connection stops gives up.
	err := c.fe.Login(c.context(), hsmapi.User(r.User), r.PIN)
	if errors.Is(err, context.Canceled) {
		return nil, wire.StatusNotReady
	}
	return &wire.LoginResponse{}, err
}

func (c *serverConn) logout(*wire.LogoutRequest) (wire.Args, error) {
	// The import batches need a login: they go with it, and so do the
	// upload and download buffers.
	c.xfer.reset()
	return &wire.LogoutResponse{}, c.fe.Logout(bg)
}

func (c *serverConn) logoutAll(*wire.LogoutAllRequest) (wire.Args, error) {
	// Logging everybody out is for wheel alone (libhal lets anyone).
	if c.fe.User() != hsmapi.UserWheel {
		return nil, hsmapi.ErrForbidden
	}
	c.srv.front.LogoutAll(bg)
	return &wire.LogoutAllResponse{}, nil
}

func (c *serverConn) isLoggedIn(r *wire.IsLoggedInRequest) (wire.Args, error) {
	if r.User != uint32(hsmapi.UserNormal) && r.User != uint32(hsmapi.UserSO) && r.User != uint32(hsmapi.UserWheel) {
		return nil, fmt.Errorf("%w: no such user %d", hsmapi.ErrBadArguments, r.User)
	}
	if u := c.fe.User(); u == hsmapi.UserNone || uint32(u) != r.User {
		return nil, wire.StatusForbidden
	}
	return &wire.IsLoggedInResponse{}, nil
}

func (c *serverConn) hashGetDigestLen(r *wire.HashGetDigestLenRequest) (wire.Args, error) {
	h, err := digestAlgorithm(r.Alg)
	if err != nil {
		return nil, err
	}
	return &wire.HashGetDigestLenResponse{Len: uint32(h.Size())}, nil
}

func (c *serverConn) hashGetDigestAlgorithmID(r *wire.HashGetDigestAlgorithmIDRequest) (wire.Args, error) {
	h, err := digestAlgorithm(r.Alg)
	if err != nil {
		return nil, err
	}
	der, err := sigder.AlgorithmIdentifier(h)
	if err != nil {
		return nil, err
	}
	if uint32(len(der)) > r.Max {
		return nil, wire.StatusResultTooLong
	}
	return &wire.HashGetDigestAlgorithmIDResponse{DER: der}, nil
}

func (c *serverConn) hashUpdate(r *wire.HashUpdateRequest) (wire.Args, error) {
	st, err := c.fe.Hash(r.Hash)
	if err != nil {
		return nil, err
	}
	st.Write(r.Data)
	return &wire.HashUpdateResponse{}, nil
}

func (c *serverConn) hashGetAlgorithm(r *wire.HashGetAlgorithmRequest) (wire.Args, error) {
	st, err := c.fe.Hash(r.Hash)
	if err != nil {
		return nil, err
	}
	alg, _ := digestAlgorithmOf(st.Alg)
	return &wire.HashGetAlgorithmResponse{Alg: alg}, nil
}

func (c *serverConn) hashFinalize(r *wire.HashFinalizeRequest) (wire.Args, error) {
	st, err := c.fe.Hash(r.Hash)
	if err != nil {
		return nil, err
	}
	if int(r.Len) != st.Size() {
		return nil, fmt.Errorf("%w: digest is %d bytes, not %d", hsmapi.ErrBadArguments, st.Size(), r.Len)
	}
	c.fe.CloseHash(r.Hash)
	return &wire.HashFinalizeResponse{Digest: st.Sum(nil)}, nil
}

func (c *serverConn) open(r *wire.PkeyOpenRequest) (wire.Args, error) {
	id, err := uuidOf(r.UUID)
	if err != nil {
		return nil, err
	}
	k, err := c.fe.Token().Key(bg, id)
	if err != nil {
		return nil, err
	}
	if err := c.fe.RoomForKey(); err != nil {
		return nil, err
	}
	return &wire.PkeyOpenResponse{Pkey: c.fe.OpenKey(k)}, nil
}

func (c *serverConn) generateRSA(r *wire.PkeyGenerateRSARequest) (wire.Args, error) {
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
}

func (c *serverConn) generateEC(r *wire.PkeyGenerateECRequest) (wire.Args, error) {
	return c.generate(hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.Curve(r.Curve), Flags: hsmapi.Flags(r.Flags)})
}

func (c *serverConn) generateHashsig(r *wire.PkeyGenerateHashsigRequest) (wire.Args, error) {
	if r.L < 1 || r.L > hashsig.MaxLevels {
		return nil, fmt.Errorf("%w: %d levels", hsmapi.ErrBadArguments, r.L)
	}
	levels := make([]hashsig.Level, r.L)
	for i := range levels {
		levels[i] = hashsig.Level{LMS: hashsig.LMSType(r.LMSType), LMOTS: hashsig.LMOTSType(r.LMOTSType)}
	}
	return c.generate(hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: levels, Flags: hsmapi.Flags(r.Flags)})
}

func (c *serverConn) close(r *wire.PkeyCloseRequest) (wire.Args, error) {
	return &wire.PkeyCloseResponse{}, c.fe.CloseKey(r.Pkey)
}

func (c *serverConn) delete(r *wire.PkeyDeleteRequest) (wire.Args, error) {
	return &wire.PkeyDeleteResponse{}, c.fe.DeleteKey(bg, r.Pkey)
}

func (c *serverConn) getKeyType(r *wire.PkeyGetKeyTypeRequest) (wire.Args, error) {
	k, err := c.fe.KeyInfo(bg, r.Pkey)
	return &wire.PkeyGetKeyTypeResponse{Type: uint32(k.Type)}, err
}

func (c *serverConn) getKeyFlags(r *wire.PkeyGetKeyFlagsRequest) (wire.Args, error) {
	k, err := c.fe.KeyInfo(bg, r.Pkey)
	return &wire.PkeyGetKeyFlagsResponse{Flags: uint32(k.Flags)}, err
}

func (c *serverConn) getKeyCurve(r *wire.PkeyGetKeyCurveRequest) (wire.Args, error) {
	k, err := c.fe.KeyInfo(bg, r.Pkey)
	return &wire.PkeyGetKeyCurveResponse{Curve: uint32(k.Curve)}, err
}

func (c *serverConn) getPublicKeyLen(r *wire.PkeyGetPublicKeyLenRequest) (wire.Args, error) {
	// libhal answers 0 for a handle it does not know, never an error.
	k, err := c.fe.KeyInfo(bg, r.Pkey)
	if err != nil {
		return &wire.PkeyGetPublicKeyLenResponse{}, nil
	}
	der, err := libhalSPKI(k)
	return &wire.PkeyGetPublicKeyLenResponse{Len: uint32(len(der))}, err
}

func (c *serverConn) getPublicKey(r *wire.PkeyGetPublicKeyRequest) (wire.Args, error) {
	if r.Max > wire.MaxPacket-headerSize-4 {
		return nil, wire.StatusRPCPacketOverflow
	}
	k, err := c.fe.KeyInfo(bg, r.Pkey)
	if err != nil {
		return nil, err
	}
	der, err := libhalSPKI(k)
	if err != nil {
		return nil, err
	}
	if uint32(len(der)) > r.Max {
		return nil, wire.StatusResultTooLong
	}
	return &wire.PkeyGetPublicKeyResponse{DER: der}, nil
}

// libhalSPKI is a key's SubjectPublicKeyInfo as libhal writes it: for an HSS
// key libhal's own encoding (see hashsig.MarshalLibhalPKIXPublicKey), which
// is all a Cryptech HSM's clients read; RFC 9708's everywhere else.
func libhalSPKI(k hsmapi.KeyInfo) ([]byte, error) {
	if k.Type == hsmapi.KeyTypeAES {
		return nil, fmt.Errorf("%w: a secret key has no public key", hsmapi.ErrUnsupportedKey)
	}
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
		return hsmapi.UUID{}, wire.StatusKeyNameTooLong
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
func (c *serverConn) load(r *wire.PkeyLoadRequest) (wire.Args, error) {
	defer clear(r.DER)
	if len(r.DER) == 0 {
		return nil, fmt.Errorf("%w: no key", hsmapi.ErrBadArguments)
	}
	h, k, err := c.fe.Create(func(t hsmapi.Token) (hsmapi.KeyInfo, error) {
		if !isPrivateKeyInfo(r.DER) {
			res, err := t.Import(bg, hsmapi.ImportRequest{PublicKey: r.DER, Flags: hsmapi.Flags(r.Flags)})
			return res.Key, err
		}
		l, ok := t.(hsmapi.PrivateKeyLoader)
		if !ok {
			return hsmapi.KeyInfo{}, fmt.Errorf("%w: no private key in the clear", hsmapi.ErrUnsupported)
		}
		return l.LoadPrivateKey(bg, hsmapi.LoadRequest{PKCS8: r.DER, Flags: hsmapi.Flags(r.Flags)})
	})
	if err != nil {
		return nil, err
	}
	return &wire.PkeyLoadResponse{Pkey: h, UUID: k.UUID[:]}, nil
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

func (c *serverConn) generate(req hsmapi.GenerateRequest) (wire.Args, error) {
	h, k, err := c.fe.Create(func(t hsmapi.Token) (hsmapi.KeyInfo, error) { return t.GenerateKey(bg, req) })
	if err != nil {
		return nil, err
	}
	return &wire.PkeyGenerateRSAResponse{Pkey: h, UUID: k.UUID[:]}, nil
}

func (c *serverConn) hashInitialize(r *wire.HashInitializeRequest) (wire.Args, error) {
	h, err := digestAlgorithm(r.Alg)
	if err != nil {
		return nil, err
	}
	handle, err := c.fe.NewHash(h, r.HMACKey)
	if err != nil {
		return nil, err
	}
	return &wire.HashInitializeResponse{Hash: handle}, nil
}

// sign is PKEY_SIGN: the front end signs (one lookup of the key, the
// token's), and an ECDSA signature goes out in libhal's form, r || s.
func (c *serverConn) sign(r *wire.PkeySignRequest) (wire.Args, error) {
	if r.Max > wire.MaxPacket-headerSize-4 {
		return nil, wire.StatusRPCPacketOverflow
	}
	sig, k, err := c.fe.Sign(bg, r.Pkey, r.Hash, r.Data)
	if err != nil {
		return nil, err
	}
	if k.Type == hsmapi.KeyTypeECPrivate {
		if sig, err = ecdsaDERToRaw(sig, curveSize(k.Curve)); err != nil {
			return nil, err
		}
	}
	if uint32(len(sig)) > r.Max {
		return nil, wire.StatusResultTooLong
	}
	return &wire.PkeySignResponse{Signature: sig}, nil
}

// verify is PKEY_VERIFY: an ECDSA signature comes in libhal's form, r || s,
// and goes to the token as DER.
func (c *serverConn) verify(r *wire.PkeyVerifyRequest) (wire.Args, error) {
	return &wire.PkeyVerifyResponse{}, c.fe.Verify(bg, r.Pkey, r.Hash, r.Data, func(k frontend.KeyHandle) ([]byte, error) {
		if k.Curve == hsmapi.CurveNone {
			return r.Signature, nil
		}
		return ecdsaRawToDER(r.Signature, curveSize(k.Curve))
	})
}

// match answers a page of PKEY_MATCH: the matching keys whose UUIDs come
// after previous, at most max of them.
func (c *serverConn) match(r *wire.PkeyMatchRequest) (wire.Args, error) {
	f := filterOf(r.Type, r.Curve, r.Mask, r.Flags, r.Attributes)
	if len(r.Previous) != len(hsmapi.UUID{}) {
		return nil, wire.StatusKeyNameTooLong
	}
	if r.Max == 0 {
		return nil, fmt.Errorf("%w: room for no keys", hsmapi.ErrBadArguments)
	}
	resp := &wire.PkeyMatchResponse{State: r.State + 1}
	// libhal finds no keys, rather than failing, for a client not logged in.
	if u := c.fe.User(); u != hsmapi.UserNormal && u != hsmapi.UserWheel {
		return resp, nil
	}
	keys, err := c.fe.Token().Keys(bg, f)
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

// kekekOf checks that a handle names a key fit to be a KEKEK, as libhal
// does (an RSA key with keyencipherment), and returns its public key, parsed.
func (c *serverConn) kekekOf(handle uint32) (*hsmapi.PublicKEKEK, error) {
	k, err := c.fe.KeyInfo(bg, handle)
	if err != nil {
		return nil, err
	}
	if k.Flags&hsmapi.FlagKeyEncipherment == 0 {
		return nil, fmt.Errorf("%w: KEKEK lacks keyencipherment", hsmapi.ErrForbidden)
	}
	if k.Type != hsmapi.KeyTypeRSAPrivate && k.Type != hsmapi.KeyTypeRSAPublic {
		return nil, fmt.Errorf("%w: KEKEK is not an RSA key", hsmapi.ErrUnsupportedKey)
	}
	return hsmapi.ParseKEKEK(k.PublicKey)
}

// export is libhal's PKEY_EXPORT: the KEK encrypted with PKCS#1 v1.5, the
// only encryption libhal knows (the extension offers the others).
func (c *serverConn) export(r *wire.PkeyExportRequest) (wire.Args, error) {
	id, err := c.pkey(r.Pkey)
	if err != nil {
		return nil, err
	}
	kekek, err := c.kekekOf(r.KEKEK)
	if err != nil {
		return nil, err
	}
	w, err := c.fe.Token().Export(bg, hsmapi.ExportRequest{Key: id, KEKEKPublicKey: kekek, Encryption: hsmapi.KEKPKCS1v15})
	if err != nil {
		return nil, err
	}
	if uint32(len(w.EncryptedKey)) > r.PKCS8Max || uint32(len(w.EncryptedKEK)) > r.KEKMax {
		return nil, wire.StatusResultTooLong
	}
	return &wire.PkeyExportResponse{PKCS8: w.EncryptedKey, KEK: w.EncryptedKEK}, nil
}

// importKey is libhal's PKEY_IMPORT: a fresh UUID, the KEK encryption read
// from the encrypted KEK itself.
func (c *serverConn) importKey(r *wire.PkeyImportRequest) (wire.Args, error) {
	kekek, err := c.pkey(r.KEKEK)
	if err != nil {
		return nil, err
	}
	h, k, err := c.fe.Create(func(t hsmapi.Token) (hsmapi.KeyInfo, error) {
		enc, err := hsmapi.KEKEncryptionOfEPKI(r.KEK)
		if err != nil {
			return hsmapi.KeyInfo{}, err
		}
		res, err := t.Import(bg, hsmapi.ImportRequest{KEKEKUUID: kekek, Wrapped: hsmapi.WrappedKey{EncryptedKey: r.PKCS8, EncryptedKEK: r.KEK},
			Encryption: enc, Flags: hsmapi.Flags(r.Flags)})
		return res.Key, err
	})
	if err != nil {
		return nil, err
	}
	return &wire.PkeyImportResponse{Pkey: h, UUID: k.UUID[:]}, nil
}

// pkey is the key a handle names.
func (c *serverConn) pkey(h uint32) (hsmapi.UUID, error) {
	k, err := c.fe.Key(h)
	return k.UUID, err
}
