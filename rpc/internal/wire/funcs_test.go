package wire

import (
	"reflect"
	"strings"
	"testing"
)

// referenceFuncs is the function column of REFERENCE.md's table, in order.
const referenceFuncs = `GET_VERSION GET_RANDOM SET_PIN LOGIN LOGOUT LOGOUT_ALL IS_LOGGED_IN
HASH_GET_DIGEST_LEN HASH_GET_DIGEST_ALGORITHM_ID HASH_GET_ALGORITHM HASH_INITIALIZE
HASH_UPDATE HASH_FINALIZE PKEY_LOAD PKEY_OPEN PKEY_GENERATE_RSA PKEY_GENERATE_EC
PKEY_CLOSE PKEY_DELETE PKEY_GET_KEY_TYPE PKEY_GET_KEY_FLAGS PKEY_GET_PUBLIC_KEY_LEN
PKEY_GET_PUBLIC_KEY PKEY_SIGN PKEY_VERIFY PKEY_MATCH PKEY_GET_KEY_CURVE
PKEY_SET_ATTRIBUTES PKEY_GET_ATTRIBUTES PKEY_EXPORT PKEY_IMPORT PKEY_GENERATE_HASHSIG`

func TestFuncNames(t *testing.T) {
	names := strings.Fields(referenceFuncs)
	if len(names) != 32 || len(funcTable) != 32 {
		t.Fatalf("%d names, %d table entries", len(names), len(funcTable))
	}
	for i, name := range names {
		if got := Func(i).String(); got != name {
			t.Errorf("Func(%d) = %s, want %s", i, got, name)
		}
	}
	if got := Func(32).String(); got != "FUNC_32" {
		t.Errorf("Func(32) = %s", got)
	}
	// Spot checks of the Go names.
	if FuncPkeySign != 23 || FuncPkeyMatch != 25 || FuncPkeyGetKeyCurve != 26 || FuncPkeyGenerateHashsig != 31 {
		t.Error("function constants out of order")
	}
}

func TestNewRequestResponse(t *testing.T) {
	seen := map[reflect.Type]Func{}
	for f := range Func(32) {
		req, ok1 := NewRequest(f)
		resp, ok2 := NewResponse(f)
		if !ok1 || !ok2 || req == nil || resp == nil {
			t.Fatalf("%v: NewRequest %v, NewResponse %v", f, ok1, ok2)
		}
		for _, a := range []Args{req, resp} {
			typ := reflect.TypeOf(a)
			if g, dup := seen[typ]; dup {
				t.Errorf("%v and %v share %v", g, f, typ)
			}
			seen[typ] = f
			if !reflect.ValueOf(a).Elem().IsZero() {
				t.Errorf("%v: %T is not zero", f, a)
			}
		}
		name := strings.ReplaceAll(f.String(), "_", "")
		for _, a := range []Args{req, resp} {
			typ := strings.ToUpper(reflect.TypeOf(a).Elem().Name())
			if !strings.HasPrefix(typ, name) {
				t.Errorf("%v has %T", f, a)
			}
		}
		// Two calls give two values.
		again, _ := NewRequest(f)
		if reflect.ValueOf(again).Pointer() == reflect.ValueOf(req).Pointer() && reflect.TypeOf(req).Elem().Size() > 0 {
			t.Errorf("%v: NewRequest returns a shared value", f)
		}
	}
	for _, f := range []Func{32, 33, 0x10000, 0xFFFFFFFF} {
		if a, ok := NewRequest(f); ok || a != nil {
			t.Errorf("NewRequest(%d) = %v, %v", f, a, ok)
		}
		if a, ok := NewResponse(f); ok || a != nil {
			t.Errorf("NewResponse(%d) = %v, %v", f, a, ok)
		}
	}
}
