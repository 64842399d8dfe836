//go:build cgo

package p11

/*
#cgo linux LDFLAGS: -ldl
#cgo darwin LDFLAGS: -ldl
#cgo freebsd LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

// ck_attribute is CK_ATTRIBUTE as a Unix PKCS#11 module lays it out (no
// packing): what miekg/pkcs11 passes for every attribute.
typedef struct {
	unsigned long type;
	void *pValue;
	unsigned long ulValueLen;
} ck_attribute;

// The head of CK_FUNCTION_LIST: its CK_VERSION, then the functions in the
// order PKCS#11 fixes, C_GetAttributeValue the 25th.
typedef unsigned long (*ck_get_attribute_value)(unsigned long, unsigned long, ck_attribute *, unsigned long);
typedef struct {
	unsigned char major, minor;
	void *before[24];
	ck_get_attribute_value get_attribute_value;
} ck_function_list_head;
typedef unsigned long (*ck_get_function_list)(ck_function_list_head **);

#define CKR_GENERAL_ERROR 5UL

// get_attribute_value is C_GetAttributeValue of the module at path, which
// must be loaded already (by miekg/pkcs11): the same library, so the same
// sessions and objects.
static unsigned long get_attribute_value(const char *path, unsigned long session, unsigned long object,
		ck_attribute *tmpl, unsigned long count) {
	void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	if (lib == NULL) {
		return CKR_GENERAL_ERROR;
	}
	unsigned long rv = CKR_GENERAL_ERROR;
	ck_get_function_list get = (ck_get_function_list)dlsym(lib, "C_GetFunctionList");
	ck_function_list_head *list = NULL;
	if (get != NULL && get(&list) == 0 && list != NULL && list->get_attribute_value != NULL) {
		rv = list->get_attribute_value(session, object, tmpl, count);
	}
	dlclose(lib);
	return rv;
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

// attributeArray encodes attrs as the value of an attribute whose value is
// itself a template (CKA_UNWRAP_TEMPLATE, CKA_WRAP_TEMPLATE): an array of
// CK_ATTRIBUTE whose values are in C memory, which miekg/pkcs11 cannot
// make. The bytes hold pointers into that memory: call free once the
// PKCS#11 call that uses them has returned.
func attributeArray(attrs []*pkcs11.Attribute) (value []byte, free func()) {
	size := C.size_t(unsafe.Sizeof(C.ck_attribute{}))
	arr := (*C.ck_attribute)(C.calloc(C.size_t(len(attrs))+1, size))
	elems := unsafe.Slice(arr, len(attrs)+1)[:len(attrs)]
	var values []unsafe.Pointer
	for i, a := range attrs {
		elems[i]._type = C.ulong(a.Type)
		elems[i].ulValueLen = C.ulong(len(a.Value))
		if len(a.Value) > 0 {
			p := C.CBytes(a.Value)
			values = append(values, p)
			elems[i].pValue = p
		}
	}
	value = C.GoBytes(unsafe.Pointer(arr), C.int(C.size_t(len(attrs))*size))
	C.free(unsafe.Pointer(arr))
	return value, func() {
		for _, p := range values {
			C.free(p)
		}
	}
}

// unavailable is CK_UNAVAILABLE_INFORMATION, the length of a value that
// cannot be read.
const unavailable = ^C.ulong(0)

// templateAttribute reads an attribute whose value is a template
// (CKA_UNWRAP_TEMPLATE) whole. miekg/pkcs11 reads the array but not the
// values its elements point to, so the module is asked itself, in the
// steps PKCS#11 gives: the array's size, its types and value sizes, the
// values. An object without the attribute, or with an empty one, has none
// (nil). Called with t.mu held.
func (t *Token) templateAttribute(h pkcs11.ObjectHandle, typ uint) ([]*pkcs11.Attribute, error) {
	lockassert.Held(&t.mu)
	path := C.CString(t.cfg.Module)
	defer C.free(unsafe.Pointer(path))
	get := func(a *C.ck_attribute, n int) error {
		rv := C.get_attribute_value(path, C.ulong(t.sess), C.ulong(h), a, C.ulong(n))
		if rv != 0 {
			return pkcs11.Error(rv)
		}
		return nil
	}
	outer := (*C.ck_attribute)(C.calloc(1, C.size_t(unsafe.Sizeof(C.ck_attribute{}))))
	defer C.free(unsafe.Pointer(outer))
	outer._type = C.ulong(typ)
	if err := get(outer, 1); isCode(err, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("attribute 0x%x: %w", typ, err)
	}
	size := C.ulong(unsafe.Sizeof(C.ck_attribute{}))
	if outer.ulValueLen == unavailable || outer.ulValueLen < size {
		return nil, nil
	}
	n := int(outer.ulValueLen / size)
	arr := (*C.ck_attribute)(C.calloc(C.size_t(n), C.size_t(size)))
	defer C.free(unsafe.Pointer(arr))
	elems := unsafe.Slice(arr, n)
	outer.pValue, outer.ulValueLen = unsafe.Pointer(arr), C.ulong(n)*size
	if err := get(outer, 1); err != nil {
		return nil, fmt.Errorf("attribute 0x%x, its types: %w", typ, err)
	}
	for i := range elems {
		if l := elems[i].ulValueLen; l != unavailable && l > 0 {
			elems[i].pValue = C.calloc(1, C.size_t(l))
			defer C.free(elems[i].pValue)
		}
	}
	outer.ulValueLen = C.ulong(n) * size
	if err := get(outer, 1); err != nil {
		return nil, fmt.Errorf("attribute 0x%x, its values: %w", typ, err)
	}
	out := make([]*pkcs11.Attribute, n)
	for i, e := range elems {
		out[i] = &pkcs11.Attribute{Type: uint(e._type)}
		if e.pValue != nil && e.ulValueLen != unavailable {
			out[i].Value = C.GoBytes(e.pValue, C.int(e.ulValueLen))
		}
	}
	return out, nil
}
