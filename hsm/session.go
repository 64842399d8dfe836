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
	"unicode"
	"unicode/utf8"

	"github.com/hsmkit/cryptech-backup/hashsig"
)

// Session is one client's connection to an in-process HSM: its login and
// its volatile keys. It implements [Token] and [BatchImporter].
type Session struct {
	h *HSM

	// mu guards user and closed. It is held only to read or set them:
	// nothing is taken under it (see HSM.mu for the lock order).
	mu     sync.Mutex
	user   User
	closed bool
}

var (
	_ Token            = (*Session)(nil)
	_ BatchImporter    = (*Session)(nil)
	_ AttributeReader  = (*Session)(nil)
	_ PrivateKeyLoader = (*Session)(nil)
)

// Login checks the PIN of user. A wrong PIN is reported only after the HSM's
// wrong-PIN delay. PIN checks take turns across the whole HSM, whatever the
// session (see checkPINInTurn): while others are guessing wrong, a login
// waits, until ctx ends.
func (s *Session) Login(ctx context.Context, user User, pin []byte) error {
	if user != UserNormal && user != UserSO && user != UserWheel {
		return fmt.Errorf("login: %w: no such user %d", ErrBadArguments, uint32(user))
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
		return fmt.Errorf("login: %w: session closed", ErrBadArguments)
	}
	s.user = user
	return nil
}

// Logout ends the login and drops the session's volatile keys.
func (s *Session) Logout(context.Context) error {
	s.mu.Lock()
	s.user = UserNone
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
func (s *Session) User() User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}

// SetPIN changes a user's PIN. Wheel may set any PIN, the security officer
// its own and the normal user's, the normal user only its own.
func (s *Session) SetPIN(_ context.Context, user User, pin []byte) error {
	me := s.User()
	allowed := me == UserWheel ||
		me == UserSO && (user == UserSO || user == UserNormal) ||
		me == UserNormal && user == UserNormal
	if !allowed {
		return fmt.Errorf("set PIN of %s: %w (logged in as %s)", user, ErrForbidden, me)
	}
	if err := s.h.setPIN(user, pin); err != nil {
		return fmt.Errorf("set PIN of %s: %w", user, err)
	}
	return nil
}

// requireKeyUser checks that the session may use keys: the normal user or
// wheel, as libhal requires for private keys.
func (s *Session) requireKeyUser() error {
	switch u := s.User(); u {
	case UserNormal, UserWheel:
		return nil
	case UserNone:
		return ErrNotLoggedIn
	default:
		return fmt.Errorf("%w: %s cannot use keys", ErrForbidden, u)
	}
}

// GenerateKey makes an RSA or EC key pair inside the HSM.
func (s *Session) GenerateKey(_ context.Context, req GenerateRequest) (KeyInfo, error) {
	if err := s.requireKeyUser(); err != nil {
		return KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	if err := checkNewKey(req.Flags, req.Label); err != nil {
		return KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	var priv any
	var err error
	switch req.Type {
	case KeyTypeRSAPrivate:
		if err := CheckGeneratedRSABits(req.Bits); err != nil {
			return KeyInfo{}, fmt.Errorf("generate: %w", err)
		}
		priv, err = rsa.GenerateKey(s.h.board.TRNG, req.Bits)
	case KeyTypeECPrivate:
		var c elliptic.Curve
		switch req.Curve {
		case CurveP256:
			c = elliptic.P256()
		case CurveP384:
			c = elliptic.P384()
		case CurveP521:
			c = elliptic.P521()
		default:
			return KeyInfo{}, fmt.Errorf("generate: %w: unknown curve %v", ErrBadArguments, req.Curve)
		}
		priv, err = ecdsa.GenerateKey(c, s.h.board.TRNG)
	case KeyTypeHashsigPrivate:
		// The trees are built here, on all cores, before the HSM's lock is taken.
		priv, err = hashsig.GenerateKey(s.h.board.TRNG, req.Levels, nil)
		if errors.Is(err, hashsig.ErrBadParameters) {
			return KeyInfo{}, fmt.Errorf("generate: %w: %v", ErrBadArguments, err)
		}
	default:
		return KeyInfo{}, fmt.Errorf("generate: %w: cannot generate %v", ErrBadArguments, req.Type)
	}
	if err != nil {
		return KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	k, err := s.h.storeNew(s, priv, req.Flags, req.Label)
	if err != nil {
		if hss, ok := priv.(*hashsig.PrivateKey); ok {
			hss.Wipe() // never stored: no one else has it
		}
		return KeyInfo{}, fmt.Errorf("generate: %w", err)
	}
	return k.snapshot(), nil
}

// storeNew names and stores a newly generated key.
func (h *HSM) storeNew(s *Session, priv any, flags Flags, label string) (*key, error) {
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
func snapshotAll(keys []*key) []KeyInfo {
	out := make([]KeyInfo, len(keys))
	for i, k := range keys {
		out[i] = k.snapshot()
	}
	return out
}

func checkNewKey(flags Flags, label string) error {
	if err := checkFlags(flags); err != nil {
		return err
	}
	return CheckLabel(label)
}

func checkFlags(flags Flags) error {
	if !flags.Valid() {
		return fmt.Errorf("%w: unknown key flags 0x%x", ErrBadArguments, uint32(flags))
	}
	return nil
}

// CheckLabel refuses labels that are too long, not UTF-8, or hold control
// or format characters: labels travel in bundles anyone can write, and end
// up printed on an operator's terminal, where a right-to-left override
// (U+202E) or an invisible character would make one label look like
// another.
func CheckLabel(label string) error {
	if len(label) > MaxLabelLength {
		return fmt.Errorf("%w: label longer than %d bytes", ErrBadArguments, MaxLabelLength)
	}
	if !utf8.ValidString(label) {
		return fmt.Errorf("%w: label is not UTF-8", ErrBadArguments)
	}
	for _, r := range label {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: label holds control character %U", ErrBadArguments, r)
		}
		if unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("%w: label holds format character %U", ErrBadArguments, r)
		}
	}
	return nil
}

// MaxRawLabelLength bounds a label this HSM stores: what a libhal client
// may set over RPC (one attribute's worth), and what an import, which must
// take any key another HSM exports, carries.
const MaxRawLabelLength = MaxAttributeSize

// CheckRawLabel refuses a label this HSM cannot keep: longer than
// MaxRawLabelLength. Any bytes are a label otherwise, as libhal stores what
// a client sets; what prints one escapes it. Labels from the command line,
// and those a bundle gives as text, keep CheckLabel's rules.
func CheckRawLabel(label string) error {
	if len(label) > MaxRawLabelLength {
		return fmt.Errorf("%w: label longer than %d bytes", ErrBadArguments, MaxRawLabelLength)
	}
	return nil
}

// key finds a key this session may see.
func (s *Session) key(id UUID) (*key, error) {
	if err := s.requireKeyUser(); err != nil {
		return nil, err
	}
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return s.h.lookup(s, id)
}

// Key describes one key.
func (s *Session) Key(_ context.Context, id UUID) (KeyInfo, error) {
	k, err := s.key(id)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("open key: %w", err)
	}
	return k.snapshot(), nil
}

// Keys lists the token keys and this session's volatile keys that match f.
func (s *Session) Keys(_ context.Context, f Filter) ([]KeyInfo, error) {
	if err := s.requireKeyUser(); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	keys, err := s.h.visibleKeys(s)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	var out []KeyInfo
	for i, info := range snapshotAll(keys) {
		if f.Matches(info) && keys[i].hasAttributes(f.Attributes) {
			out = append(out, info)
		}
	}
	return out, nil
}

// DeleteKey removes a key.
func (s *Session) DeleteKey(_ context.Context, id UUID) error {
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
func (s *Session) Sign(_ context.Context, id UUID, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k, err := s.key(id)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if !k.isPrivate() {
		return nil, fmt.Errorf("sign with %s: %w: a public key cannot sign", id, ErrUnsupportedKey)
	}
	if k.info.Flags&FlagDigitalSignature == 0 {
		return nil, fmt.Errorf("sign with %s: %w: key lacks digitalsignature", id, ErrForbidden)
	}
	var sig []byte
	err = k.use(func() error {
		if k.hss != nil {
			sig, err = signHashsig(k.hss, digest, opts)
			return err
		}
		sig, err = signDigest(k.priv, digest, opts)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sign with %s: %w", id, err)
	}
	return sig, nil
}

// Verify checks a signature with a key's public half.
func (s *Session) Verify(_ context.Context, id UUID, digest, sig []byte, opts crypto.SignerOpts) error {
	k, err := s.key(id)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if err := verifyDigest(k.pub, digest, sig, opts); err != nil {
		return fmt.Errorf("verify with %s: %w", id, err)
	}
	return nil
}

func signHashsig(sk *hashsig.PrivateKey, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != 0 {
		return nil, fmt.Errorf("%w: an HSS key signs the message itself, with no hash named", ErrBadArguments)
	}
	sig, err := sk.Sign(msg)
	if errors.Is(err, hashsig.ErrKeyExhausted) {
		return nil, ErrKeyExhausted
	}
	return sig, err
}

// KEKEncryptions: the emulated HSM produces and undoes all three.
func (s *Session) KEKEncryptions(context.Context) ([]KEKEncryption, error) {
	return slices.Clone(KEKEncryptions), nil
}
