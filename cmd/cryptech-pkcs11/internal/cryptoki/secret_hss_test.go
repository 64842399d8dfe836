package cryptoki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"math/big"
	"sync"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
)

// TestWrapHSSKey: C_WrapKey of an HSS key splits it, so nothing but a wrap
// into a buffer that holds the blob spends signatures: the length query
// (sized from the parameters) and a short buffer leave the key whole, as
// do mechanisms other than AES key wrap with padding. The blob unwraps on
// a second HSM (CKK_HSS template) as a key that is not local, holds the
// other half and signs under the source's public key; not on the source's
// own HSM, which holds a part of that key; and a flipped byte stores
// nothing. In process and over libhal's RPC.
func TestWrapHSSKey(t *testing.T) {
	for name, open := range map[string]func(*testing.T) (*Module, uint){"in process": loggedIn, "over RPC": loggedInOverRPC} {
		t.Run(name, func(t *testing.T) {
			src, sh := open(t)
			dst, dh := open(t)
			srcKEK, dstKEK := sharedAES(t, src, sh), sharedAES(t, dst, dh)
			pub, priv, rv := src.GenerateKeyPair(sh, MechHSSKeyPairGen, nil, []Attribute{bl(attrToken, true)},
				append([]Attribute{bl(attrToken, true), bl(attrExtractable, true), bl(attrSign, true)}, hssSmall...))
			if rv != OK {
				t.Fatalf("GenerateKeyPair: %#x", rv)
			}
			remaining := func(m *Module, h, o uint) uint64 {
				t.Helper()
				n, _ := ulongOf(getAll(t, m, h, o, attrHSSKeysRemaining)[attrHSSKeysRemaining])
				return n
			}
			kwp := Mechanism{Type: MechAESKeyWrapKWP}
			_, n, rv := src.WrapKey(sh, kwp, srcKEK, priv, Output{Query: true})
			if rv != OK {
				t.Fatalf("WrapKey (length): %#x", rv)
			}
			if _, _, rv := src.WrapKey(sh, kwp, srcKEK, priv, Output{Room: n - 1}); rv != BufferTooSmall {
				t.Fatalf("WrapKey with too little room: %#x", rv)
			}
			if _, _, rv := src.WrapKey(sh, Mechanism{Type: MechAESKeyWrap}, srcKEK, priv, Output{Room: 4096}); rv != keyNotWrappable {
				t.Errorf("WrapKey under CKM_AES_KEY_WRAP: %#x", rv)
			}
			if got := remaining(src, sh, priv); got != 32 {
				t.Fatalf("%d signatures left after asking and refusals, want 32", got)
			}
			blob, got, rv := src.WrapKey(sh, Mechanism{Type: MechAESKeyWrapPad}, srcKEK, priv, Output{Room: n})
			if rv != OK || got != n || len(blob) != n {
				t.Fatalf("WrapKey: %#x, %d bytes (said %d)", rv, got, n)
			}
			if got := remaining(src, sh, priv); got != 16 {
				t.Fatalf("%d signatures left after the wrap, want 16", got)
			}

			hssTmpl := []Attribute{ul(attrClass, ClassPrivateKey), ul(attrKeyType, KeyTypeHSS), bl(attrToken, true), bl(attrSign, true), str(attrLabel, "part")}
			if _, rv := src.UnwrapKey(sh, kwp, srcKEK, blob, hssTmpl); rv != ActionProhibited {
				t.Errorf("the part unwrapped on the HSM that holds the rest: %#x", rv)
			}
			before := allKeys(t, dst)
			bad := bytes.Clone(blob)
			bad[len(bad)/2] ^= 1
			if _, rv := dst.UnwrapKey(dh, kwp, dstKEK, bad, hssTmpl); rv != wrappedKeyInvalid {
				t.Errorf("a flipped byte: %#x", rv)
			}
			if _, rv := dst.UnwrapKey(dh, kwp, dstKEK, blob, append(hssTmpl[:1:1], ul(attrKeyType, KeyTypeEC))); rv == OK {
				t.Error("the HSS key unwrapped as an EC key")
			}
			if got := allKeys(t, dst); got != before {
				t.Fatalf("refused unwraps stored %d keys", got-before)
			}
			part, rv := dst.UnwrapKey(dh, kwp, dstKEK, blob, hssTmpl)
			if rv != OK {
				t.Fatalf("UnwrapKey: %#x", rv)
			}
			a := getAll(t, dst, dh, part, attrKeyType, attrLocal, attrHSSKeysRemaining, attrLabel)
			for ty, w := range map[uint][]byte{attrKeyType: ulongValue(KeyTypeHSS), attrLocal: {0}, attrHSSKeysRemaining: ulongValue(16), attrLabel: []byte("part")} {
				if !bytes.Equal(a[ty], w) {
					t.Errorf("unwrapped 0x%x = %x, want %x", ty, a[ty], w)
				}
			}
			pk, err := hashsig.ParsePublicKey(getAll(t, src, sh, pub, attrValue)[attrValue])
			if err != nil {
				t.Fatal(err)
			}
			var qs [2]uint64
			for i, side := range []struct {
				m    *Module
				h, o uint
			}{{src, sh, priv}, {dst, dh, part}} {
				o, _ := side.m.keyObject(side.h, side.o)
				sig, err := tokenOf(side.m).Sign(context.Background(), o.UUID, []byte("message"), crypto.Hash(0))
				if err != nil {
					t.Fatal(err)
				}
				if err := pk.Verify([]byte("message"), sig); err != nil {
					t.Fatalf("signature %d fails under the source's public key: %v", i, err)
				}
				qs[i], _ = hashsig.SignatureIndex(sig)
			}
			if qs[0] >= 16 || qs[1] < 16 {
				t.Errorf("source signed with index %d, destination with %d: the halves are [0,16) and [16,32)", qs[0], qs[1])
			}
		})
	}
}

// sharedKEK is an RSA key that sharedAES loads into every HSM.
var sharedKEK = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// sharedAES stores the same AES key, a session object, on every HSM it is
// called for: unwrapped under sharedKEK with RSA-OAEP, since over libhal's
// RPC no key is loaded in the clear but private keys.
func sharedAES(t *testing.T, m *Module, h uint) uint {
	t.Helper()
	rk := sharedKEK()
	unwrapper, rv := m.CreateObject(h, []Attribute{
		ul(attrClass, ClassPrivateKey), ul(attrKeyType, KeyTypeRSA), bl(attrToken, false), bl(attrUnwrap, true), bl(attrDecrypt, false), bl(attrSign, false),
		by(attrModulus, rk.N.Bytes()), by(attrPublicExponent, big.NewInt(int64(rk.E)).Bytes()), by(attrPrivateExponent, rk.D.Bytes()),
		by(attrPrime1, rk.Primes[0].Bytes()), by(attrPrime2, rk.Primes[1].Bytes()),
	})
	if rv != OK {
		t.Fatalf("CreateObject (RSA): %#x", rv)
	}
	blob, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &rk.PublicKey, bytes.Repeat([]byte{0x5a}, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	k, rv := m.UnwrapKey(h, Mechanism{Type: MechRSAPKCSOAEP, OAEP: oaepSHA256}, unwrapper, blob,
		[]Attribute{ul(attrClass, ClassSecretKey), ul(attrKeyType, KeyTypeAES), bl(attrToken, false)})
	if rv != OK {
		t.Fatalf("UnwrapKey (AES): %#x", rv)
	}
	return k
}
