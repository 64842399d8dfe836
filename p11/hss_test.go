//go:build cgo

package p11

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/transfertest"
)

// testLevels are small HSS parameters, two levels that differ so that a
// token's report of each level is checked: 1024 signatures.
var testLevels = []hashsig.Level{
	{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8},
	{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4},
}

// uniformLevels are testLevels for an HSM reached over libhal's RPC, whose
// PKEY_GENERATE_HASHSIG gives every level the same types.
var uniformLevels = []hashsig.Level{testLevels[0], testLevels[0]}

// hsmSplit follows one HSS key through a transfer: as made on the source,
// the signatures it had left when it was exported, and the index of the
// one it made before.
type hsmSplit struct {
	key    hsmapi.KeyInfo
	before uint64
	first  uint64
}

// newHSSKey makes an exportable HSS key on src, described as it was asked
// for, which signs once.
func newHSSKey(t *testing.T, src hsmapi.Token, levels []hashsig.Level) hsmSplit {
	t.Helper()
	k := generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: levels, Flags: exportable, Label: "hss"})
	// Over RPC only the top level's types are known: the public key has
	// them, and libhal's key has no attribute for the others.
	described := k.Hashsig != nil && (slices.Equal(k.Hashsig.Levels, levels) ||
		slices.Equal(levels, uniformLevels) && slices.Equal(k.Hashsig.Levels, levels[:1]))
	if k.Type != hsmapi.KeyTypeHashsigPrivate || !described || k.Hashsig.L != 2 {
		t.Fatalf("HSS key described as %v %+v", k.Type, k.Hashsig)
	}
	h := hsmSplit{key: k, first: hssSign(t, src, k, "before the export")}
	info, err := src.Key(ctx, k.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if h.before = info.Hashsig.Remaining; h.before != 1023 {
		t.Fatalf("%d signatures left after one of 1024", h.before)
	}
	return h
}

// hssSign signs msg with the key on tok, checks that the key's public key
// verifies it, and returns the signature's index.
func hssSign(t *testing.T, tok hsmapi.Token, k hsmapi.KeyInfo, msg string) uint64 {
	t.Helper()
	sig, err := tok.Sign(ctx, k.UUID, []byte(msg), crypto.Hash(0))
	if err != nil {
		t.Fatalf("sign with HSS key %s: %v", k.UUID, err)
	}
	if err := hsmapi.VerifySignature(k.PublicKey, []byte(msg), sig, crypto.Hash(0)); err != nil {
		t.Fatalf("HSS signature fails under the source's public key: %v", err)
	}
	q, err := hashsig.SignatureIndex(sig)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// storedCount is how many keys a token holds, and, on a PKCS#11 token,
// how many objects.
func storedCount(t *testing.T, tok hsmapi.Token) string {
	t.Helper()
	keys, err := tok.Keys(ctx, hsmapi.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	objs := 0
	if p, ok := tok.(*Token); ok {
		objs = objectCount(t, p)
	}
	return fmt.Sprintf("%d keys, %d objects", len(keys), objs)
}

// refusedTampered imports b with a byte of its HSS key's wrapped key, KEK
// or tag flipped: each is refused as undecryptable and dst holds nothing
// more. The untampered bundle imports after that (the caller does): a
// refused part is not recorded as received.
func (h hsmSplit) refusedTampered(t *testing.T, dst hsmapi.Token, b *backup.Bundle) {
	t.Helper()
	i := slices.IndexFunc(b.Keys, func(k backup.BundleKey) bool { return k.UUID == h.key.UUID.String() })
	if i < 0 {
		t.Fatal("the HSS key is not in the bundle")
	}
	flip := func(v []byte) []byte { return append(bytes.Clone(v[:len(v)-1]), v[len(v)-1]^1) }
	before := storedCount(t, dst)
	for what, mutate := range map[string]func(k *backup.BundleKey){
		"wrapped key": func(k *backup.BundleKey) { k.PKCS8 = flip(k.PKCS8) },
		"KEK":         func(k *backup.BundleKey) { k.KEK = flip(k.KEK) },
		"tag":         func(k *backup.BundleKey) { k.Tag = flip(k.Tag) },
	} {
		c := *b
		c.Keys = slices.Clone(b.Keys)
		mutate(&c.Keys[i])
		if _, err := backup.Import(ctx, dst, &c, backup.ImportOptions{}); !errors.Is(err, hsmapi.ErrDecryption) {
			t.Errorf("HSS key with a flipped byte in its %s: %v", what, err)
		}
	}
	if after := storedCount(t, dst); after != before {
		t.Errorf("refused bundles left %s, had %s", after, before)
	}
}

// arrives checks the HSS key on both sides after the transfer: the
// destination holds it under its UUID with its public key and levels, the
// two parts hold the signatures the key had between them, and signing on
// both never repeats an index (the source's below the destination's), each
// signature verifying under the source's public key.
func (h hsmSplit) arrives(t *testing.T, src, dst hsmapi.Token) {
	t.Helper()
	s, err := src.Key(ctx, h.key.UUID)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dst.Key(ctx, h.key.UUID)
	if err != nil {
		t.Fatalf("the HSS key did not arrive: %v", err)
	}
	if d.Type != hsmapi.KeyTypeHashsigPrivate || !hsmapi.SamePublicKey(d.PublicKey, h.key.PublicKey) || !slices.Equal(d.Hashsig.Levels, h.key.Hashsig.Levels) || d.Label != "hss" {
		t.Fatalf("the HSS key arrived as %v %q %+v", d.Type, d.Label, d.Hashsig)
	}
	if s.Hashsig.Remaining == 0 || d.Hashsig.Remaining == 0 || s.Hashsig.Remaining+d.Hashsig.Remaining != h.before {
		t.Errorf("the parts hold %d and %d signatures; the key had %d", s.Hashsig.Remaining, d.Hashsig.Remaining, h.before)
	}
	srcQ, dstQ := []uint64{h.first}, []uint64{}
	for i := range 3 {
		srcQ = append(srcQ, hssSign(t, src, h.key, fmt.Sprint("source ", i)))
		dstQ = append(dstQ, hssSign(t, dst, h.key, fmt.Sprint("destination ", i)))
	}
	if slices.Max(srcQ) >= slices.Min(dstQ) {
		t.Errorf("source signed with indexes %v, destination with %v: the ranges overlap", srcQ, dstQ)
	}
	for _, q := range dstQ {
		if slices.Contains(srcQ, q) {
			t.Errorf("index %d used on both sides", q)
		}
	}
}

// TestHSSOnSoftHSM2: a token without CKM_HSS is asked for no HSS key: one
// is neither made there nor imported (hsmapi.ErrUnsupported), and the
// refused import stores nothing.
func TestHSSOnSoftHSM2(t *testing.T) {
	toks := newTokens(t, "emulated", "softhsm")
	src, dst := toks[0], toks[1]
	if _, err := dst.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: testLevels, Flags: exportable}); !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Errorf("HSS key made on SoftHSM2: %v", err)
	}
	generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: testLevels, Flags: exportable, Label: "hss"})
	generate(t, src, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: exportable, Label: "ec"})
	_, b := transfertest.ExportFor(t, src, dst)
	before := storedCount(t, dst)
	if _, err := backup.Import(ctx, dst, b, backup.ImportOptions{}); !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Errorf("HSS key imported into SoftHSM2: %v", err)
	}
	if after := storedCount(t, dst); after != before {
		t.Errorf("the refused import left %s, had %s", after, before)
	}
}
