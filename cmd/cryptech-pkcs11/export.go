package main

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"unsafe"

	"github.com/hsmkit/cryptech-backup/cmd/cryptech-pkcs11/internal/cryptoki"
)

// getenv reads the environment as it is now. The Go runtime of a shared
// library knows only the environment the process started with, but an
// application may set the module's variables before it loads the module.
func getenv(name string) string {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	v := C.getenv(cs)
	if v == nil {
		return ""
	}
	return C.GoString(v)
}

// guard turns a panic into CKR_GENERAL_ERROR: a Go panic must never reach
// the host process. Every exported function defers it.
// (Generic so that a test, which cannot name C types, can call it.)
func guard[RV ~uint64 | ~uint32](rv *RV) {
	if recover() != nil {
		*rv = RV(cryptoki.GeneralError)
	}
}

// blank fills a fixed-length PKCS#11 text field with s, cut to fit and
// padded with spaces, as the specification has them.
func blank(field []C.CK_UTF8CHAR, s string) {
	for i := range field {
		field[i] = ' '
		if i < len(s) {
			field[i] = C.CK_UTF8CHAR(s[i])
		}
	}
}

// list answers with vals by the length protocol: with out NULL, the count;
// with *n too small, CKR_BUFFER_TOO_SMALL and the count.
func list(out *C.CK_ULONG, n *C.CK_ULONG, vals []uint) cryptoki.RV {
	if n == nil {
		return cryptoki.ArgumentsBad
	}
	have := *n
	*n = C.CK_ULONG(len(vals))
	if out == nil {
		return cryptoki.OK
	}
	if int(have) < len(vals) {
		return cryptoki.BufferTooSmall
	}
	dst := unsafe.Slice(out, len(vals))
	for i, v := range vals {
		dst[i] = C.CK_ULONG(v)
	}
	return cryptoki.OK
}

//export goInitialize
func goInitialize(p unsafe.Pointer) (rv C.CK_RV) {
	defer guard(&rv)
	if p == nil {
		return C.CK_RV(module.Initialize(nil))
	}
	a := (*C.CK_C_INITIALIZE_ARGS)(p)
	args := cryptoki.InitArgs{Flags: uint(a.flags), Reserved: a.pReserved != nil}
	for _, f := range []unsafe.Pointer{
		unsafe.Pointer(a.CreateMutex), unsafe.Pointer(a.DestroyMutex),
		unsafe.Pointer(a.LockMutex), unsafe.Pointer(a.UnlockMutex),
	} {
		if f != nil {
			args.Mutexes++
		}
	}
	return C.CK_RV(module.Initialize(&args))
}

//export goFinalize
func goFinalize(p unsafe.Pointer) (rv C.CK_RV) {
	defer guard(&rv)
	return C.CK_RV(module.Finalize(p != nil))
}

//export goGetInfo
func goGetInfo(info *C.CK_INFO) (rv C.CK_RV) {
	defer guard(&rv)
	if r := module.Initialized(); r != cryptoki.OK {
		return C.CK_RV(r)
	}
	if info == nil {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	// 2.40: the functions this module implements are 2.40's; the 3.0
	// interface adds none of its own yet.
	info.cryptokiVersion = C.CK_VERSION{major: 2, minor: 40}
	blank(info.manufacturerID[:], "Cryptech Project (emulated)")
	info.flags = 0
	blank(info.libraryDescription[:], "Cryptech emulated HSM PKCS#11")
	info.libraryVersion = C.CK_VERSION{major: C.CK_BYTE(cryptoki.Version[0]), minor: C.CK_BYTE(cryptoki.Version[1])}
	return C.CKR_OK
}

//export goGetSlotList
func goGetSlotList(_ C.CK_BBOOL, out *C.CK_SLOT_ID, n *C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	// Every slot has its token: tokenPresent changes nothing.
	slots, r := module.SlotList()
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	return C.CK_RV(list((*C.CK_ULONG)(out), n, slots))
}

//export goGetSlotInfo
func goGetSlotInfo(id C.CK_SLOT_ID, info *C.CK_SLOT_INFO) (rv C.CK_RV) {
	defer guard(&rv)
	tok, r := module.Token(uint(id))
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	if info == nil {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	blank(info.slotDescription[:], tok.Model+" "+tok.Label)
	blank(info.manufacturerID[:], tok.Manufacturer)
	info.flags = C.CKF_TOKEN_PRESENT
	info.hardwareVersion = C.CK_VERSION{}
	info.firmwareVersion = C.CK_VERSION{}
	return C.CKR_OK
}

//export goGetTokenInfo
func goGetTokenInfo(id C.CK_SLOT_ID, info *C.CK_TOKEN_INFO) (rv C.CK_RV) {
	defer guard(&rv)
	tok, r := module.Token(uint(id))
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	n, r := module.SessionCounts(uint(id))
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	if info == nil {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	blank(info.label[:], tok.Label)
	blank(info.manufacturerID[:], tok.Manufacturer)
	blank(info.model[:], tok.Model)
	blank(info.serialNumber[:], tok.Serial)
	info.flags = C.CKF_LOGIN_REQUIRED | C.CKF_USER_PIN_INITIALIZED | C.CKF_TOKEN_INITIALIZED
	if rng, _ := module.HasRNG(uint(id)); rng {
		info.flags |= C.CKF_RNG
	}
	info.ulMaxSessionCount = C.CK_EFFECTIVELY_INFINITE
	info.ulSessionCount = C.CK_ULONG(n.Sessions)
	info.ulMaxRwSessionCount = C.CK_EFFECTIVELY_INFINITE
	info.ulRwSessionCount = C.CK_ULONG(n.RWSessions)
	info.ulMaxPinLen = C.CK_ULONG(tok.MaxPIN)
	info.ulMinPinLen = C.CK_ULONG(tok.MinPIN)
	info.ulTotalPublicMemory = C.CK_UNAVAILABLE_INFORMATION
	info.ulFreePublicMemory = C.CK_UNAVAILABLE_INFORMATION
	info.ulTotalPrivateMemory = C.CK_UNAVAILABLE_INFORMATION
	info.ulFreePrivateMemory = C.CK_UNAVAILABLE_INFORMATION
	info.hardwareVersion = C.CK_VERSION{}
	info.firmwareVersion = C.CK_VERSION{major: C.CK_BYTE(cryptoki.Version[0]), minor: C.CK_BYTE(cryptoki.Version[1])}
	blank(info.utcTime[:], "")
	return C.CKR_OK
}

//export goGetMechanismList
func goGetMechanismList(id C.CK_SLOT_ID, out *C.CK_MECHANISM_TYPE, n *C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	mechs, r := module.Mechanisms(uint(id))
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	return C.CK_RV(list((*C.CK_ULONG)(out), n, mechs))
}

//export goGetMechanismInfo
func goGetMechanismInfo(id C.CK_SLOT_ID, mech C.CK_MECHANISM_TYPE, info *C.CK_MECHANISM_INFO) (rv C.CK_RV) {
	defer guard(&rv)
	mi, r := module.MechanismInfo(uint(id), uint(mech))
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	if info == nil {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	info.ulMinKeySize = C.CK_ULONG(mi.MinKeySize)
	info.ulMaxKeySize = C.CK_ULONG(mi.MaxKeySize)
	info.flags = C.CK_FLAGS(mi.Flags)
	return C.CKR_OK
}

//export goOpenSession
func goOpenSession(id C.CK_SLOT_ID, flags C.CK_FLAGS, h *C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	if h == nil {
		if r := module.Initialized(); r != cryptoki.OK {
			return C.CK_RV(r)
		}
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	s, r := module.OpenSession(uint(id), uint(flags))
	if r == cryptoki.OK {
		*h = C.CK_SESSION_HANDLE(s)
	}
	return C.CK_RV(r)
}

//export goCloseSession
func goCloseSession(h C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	return C.CK_RV(module.CloseSession(uint(h)))
}

//export goCloseAllSessions
func goCloseAllSessions(id C.CK_SLOT_ID) (rv C.CK_RV) {
	defer guard(&rv)
	return C.CK_RV(module.CloseAllSessions(uint(id)))
}

//export goGetSessionInfo
func goGetSessionInfo(h C.CK_SESSION_HANDLE, info *C.CK_SESSION_INFO) (rv C.CK_RV) {
	defer guard(&rv)
	si, r := module.SessionInfo(uint(h))
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	if info == nil {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	info.slotID = C.CK_SLOT_ID(si.Slot)
	info.state = C.CK_STATE(si.State)
	info.flags = C.CK_FLAGS(si.Flags)
	info.ulDeviceError = 0
	return C.CKR_OK
}

// maxPINCopy bounds what C_Login copies: far more than the HSM's longest
// PIN, so that the token, not this, says which PINs are too long.
const maxPINCopy = 1 << 20

//export goLogin
func goLogin(h C.CK_SESSION_HANDLE, user C.CK_USER_TYPE, pin *C.CK_UTF8CHAR, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	if pin == nil && n != 0 {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	if n > maxPINCopy {
		// Longer than any PIN; not worth copying (nor a C int).
		return C.CK_RV(cryptoki.PINLenRange)
	}
	// A copy of our own, zeroed when the login is done; the application's
	// buffer is its own to clear.
	p := C.GoBytes(unsafe.Pointer(pin), C.int(n))
	defer clear(p)
	return C.CK_RV(module.Login(uint(h), uint(user), p))
}

//export goLogout
func goLogout(h C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	return C.CK_RV(module.Logout(uint(h)))
}
