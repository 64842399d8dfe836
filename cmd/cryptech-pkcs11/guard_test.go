package main

import (
	"testing"

	"github.com/hsmkit/cryptech-backup/cmd/cryptech-pkcs11/internal/cryptoki"
)

func TestGuardRecovers(t *testing.T) {
	call := func() (rv uint64) {
		defer guard(&rv)
		var m map[string]int
		m["boom"]++ // a nil map write panics
		return uint64(cryptoki.OK)
	}
	if rv := call(); rv != uint64(cryptoki.GeneralError) {
		t.Fatalf("a panic returned %#x, want CKR_GENERAL_ERROR", rv)
	}
}
