package hsm

import (
	"errors"
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

// A damaged key record reaches callers as the contract's ErrDamaged, not as
// the keystore's error, which no package above the HSM knows.
func TestDamagedKeyIsContractError(t *testing.T) {
	h, dir := newTestHSM(t)
	s := login(t, h)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: signFlags})
	s.Close()
	h.Close()
	damageBlockOf(t, dir, keystore.ID(k.UUID), 300, 0x01)
	h, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s = login(t, h)
	_, err = s.Key(ctx, k.UUID)
	if !errors.Is(err, hsmapi.ErrDamaged) || errors.Is(err, keystore.ErrDamaged) {
		t.Fatalf("Key of a damaged record: %v; want hsmapi.ErrDamaged and no keystore error", err)
	}
	if blocks, err := s.DamagedBlocks(ctx); err != nil || len(blocks) != 1 {
		t.Errorf("DamagedBlocks = %v, %v; want the one block", blocks, err)
	}
}

// A write the keystore refuses because a damaged block names the record's
// ID (here a PIN's) reaches callers as the contract's ErrDamaged too, as
// reads do: over RPC both are KEYSTORE_BAD_CRC.
func TestDamagedRecordRefusesWritesWithContractError(t *testing.T) {
	h, dir := newTestHSM(t)
	h.Close()
	damageBlockOf(t, dir, pinID(hsmapi.UserSO), 60, 0x01)
	h, err := Open(dir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s := login(t, h)
	err = s.SetPIN(ctx, hsmapi.UserSO, []byte("new-so-pin-444"))
	if !errors.Is(err, hsmapi.ErrDamaged) || errors.Is(err, keystore.ErrDamaged) {
		t.Fatalf("SetPIN over a damaged PIN record: %v; want hsmapi.ErrDamaged and no keystore error", err)
	}
}
