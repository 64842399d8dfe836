package main

/*
#include "shim.h"
*/
import "C"

import (
	"unsafe"

	"github.com/hsmkit/cryptech-backup/cmd/cryptech-pkcs11/internal/cryptoki"
)

// The entry points of digests, signatures and random numbers.

//export goDigestInit
func goDigestInit(h C.CK_SESSION_HANDLE, pm *C.CK_MECHANISM) (rv C.CK_RV) {
	defer guard(&rv)
	mech, r := mechanism(pm)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	return C.CK_RV(module.DigestInit(uint(h), mech))
}

//export goDigest
func goDigest(h C.CK_SESSION_HANDLE, p *C.CK_BYTE, n C.CK_ULONG, out *C.CK_BYTE, outLen *C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	defer endOnError(h, cryptoki.OpDigest, &rv)
	data, r := input(p, n)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	return output(out, outLen, func(o cryptoki.Output) ([]byte, int, cryptoki.RV) {
		return module.Digest(uint(h), data, o)
	})
}

//export goDigestUpdate
func goDigestUpdate(h C.CK_SESSION_HANDLE, p *C.CK_BYTE, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	defer endOnError(h, cryptoki.OpDigest, &rv)
	return withInput(p, n, func(part []byte) cryptoki.RV { return module.DigestUpdate(uint(h), part) })
}

//export goDigestKey
func goDigestKey(h C.CK_SESSION_HANDLE, key C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	return C.CK_RV(module.DigestKey(uint(h), uint(key)))
}

//export goDigestFinal
func goDigestFinal(h C.CK_SESSION_HANDLE, out *C.CK_BYTE, outLen *C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	defer endOnError(h, cryptoki.OpDigest, &rv)
	return output(out, outLen, func(o cryptoki.Output) ([]byte, int, cryptoki.RV) {
		return module.DigestFinal(uint(h), o)
	})
}

//export goSignInit
func goSignInit(h C.CK_SESSION_HANDLE, pm *C.CK_MECHANISM, key C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	mech, r := mechanism(pm)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	return C.CK_RV(module.SignInit(uint(h), mech, uint(key)))
}

//export goSign
func goSign(h C.CK_SESSION_HANDLE, p *C.CK_BYTE, n C.CK_ULONG, sig *C.CK_BYTE, sigLen *C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	defer endOnError(h, cryptoki.OpSign, &rv)
	data, r := input(p, n)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	return output(sig, sigLen, func(o cryptoki.Output) ([]byte, int, cryptoki.RV) {
		return module.Sign(uint(h), data, o)
	})
}

//export goSignUpdate
func goSignUpdate(h C.CK_SESSION_HANDLE, p *C.CK_BYTE, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	defer endOnError(h, cryptoki.OpSign, &rv)
	return withInput(p, n, func(part []byte) cryptoki.RV { return module.SignUpdate(uint(h), part) })
}

//export goSignFinal
func goSignFinal(h C.CK_SESSION_HANDLE, sig *C.CK_BYTE, sigLen *C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	defer endOnError(h, cryptoki.OpSign, &rv)
	return output(sig, sigLen, func(o cryptoki.Output) ([]byte, int, cryptoki.RV) {
		return module.SignFinal(uint(h), o)
	})
}

//export goVerifyInit
func goVerifyInit(h C.CK_SESSION_HANDLE, pm *C.CK_MECHANISM, key C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	mech, r := mechanism(pm)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	return C.CK_RV(module.VerifyInit(uint(h), mech, uint(key)))
}

//export goVerify
func goVerify(h C.CK_SESSION_HANDLE, p *C.CK_BYTE, n C.CK_ULONG, sig *C.CK_BYTE, sigLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	defer endOnError(h, cryptoki.OpVerify, &rv)
	data, r := input(p, n)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	s, r := input(sig, sigLen)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	return C.CK_RV(module.Verify(uint(h), data, s))
}

//export goVerifyUpdate
func goVerifyUpdate(h C.CK_SESSION_HANDLE, p *C.CK_BYTE, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	defer endOnError(h, cryptoki.OpVerify, &rv)
	return withInput(p, n, func(part []byte) cryptoki.RV { return module.VerifyUpdate(uint(h), part) })
}

//export goVerifyFinal
func goVerifyFinal(h C.CK_SESSION_HANDLE, sig *C.CK_BYTE, sigLen C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	defer endOnError(h, cryptoki.OpVerify, &rv)
	return withInput(sig, sigLen, func(s []byte) cryptoki.RV { return module.VerifyFinal(uint(h), s) })
}

//export goSeedRandom
func goSeedRandom(h C.CK_SESSION_HANDLE, p *C.CK_BYTE, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	if p == nil && n != 0 {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	return C.CK_RV(module.SeedRandom(uint(h)))
}

//export goGenerateRandom
func goGenerateRandom(h C.CK_SESSION_HANDLE, p *C.CK_BYTE, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	if p == nil && n != 0 {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	if uint64(n) > uint64(maxInput) {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	// Filled in place: no copy of the random bytes stays behind.
	return C.CK_RV(module.GenerateRandom(uint(h), unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))))
}
