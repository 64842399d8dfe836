//go:build !cgo

package p11

import (
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// Open fails: PKCS#11 modules are C libraries, and this binary was built
// without cgo.
func Open(cfg Config) (*Token, error) {
	return nil, fmt.Errorf("%w: this binary was built without cgo, so it cannot load PKCS#11 module %s", hsmapi.ErrUnsupported, cfg.Module)
}

// Token is unusable without cgo.
type Token struct{ hsmapi.Token }
