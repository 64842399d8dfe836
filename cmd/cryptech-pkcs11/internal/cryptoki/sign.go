package cryptoki

import (
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"slices"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/sigder"
)

// Signatures are made by the slot's token (Token.Sign), and verified in
// the module under the key's public half: nothing secret is needed to
// verify, and it spares a round trip over RPC.
//
// Inputs are the application's buffers, read only during the call; what
// an operation keeps is its own copy.

// A sigScheme is how a signature mechanism signs.
type sigScheme struct {
	// key is the type of the private key that signs; its public key
	// verifies.
	key hsmapi.KeyType
	// pss: RSA-PSS with CK_RSA_PKCS_PSS_PARAMS; other RSA is PKCS#1 v1.5.
	pss bool
}

// multiPart reports whether mechanism m takes its input in parts: it
// hashes it, or it is HSS (gathered, and signed whole). The others sign
// their input as it is, in one part, as the specification has them.
func (m *mechanism) multiPart() bool {
	return m.hash != 0 || m.sig.key == hsmapi.KeyTypeHashsigPrivate
}

// maxHSSMessage bounds an HSS message: the module holds it whole until it
// is signed, in parts or not. (Over libhal's RPC the bound is lower: the
// message must fit in one 16 KiB packet.)
const maxHSSMessage = 16 << 20

// A sigKey is the key of a signature or verification, and what using it
// takes.
type sigKey struct {
	tok  hsmapi.Token
	uuid hsmapi.UUID
	// pub is the public half, which verifies (nil for a signature).
	pub crypto.PublicKey
	// opts are what Token.Sign and hsmapi.VerifyDigest take.
	opts crypto.SignerOpts
	// sigLen is the signature's length; a bound of it when !exact (an HSS
	// key over libhal's RPC, which names only its top level).
	sigLen int
	exact  bool
	// rawMax bounds the input of a mechanism that signs it as it is.
	rawMin, rawMax int
	// ecSize is an EC key's scalar size in bytes; 0 for other keys.
	ecSize int
}

// publicType is the public key type of key type t.
func publicType(t hsmapi.KeyType) hsmapi.KeyType {
	switch t {
	case hsmapi.KeyTypeRSAPrivate:
		return hsmapi.KeyTypeRSAPublic
	case hsmapi.KeyTypeECPrivate:
		return hsmapi.KeyTypeECPublic
	case hsmapi.KeyTypeHashsigPrivate:
		return hsmapi.KeyTypeHashsigPublic
	}
	return t
}

// SignInit is C_SignInit.
func (m *Module) SignInit(h uint, mech Mechanism, key uint) RV {
	return m.sigInit(h, opSign, mech, key)
}

// VerifyInit is C_VerifyInit.
func (m *Module) VerifyInit(h uint, mech Mechanism, key uint) RV {
	return m.sigInit(h, opVerify, mech, key)
}

func (m *Module) sigInit(h uint, k opKind, mech Mechanism, key uint) RV {
	want := uint(MechFlagVerify)
	if k == opSign {
		want = MechFlagSign
	}
	var sm *mechanism
	var tok hsmapi.Token
	rv := m.withSession(h, func(s *slot, ss *session) RV {
		if rv := ss.checkIdle(k); rv != OK {
			return rv
		}
		var rv RV
		if sm, rv = slotMechanism(s, mech.Type, want); rv != OK {
			return rv
		}
		if k == opSign && s.user != hsmapi.UserNormal {
			return UserNotLoggedIn
		}
		tok = s.client.Token()
		return OK
	})
	if rv != OK {
		return rv
	}
	ko, rv := m.keyFacts(h, key)
	if rv == ObjectHandleInvalid {
		rv = KeyHandleInvalid
	}
	if rv != OK {
		return rv
	}
	sk, rv := newSigKey(k, sm, mech, ko, tok)
	if rv != OK {
		return rv
	}
	op := &operation{mech: sm, key: sk}
	if sm.hash != 0 {
		op.hash = sm.hash.New()
	}
	return m.beginOp(h, k, op)
}

// newSigKey checks that object ko may do k with mechanism sm (CKA_SIGN on
// a private key object, CKA_VERIFY on a public one: the HSM's
// digitalsignature flag), and what signing with it takes.
func newSigKey(k opKind, sm *mechanism, mech Mechanism, ko KeyObject, tok hsmapi.Token) (*sigKey, RV) {
	info := ko.Info
	class, typ := uint(ClassPublicKey), publicType(sm.sig.key)
	if k == opSign {
		class, typ = ClassPrivateKey, sm.sig.key
	}
	switch {
	case ko.Class != class, info.Flags&hsmapi.FlagDigitalSignature == 0:
		return nil, KeyFunctionNotPermitted
	case info.Type != typ && info.Type != sm.sig.key:
		// A public key object shows its key's type, which may be the
		// private one.
		return nil, KeyTypeInconsistent
	case sm.info.MaxKeySize != 0 && (uint(info.Bits) < sm.info.MinKeySize || uint(info.Bits) > sm.info.MaxKeySize):
		return nil, KeySizeRange
	case !sm.sig.pss && (mech.Param != nil || mech.PSS != nil):
		return nil, MechanismParamInvalid
	}
	sk := &sigKey{tok: tok, uuid: ko.UUID, opts: sm.hash, exact: true}
	if k == opVerify {
		pub, err := hsmapi.ParsePublicKey(info.PublicKey)
		if err != nil {
			return nil, GeneralError
		}
		sk.pub = pub
	}
	switch sm.sig.key {
	case hsmapi.KeyTypeRSAPrivate:
		sk.sigLen = (info.Bits + 7) / 8
		// PKCS#1 v1.5 pads with at least 11 bytes.
		sk.rawMax = sk.sigLen - 11
		if sm.sig.pss {
			pss, rv := pssOptions(sm, mech.PSS, info.Bits)
			if rv != OK {
				return nil, rv
			}
			sk.opts = pss
			sk.rawMin, sk.rawMax = pss.Hash.Size(), pss.Hash.Size()
		}
	case hsmapi.KeyTypeECPrivate:
		sk.ecSize = (info.Bits + 7) / 8
		sk.sigLen = 2 * sk.ecSize
		// A hash, truncated to the curve's order as ECDSA does.
		sk.rawMin, sk.rawMax = 1, max(crypto.SHA512.Size(), sk.ecSize)
	case hsmapi.KeyTypeHashsigPrivate:
		if info.Hashsig == nil {
			return nil, GeneralError
		}
		if k == opSign && !info.Hashsig.RemainingUnknown && info.Hashsig.Remaining == 0 {
			return nil, KeyExhausted
		}
		var rv RV
		if sk.sigLen, sk.exact, rv = hssSignatureSize(info.Hashsig); rv != OK {
			return nil, rv
		}
		sk.rawMax = maxHSSMessage
	}
	return sk, OK
}

// mgf1 is the CKG_MGF1_* of each hash.
var mgf1 = map[crypto.Hash]uint{crypto.SHA1: 1, crypto.SHA256: 2, crypto.SHA384: 3, crypto.SHA512: 4, crypto.SHA224: 5}

// pssOptions checks CK_RSA_PKCS_PSS_PARAMS p for mechanism sm and a key of
// bits: the hash is a digest mechanism, the mechanism's own if it hashes;
// the mask is MGF1 with that same hash (the only one crypto/rsa makes);
// the salt fits the key. A salt of 0 bytes is refused too: crypto/rsa
// reads 0 as "as long as possible", and has no way to sign without salt.
func pssOptions(sm *mechanism, p *PSSParams, bits int) (*rsa.PSSOptions, RV) {
	if p == nil {
		return nil, MechanismParamInvalid
	}
	d, ok := byType[p.Hash]
	if !ok || d.info.Flags&MechFlagDigest == 0 {
		return nil, MechanismParamInvalid
	}
	h := d.hash
	emLen := (bits - 1 + 7) / 8
	switch {
	case sm.hash != 0 && sm.hash != h, p.MGF != mgf1[h],
		p.SaltLen == 0, p.SaltLen > uint(max(emLen-h.Size()-2, 0)):
		return nil, MechanismParamInvalid
	}
	return &rsa.PSSOptions{SaltLength: int(p.SaltLen), Hash: h}, OK
}

// hssSignatureSize is the size of the signatures of an HSS key, computed
// from its levels so that asking for it spends no one-time key. Over
// libhal's RPC only the top level is known: the levels below share its
// hash and sizes (SP 800-208), and each is taken at the largest signature
// those allow, so the size is a bound.
func hssSignatureSize(hi *hsmapi.HashsigInfo) (int, bool, RV) {
	levels := hi.Levels
	exact := len(levels) == hi.L
	if !exact {
		if len(levels) == 0 || hi.L < 1 {
			return 0, false, GeneralError
		}
		levels = append(slices.Clone(levels[:1]), slices.Repeat([]hashsig.Level{largestLevel(levels[0])}, hi.L-1)...)
	}
	n, err := hashsig.SignatureSize(levels)
	if err != nil {
		return 0, false, GeneralError
	}
	return n, exact, OK
}

// largestLevel is the level with the largest signature that may sit below
// top: the same hash and sizes, the tallest tree, the smallest Winternitz
// parameter.
func largestLevel(top hashsig.Level) hashsig.Level {
	lp, _ := top.LMS.Params()
	op, _ := top.LMOTS.Params()
	l := top
	for _, t := range hashsig.LMSTypes() {
		p, _ := t.Params()
		if cur, _ := l.LMS.Params(); p.Hash == lp.Hash && p.M == lp.M && p.H > cur.H {
			l.LMS = t
		}
	}
	for _, t := range hashsig.LMOTSTypes() {
		p, _ := t.Params()
		if cur, _ := l.LMOTS.Params(); p.Hash == op.Hash && p.N == op.N && p.W < cur.W {
			l.LMOTS = t
		}
	}
	return l
}

// checkRaw checks data that mechanism sm signs as it is: a DigestInfo (or
// any data) that PKCS#1 v1.5 padding leaves room for, a hash of the PSS
// parameters' length, an ECDSA hash, an HSS message within its bound.
func (k *sigKey) checkRaw(data []byte) RV {
	if len(data) < k.rawMin || len(data) > k.rawMax {
		return DataLenRange
	}
	return OK
}

// oneInput is what data given in one part comes to: its hash for a
// mechanism that hashes, else data itself, checked.
func (op *operation) oneInput(data []byte) ([]byte, RV) {
	if op.hash != nil {
		op.hash.Write(data)
		return op.hash.Sum(nil), OK
	}
	return data, op.key.checkRaw(data)
}

// partsInput is what the parts given come to.
func (op *operation) partsInput() []byte {
	if op.hash != nil {
		return op.hash.Sum(nil)
	}
	return op.msg
}

// sign signs in with the token, in PKCS#11's form: ECDSA as r || s.
func (k *sigKey) sign(in []byte) ([]byte, RV) {
	sig, err := k.tok.Sign(context.Background(), k.uuid, in, k.opts)
	if err != nil {
		return nil, signRV(err)
	}
	if k.ecSize == 0 {
		if k.exact && len(sig) != k.sigLen {
			// Not the key the handle described (replaced under its UUID
			// behind the module's back: see keyFacts).
			return nil, GeneralError
		}
		return sig, OK
	}
	raw, err := sigder.ECDSADERToRaw(sig, k.ecSize)
	if err != nil {
		return nil, GeneralError
	}
	return raw, OK
}

// signRV is the return value of a failed Token.Sign.
func signRV(err error) RV {
	switch {
	case errors.Is(err, hsmapi.ErrKeyExhausted):
		return KeyExhausted
	case errors.Is(err, hsmapi.ErrForbidden):
		return KeyFunctionNotPermitted
	case errors.Is(err, hsmapi.ErrKeyNotFound):
		return KeyHandleInvalid
	}
	return tokenRV(err)
}

// verify checks sig, in PKCS#11's form, over in under the public key.
func (k *sigKey) verify(in, sig []byte) RV {
	if len(sig) > k.sigLen || k.exact && len(sig) != k.sigLen {
		return SignatureLenRange
	}
	if k.ecSize != 0 {
		der, err := sigder.ECDSARawToDER(sig, k.ecSize)
		if err != nil {
			return SignatureLenRange
		}
		sig = der
	}
	err := hsmapi.VerifyDigest(k.pub, in, sig, k.opts)
	switch {
	case err == nil:
		return OK
	case errors.Is(err, hsmapi.ErrInvalidSignature):
		return SignatureInvalid
	}
	return GeneralError
}

// Sign is C_Sign: data signed in one part.
func (m *Module) Sign(h uint, data []byte, o Output) ([]byte, int, RV) {
	op, rv := m.activeOp(h, opSign)
	if rv != OK {
		return nil, 0, rv
	}
	defer op.mu.Unlock()
	if op.parts {
		// C_Sign cannot finish what C_SignUpdate began.
		return nil, 0, m.fail(h, opSign, op, OperationActive)
	}
	if op.hash == nil {
		if rv := op.key.checkRaw(data); rv != OK {
			return nil, 0, m.fail(h, opSign, op, rv)
		}
	}
	return m.deliver(h, opSign, op, o, op.key.sigLen, func() ([]byte, RV) {
		in, rv := op.oneInput(data)
		if rv != OK {
			return nil, rv
		}
		return op.key.sign(in)
	})
}

// SignUpdate is C_SignUpdate.
func (m *Module) SignUpdate(h uint, part []byte) RV { return m.update(h, opSign, part) }

// VerifyUpdate is C_VerifyUpdate.
func (m *Module) VerifyUpdate(h uint, part []byte) RV { return m.update(h, opVerify, part) }

// update takes one part of a signature or verification: a failure ends
// the operation. A mechanism that takes one part only answers
// CKR_FUNCTION_NOT_SUPPORTED, as SoftHSM2 does.
func (m *Module) update(h uint, k opKind, part []byte) RV {
	op, rv := m.activeOp(h, k)
	if rv != OK {
		return rv
	}
	defer op.mu.Unlock()
	switch {
	case !op.mech.multiPart():
		return m.fail(h, k, op, FunctionNotSupported)
	case op.hash != nil:
		op.hash.Write(part)
	case len(op.msg)+len(part) > maxHSSMessage:
		return m.fail(h, k, op, DataLenRange)
	default:
		op.msg = append(op.msg, part...)
	}
	op.parts = true
	return OK
}

// SignFinal is C_SignFinal.
func (m *Module) SignFinal(h uint, o Output) ([]byte, int, RV) {
	op, rv := m.activeOp(h, opSign)
	if rv != OK {
		return nil, 0, rv
	}
	defer op.mu.Unlock()
	if !op.mech.multiPart() {
		return nil, 0, m.fail(h, opSign, op, FunctionNotSupported)
	}
	return m.deliver(h, opSign, op, o, op.key.sigLen, func() ([]byte, RV) {
		return op.key.sign(op.partsInput())
	})
}

// Verify is C_Verify: data verified in one part. It always ends the
// operation.
func (m *Module) Verify(h uint, data, sig []byte) RV {
	op, rv := m.activeOp(h, opVerify)
	if rv != OK {
		return rv
	}
	defer op.mu.Unlock()
	defer m.endOp(h, opVerify, op)
	if op.parts {
		return OperationActive
	}
	in, rv := op.oneInput(data)
	if rv != OK {
		return rv
	}
	return op.key.verify(in, sig)
}

// VerifyFinal is C_VerifyFinal. It always ends the operation.
func (m *Module) VerifyFinal(h uint, sig []byte) RV {
	op, rv := m.activeOp(h, opVerify)
	if rv != OK {
		return rv
	}
	defer op.mu.Unlock()
	defer m.endOp(h, opVerify, op)
	if !op.mech.multiPart() {
		return FunctionNotSupported
	}
	return op.key.verify(op.partsInput(), sig)
}
