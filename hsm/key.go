package hsm

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// key is a key held by the HSM, parsed. Token keys are loaded from the
// keystore on first use and cached; volatile keys live only here.
type key struct {
	info hsmapi.KeyInfo
	// pub is the public key: *rsa.PublicKey, *ecdsa.PublicKey or
	// *hashsig.PublicKey.
	pub crypto.PublicKey
	// priv is the private half of an RSA or EC key, hss that of an HSS key;
	// both are nil for public keys.
	priv crypto.Signer
	hss  *hashsig.PrivateKey
	// secret is an AES key's value; nil for other keys. It is cleared when
	// the key is retired, once no use of it is in progress.
	secret []byte
	// hssFrom is the range [next, end) an HSS key held when this HSM took
	// it in (imported or generated) or loaded it from flash: it signs and
	// splits within it only, so it is within the range it arrived with.
	// Unlike hss's range it is fixed, and read under h.mu, where the HSS
	// key's own locks may not be waited for (see HSM.mu).
	hssFrom [2]uint64
	// owner is the session a volatile key belongs to; nil for token keys.
	owner *Session
	// attrs are the attributes other than the label. A key is never changed
	// in place: setting attributes replaces it in the HSM's maps.
	attrs map[uint32][]byte
	// life is shared with the copies SetAttributes makes: the key's use of
	// its private half, and its end (see retire).
	life *keyLife
	// tc is what the HSM knows of a token HSS key's tree cache in flash
	// (hashsig_cache.go), shared with the key's copies; nil for keys that
	// keep none.
	tc *treeCache
}

// keyLife guards the private half of a key and its copies. Sign, Export and
// unwrapping with a KEKEK hold mu for reading while they use it; retire
// holds it for writing, so it waits for the uses in progress, and every use
// that comes after finds the key gone. Lock order: see HSM.mu.
type keyLife struct {
	mu   sync.RWMutex
	gone bool
}

// use runs f with the key's private half, unless the key was retired
// (deleted, or forgotten by Close, Tamper or a logout): then it returns
// ErrKeyNotFound. Never called with h.mu held: f may take it.
func (k *key) use(f func() error) error {
	k.life.mu.RLock()
	defer k.life.mu.RUnlock()
	if k.life.gone {
		return k.goneError()
	}
	err := f()
	if errors.Is(err, hashsig.ErrWiped) {
		// retire wiped the HSS key while f used it (see retire).
		return k.goneError()
	}
	return err
}

func (k *key) goneError() error {
	return fmt.Errorf("%w: %s was deleted or forgotten", hsmapi.ErrKeyNotFound, k.info.UUID)
}

// retire ends a key the HSM has dropped from its maps. It wipes an HSS key
// first, without waiting for the uses in progress: a signature still
// building its trees (seconds to minutes on a loaded key's first signature)
// gives up at once and uses no index; one whose index is stored finishes;
// one that comes after signs nothing. Then it waits for the other uses in
// progress (each takes milliseconds) and marks the key gone. Never called
// with h.mu held: a use in progress may be waiting for it.
func (k *key) retire() {
	k.wipe()
	k.life.mu.Lock()
	defer k.life.mu.Unlock()
	k.life.gone = true
	clear(k.secret)
}

// isPrivate reports whether the key has a private half.
func (k *key) isPrivate() bool { return k.priv != nil || k.hss != nil }

// wipe clears what of the key's secret can be cleared: an HSS key's seed.
// (RSA and EC keys are Go big numbers and curve points, which cannot be
// cleared.) It takes the HSS key's locks, once a build in progress has
// given up: for a key the HSM held, use retire.
func (k *key) wipe() {
	if k.hss != nil {
		k.hss.Wipe()
	}
}

// snapshot returns the key's description as of now: an HSS key's remaining
// signatures change as it signs. It takes the HSS key's state lock, which a
// tree build never holds but a persist does, and a persist takes h.mu: so
// it is never called with h.mu held (see HSM.mu).
func (k *key) snapshot() hsmapi.KeyInfo {
	info := k.info
	if info.Hashsig != nil {
		hi := *info.Hashsig
		if k.hss != nil {
			hi.Remaining = k.hss.Remaining()
		}
		info.Hashsig = &hi
	}
	return info
}

// keyRecord is the plaintext of a key as stored in the keystore, before it
// is wrapped under the master key. The UUID is inside too, so that a record
// moved to another block name is refused.
type keyRecord struct {
	uuid  hsmapi.UUID
	typ   hsmapi.KeyType
	curve hsmapi.Curve
	flags hsmapi.Flags
	label string
	// public is the SubjectPublicKeyInfo, DER.
	public []byte
	// private is the PKCS#8 PrivateKeyInfo, DER; empty for public keys.
	private []byte
	// attrs are the key's attributes other than its label, by type (see
	// attributes.go).
	attrs map[uint32][]byte
}

const keyRecordVersion = 1

func (r *keyRecord) marshal() []byte {
	// Sized exactly: an append that outgrew b would leave a copy of the
	// private key behind in the old array, where nothing clears it.
	size := 1 + 16 + 12 + 12 + len(r.label) + len(r.public) + len(r.private) + 4
	for _, v := range r.attrs {
		size += 8 + len(v)
	}
	b := make([]byte, 0, size)
	b = append(b, keyRecordVersion)
	b = append(b, r.uuid[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(r.typ))
	b = binary.BigEndian.AppendUint32(b, uint32(r.curve))
	b = binary.BigEndian.AppendUint32(b, uint32(r.flags))
	for _, f := range [][]byte{[]byte(r.label), r.public, r.private} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	types := slices.Sorted(maps.Keys(r.attrs))
	b = binary.BigEndian.AppendUint32(b, uint32(len(types)))
	for _, t := range types {
		b = binary.BigEndian.AppendUint32(b, t)
		b = binary.BigEndian.AppendUint32(b, uint32(len(r.attrs[t])))
		b = append(b, r.attrs[t]...)
	}
	return b
}

var errBadKeyRecord = errors.New("corrupt key record")

func parseKeyRecord(b []byte) (*keyRecord, error) {
	if len(b) < 1+16+12 || b[0] != keyRecordVersion {
		return nil, errBadKeyRecord
	}
	r := &keyRecord{}
	copy(r.uuid[:], b[1:17])
	r.typ = hsmapi.KeyType(binary.BigEndian.Uint32(b[17:]))
	r.curve = hsmapi.Curve(binary.BigEndian.Uint32(b[21:]))
	r.flags = hsmapi.Flags(binary.BigEndian.Uint32(b[25:]))
	b = b[29:]
	var fields [3][]byte
	for i := range fields {
		if len(b) < 4 {
			return nil, errBadKeyRecord
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(n) > uint64(len(b)) {
			return nil, errBadKeyRecord
		}
		fields[i] = append([]byte(nil), b[:n]...)
		b = b[n:]
	}
	r.label, r.public, r.private = string(fields[0]), fields[1], fields[2]
	if len(b) < 4 {
		return nil, errBadKeyRecord
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	for range n {
		if len(b) < 8 {
			return nil, errBadKeyRecord
		}
		t, l := binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
		b = b[8:]
		if uint64(l) > uint64(len(b)) || t == hsmapi.AttributeLabel {
			return nil, errBadKeyRecord
		}
		if r.attrs == nil {
			r.attrs = map[uint32][]byte{}
		}
		if _, dup := r.attrs[t]; dup {
			return nil, errBadKeyRecord
		}
		r.attrs[t] = append([]byte(nil), b[:l]...)
		b = b[l:]
	}
	if len(b) != 0 {
		return nil, errBadKeyRecord
	}
	return r, nil
}

// newKey builds a key from a record, parsing its DER.
func newKey(r *keyRecord) (*key, error) {
	k := &key{info: hsmapi.KeyInfo{UUID: r.uuid, Type: r.typ, Curve: r.curve, Flags: r.flags, Label: r.label, PublicKey: r.public},
		attrs: r.attrs, life: new(keyLife)}
	if r.typ == hsmapi.KeyTypeAES {
		if len(r.public) != 0 || r.curve != hsmapi.CurveNone || hsmapi.CheckAESBits(len(r.private)*8) != nil {
			return nil, errBadKeyRecord
		}
		// A copy: the caller wipes the record.
		k.secret = bytes.Clone(r.private)
		k.info.Bits = len(k.secret) * 8
		return k, nil
	}
	var err error
	if k.pub, err = hsmapi.ParsePublicKey(r.public); err != nil {
		return nil, err
	}
	if len(r.private) > 0 {
		if k.priv, k.hss, err = parsePrivateKey(r.private); err != nil {
			return nil, err
		}
		// An HSS key's public key is recomputed from its seed on load: it
		// must be the one recorded.
		if k.hss != nil && !k.hss.Public().Equal(k.pub) {
			return nil, fmt.Errorf("%w: HSS private key does not match its public key", hsmapi.ErrUnsupportedKey)
		}
		if k.hss != nil {
			k.hssFrom[0], k.hssFrom[1] = k.hss.Range()
		}
	}
	typ, curve, bits, err := hsmapi.DescribeKey(k.pub, k.isPrivate())
	if err != nil {
		return nil, err
	}
	if typ != r.typ || curve != r.curve {
		return nil, errBadKeyRecord
	}
	k.info.Bits = bits
	if pk, ok := k.pub.(*hashsig.PublicKey); ok {
		k.info.Hashsig = hsmapi.NewHashsigInfo(pk, k.hss)
	}
	return k, nil
}

// parsePrivateKey parses a PKCS#8 PrivateKeyInfo (DER) into a key that
// signs: an RSA or EC key, or an HSS key (whose trees it rebuilds).
func parsePrivateKey(der []byte) (crypto.Signer, *hashsig.PrivateKey, error) {
	if hashsig.IsPKCS8(der) {
		hss, err := hashsig.ParsePKCS8(der, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", hsmapi.ErrUnsupportedKey, err)
		}
		return nil, hss, nil
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: not a PKCS#8 private key of a supported algorithm", hsmapi.ErrUnsupportedKey)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", hsmapi.ErrUnsupportedKey, hsmapi.KeyKind(priv))
	}
	return signer, nil, nil
}

// recordFor makes the record of a new key and the key it loads as. priv is
// a crypto.Signer (RSA, EC), a *hashsig.PrivateKey, an AES key's value
// ([]byte, which the caller keeps and wipes), or nil for a public key.
// RSA and EC keys are parsed back from the record, so that what is stored is
// exactly what will be loaded; an HSS key is kept as it is, trees built.
func recordFor(id hsmapi.UUID, priv any, pub crypto.PublicKey, flags hsmapi.Flags, label string) (*keyRecord, *key, error) {
	var err error
	var r *keyRecord
	switch p := priv.(type) {
	case *hashsig.PrivateKey:
		r = &keyRecord{uuid: id, typ: hsmapi.KeyTypeHashsigPrivate, flags: flags, label: label, public: hashsig.MarshalPKIXPublicKey(p.Public())}
		if r.private, err = p.MarshalPKCS8(); err != nil {
			return nil, nil, err
		}
		k := &key{info: hsmapi.KeyInfo{UUID: id, Type: r.typ, Flags: flags, Label: label, PublicKey: r.public,
			Hashsig: hsmapi.NewHashsigInfo(p.Public(), p)}, pub: p.Public(), hss: p, life: new(keyLife)}
		k.hssFrom[0], k.hssFrom[1] = p.Range()
		return r, k, nil
	case []byte:
		r = &keyRecord{uuid: id, typ: hsmapi.KeyTypeAES, flags: flags, label: label, private: bytes.Clone(p)}
		k, err := newKey(r)
		if err != nil {
			r.wipe()
			return nil, nil, fmt.Errorf("%w: not an AES key", hsmapi.ErrBadArguments)
		}
		return r, k, nil
	case crypto.Signer:
		pub = p.Public()
	case nil:
	default:
		return nil, nil, fmt.Errorf("%w: %s", hsmapi.ErrUnsupportedKey, hsmapi.KeyKind(priv))
	}
	typ, curve, _, err := hsmapi.DescribeKey(pub, priv != nil)
	if err != nil {
		return nil, nil, err
	}
	r = &keyRecord{uuid: id, typ: typ, curve: curve, flags: flags, label: label}
	if hpub, ok := pub.(*hashsig.PublicKey); ok {
		r.public = hashsig.MarshalPKIXPublicKey(hpub)
	} else if r.public, err = x509.MarshalPKIXPublicKey(pub); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", hsmapi.ErrUnsupportedKey, err)
	}
	if priv != nil {
		if r.private, err = x509.MarshalPKCS8PrivateKey(priv); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", hsmapi.ErrUnsupportedKey, err)
		}
	}
	k, err := newKey(r)
	if err != nil {
		r.wipe()
		return nil, nil, err
	}
	return r, k, nil
}

func (r *keyRecord) wipe() { clear(r.private) }

// pairwiseTest signs and verifies with a new or imported key pair, as FIPS
// 140 asks after every generation: a key that fails is never stored. For an
// import it is also the check that the private half matches its public key.
//
// HSS keys are not tested this way: a test signature would spend a one-time
// key. Their public key is computed from the private seed when they are
// loaded, and must match the one recorded.
func pairwiseTest(k *key) error {
	if k.priv == nil {
		return nil
	}
	digest := sha256.Sum256([]byte("cryptech-backup pairwise consistency test"))
	sig, err := signDigest(k.priv, digest[:], crypto.SHA256)
	if err == nil {
		err = hsmapi.VerifyDigest(k.pub, digest[:], sig, crypto.SHA256)
	}
	if err != nil {
		return fmt.Errorf("%w: pairwise consistency test failed", hsmapi.ErrUnsupportedKey)
	}
	return nil
}

// signDigest signs as Token.Sign documents: PKCS#1 v1.5 or PSS for RSA,
// ASN.1 DER for ECDSA.
func signDigest(priv crypto.Signer, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil {
		return nil, fmt.Errorf("%w: no hash given", hsmapi.ErrBadArguments)
	}
	if h := opts.HashFunc(); h != 0 && len(digest) != h.Size() {
		return nil, fmt.Errorf("%w: digest is %d bytes, %v needs %d", hsmapi.ErrBadArguments, len(digest), h, h.Size())
	}
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.SignPSS(rand.Reader, p, pss.Hash, digest, pss)
		}
		return rsa.SignPKCS1v15(rand.Reader, p, opts.HashFunc(), digest)
	case *ecdsa.PrivateKey:
		return ecdsa.SignASN1(rand.Reader, p, digest)
	}
	return nil, fmt.Errorf("%w: cannot sign with %s", hsmapi.ErrUnsupportedKey, hsmapi.KeyKind(priv))
}
