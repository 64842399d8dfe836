package hsm

import (
	"crypto"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

var kwpMech = hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrapKWP}

// An HSS key wrapped with C_WrapKey leaves as the transfer exports it: the
// source keeps the lower half of its range, in flash before the blob is
// returned, the destination stores the upper half as an import does, and
// the two never sign with one index.
func TestWrapHSSSplitsLikeExport(t *testing.T) {
	srcHSM, srcDir := newTestHSM(t)
	dstHSM, _ := newTestHSM(t)
	src, dst := login(t, srcHSM), login(t, dstHSM)
	value := make([]byte, 32)
	if _, err := rand.Read(value); err != nil {
		t.Fatal(err)
	}
	srcKEK := knownAES(t, src, value, wrapFlags)
	dstKEK := knownAES(t, dst, value, wrapFlags)
	k := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	signHSS(t, src, k.UUID, "before")
	remaining := func(s *Session, id hsmapi.UUID) uint64 {
		t.Helper()
		info, err := s.Key(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return info.Hashsig.Remaining
	}
	before := remaining(src, k.UUID)

	// Refused mechanisms take nothing from the key.
	for _, m := range []hsmapi.WrapMechanism{{Mechanism: hsmapi.MechAESKeyWrap}} {
		if _, err := src.WrapKey(ctx, srcKEK.UUID, k.UUID, m); !errors.Is(err, hsmapi.ErrUnsupportedKey) {
			t.Errorf("wrap under 0x%x: %v, want ErrUnsupportedKey", uint32(m.Mechanism), err)
		}
	}
	rk := loadRSA(t, src, hsmapi.FlagKeyEncipherment)
	if _, err := src.WrapKey(ctx, rk.UUID, k.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechRSAAESKeyWrap, OAEP: oaepSHA256, AESKeyBits: 256}); !errors.Is(err, hsmapi.ErrUnsupportedKey) {
		t.Errorf("wrap under CKM_RSA_AES_KEY_WRAP: %v, want ErrUnsupportedKey", err)
	}
	if got := remaining(src, k.UUID); got != before {
		t.Fatalf("refused wraps took signatures: %d remaining, was %d", got, before)
	}

	blob, err := src.WrapKey(ctx, srcKEK.UUID, k.UUID, kwpMech)
	if err != nil {
		t.Fatal(err)
	}
	kept := remaining(src, k.UUID)
	if kept >= before || kept == 0 {
		t.Fatalf("source has %d signatures left after the wrap, had %d", kept, before)
	}
	// The reduced range is in flash already: an HSM that stops now (a
	// crash after the blob left) comes back with it.
	src.Close()
	srcHSM.Close()
	srcHSM, err = Open(srcDir, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer srcHSM.Close()
	src = login(t, srcHSM)
	if got := remaining(src, k.UUID); got != kept {
		t.Fatalf("after restart the source has %d signatures left, want %d", got, kept)
	}

	hssReq := hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeHashsigPrivate, Flags: signFlags, Label: "part"}
	count := func() int {
		keys, err := dst.Keys(ctx, hsmapi.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	n := count()
	for i := range blob {
		bad := append([]byte(nil), blob...)
		bad[i] ^= 0x40
		if _, err := dst.UnwrapKey(ctx, dstKEK.UUID, kwpMech, bad, hssReq); err == nil {
			t.Fatalf("blob with byte %d flipped unwrapped", i)
		}
	}
	if _, err := dst.UnwrapKey(ctx, dstKEK.UUID, kwpMech, blob, hsmapi.UnwrapRequest{Type: hsmapi.KeyTypeECPrivate, Flags: signFlags}); !errors.Is(err, hsmapi.ErrBadArguments) {
		t.Errorf("HSS blob unwrapped as an EC key: %v", err)
	}
	if _, err := dst.UnwrapKey(ctx, dstKEK.UUID, hsmapi.WrapMechanism{Mechanism: hsmapi.MechAESKeyWrap}, blob, hssReq); err == nil {
		t.Error("HSS key unwrapped with CKM_AES_KEY_WRAP")
	}
	if got := count(); got != n {
		t.Fatalf("refused unwraps stored %d keys", got-n)
	}

	part, err := dst.UnwrapKey(ctx, dstKEK.UUID, kwpMech, blob, hssReq)
	if err != nil {
		t.Fatal(err)
	}
	if !hsmapi.SamePublicKey(part.PublicKey, k.PublicKey) || part.Type != hsmapi.KeyTypeHashsigPrivate {
		t.Fatalf("unwrapped %v with another public key", part.Type)
	}
	if a, err := dst.Attributes(ctx, part.UUID, []uint32{hsmapi.CKALocal}); err != nil || isTrue(a[0].Value) {
		t.Errorf("unwrapped HSS key CKA_LOCAL: %v %v", a, err)
	}
	if part.Hashsig.Remaining+kept != before {
		t.Errorf("parts hold %d + %d signatures, the key had %d", kept, part.Hashsig.Remaining, before)
	}
	// The same part again is refused: it was received before.
	if _, err := dst.UnwrapKey(ctx, dstKEK.UUID, kwpMech, blob, hssReq); !errors.Is(err, hsmapi.ErrHashsigRangeUsed) {
		t.Errorf("same part unwrapped twice: %v", err)
	}
	pub, err := hashsig.ParsePKIXPublicKey(k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]string{}
	for i := range 3 {
		for who, s := range map[string]*Session{"source": src, "destination": dst} {
			id := k.UUID
			if s == dst {
				id = part.UUID
			}
			sig := signHSS(t, s, id, "msg")
			if err := pub.Verify([]byte("msg"), sig); err != nil {
				t.Fatalf("%s signature %d does not verify under the source's public key: %v", who, i, err)
			}
			q := sigIndex(t, sig)
			if other, dup := seen[q]; dup {
				t.Fatalf("index %d used by the %s and the %s", q, other, who)
			}
			seen[q] = who
		}
	}
}

// TestHashsigWrapSurvivesPowerCutAtEveryWrite cuts power at each flash
// write of C_WrapKey of an HSS key: afterwards the key holds its whole
// range (the wrap failed, no blob left) or the half it keeps (a blob may
// have left), never anything between, and it signs.
func TestHashsigWrapSurvivesPowerCutAtEveryWrite(t *testing.T) {
	base, _ := newTestHSM(t)
	s := login(t, base)
	kek := knownAES(t, s, make([]byte, 32), wrapFlags|hsmapi.FlagToken)
	k := generate(t, s, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: twoLevels, Flags: signFlags | hsmapi.FlagExportable})
	info, err := s.Key(ctx, k.UUID)
	if err != nil {
		t.Fatal(err)
	}
	whole := info.Hashsig.Remaining
	eachPowerCut(t, "wrap", base, func(s *Session) error {
		_, err := s.WrapKey(ctx, kek.UUID, k.UUID, kwpMech)
		return err
	}, func(c powerCut) {
		info, err := c.s.Key(ctx, k.UUID)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		switch left := info.Hashsig.Remaining; {
		case left == whole && !c.last, left == whole/2:
		default:
			t.Errorf("%s: %d signatures left of %d", c.name, left, whole)
		}
		sig := signHSS(t, c.s, k.UUID, "after the cut")
		if err := hsmapi.VerifySignature(k.PublicKey, []byte("after the cut"), sig, crypto.Hash(0)); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	})
}
