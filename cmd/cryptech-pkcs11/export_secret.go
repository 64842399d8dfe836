package main

/*
#include "shim.h"
*/
import "C"

import (
	"github.com/hsmkit/cryptech-backup/cmd/cryptech-pkcs11/internal/cryptoki"
)

// The entry points of secret keys, key wrapping and RSA-OAEP.

//export goGenerateKey
func goGenerateKey(h C.CK_SESSION_HANDLE, pm *C.CK_MECHANISM, p *C.CK_ATTRIBUTE, n C.CK_ULONG, key *C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	// Checked before anything is made: a key whose handle cannot be
	// returned would be a key no one knows of.
	if key == nil {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	mech, r := mechanism(pm)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	t, r := template(p, n)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	k, r := module.GenerateKey(uint(h), mech, t)
	if r == cryptoki.OK {
		*key = C.CK_OBJECT_HANDLE(k)
	}
	return C.CK_RV(r)
}

//export goWrapKey
func goWrapKey(h C.CK_SESSION_HANDLE, pm *C.CK_MECHANISM, wrapping, key C.CK_OBJECT_HANDLE, out *C.CK_BYTE, outLen *C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	mech, r := mechanism(pm)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	return output(out, outLen, func(o cryptoki.Output) ([]byte, int, cryptoki.RV) {
		return module.WrapKey(uint(h), mech, uint(wrapping), uint(key), o)
	})
}

//export goUnwrapKey
func goUnwrapKey(h C.CK_SESSION_HANDLE, pm *C.CK_MECHANISM, unwrapping C.CK_OBJECT_HANDLE, p *C.CK_BYTE, n C.CK_ULONG,
	tp *C.CK_ATTRIBUTE, tn C.CK_ULONG, key *C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	if key == nil {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	mech, r := mechanism(pm)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	wrapped, r := input(p, n)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	t, r := template(tp, tn)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	k, r := module.UnwrapKey(uint(h), mech, uint(unwrapping), wrapped, t)
	if r == cryptoki.OK {
		*key = C.CK_OBJECT_HANDLE(k)
	}
	return C.CK_RV(r)
}

// withMechanism is an Init entry point's body: the mechanism read, then
// init run with it on the key.
func withMechanism(h C.CK_SESSION_HANDLE, pm *C.CK_MECHANISM, key C.CK_OBJECT_HANDLE, init func(h uint, m cryptoki.Mechanism, key uint) cryptoki.RV) C.CK_RV {
	mech, r := mechanism(pm)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	return C.CK_RV(init(uint(h), mech, uint(key)))
}

// singlePart is a single-part operation's body: the input read, then the
// result delivered by the length protocol.
func singlePart(h C.CK_SESSION_HANDLE, p *C.CK_BYTE, n C.CK_ULONG, out *C.CK_BYTE, outLen *C.CK_ULONG, op func(h uint, in []byte, o cryptoki.Output) ([]byte, int, cryptoki.RV)) C.CK_RV {
	in, r := input(p, n)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	return output(out, outLen, func(o cryptoki.Output) ([]byte, int, cryptoki.RV) { return op(uint(h), in, o) })
}

//export goEncryptInit
func goEncryptInit(h C.CK_SESSION_HANDLE, pm *C.CK_MECHANISM, key C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	return withMechanism(h, pm, key, module.EncryptInit)
}

//export goEncrypt
func goEncrypt(h C.CK_SESSION_HANDLE, p *C.CK_BYTE, n C.CK_ULONG, out *C.CK_BYTE, outLen *C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	defer endOnError(h, cryptoki.OpEncrypt, &rv)
	return singlePart(h, p, n, out, outLen, module.Encrypt)
}

//export goDecryptInit
func goDecryptInit(h C.CK_SESSION_HANDLE, pm *C.CK_MECHANISM, key C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	return withMechanism(h, pm, key, module.DecryptInit)
}

//export goDecrypt
func goDecrypt(h C.CK_SESSION_HANDLE, p *C.CK_BYTE, n C.CK_ULONG, out *C.CK_BYTE, outLen *C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	defer endOnError(h, cryptoki.OpDecrypt, &rv)
	return singlePart(h, p, n, out, outLen, module.Decrypt)
}
