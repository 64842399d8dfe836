//go:build cgo

package p11

/*
#include <stdlib.h>
#include <string.h>

// ck_attribute is CK_ATTRIBUTE as a Unix PKCS#11 module lays it out (no
// packing): what miekg/pkcs11 passes for every attribute.
typedef struct {
	unsigned long type;
	void *pValue;
	unsigned long ulValueLen;
} ck_attribute;
*/
import "C"

import (
	"unsafe"

	"github.com/miekg/pkcs11"
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
