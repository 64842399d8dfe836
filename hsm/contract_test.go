package hsm

import (
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/keystore"
)

// The contract states the emulator's limits without importing it: they
// must agree.
func TestContractLimitsAgree(t *testing.T) {
	if got, want := hsmapi.MaxKeyAttributes, keystore.MaxDataSize/8; got != want {
		t.Errorf("hsmapi.MaxKeyAttributes = %d, the keystore holds %d", got, want)
	}
}
