package rpc

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
)

// A refused HSS part goes over the wire as libhal's answer to a key it has
// already, and comes back as the error callers test for that.
func TestHashsigRangeUsedStatus(t *testing.T) {
	err := fmt.Errorf("import: %w: key 0 (...): ...", hsm.ErrHashsigRangeUsed)
	if st := statusOf(err); st != wire.StatusKeyNameInUse {
		t.Fatalf("status %v, want %v", st, wire.StatusKeyNameInUse)
	}
	if back := errorOf(statusOf(err)); !errors.Is(back, hsm.ErrKeyNameInUse) || !errors.Is(back, wire.StatusKeyNameInUse) {
		t.Errorf("the client's error %v", back)
	}
}
