//go:build !cgo

package softhsm

import "fmt"

// Without cgo no PKCS#11 module can be loaded, so none is initialised.
func moduleInitialised(string) (bool, error) { return false, nil }

// InitToken fails: PKCS#11 modules are C libraries, and this binary was built
// without cgo. (softhsm2-util --init-token, run with SOFTHSM2_CONF set by
// Setup, can still make tokens.)
func (e *Env) InitToken(label, soPIN, userPIN string) error {
	return fmt.Errorf("softhsm: cannot create token %q: this binary was built without cgo, so it cannot load PKCS#11 module %s", label, e.module)
}
