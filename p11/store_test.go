//go:build cgo

package p11

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/storefile"
)

// TestStoreRestoreOnToken: keys stored on SoftHSM2 (with unusual attribute
// sets) and on the emulated HSM's module under the token's storage key,
// deleted, and restored, have again every attribute of both objects they
// had, and sign so that their original public keys verify. The storage key
// is a token key that only wraps and unwraps and never leaves the token.
// A file with any field changed, another token's or the emulated HSM's
// own restores nothing; a key that is not extractable and an HSS key are
// refused whole.
func TestStoreRestoreOnToken(t *testing.T) {
	for _, kind := range []string{"softhsm", "module"} {
		t.Run(kind, func(t *testing.T) {
			toks := newTokens(t, kind, kind)
			tok, other := toks[0].(*Token), toks[1].(*Token)
			var ids []hsmapi.UUID
			if kind == "softhsm" {
				for _, m := range unusual {
					ids = append(ids, makeKey(t, tok, m))
				}
			} else {
				for _, req := range testKeys {
					ids = append(ids, generate(t, tok, req).UUID)
				}
			}
			infos := map[hsmapi.UUID]hsmapi.KeyInfo{}
			dumps := map[hsmapi.UUID]keyDump{}
			for _, id := range ids {
				k, err := tok.Key(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				infos[id], dumps[id] = k, dumpKey(t, tok, id)
			}

			file, err := tok.StoreKeys(ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			f, err := storefile.Parse(file)
			if err != nil {
				t.Fatal(err)
			}
			serial, _ := tok.tokenInfo(t)
			if !f.Token || f.HSM != serial || len(f.Keys) != len(ids) {
				t.Fatalf("file of token %v, serial %q (want %q), %d keys", f.Token, f.HSM, serial, len(f.Keys))
			}
			checkStorageKey(t, tok, f.CheckValue)
			if _, err := tok.CheckStoredKeys(ctx, file); err != nil {
				t.Fatal(err)
			}
			// A second store uses the same storage key.
			again, err := tok.StoreKeys(ctx, ids[:1])
			if err != nil {
				t.Fatal(err)
			}
			if g, _ := storefile.Parse(again); g.CheckValue != f.CheckValue {
				t.Errorf("second store under storage key %x, first under %x", g.CheckValue, f.CheckValue)
			}
			for _, id := range ids {
				if err := tok.DeleteKey(ctx, id); err != nil {
					t.Fatal(err)
				}
			}

			before := objectCount(t, tok)
			for name, edit := range tokenFileEdits {
				g, _ := storefile.Parse(file)
				g.Keys = slices.Clone(g.Keys)
				edit(g)
				data, err := g.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				_, err = tok.RestoreKeys(ctx, data)
				if !errors.Is(err, hsmapi.ErrDecryption) && !errors.Is(err, hsmapi.ErrNotThisHSM) && !errors.Is(err, storefile.ErrMalformed) {
					t.Errorf("a file with its %s changed: %v", name, err)
				}
			}
			if _, err := other.RestoreKeys(ctx, file); !errors.Is(err, hsmapi.ErrNotThisHSM) {
				t.Errorf("another token restored the file: %v", err)
			}
			emu := hsmtest.New(t)
			emuKey := generate(t, emu, testKeys[1])
			emuFile, err := emu.StoreKeys(ctx, []hsmapi.UUID{emuKey.UUID})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tok.RestoreKeys(ctx, emuFile); !errors.Is(err, hsmapi.ErrNotThisHSM) {
				t.Errorf("the token restored the emulated HSM's file: %v", err)
			}
			if _, err := emu.RestoreKeys(ctx, file); !errors.Is(err, hsmapi.ErrNotThisHSM) {
				t.Errorf("the emulated HSM restored the token's file: %v", err)
			}
			if n := objectCount(t, tok); n != before {
				t.Fatalf("refused files left %d objects, had %d", n, before)
			}

			res, err := tok.RestoreKeys(ctx, file)
			if err != nil {
				t.Fatal(err)
			}
			for i, id := range ids {
				if res[i].Key.UUID != id || res[i].Present {
					t.Errorf("key %d restored as %s (present %v), want %s", i, res[i].Key.UUID, res[i].Present, id)
				}
				sameDump(t, id, dumps[id], dumpKey(t, tok, id))
				signsAs(t, infos[id], tok)
			}
			res, err = tok.RestoreKeys(ctx, file)
			if err != nil || len(res) != len(ids) || !res[0].Present {
				t.Errorf("a second restore: %v, %+v", err, res)
			}

			// Refused whole, before the storage key is used.
			n := objectCount(t, tok)
			var stuck hsmapi.UUID
			if kind == "softhsm" {
				stuck = makeKey(t, tok, made{name: "stuck", curve: hsmapi.CurveP256,
					priv: []*pkcs11.Attribute{attr(pkcs11.CKA_SIGN, true), attr(pkcs11.CKA_EXTRACTABLE, false)}})
			} else {
				req := testKeys[1]
				req.Flags &^= hsmapi.FlagExportable
				stuck = generate(t, tok, req).UUID
			}
			if _, err := tok.StoreKeys(ctx, []hsmapi.UUID{ids[0], stuck}); !errors.Is(err, hsmapi.ErrNotExportable) {
				t.Errorf("store of a key that is not extractable: %v", err)
			}
			if kind == "module" {
				hss := generate(t, tok, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: testLevels, Flags: exportable, Label: "hss"})
				if _, err := tok.StoreKeys(ctx, []hsmapi.UUID{hss.UUID}); !errors.Is(err, hsmapi.ErrUnsupported) {
					t.Errorf("store of an HSS key: %v", err)
				}
				n += 2
			}
			if got := objectCount(t, tok); got != n+2 {
				t.Errorf("%d objects after refused stores, want %d", got, n+2)
			}
		})
	}
}

// tokenFileEdits change one field of a token's stored-keys file each.
var tokenFileEdits = map[string]func(f *storefile.File){
	"label":   func(f *storefile.File) { f.Keys[0].Label = "other" },
	"created": func(f *storefile.File) { f.Created = f.Created.Add(1e9) },
	"wrapped": func(f *storefile.File) { f.Keys[0].Wrapped = flip(f.Keys[0].Wrapped, 5) },
	"tag":     func(f *storefile.File) { f.Tag = flip(f.Tag, 0) },
	"flags":   func(f *storefile.File) { f.Keys[0].Flags ^= hsmapi.FlagDataEncipherment },
	"attributes": func(f *storefile.File) {
		f.Keys[0].Attributes = flip(f.Keys[0].Attributes, len(f.Keys[0].Attributes)-1)
	},
	"public key": func(f *storefile.File) { f.Keys[0], f.Keys[1] = swapPublic(f.Keys[0], f.Keys[1]) },
	"order":      func(f *storefile.File) { f.Keys[0], f.Keys[1] = f.Keys[1], f.Keys[0] },
	"dropped":    func(f *storefile.File) { f.Keys = f.Keys[1:] },
	"hsm":        func(f *storefile.File) { f.HSM = "someone else" },
	"kcv":        func(f *storefile.File) { f.CheckValue[0] ^= 1 },
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}

func swapPublic(a, b storefile.Key) (storefile.Key, storefile.Key) {
	a.PublicKey, b.PublicKey = b.PublicKey, a.PublicKey
	return a, b
}

// tokenInfo is the token's serial and label.
func (tok *Token) tokenInfo(t testing.TB) (serial, label string) {
	t.Helper()
	tok.mu.Lock()
	defer tok.mu.Unlock()
	s, err := tok.tokenSerial()
	if err != nil {
		t.Fatal(err)
	}
	return s, tok.cfg.TokenLabel
}

// checkStorageKey checks the one storage key on the token: its check value
// and its policy.
func checkStorageKey(t *testing.T, tok *Token, cv [hsmapi.MasterKeyCheckSize]byte) {
	t.Helper()
	tok.mu.Lock()
	defer tok.mu.Unlock()
	hs, err := tok.storageKeys()
	if err != nil || len(hs) != 1 {
		t.Fatalf("%d storage keys (%v)", len(hs), err)
	}
	if got, err := tok.storageKeyCheck(hs[0]); err != nil || got != cv {
		t.Errorf("storage key check value %x (%v), the file says %x", got, err, cv)
	}
	want := map[uint]bool{pkcs11.CKA_TOKEN: true, pkcs11.CKA_SENSITIVE: true, pkcs11.CKA_EXTRACTABLE: false,
		pkcs11.CKA_WRAP: true, pkcs11.CKA_UNWRAP: true, pkcs11.CKA_ENCRYPT: false, pkcs11.CKA_DECRYPT: false}
	for ty, v := range want {
		a, err := tok.attrs(hs[0], ty)
		if err != nil || boolAttr(a[ty]) != v {
			t.Errorf("storage key attribute 0x%x: %x (%v), want %v", ty, a[ty], err, v)
		}
	}
	if _, err := tok.raw.GetAttributeValue(tok.sess, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); err == nil {
		t.Error("the storage key's value can be read")
	}
}
