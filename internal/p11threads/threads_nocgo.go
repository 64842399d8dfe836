//go:build !cgo

package p11threads

import "errors"

// Sign needs cgo: without it there is no PKCS#11 module to load either.
func Sign(lib string, sessions []uint, key, mech uint, data []byte, total int) error {
	return errors.New("p11threads: built without cgo")
}
