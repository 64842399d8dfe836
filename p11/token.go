//go:build cgo

package p11

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ThalesIgnite/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// Token is an hsmapi.Token on one PKCS#11 token. It is safe for concurrent use.
type Token struct {
	cfg Config

	// mu guards the session and what follows: one PKCS#11 operation at a
	// time on the one session. Nothing of this module is taken under it.
	mu   sync.Mutex
	raw  *pkcs11.Ctx
	c11  *crypto11.Context
	slot uint
	sess pkcs11.SessionHandle
	// mechs is the token's mechanism list, read once.
	mechs map[uint]bool
	// kekEncs is what the token can do to carry a KEK, probed once.
	kekEncs []hsmapi.KEKEncryption
	// keepsPairs says whether the token makes a public key object with
	// every private one (destroyTemp); nil until found.
	keepsPairs *bool
	closed     bool
}

var _ hsmapi.Token = (*Token)(nil)

// Errors callers branch on.
var (
	// ErrModule: the PKCS#11 module does not load.
	ErrModule = errors.New("PKCS#11 module does not load")
	// ErrNoToken: no token has the label (or slot) asked for.
	ErrNoToken = errors.New("no such PKCS#11 token")
	// ErrMechanism: the token lacks a mechanism an operation needs.
	ErrMechanism = errors.New("token lacks a mechanism")
)

// Open loads the module. The token is found, and its sessions opened, at
// Login: crypto11, which initializes the module, needs the PIN to do it.
func Open(cfg Config) (*Token, error) {
	if (cfg.TokenLabel == "") == (cfg.Slot == nil) {
		return nil, fmt.Errorf("%w: name the token by label or by slot, not both or neither", hsmapi.ErrBadArguments)
	}
	raw := pkcs11.New(cfg.Module)
	if raw == nil {
		return nil, fmt.Errorf("%w: %s", ErrModule, cfg.Module)
	}
	return &Token{cfg: cfg, raw: raw}, nil
}

// Login logs in to the token with its user PIN, whichever user is asked for:
// a PKCS#11 token's user is the one that uses keys.
func (t *Token) Login(_ context.Context, _ hsmapi.User, pin []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.c11 != nil {
		return nil
	}
	conf := &crypto11.Config{Path: t.cfg.Module, TokenLabel: t.cfg.TokenLabel, Pin: string(pin)}
	if t.cfg.Slot != nil {
		slot := int(*t.cfg.Slot)
		conf.SlotNumber, conf.TokenLabel = &slot, ""
	}
	c11, err := crypto11.Configure(conf)
	if err != nil {
		return fmt.Errorf("open token %s: %w", t.name(), loginError(err))
	}
	// crypto11 initialized the module and logged the application in; this
	// second handle on the same library shares both.
	if err := t.raw.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		c11.Close()
		return fmt.Errorf("open token %s: %w", t.name(), err)
	}
	slot, err := t.findSlot()
	if err != nil {
		c11.Close()
		return err
	}
	sess, err := t.raw.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		c11.Close()
		return fmt.Errorf("open token %s: %w", t.name(), err)
	}
	t.c11, t.slot, t.sess = c11, slot, sess
	return nil
}

func (t *Token) name() string {
	if t.cfg.Slot != nil {
		return fmt.Sprintf("in slot %d", *t.cfg.Slot)
	}
	return fmt.Sprintf("%q", t.cfg.TokenLabel)
}

// loginError names what went wrong in terms a user acts on. crypto11 wraps
// errors with an old github.com/pkg/errors that errors.As cannot see
// through, so its codes are also looked for by name.
func loginError(err error) error {
	switch {
	case isCode(err, pkcs11.CKR_PIN_INCORRECT), isCode(err, pkcs11.CKR_PIN_LEN_RANGE):
		return hsmapi.ErrPINIncorrect
	case isCode(err, pkcs11.CKR_PIN_LOCKED):
		return fmt.Errorf("%w: the PIN is locked", hsmapi.ErrForbidden)
	case strings.Contains(err.Error(), "could not find PKCS#11 token"):
		return ErrNoToken
	}
	return err
}

func isCode(err error, code uint) bool {
	var pe pkcs11.Error
	if errors.As(err, &pe) {
		return uint(pe) == code
	}
	return err != nil && strings.Contains(err.Error(), pkcs11.Error(code).Error())
}

func (t *Token) findSlot() (uint, error) {
	slots, err := t.raw.GetSlotList(true)
	if err != nil {
		return 0, err
	}
	for _, s := range slots {
		if t.cfg.Slot != nil {
			if s == *t.cfg.Slot {
				return s, nil
			}
			continue
		}
		info, err := t.raw.GetTokenInfo(s)
		if err == nil && strings.TrimRight(info.Label, " \x00") == t.cfg.TokenLabel {
			return s, nil
		}
	}
	return 0, fmt.Errorf("%w %s", ErrNoToken, t.name())
}

// Logout ends the session; keys not on the token (session objects) go.
func (t *Token) Logout(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closeLocked()
}

// closeLocked ends the session and crypto11's use of the module (Logout,
// Close). Called with t.mu held.
func (t *Token) closeLocked() error {
	lockassert.Held(&t.mu)
	if t.c11 == nil {
		return nil
	}
	t.raw.CloseSession(t.sess)
	err := t.c11.Close() // finalizes the module when it is the last user
	t.c11 = nil
	return err
}

// Close logs out and unloads the module; it is safe to call twice.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	err := t.closeLocked()
	t.raw.Destroy()
	return err
}

// session returns the raw session, or fails when not logged in.
// Called with t.mu held.
func (t *Token) session() (pkcs11.SessionHandle, error) {
	lockassert.Held(&t.mu)
	if t.c11 == nil {
		return 0, hsmapi.ErrNotLoggedIn
	}
	return t.sess, nil
}

// mechanismNames names the mechanisms this package uses, for errors.
var mechanismNames = map[uint]string{
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN: "CKM_RSA_PKCS_KEY_PAIR_GEN",
	pkcs11.CKM_EC_KEY_PAIR_GEN:       "CKM_EC_KEY_PAIR_GEN",
	pkcs11.CKM_RSA_PKCS:              "CKM_RSA_PKCS",
	pkcs11.CKM_RSA_PKCS_OAEP:         "CKM_RSA_PKCS_OAEP",
	pkcs11.CKM_RSA_PKCS_PSS:          "CKM_RSA_PKCS_PSS",
	pkcs11.CKM_ECDSA:                 "CKM_ECDSA",
	pkcs11.CKM_AES_KEY_GEN:           "CKM_AES_KEY_GEN",
	pkcs11.CKM_AES_KEY_WRAP_PAD:      "CKM_AES_KEY_WRAP_PAD",
	ckmHSSKeyPairGen:                 "CKM_HSS_KEY_PAIR_GEN",
	ckmHSS:                           "CKM_HSS",
}

// require checks, before anything changes, that the token offers every
// mechanism an operation needs. Called with t.mu held.
func (t *Token) require(mechs ...uint) error {
	lockassert.Held(&t.mu)
	if t.mechs == nil {
		list, err := t.raw.GetMechanismList(t.slot)
		if err != nil {
			return fmt.Errorf("mechanism list: %w", err)
		}
		t.mechs = map[uint]bool{}
		for _, m := range list {
			t.mechs[m.Mechanism] = true
		}
	}
	for _, m := range mechs {
		if !t.mechs[m] {
			return fmt.Errorf("%w: %s (0x%x)", ErrMechanism, mechanismNames[m], m)
		}
	}
	return nil
}
