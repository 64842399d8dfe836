package rpc

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wiretest"
)

// fuzzHSM is the HSM behind FuzzServerRequest (made again when the fuzzer
// has filled its flash for good), with a P-256 key, an RSA key (a KEKEK)
// and an HSS key that each fuzzed connection opens as handles 1, 2 and 4,
// next to a SHA-256 hash as handle 3, so that mutated requests reach the
// handlers and not only the decoders.
type fuzzHSM struct {
	dir  string
	h    *hsm.HSM
	srv  *Server
	keys [3]hsmapi.UUID
}

var fuzzKeys = [3]hsmapi.GenerateRequest{
	{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable, Label: "ec"},
	{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagKeyEncipherment | hsmapi.FlagToken, Label: "kekek"},
	{Type: hsmapi.KeyTypeHashsigPrivate, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken,
		Levels: []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W2}}},
}

func newFuzzHSM(f *testing.F) *fuzzHSM {
	fh := &fuzzHSM{dir: f.TempDir()}
	f.Cleanup(func() {
		if fh.h != nil {
			fh.h.Close()
		}
	})
	return fh
}

// reset starts over with a new HSM: the fuzzer fills the flash for good
// with the history records of the HSS keys it generates.
func (fh *fuzzHSM) reset(t *testing.T) {
	if fh.h != nil {
		fh.h.Close()
	}
	dir, err := os.MkdirTemp(fh.dir, "hsm")
	if err != nil {
		t.Fatal(err)
	}
	h, err := hsm.Create(filepath.Join(dir, "hsm"), hsm.InitConfig{WheelPIN: wheelPIN, SOPIN: []byte("so-pin"), UserPIN: userPIN, Blocks: 128}, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	fh.h, fh.srv, fh.keys = h, NewServer(h, nil), [3]hsmapi.UUID{}
}

// ensure (re)makes the three keys when the fuzzer has deleted or used them
// up, emptying the keystore of what the fuzzer stored if it is full, or
// starting over if that is not enough.
func (fh *fuzzHSM) ensure(t *testing.T, s hsmapi.Token) bool {
	for i, req := range fuzzKeys {
		k, err := s.Key(ctx, fh.keys[i])
		if err == nil && (k.Hashsig == nil || k.Hashsig.Remaining > 0) {
			continue
		}
		if err == nil {
			s.DeleteKey(ctx, k.UUID) // used up
		}
		k, err = s.GenerateKey(ctx, req)
		if errors.Is(err, hsmapi.ErrKeystoreFull) {
			all, lerr := s.Keys(ctx, hsmapi.Filter{})
			if lerr != nil {
				t.Fatal(lerr)
			}
			for _, k := range all {
				if !slices.Contains(fh.keys[:], k.UUID) {
					s.DeleteKey(ctx, k.UUID)
				}
			}
			k, err = s.GenerateKey(ctx, req)
		}
		if errors.Is(err, hsmapi.ErrKeystoreFull) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		fh.keys[i] = k.UUID
	}
	return true
}

// conn makes a connection as Server.track does, without a socket, logged
// in as wheel, with the EC key, the RSA key and the HSS key open as handles
// 1, 2 and 4 and a SHA-256 hash as handle 3.
func (fh *fuzzHSM) conn(t *testing.T) *serverConn {
	for range 2 {
		if fh.h == nil {
			fh.reset(t)
		}
		fe, err := fh.srv.front.Open(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := &serverConn{srv: fh.srv, client: 0x2a, fe: fe}
		if err := fe.Login(ctx, hsmapi.UserWheel, wheelPIN); err != nil {
			t.Fatal(err)
		}
		if !fh.ensure(t, fe.Token()) {
			fe.Close()
			fh.reset(t)
			continue
		}
		open := func(id hsmapi.UUID) {
			k, err := fe.Token().Key(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			fe.OpenKey(k)
		}
		open(fh.keys[0])
		open(fh.keys[1])
		if _, err := c.hashInitialize(&wire.HashInitializeRequest{Alg: 3}); err != nil {
			t.Fatal(err)
		}
		open(fh.keys[2])
		return c
	}
	t.Fatal("a new HSM has no room for three keys")
	return nil
}

// tooCostly reports requests the fuzzer must not send: generating big keys
// takes seconds, and a new PIN would lock the next iterations out. Their
// decoding is fuzzed all the same (FuzzDecodeRequest); only well-formed
// ones are left out.
func tooCostly(payload []byte) bool {
	h, d, err := wire.DecodeRequestHeader(payload)
	if err != nil {
		return false
	}
	req, ok := wire.NewRequest(h.Func)
	if !ok || req.DecodeArgs(d) != nil || d.Finish() != nil {
		return false
	}
	switch r := req.(type) {
	case *wire.SetPINRequest:
		return true
	case *wire.PkeyGenerateRSARequest:
		return r.KeyLen >= 1024
	case *wire.PkeyGenerateHashsigRequest:
		small := hashsig.LMSType(r.LMSType) == hashsig.LMS_SHA256_M32_H5 || hashsig.LMSType(r.LMSType) == hashsig.LMS_SHA256_M24_H5
		return !small || r.L > 2
	}
	return false
}

// responseFor is the results type of f's answer, nil for an unknown
// function.
func responseFor(f wire.Func, req []byte) wire.Args {
	if r, ok := wire.NewResponse(f); ok {
		if ga, ok := r.(*wire.PkeyGetAttributesResponse); ok {
			// BufferLen 0 asks for lengths only; it is the request's last word.
			ga.LengthsOnly = len(req) >= 4 && binary.BigEndian.Uint32(req[len(req)-4:]) == 0
		}
		return r
	}
	switch f {
	case wire.FuncExtCapabilities:
		return &wire.ExtCapabilitiesResponse{}
	case wire.FuncExtExport:
		return &wire.ExtExportResponse{}
	case wire.FuncExtImportBegin:
		return &wire.ExtImportBeginResponse{}
	case wire.FuncExtImportAdd:
		return &wire.ExtImportAddResponse{}
	case wire.FuncExtImportCommit:
		return &wire.ExtImportCommitResponse{}
	case wire.FuncExtDamaged:
		return &wire.ExtDamagedResponse{}
	case wire.FuncExtIdentity:
		return &wire.ExtIdentityResponse{}
	case wire.FuncExtRefusal:
		return &wire.ExtRefusalResponse{}
	case wire.FuncExtLoadSecret:
		return &wire.ExtNewKeyResponse{}
	case wire.FuncExtTrustCandidate:
		return &wire.ExtTrustCandidateResponse{}
	case wire.FuncExtMasterKeyStatus:
		return &wire.ExtMasterKeyStatusResponse{}
	case wire.FuncExtMasterKeyBackup, wire.FuncExtStoreKeys, wire.FuncExtCheckStored, wire.FuncExtRestoreKeys,
		wire.FuncExtListKeys:
		return &wire.ExtLengthResponse{}
	case wire.FuncExtRestoreBegin, wire.FuncExtRestoreSubmit:
		return &wire.ExtRestoreStatusResponse{}
	case wire.FuncExtMasterKeyRotate:
		return &wire.ExtMasterKeyRotateResponse{}
	case wire.FuncExtDownload:
		return &wire.ExtDownloadResponse{}
	case wire.FuncExtMasterKeyZeroize, wire.FuncExtRestoreAbort, wire.FuncExtMasterKeyRetire, wire.FuncExtUpload:
		return &wire.ExtEmptyResponse{}
	}
	return nil
}

// FuzzServerRequest hands arbitrary payloads to a connection's request
// handler, as the server does with every frame it reads. It must never
// panic, and must always answer with a well-formed response that fits in a
// packet: the request's
// function (when the payload holds one), this connection's client handle,
// a libhal status (never IMPOSSIBLE, which means an error no status maps),
// and results that decode exactly when the status is OK.
func FuzzServerRequest(f *testing.F) {
	for _, g := range wiretest.Load(f) {
		if wiretest.IsRequest(g.Name) {
			f.Add(g.Data)
		}
	}
	digest := sha256.Sum256([]byte("fuzz"))
	for _, req := range []struct {
		f    wire.Func
		args wire.Args
	}{
		{wire.FuncPkeySign, &wire.PkeySignRequest{Pkey: 1, Data: digest[:], Max: 256}},
		{wire.FuncPkeySign, &wire.PkeySignRequest{Pkey: 1, Hash: 3, Max: 256}},
		{wire.FuncPkeySign, &wire.PkeySignRequest{Pkey: 2, Hash: 3, Max: 512}},
		{wire.FuncPkeySign, &wire.PkeySignRequest{Pkey: 4, Data: []byte("msg"), Max: 4096}},
		{wire.FuncPkeyVerify, &wire.PkeyVerifyRequest{Pkey: 1, Data: digest[:], Signature: make([]byte, 64)}},
		{wire.FuncPkeyGetPublicKey, &wire.PkeyGetPublicKeyRequest{Pkey: 1, Max: 1024}},
		{wire.FuncPkeyGetAttributes, &wire.PkeyGetAttributesRequest{Pkey: 1, Types: []uint32{hsmapi.AttributeLabel}, BufferLen: 256}},
		{wire.FuncPkeyGetAttributes, &wire.PkeyGetAttributesRequest{Pkey: 4, Types: []uint32{AttributeHashsigRemaining}, BufferLen: 0}},
		{wire.FuncPkeySetAttributes, &wire.PkeySetAttributesRequest{Pkey: 1, Attributes: []wire.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte("x")}}}},
		{wire.FuncPkeyMatch, &wire.PkeyMatchRequest{Max: 8, Previous: make([]byte, 16)}},
		{wire.FuncPkeyExport, &wire.PkeyExportRequest{Pkey: 1, KEKEK: 2, PKCS8Max: 4096, KEKMax: 1024}},
		{wire.FuncPkeyClose, &wire.PkeyCloseRequest{Pkey: 1}},
		{wire.FuncPkeyDelete, &wire.PkeyDeleteRequest{Pkey: 1}},
		{wire.FuncHashUpdate, &wire.HashUpdateRequest{Hash: 3, Data: []byte("abc")}},
		{wire.FuncHashFinalize, &wire.HashFinalizeRequest{Hash: 3, Len: 32}},
		{wire.FuncPkeyGenerateEC, &wire.PkeyGenerateECRequest{Curve: 1, Flags: 1}},
		{wire.FuncPkeyGenerateHashsig, &wire.PkeyGenerateHashsigRequest{L: 1, LMSType: 5, LMOTSType: 1, Flags: 1}},
		{wire.FuncLogoutAll, nil},
		{wire.FuncExtCapabilities, nil},
		{wire.FuncExtExport, &wire.ExtExportRequest{Pkey: 1, Encryption: "rsa-oaep-sha256"}},
		{wire.FuncExtImportBegin, &wire.ExtImportBeginRequest{KEKEK: make([]byte, 16)}},
		{wire.FuncExtImportCommit, &wire.ExtImportCommitRequest{Batch: 5}},
		{wire.FuncExtDamaged, nil},
		{wire.FuncExtIdentity, nil},
		{wire.FuncExtRefusal, nil},
		{wire.FuncExtLoadSecret, &wire.ExtLoadSecretRequest{ExtGenerateSecretRequest: wire.ExtGenerateSecretRequest{Bits: 128, Flags: 4}, Value: make([]byte, 16)}},
		{wire.FuncExtTrustCandidate, &wire.ExtTrustCandidateRequest{Previous: make([]byte, 16)}},
		{wire.FuncExtMasterKeyStatus, nil},
		{wire.FuncExtMasterKeyBackup, &wire.ExtMasterKeyBackupRequest{ID: "m", Threshold: 2, Shares: 3,
			Passphrases: [][]byte{[]byte("first passphrase"), []byte("second passphrase"), []byte("third passphrase")}, KDFTime: 1, KDFMemoryKiB: 64, KDFThreads: 1}},
		{wire.FuncExtRestoreBegin, nil},
		{wire.FuncExtRestoreSubmit, &wire.ExtRestoreSubmitRequest{Sealed: make([]byte, 150)}},
		{wire.FuncExtRestoreAbort, nil},
		{wire.FuncExtMasterKeyRetire, &wire.ExtMasterKeyRetireRequest{CheckValue: make([]byte, 8)}},
		{wire.FuncExtUpload, &wire.ExtUploadRequest{Data: make([]byte, 32)}},
		{wire.FuncExtDownload, &wire.ExtDownloadRequest{}},
		{wire.FuncExtStoreKeys, nil},
		{wire.FuncExtCheckStored, nil},
		{wire.FuncExtRestoreKeys, nil},
		{wire.FuncExtListKeys, &wire.ExtListKeysRequest{}},
		{wire.FuncExtListKeys, &wire.ExtListKeysRequest{Type: uint32(hsmapi.KeyTypeECPrivate), Curve: 1, Mask: 4, Flags: 4,
			Attributes: []wire.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte("k")}, {Type: hsmapi.CKAID, Absent: true}}}},
	} {
		f.Add(wire.EncodeRequest(req.f, 0, req.args))
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{0, 0, 0, 99, 0, 0, 0, 0})

	fh := newFuzzHSM(f)
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > wire.MaxPacket || tooCostly(payload) {
			return
		}
		c := fh.conn(t)
		defer c.fe.Close()
		resp := c.handle(payload, log)
		if len(resp) > wire.MaxPacket {
			t.Fatalf("a %d-byte answer", len(resp))
		}

		reqHdr, _, reqErr := wire.DecodeRequestHeader(payload)
		d := wire.NewDecoder(resp)
		f, client, st := wire.Func(d.Uint32()), d.Uint32(), wire.Status(d.Uint32())
		if d.Err() != nil {
			t.Fatalf("answer %x has no header", resp)
		}
		if client != c.client {
			t.Fatalf("answer for client %d, not %d", client, c.client)
		}
		if st > wire.StatusTamper {
			t.Fatalf("status %d is no libhal status", st)
		}
		if st == wire.StatusImpossible {
			// statusOf found no status for the handler's error.
			t.Fatalf("answered %v", st)
		}
		if reqErr != nil {
			if st != wire.StatusXDRBufferOverflow {
				t.Fatalf("a %d-byte payload answered %v", len(payload), st)
			}
			return
		}
		if f != reqHdr.Func {
			t.Fatalf("answer for %v to %v", f, reqHdr.Func)
		}
		results := responseFor(f, payload)
		if st == wire.StatusOK && results == nil {
			t.Fatalf("unknown function %v answered OK", f)
		}
		if st != wire.StatusOK {
			results = nil
		}
		if _, _, err := wire.DecodeResponse(resp, results); err != nil {
			t.Fatalf("%v answered %v with results that do not decode: %v\n%x", f, st, err, resp)
		}
	})
}
