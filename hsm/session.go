package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// Session is one client's connection to an in-process HSM: its login and
// its volatile keys. It implements [hsmapi.Token] and the optional
// interfaces declared below.
type Session struct {
	h *HSM

	// mu guards user and closed. It is held only to read or set them:
	// nothing is taken under it (see HSM.mu for the lock order).
	mu     sync.Mutex
	user   hsmapi.User
	closed bool
}

var (
	_ hsmapi.Token            = (*Session)(nil)
	_ hsmapi.BatchImporter    = (*Session)(nil)
	_ hsmapi.AttributeReader  = (*Session)(nil)
	_ hsmapi.PrivateKeyLoader = (*Session)(nil)
	_ hsmapi.DamageReporter   = (*Session)(nil)
	_ hsmapi.PINSetter        = (*Session)(nil)
	_ hsmapi.AttributeWriter  = (*Session)(nil)
	_ hsmapi.Identifier       = (*Session)(nil)
	_ hsmapi.TokenInitializer = (*Session)(nil)
	_ hsmapi.RandomReader     = (*Session)(nil)
	_ hsmapi.PSSSigner        = (*Session)(nil)
)

// Login checks the PIN of user. A wrong PIN is reported only after the HSM's
// wrong-PIN delay. PIN checks take turns across the whole HSM, whatever the
// session (see checkPINInTurn): while others are guessing wrong, a login
// waits, until ctx ends.
func (s *Session) Login(ctx context.Context, user hsmapi.User, pin []byte) error {
	if user != hsmapi.UserNormal && user != hsmapi.UserSO && user != hsmapi.UserWheel {
		return fmt.Errorf("login: %w: no such user %d", hsmapi.ErrBadArguments, uint32(user))
	}
	if err := checkPINLength(pin); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if err := s.h.checkPINInTurn(ctx, user, pin); err != nil {
		return fmt.Errorf("login as %s: %w", user, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("login: %w: session closed", hsmapi.ErrBadArguments)
	}
	s.user = user
	return nil
}

// Logout ends the login and drops the session's volatile keys.
func (s *Session) Logout(context.Context) error {
	s.mu.Lock()
	s.user = hsmapi.UserNone
	s.mu.Unlock()
	s.h.dropVolatile(s)
	return nil
}

// Close logs out; the session cannot be used afterwards.
func (s *Session) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return s.Logout(context.Background())
}

// User returns who is logged in.
func (s *Session) User() hsmapi.User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}

// SetPIN changes a user's PIN. Wheel may set any PIN, the security officer
// its own and the normal user's, the normal user only its own.
func (s *Session) SetPIN(_ context.Context, user hsmapi.User, pin []byte) error {
	me := s.User()
	allowed := me == hsmapi.UserWheel ||
		me == hsmapi.UserSO && (user == hsmapi.UserSO || user == hsmapi.UserNormal) ||
		me == hsmapi.UserNormal && user == hsmapi.UserNormal
	if !allowed {
		return fmt.Errorf("set PIN of %s: %w (logged in as %s)", user, hsmapi.ErrForbidden, me)
	}
	if err := s.h.setPIN(user, pin); err != nil {
		return fmt.Errorf("set PIN of %s: %w", user, err)
	}
	return nil
}

// requireKeyUser checks that the session may use keys: the normal user or
// wheel, as libhal requires for private keys.
func (s *Session) requireKeyUser() error { return hsmapi.CheckKeyUser(s.User()) }

// GenerateKey makes an RSA or EC key pair inside the HSM.
func (s *Session) GenerateKey(ctx context.Context, req hsmapi.GenerateRequest) (hsmapi.KeyInfo, error) {
	if err := s.requireKeyUser(); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	if err := checkNewKey(req.Flags, req.Label); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	if err := checkAttributes(req.Attributes); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	attrs := attributeMap(req.Attributes)
	if err := checkAttributeChange(s.User(), req.Flags, false, nil, attrs); err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	var priv any
	var err error
	switch req.Type {
	case hsmapi.KeyTypeRSAPrivate:
		if err := hsmapi.CheckGeneratedRSABits(req.Bits); err != nil {
			return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
		}
		priv, err = rsa.GenerateKey(s.h.board.TRNG, req.Bits)
	case hsmapi.KeyTypeECPrivate:
		var c elliptic.Curve
		switch req.Curve {
		case hsmapi.CurveP256:
			c = elliptic.P256()
		case hsmapi.CurveP384:
			c = elliptic.P384()
		case hsmapi.CurveP521:
			c = elliptic.P521()
		default:
			return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w: unknown curve %v", hsmapi.ErrBadArguments, req.Curve)
		}
		priv, err = ecdsa.GenerateKey(c, s.h.board.TRNG)
	case hsmapi.KeyTypeHashsigPrivate:
		// The trees are built here, on all cores, before the HSM's lock is taken.
		priv, err = hashsig.GenerateKeyProgress(s.h.board.TRNG, req.Levels, nil, progressFrom(ctx))
		if errors.Is(err, hashsig.ErrBadParameters) {
			return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w: %v", hsmapi.ErrBadArguments, err)
		}
	default:
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w: cannot generate %v", hsmapi.ErrBadArguments, req.Type)
	}
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	// The attributes go in the key's own record: one keystore write.
	k, err := s.h.storeNew(s, priv, req.Flags, req.Label, attrs)
	if err != nil {
		if hss, ok := priv.(*hashsig.PrivateKey); ok {
			hss.Wipe() // never stored: no one else has it
		}
		return hsmapi.KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	s.h.storeTreeCache(k)
	return k.snapshot(), nil
}

// storeNew names and stores a new key (priv as recordFor takes it) with
// its attributes, checked already; a key pair passes its pairwise test
// first.
func (h *HSM) storeNew(s *Session, priv any, flags hsmapi.Flags, label string, attrs map[uint32][]byte) (*key, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id, err := h.newUUID()
	if err != nil {
		return nil, err
	}
	r, k, err := recordFor(id, priv, nil, flags, label)
	if err != nil {
		return nil, err
	}
	defer r.wipe()
	r.attrs, k.attrs = attrs, attrs
	if err := pairwiseTest(k); err != nil {
		return nil, err
	}
	if err := h.store(s, []*keyRecord{r}, []*key{k}, nil); err != nil {
		return nil, err
	}
	return k, nil
}

// snapshotAll describes keys as of now, outside the HSM's lock (see
// key.snapshot).
func snapshotAll(keys []*key) []hsmapi.KeyInfo {
	out := make([]hsmapi.KeyInfo, len(keys))
	for i, k := range keys {
		out[i] = k.snapshot()
	}
	return out
}

func checkNewKey(flags hsmapi.Flags, label string) error {
	if err := checkFlags(flags); err != nil {
		return err
	}
	return hsmapi.CheckLabel(label)
}

func checkFlags(flags hsmapi.Flags) error {
	if !flags.Valid() {
		return fmt.Errorf("%w: unknown key flags 0x%x", hsmapi.ErrBadArguments, uint32(flags))
	}
	return nil
}

// key finds a key this session may see.
func (s *Session) key(id hsmapi.UUID) (*key, error) {
	if err := s.requireKeyUser(); err != nil {
		return nil, err
	}
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.h.lookup(s, id)
}

// Key describes one key.
func (s *Session) Key(_ context.Context, id hsmapi.UUID) (hsmapi.KeyInfo, error) {
	k, err := s.key(id)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("open key: %w", err)
	}
	return k.snapshot(), nil
}

// Keys lists the token keys and this session's volatile keys that match f.
func (s *Session) Keys(_ context.Context, f hsmapi.Filter) ([]hsmapi.KeyInfo, error) {
	if err := s.requireKeyUser(); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	keys, err := s.h.visibleKeys(s)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var out []hsmapi.KeyInfo
	for i, info := range snapshotAll(keys) {
		if f.Matches(info) && keys[i].hasAttributes(f.Attributes) {
			out = append(out, info)
		}
	}
	return out, nil
}

// DeleteKey removes a key.
func (s *Session) DeleteKey(_ context.Context, id hsmapi.UUID) error {
	if err := s.requireKeyUser(); err != nil {
		return fmt.Errorf("delete key: %w", err)
	}
	h := s.h
	h.mu.Lock()
	k, err := h.lookup(s, id)
	if err == nil {
		err = h.remove(k)
	}
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("delete key: %w", err)
	}
	// Once it returns, the key signs no more.
	k.retire()
	return nil
}

// Sign signs a digest with a private key that has FlagDigitalSignature (the
// message itself for an HSS key, whose advanced state is in flash before
// the signature is returned).
func (s *Session) Sign(ctx context.Context, id hsmapi.UUID, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k, err := s.key(id)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if k.secret != nil {
		return nil, fmt.Errorf("sign with %s: %w: a secret key does not sign", id, hsmapi.ErrUnsupportedKey)
	}
	if !k.isPrivate() {
		return nil, fmt.Errorf("sign with %s: %w: a public key cannot sign", id, hsmapi.ErrUnsupportedKey)
	}
	if k.info.Flags&hsmapi.FlagDigitalSignature == 0 {
		return nil, fmt.Errorf("sign with %s: %w: key lacks digitalsignature", id, hsmapi.ErrForbidden)
	}
	var sig []byte
	err = k.use(func() error {
		if k.hss != nil {
			s.h.loadTreeCache(k)
			sig, err = signHashsig(k.hss, digest, opts, progressFrom(ctx))
			return err
		}
		sig, err = signDigest(k.priv, digest, opts)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sign with %s: %w", id, err)
	}
	// The signature's state is in flash: the cache may follow (or not).
	s.h.storeTreeCache(k)
	return sig, nil
}

// Verify checks a signature with a key's public half.
func (s *Session) Verify(_ context.Context, id hsmapi.UUID, digest, sig []byte, opts crypto.SignerOpts) error {
	k, err := s.key(id)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if err := hsmapi.VerifyDigest(k.pub, digest, sig, opts); err != nil {
		return fmt.Errorf("verify with %s: %w", id, err)
	}
	return nil
}

// Random fills p from the board's TRNG, as HSM.Random; no login needed,
// as libhal's GET_RANDOM needs none.
func (s *Session) Random(_ context.Context, p []byte) error { return s.h.Random(p) }

// SignsPSS: the emulated HSM signs RSA-PSS (libhal does not).
func (s *Session) SignsPSS() bool { return true }

func signHashsig(sk *hashsig.PrivateKey, msg []byte, opts crypto.SignerOpts, progress hashsig.Progress) ([]byte, error) {
	if opts == nil || opts.HashFunc() != 0 {
		return nil, fmt.Errorf("%w: an HSS key signs the message itself, with no hash named", hsmapi.ErrBadArguments)
	}
	sig, err := sk.SignProgress(msg, progress)
	if errors.Is(err, hashsig.ErrKeyExhausted) {
		return nil, hsmapi.ErrKeyExhausted
	}
	return sig, err
}

// KEKEncryptions: the emulated HSM produces and undoes all three.
func (s *Session) KEKEncryptions(context.Context) ([]hsmapi.KEKEncryption, error) {
	return slices.Clone(hsmapi.KEKEncryptions), nil
}
