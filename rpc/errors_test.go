package rpc

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// A refused HSS part goes over the wire as libhal's answer to a key it has
// already, and comes back as the error callers test for that.
func TestHashsigRangeUsedStatus(t *testing.T) {
	err := fmt.Errorf("import: %w: key 0 (...): ...", hsmapi.ErrHashsigRangeUsed)
	if st := statusOf(err); st != wire.StatusKeyNameInUse {
		t.Fatalf("status %v, want %v", st, wire.StatusKeyNameInUse)
	}
	if back := errorOf(statusOf(err)); !errors.Is(back, hsmapi.ErrKeyNameInUse) || !errors.Is(back, wire.StatusKeyNameInUse) {
		t.Errorf("the client's error %v", back)
	}
}

// A keystore record that cannot be read goes over the wire as libhal's
// KEYSTORE_BAD_CRC, and comes back as the HSM's error for it.
func TestDamagedStatus(t *testing.T) {
	err := fmt.Errorf("key 0011: %w", hsmapi.ErrDamaged)
	if st := statusOf(err); st != wire.StatusKeystoreBadCRC {
		t.Fatalf("status %v, want %v", st, wire.StatusKeystoreBadCRC)
	}
	if back := errorOf(wire.StatusKeystoreBadCRC); !errors.Is(back, hsmapi.ErrDamaged) {
		t.Errorf("the client's error %v", back)
	}
}
