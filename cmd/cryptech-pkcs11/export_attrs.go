package main

/*
#include "shim.h"
*/
import "C"

import (
	"math"
	"unsafe"

	"github.com/hsmkit/cryptech-backup/cmd/cryptech-pkcs11/internal/cryptoki"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// CK_ULONG is what package cryptoki takes it to be; neither may differ.
var (
	_ [cryptoki.ULongSize - unsafe.Sizeof(C.CK_ULONG(0))]byte
	_ [unsafe.Sizeof(C.CK_ULONG(0)) - cryptoki.ULongSize]byte
)

// Bounds on what a template makes the module copy: far beyond any key
// object's attributes, so that the module, not these, says what is wrong.
const (
	maxTemplate    = 1 << 12
	maxAttrValue   = 1 << 20
	maxAttrAnswer  = 1 << 30
	maxFindResults = 1 << 20
)

// attributes views a C template, refusing a NULL one that claims entries.
func attributes(p *C.CK_ATTRIBUTE, n C.CK_ULONG) ([]C.CK_ATTRIBUTE, cryptoki.RV) {
	switch {
	case n == 0:
		return nil, cryptoki.OK
	case p == nil:
		return nil, cryptoki.ArgumentsBad
	case n > maxTemplate:
		// More entries than the module knows attributes: some repeat,
		// or are unknown.
		return nil, cryptoki.TemplateInconsistent
	}
	return unsafe.Slice(p, int(n)), cryptoki.OK
}

// template copies a C template into Go. Values may be private key parts:
// the caller clears the copy (clearTemplate) when done.
func template(p *C.CK_ATTRIBUTE, n C.CK_ULONG) ([]cryptoki.Attribute, cryptoki.RV) {
	in, rv := attributes(p, n)
	if rv != cryptoki.OK {
		return nil, rv
	}
	out := make([]cryptoki.Attribute, len(in))
	for i, a := range in {
		switch {
		case a.ulValueLen > maxAttrValue:
			clearTemplate(out)
			return nil, cryptoki.AttributeValueInvalid
		case a.pValue == nil && a.ulValueLen != 0:
			clearTemplate(out)
			return nil, cryptoki.ArgumentsBad
		}
		if cryptoki.TemplateAttribute(uint(a._type)) {
			v, r := nestedTemplate(a)
			if r != cryptoki.OK {
				clearTemplate(out)
				return nil, r
			}
			out[i] = cryptoki.Attribute{Type: uint(a._type), Value: v}
			continue
		}
		out[i] = cryptoki.Attribute{Type: uint(a._type), Value: C.GoBytes(unsafe.Pointer(a.pValue), C.int(a.ulValueLen))}
	}
	return out, cryptoki.OK
}

// attributeSize is sizeof(CK_ATTRIBUTE), the unit of a template
// attribute's length.
const attributeSize = C.CK_ULONG(unsafe.Sizeof(C.CK_ATTRIBUTE{}))

// nestedTemplate reads the value of a template attribute (an array of
// CK_ATTRIBUTE, one level deep) as package cryptoki takes it: encoded by
// hsmapi.EncodeAttributes.
func nestedTemplate(a C.CK_ATTRIBUTE) ([]byte, cryptoki.RV) {
	if a.ulValueLen%attributeSize != 0 {
		return nil, cryptoki.AttributeValueInvalid
	}
	in := unsafe.Slice((*C.CK_ATTRIBUTE)(a.pValue), int(a.ulValueLen/attributeSize))
	list := make([]hsmapi.Attribute, len(in))
	seen := map[C.CK_ATTRIBUTE_TYPE]bool{}
	for i, e := range in {
		switch {
		case e.pValue == nil && e.ulValueLen != 0:
			return nil, cryptoki.ArgumentsBad
		case e._type > math.MaxUint32, seen[e._type], cryptoki.TemplateAttribute(uint(e._type)), e.ulValueLen > maxAttrValue:
			return nil, cryptoki.AttributeValueInvalid
		}
		seen[e._type] = true
		list[i] = hsmapi.Attribute{Type: uint32(e._type), Value: C.GoBytes(unsafe.Pointer(e.pValue), C.int(e.ulValueLen))}
	}
	return hsmapi.EncodeAttributes(list), cryptoki.OK
}

// answerTemplate writes a template attribute's value (encoded, as package
// cryptoki gives it) into the application's array of CK_ATTRIBUTE by the
// length protocol, one level down as at the top; small reports a buffer
// too short.
func answerTemplate(a *C.CK_ATTRIBUTE, encoded []byte) (small bool) {
	list, err := hsmapi.DecodeAttributes(encoded)
	if err != nil {
		a.ulValueLen = C.CK_UNAVAILABLE_INFORMATION
		return false
	}
	need := C.CK_ULONG(len(list)) * attributeSize
	switch {
	case a.pValue == nil:
		a.ulValueLen = need
		return false
	case a.ulValueLen < need:
		a.ulValueLen = C.CK_UNAVAILABLE_INFORMATION
		return true
	}
	out := unsafe.Slice((*C.CK_ATTRIBUTE)(a.pValue), len(list))
	for i, e := range list {
		o := &out[i]
		o._type = C.CK_ATTRIBUTE_TYPE(e.Type)
		switch {
		case o.pValue == nil:
			o.ulValueLen = C.CK_ULONG(len(e.Value))
		case o.ulValueLen < C.CK_ULONG(len(e.Value)):
			o.ulValueLen = C.CK_UNAVAILABLE_INFORMATION
			small = true
		default:
			o.ulValueLen = C.CK_ULONG(copy(unsafe.Slice((*byte)(o.pValue), len(e.Value)), e.Value))
		}
	}
	a.ulValueLen = need
	return small
}

func clearTemplate(t []cryptoki.Attribute) {
	for _, a := range t {
		clear(a.Value)
	}
}

//export goGetAttributeValue
func goGetAttributeValue(h C.CK_SESSION_HANDLE, obj C.CK_OBJECT_HANDLE, p *C.CK_ATTRIBUTE, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	in, r := attributes(p, n)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	bufs := make([]cryptoki.AttributeBuffer, len(in))
	for i, a := range in {
		bufs[i].Type = uint(a._type)
		switch {
		case cryptoki.TemplateAttribute(bufs[i].Type):
			// Read whole, then answered one level down (answerTemplate).
			bufs[i].Buf = make([]byte, hsmapi.MaxAttributeSize)
		case a.pValue != nil:
			// The application's own buffer, written in place.
			bufs[i].Buf = unsafe.Slice((*byte)(a.pValue), min(a.ulValueLen, maxAttrAnswer))
		}
	}
	r = module.GetAttributeValue(uint(h), uint(obj), bufs)
	switch r {
	case cryptoki.OK, cryptoki.AttributeSensitive, cryptoki.AttributeTypeInvalid, cryptoki.BufferTooSmall:
		small := false
		for i := range in {
			b := bufs[i]
			if cryptoki.TemplateAttribute(b.Type) && b.Len != cryptoki.Unavailable {
				small = answerTemplate(&in[i], b.Buf[:b.Len]) || small
				continue
			}
			in[i].ulValueLen = C.CK_ULONG(b.Len)
		}
		if r == cryptoki.OK && small {
			r = cryptoki.BufferTooSmall
		}
	}
	return C.CK_RV(r)
}

//export goSetAttributeValue
func goSetAttributeValue(h C.CK_SESSION_HANDLE, obj C.CK_OBJECT_HANDLE, p *C.CK_ATTRIBUTE, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	t, r := template(p, n)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	defer clearTemplate(t)
	return C.CK_RV(module.SetAttributeValue(uint(h), uint(obj), t))
}

//export goFindObjectsInit
func goFindObjectsInit(h C.CK_SESSION_HANDLE, p *C.CK_ATTRIBUTE, n C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	t, r := template(p, n)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	defer clearTemplate(t)
	return C.CK_RV(module.FindObjectsInit(uint(h), t))
}

//export goFindObjects
func goFindObjects(h C.CK_SESSION_HANDLE, out *C.CK_OBJECT_HANDLE, max C.CK_ULONG, count *C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	if count == nil || out == nil && max != 0 {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	found, r := module.FindObjects(uint(h), int(min(max, maxFindResults)))
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	if len(found) > 0 {
		dst := unsafe.Slice(out, len(found))
		for i, o := range found {
			dst[i] = C.CK_OBJECT_HANDLE(o)
		}
	}
	*count = C.CK_ULONG(len(found))
	return C.CKR_OK
}

//export goFindObjectsFinal
func goFindObjectsFinal(h C.CK_SESSION_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	return C.CK_RV(module.FindObjectsFinal(uint(h)))
}

//export goCreateObject
func goCreateObject(h C.CK_SESSION_HANDLE, p *C.CK_ATTRIBUTE, n C.CK_ULONG, obj *C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	if obj == nil {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	t, r := template(p, n)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	defer clearTemplate(t)
	o, r := module.CreateObject(uint(h), t)
	if r == cryptoki.OK {
		*obj = C.CK_OBJECT_HANDLE(o)
	}
	return C.CK_RV(r)
}

//export goCopyObject
func goCopyObject(h C.CK_SESSION_HANDLE, obj C.CK_OBJECT_HANDLE, p *C.CK_ATTRIBUTE, n C.CK_ULONG, newObj *C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	if newObj == nil {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	t, r := template(p, n)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	defer clearTemplate(t)
	o, r := module.CopyObject(uint(h), uint(obj), t)
	if r == cryptoki.OK {
		*newObj = C.CK_OBJECT_HANDLE(o)
	}
	return C.CK_RV(r)
}

//export goDestroyObject
func goDestroyObject(h C.CK_SESSION_HANDLE, obj C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	return C.CK_RV(module.DestroyObject(uint(h), uint(obj)))
}

//export goGetObjectSize
func goGetObjectSize(h C.CK_SESSION_HANDLE, obj C.CK_OBJECT_HANDLE, size *C.CK_ULONG) (rv C.CK_RV) {
	defer guard(&rv)
	n, r := module.ObjectSize(uint(h), uint(obj))
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	if size == nil {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	*size = C.CK_ULONG(n)
	return C.CKR_OK
}

// keyGenMechanism reads a CK_MECHANISM. (The smallest conversion that
// C_GenerateKeyPair needs; the mechanism conversion of the signing
// functions is export_mech.go's, and this may go there.)
func keyGenMechanism(m *C.CK_MECHANISM) (uint, []byte, cryptoki.RV) {
	switch {
	case m == nil, m.pParameter == nil && m.ulParameterLen != 0:
		return 0, nil, cryptoki.ArgumentsBad
	case m.ulParameterLen > maxAttrValue:
		return 0, nil, cryptoki.MechanismParamInvalid
	}
	return uint(m.mechanism), C.GoBytes(unsafe.Pointer(m.pParameter), C.int(m.ulParameterLen)), cryptoki.OK
}

//export goGenerateKeyPair
func goGenerateKeyPair(h C.CK_SESSION_HANDLE, mech *C.CK_MECHANISM,
	pubP *C.CK_ATTRIBUTE, pubN C.CK_ULONG, privP *C.CK_ATTRIBUTE, privN C.CK_ULONG,
	pubH, privH *C.CK_OBJECT_HANDLE) (rv C.CK_RV) {
	defer guard(&rv)
	// Checked before anything is made: a key whose handles cannot be
	// returned would be a key no one knows of.
	if pubH == nil || privH == nil {
		return C.CK_RV(cryptoki.ArgumentsBad)
	}
	mt, param, r := keyGenMechanism(mech)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	pubT, r := template(pubP, pubN)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	defer clearTemplate(pubT)
	privT, r := template(privP, privN)
	if r != cryptoki.OK {
		return C.CK_RV(r)
	}
	defer clearTemplate(privT)
	pub, priv, r := module.GenerateKeyPair(uint(h), mt, param, pubT, privT)
	if r == cryptoki.OK {
		*pubH, *privH = C.CK_OBJECT_HANDLE(pub), C.CK_OBJECT_HANDLE(priv)
	}
	return C.CK_RV(r)
}
