package frontend_test

import (
	"bytes"
	"testing"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/frontend"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// TestImportLimitsFitABundle checks that the default limits let one batch
// carry a bundle's worth of RSA-4096 keys: backup sends a whole bundle as
// one batch. The sizes are those of an RSA-4096 key exported for an
// RSA-4096 KEKEK with OAEP and a binding, with the longest label.
func TestImportLimitsFitABundle(t *testing.T) {
	if frontend.DefaultLimits.BatchKeys < backup.MaxKeys {
		t.Errorf("a batch holds %d keys, a bundle %d", frontend.DefaultLimits.BatchKeys, backup.MaxKeys)
	}
	key := hsmapi.ImportRequest{UUID: hsmapi.UUID{1}, Label: string(bytes.Repeat([]byte("l"), hsmapi.MaxRawLabelLength)),
		Encryption: hsmapi.KEKEncryptions[0], Wrapped: hsmapi.WrappedKey{EncryptedKey: make([]byte, 2405), EncryptedKEK: make([]byte, 582), Tag: make([]byte, 40)},
		Binding: make([]byte, 62), PublicKey: make([]byte, 550)}
	// The attributes of the largest bundle (cmd/cryptech-backup's
	// TestMaxBundleHoldsLargestBundle): about 27 PKCS#11 attributes, CKA_ID
	// and CKA_SUBJECT of 1,024 bytes, and the public object's at 1,024.
	attrs := []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: make([]byte, 1024)}, {Type: hsmapi.CKASubject, Value: make([]byte, 1024)},
		{Type: hsmapi.AttributePublicObject, Value: make([]byte, 1024)}}
	for i := range 24 {
		attrs = append(attrs, hsmapi.Attribute{Type: hsmapi.CKASign + uint32(i), Value: []byte{1}})
	}
	key.Attributes = attrs
	if need := backup.MaxKeys * frontend.ImportCost(key); need > frontend.DefaultLimits.BatchBytes {
		t.Errorf("%d RSA-4096 keys count %d bytes, more than the %d a connection may hold", backup.MaxKeys, need, frontend.DefaultLimits.BatchBytes)
	}
}
