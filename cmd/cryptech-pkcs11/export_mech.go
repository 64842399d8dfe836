package main

/*
#include "shim.h"
*/
import "C"

import (
	"unsafe"

	"github.com/hsmkit/cryptech-backup/cmd/cryptech-pkcs11/internal/cryptoki"
)

// The C <-> Go conversions of mechanisms, inputs and outputs, one place
// for every function that takes them.

// maxParam bounds the byte-string parameter a mechanism may carry: far
// more than any this module takes, so that a length from C is not trusted
// for a copy.
const maxParam = 1 << 16

// mechanism reads a CK_MECHANISM: its type, and its parameter as the type
// takes it (cryptoki.ParamKindOf). A parameter that is not the structure
// the type takes is passed on as bytes, for the mechanism to refuse.
func mechanism(p *C.CK_MECHANISM) (cryptoki.Mechanism, cryptoki.RV) {
	if p == nil {
		return cryptoki.Mechanism{}, cryptoki.ArgumentsBad
	}
	m := cryptoki.Mechanism{Type: uint(p.mechanism)}
	n := p.ulParameterLen
	switch {
	case n == 0:
		return m, cryptoki.OK
	case p.pParameter == nil:
		return m, cryptoki.ArgumentsBad
	case n > maxParam:
		return m, cryptoki.MechanismParamInvalid
	}
	switch kind := cryptoki.ParamKindOf(m.Type); {
	case kind == cryptoki.ParamPSS && n == C.sizeof_CK_RSA_PKCS_PSS_PARAMS:
		pss := (*C.CK_RSA_PKCS_PSS_PARAMS)(unsafe.Pointer(p.pParameter))
		m.PSS = &cryptoki.PSSParams{Hash: uint(pss.hashAlg), MGF: uint(pss.mgf), SaltLen: uint(pss.sLen)}
		return m, cryptoki.OK
	case kind == cryptoki.ParamOAEP && n == C.sizeof_CK_RSA_PKCS_OAEP_PARAMS:
		var r cryptoki.RV
		m.OAEP, r = oaepParams((*C.CK_RSA_PKCS_OAEP_PARAMS)(unsafe.Pointer(p.pParameter)))
		return m, r
	case kind == cryptoki.ParamRSAAESKeyWrap && n == C.sizeof_CK_RSA_AES_KEY_WRAP_PARAMS:
		w := (*C.CK_RSA_AES_KEY_WRAP_PARAMS)(unsafe.Pointer(p.pParameter))
		if w.pOAEPParams == nil {
			return m, cryptoki.MechanismParamInvalid
		}
		var r cryptoki.RV
		m.AESKeyBits = uint(w.ulAESKeyBits)
		m.OAEP, r = oaepParams(w.pOAEPParams)
		return m, r
	}
	m.Param = C.GoBytes(unsafe.Pointer(p.pParameter), C.int(n))
	return m, cryptoki.OK
}

// oaepParams copies a CK_RSA_PKCS_OAEP_PARAMS, its label (pSourceData)
// with it.
func oaepParams(o *C.CK_RSA_PKCS_OAEP_PARAMS) (*cryptoki.OAEPParams, cryptoki.RV) {
	p := &cryptoki.OAEPParams{Hash: uint(o.hashAlg), MGF: uint(o.mgf), Source: uint(o.source)}
	n := o.ulSourceDataLen
	switch {
	case n == 0:
	case o.pSourceData == nil:
		return nil, cryptoki.ArgumentsBad
	case n > maxParam:
		return nil, cryptoki.MechanismParamInvalid
	default:
		p.Label = C.GoBytes(unsafe.Pointer(o.pSourceData), C.int(n))
	}
	return p, cryptoki.OK
}

// input is the application's buffer p of n bytes, read in place: the
// module reads it only during the call, and keeps copies of what it must
// keep. NULL is an empty input only when n is 0.
func input(p *C.CK_BYTE, n C.CK_ULONG) ([]byte, cryptoki.RV) {
	switch {
	case n == 0:
		return nil, cryptoki.OK
	case p == nil:
		return nil, cryptoki.ArgumentsBad
	case uint64(n) > uint64(maxInput):
		return nil, cryptoki.DataLenRange
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n)), cryptoki.OK
}

// withInput runs f on the application's buffer p of n bytes (see input).
func withInput(p *C.CK_BYTE, n C.CK_ULONG, f func([]byte) cryptoki.RV) C.CK_RV {
	in, rv := input(p, n)
	if rv != cryptoki.OK {
		return C.CK_RV(rv)
	}
	return C.CK_RV(f(in))
}

// endOnError ends session h's operation of kind k when the call failed,
// but for CKR_BUFFER_TOO_SMALL, which leaves it active (the length
// protocol): the module ends it for the failures it finds, this for the
// arguments the C side refuses (cryptoki.Abort). A session is one
// thread's at a time, so the operation active then is the call's.
// Deferred after guard, so that guard covers it too.
func endOnError(h C.CK_SESSION_HANDLE, k cryptoki.OpKind, rv *C.CK_RV) {
	if *rv != C.CKR_OK && *rv != C.CKR_BUFFER_TOO_SMALL {
		module.Abort(uint(h), k)
	}
}

// maxInput bounds what one call may hand the module: more than any
// operation takes (an HSS message is bounded lower), and what a slice can
// hold on any platform cgo builds for.
const maxInput = 1<<31 - 1

// output answers with what f makes by the length protocol (PKCS#11 2.40
// section 5.2): with p NULL, the length in *n; with *n too small,
// CKR_BUFFER_TOO_SMALL and the length; else the result in p and its
// length in *n. f (cryptoki's deliver) decides which, and whether the
// operation ends.
func output(p *C.CK_BYTE, n *C.CK_ULONG, f func(cryptoki.Output) ([]byte, int, cryptoki.RV)) C.CK_RV {
	if n == nil {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	o := cryptoki.Output{Query: p == nil, Room: int(min(uint64(*n), uint64(maxInput)))}
	out, need, rv := f(o)
	switch {
	case rv == cryptoki.OK && !o.Query:
		copy(unsafe.Slice((*byte)(unsafe.Pointer(p)), len(out)), out)
		*n = C.CK_ULONG(len(out))
	case rv == cryptoki.OK, rv == cryptoki.BufferTooSmall:
		*n = C.CK_ULONG(need)
	}
	return C.CK_RV(rv)
}
