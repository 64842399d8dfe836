package rpc

import (
	"testing"

	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// One table answers every function: libhal's 32 and the extensions, and
// nothing else.
func TestHandlersCoverEveryFunction(t *testing.T) {
	want := map[wire.Func]bool{}
	for f := range wire.Func(32) {
		want[f] = true
	}
	for _, f := range []wire.Func{wire.FuncExtCapabilities, wire.FuncExtExport, wire.FuncExtImportBegin, wire.FuncExtImportAdd,
		wire.FuncExtImportCommit, wire.FuncExtDamaged, wire.FuncExtGetAttributes, wire.FuncExtImportAdd2, wire.FuncExtIdentity,
		wire.FuncExtGenerateSecret, wire.FuncExtWrapKey, wire.FuncExtUnwrapKey, wire.FuncExtEncrypt, wire.FuncExtDecrypt, wire.FuncExtSetTrusted,
		wire.FuncExtRefusal, wire.FuncExtLoadSecret, wire.FuncExtTrustCandidate,
		wire.FuncExtMasterKeyStatus, wire.FuncExtMasterKeyBackup, wire.FuncExtMasterKeyZeroize, wire.FuncExtRestoreBegin,
		wire.FuncExtRestoreSubmit, wire.FuncExtRestoreAbort, wire.FuncExtMasterKeyRotate, wire.FuncExtMasterKeyRetire,
		wire.FuncExtUpload, wire.FuncExtDownload, wire.FuncExtStoreKeys, wire.FuncExtCheckStored, wire.FuncExtRestoreKeys,
		wire.FuncExtListKeys} {
		want[f] = true
	}
	for f := range want {
		if handlers[f] == nil {
			t.Errorf("no handler for %v (%#x)", f, uint32(f))
		}
	}
	for f := range handlers {
		if !want[f] {
			t.Errorf("a handler for %v (%#x), which is no function", f, uint32(f))
		}
	}
}
