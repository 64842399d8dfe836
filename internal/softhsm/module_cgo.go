//go:build cgo

package softhsm

import (
	"errors"
	"fmt"
	"os"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

var (
	// ctxs holds one pkcs11.Ctx per module path for the life of the process.
	// They are never finalised on behalf of others and never destroyed (see
	// the package documentation).
	ctxs = map[string]*pkcs11.Ctx{}
)

// ctxFor returns the process's pkcs11.Ctx for module, loading it the first
// time. Called with mu held.
func ctxFor(module string) (*pkcs11.Ctx, error) {
	lockassert.Held(&mu)
	if c := ctxs[module]; c != nil {
		return c, nil
	}
	c := pkcs11.New(module)
	if c == nil {
		return nil, fmt.Errorf("softhsm: cannot load PKCS#11 module %s (dlopen failed, or it has no C_GetFunctionList)", module)
	}
	ctxs[module] = c
	return c, nil
}

// InitToken creates a new token with the given label, SO PIN and user PIN in
// the free slot SoftHSM2 always offers. The label must not be empty, must fit
// in 32 bytes and must not be taken by another token already.
//
// If the module is not initialised in this process, InitToken initialises it
// and finalises it again before returning (so that crypto11.Configure can
// initialise it afterwards); if it is (crypto11 contexts are open), InitToken
// uses it as it is and leaves it initialised. Do not call it at the same
// moment as crypto11.Configure or Context.Close on the same module.
func (e *Env) InitToken(label, soPIN, userPIN string) error {
	if label == "" {
		return errors.New("softhsm: empty token label")
	}
	if len(label) > 32 {
		return fmt.Errorf("softhsm: token label %q is longer than 32 bytes", label)
	}
	if soPIN == "" || userPIN == "" {
		return fmt.Errorf("softhsm: token %q: empty SO or user PIN", label)
	}
	if os.Getenv(ConfEnv) != e.conf {
		return fmt.Errorf("softhsm: %s is %q, not this Env's %s: was Setup called again with another directory?",
			ConfEnv, os.Getenv(ConfEnv), e.conf)
	}

	mu.Lock()
	defer mu.Unlock()
	c, err := ctxFor(e.module)
	if err != nil {
		return err
	}

	// Someone (crypto11's last Context.Close) may finalise the module between
	// our C_Initialize and our use of it; then start again.
	for attempt := 0; ; attempt++ {
		err := initToken(c, label, soPIN, userPIN)
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED)) && attempt < 3 {
			continue
		}
		return err
	}
}

func initToken(c *pkcs11.Ctx, label, soPIN, userPIN string) (err error) {
	ours := true
	if err := c.Initialize(); err != nil {
		if !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
			return fmt.Errorf("softhsm: C_Initialize (configuration %s): %w", os.Getenv(ConfEnv), err)
		}
		ours = false
	}
	if ours {
		defer func() {
			if ferr := c.Finalize(); ferr != nil && err == nil {
				err = fmt.Errorf("softhsm: C_Finalize: %w", ferr)
			}
		}()
	}

	slots, err := c.GetSlotList(true)
	if err != nil {
		return fmt.Errorf("softhsm: C_GetSlotList: %w", err)
	}
	free, found := uint(0), false
	for _, s := range slots {
		ti, err := c.GetTokenInfo(s)
		if err != nil {
			return fmt.Errorf("softhsm: C_GetTokenInfo for slot %d: %w", s, err)
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			if !found {
				free, found = s, true
			}
			continue
		}
		if ti.Label == label {
			return fmt.Errorf("softhsm: a token labelled %q already exists (slot %d)", label, s)
		}
	}
	if !found {
		return fmt.Errorf("softhsm: no slot with an uninitialised token among %d slots (is %s SoftHSM2?)", len(slots), os.Getenv(ConfEnv))
	}

	if err := c.InitToken(free, soPIN, label); err != nil {
		return fmt.Errorf("softhsm: C_InitToken %q in slot %d: %w", label, free, err)
	}
	sh, err := c.OpenSession(free, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("softhsm: C_OpenSession on token %q: %w", label, err)
	}
	defer func() {
		if cerr := c.CloseSession(sh); cerr != nil && err == nil {
			err = fmt.Errorf("softhsm: C_CloseSession on token %q: %w", label, cerr)
		}
	}()
	if err := c.Login(sh, pkcs11.CKU_SO, soPIN); err != nil {
		return fmt.Errorf("softhsm: C_Login as SO on token %q: %w", label, err)
	}
	if err := c.InitPIN(sh, userPIN); err != nil {
		_ = c.Logout(sh)
		return fmt.Errorf("softhsm: C_InitPIN on token %q: %w", label, err)
	}
	if err := c.Logout(sh); err != nil {
		return fmt.Errorf("softhsm: C_Logout on token %q: %w", label, err)
	}
	return nil
}

// moduleInitialised tells whether someone in this process has initialised
// module. It loads the module but changes nothing in it: C_GetInfo answers
// CKR_CRYPTOKI_NOT_INITIALIZED unless it is initialised. Called with mu
// held.
func moduleInitialised(module string) (bool, error) {
	lockassert.Held(&mu)
	c, err := ctxFor(module)
	if err != nil {
		return false, err
	}
	_, err = c.GetInfo()
	return err == nil, nil
}
