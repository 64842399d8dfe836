//go:build cgo

// Package p11threads signs through a PKCS#11 module from C threads, as an
// application written in C does: for benchmarks that must not measure the
// Go runtime of the application in place of the module's. A Go program
// that calls a module through cgo from more goroutines than it has Ps
// (GOMAXPROCS) makes its goroutines wait for one another at the return of
// every call; C threads do not (docs/PERFORMANCE.md).
package p11threads

/*
#cgo CFLAGS: -I${SRCDIR}/../../cmd/cryptech-pkcs11
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include "shim.h"

typedef struct {
	CK_FUNCTION_LIST_PTR f;
	CK_SESSION_HANDLE session;
	CK_OBJECT_HANDLE key;
	CK_MECHANISM_TYPE mech;
	CK_BYTE_PTR data;
	CK_ULONG n;
	long *left;
	CK_RV rv;
} job;

// sign_loop signs until the jobs' shared count runs out: C_SignInit, then
// C_Sign asked for the length, then C_Sign, as miekg/pkcs11 does.
static void *sign_loop(void *p) {
	job *j = p;
	CK_MECHANISM m = {j->mech, NULL, 0};
	CK_BYTE sig[1024];
	while (__atomic_sub_fetch(j->left, 1, __ATOMIC_RELAXED) >= 0) {
		CK_ULONG n = 0;
		if ((j->rv = j->f->C_SignInit(j->session, &m, j->key)) != CKR_OK)
			break;
		if ((j->rv = j->f->C_Sign(j->session, j->data, j->n, NULL, &n)) != CKR_OK)
			break;
		if (n > sizeof sig) {
			j->rv = CKR_BUFFER_TOO_SMALL;
			break;
		}
		if ((j->rv = j->f->C_Sign(j->session, j->data, j->n, sig, &n)) != CKR_OK)
			break;
	}
	return NULL;
}

// sign_threads runs sign_loop on a thread per session of the module lib,
// which the process has loaded and initialized already, until total
// signatures are made or one fails. It returns the first failure's code,
// or CKR_GENERAL_ERROR when lib is not loaded or a thread cannot start.
static CK_RV sign_threads(const char *lib, int count, CK_SESSION_HANDLE *sessions, CK_OBJECT_HANDLE key,
		CK_MECHANISM_TYPE mech, CK_BYTE_PTR data, CK_ULONG n, long total) {
	void *h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
	if (h == NULL)
		return CKR_GENERAL_ERROR;
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR) = (CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(h, "C_GetFunctionList");
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_RV rv = get == NULL ? CKR_GENERAL_ERROR : get(&f);
	job *jobs = calloc(count, sizeof *jobs);
	pthread_t *threads = calloc(count, sizeof *threads);
	if (rv == CKR_OK && (jobs == NULL || threads == NULL))
		rv = CKR_HOST_MEMORY;
	long left = total;
	int started = 0;
	for (int i = 0; rv == CKR_OK && i < count; i++) {
		jobs[i] = (job){f, sessions[i], key, mech, data, n, &left, CKR_OK};
		if (pthread_create(&threads[i], NULL, sign_loop, &jobs[i]) != 0) {
			// Stop those started.
			__atomic_store_n(&left, 0, __ATOMIC_RELAXED);
			rv = CKR_GENERAL_ERROR;
			break;
		}
		started++;
	}
	for (int i = 0; i < started; i++) {
		pthread_join(threads[i], NULL);
		if (rv == CKR_OK)
			rv = jobs[i].rv;
	}
	free(jobs);
	free(threads);
	dlclose(h);
	return rv;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Sign makes total signatures with key and mechanism mech (one without
// parameters) over data, through the PKCS#11 module at path lib, which
// this process has loaded and initialized (with miekg/pkcs11, say): a C
// thread per session, all at once, each C_SignInit then C_Sign twice (the
// length, then the signature), as an application does. Sessions must be
// logged in.
func Sign(lib string, sessions []uint, key, mech uint, data []byte, total int) error {
	if len(sessions) == 0 {
		return fmt.Errorf("sign through %s: no session", lib)
	}
	clib := C.CString(lib)
	defer C.free(unsafe.Pointer(clib))
	// C memory: the threads read these while this call lasts.
	hs := (*C.CK_SESSION_HANDLE)(C.calloc(C.size_t(len(sessions)), C.size_t(unsafe.Sizeof(C.CK_SESSION_HANDLE(0)))))
	defer C.free(unsafe.Pointer(hs))
	dst := unsafe.Slice(hs, len(sessions))
	for i, s := range sessions {
		dst[i] = C.CK_SESSION_HANDLE(s)
	}
	cdata := C.CBytes(data)
	defer C.free(cdata)
	rv := C.sign_threads(clib, C.int(len(sessions)), hs, C.CK_OBJECT_HANDLE(key), C.CK_MECHANISM_TYPE(mech),
		(C.CK_BYTE_PTR)(cdata), C.CK_ULONG(len(data)), C.long(total))
	if rv != C.CKR_OK {
		return fmt.Errorf("sign through %s from C threads: CKR 0x%x", lib, uint(rv))
	}
	return nil
}
