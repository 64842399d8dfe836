package cryptoki

import (
	"bytes"
	"crypto"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// Digests through the module equal crypto/sha*'s, in one part or many,
// and keep to the length protocol.
func TestDigests(t *testing.T) {
	m, h := loggedIn(t)
	msg := bytes.Repeat([]byte("digest me "), 100)
	for _, c := range []struct {
		mech uint
		h    crypto.Hash
	}{{MechSHA1, crypto.SHA1}, {MechSHA224, crypto.SHA224}, {MechSHA256, crypto.SHA256}, {MechSHA384, crypto.SHA384}, {MechSHA512, crypto.SHA512}} {
		want := hashOf(c.h, msg)
		if rv := m.DigestInit(h, Mechanism{Type: c.mech}); rv != OK {
			t.Fatalf("%v: DigestInit: %#x", c.h, rv)
		}
		if _, n, rv := m.Digest(h, msg, Output{Query: true}); rv != OK || n != len(want) {
			t.Fatalf("%v: length %d %#x", c.h, n, rv)
		}
		if _, n, rv := m.Digest(h, msg, Output{Room: len(want) - 1}); rv != BufferTooSmall || n != len(want) {
			t.Fatalf("%v: too small: %d %#x", c.h, n, rv)
		}
		got, _, rv := m.Digest(h, msg, Output{Room: 64})
		if rv != OK || !bytes.Equal(got, want) {
			t.Fatalf("%v: C_Digest %x %#x, want %x", c.h, got, rv, want)
		}
		if _, _, rv := m.Digest(h, msg, Output{Room: 64}); rv != OperationNotInitialized {
			t.Fatalf("%v: the digest outlived its result: %#x", c.h, rv)
		}

		if rv := m.DigestInit(h, Mechanism{Type: c.mech}); rv != OK {
			t.Fatal(rv)
		}
		for i := 0; i < len(msg); i += 333 {
			if rv := m.DigestUpdate(h, msg[i:min(i+333, len(msg))]); rv != OK {
				t.Fatal(rv)
			}
		}
		if _, n, rv := m.DigestFinal(h, Output{Query: true}); rv != OK || n != len(want) {
			t.Fatalf("%v: final length %d %#x", c.h, n, rv)
		}
		got, _, rv = m.DigestFinal(h, Output{Room: len(want)})
		if rv != OK || !bytes.Equal(got, want) {
			t.Fatalf("%v: in parts %x %#x, want %x", c.h, got, rv, want)
		}
	}
}

func TestDigestBadInput(t *testing.T) {
	m, h := loggedIn(t)
	ec := generate(t, m, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256})
	priv, pub := objectsOf(t, m, h, ec.UUID)
	for _, c := range []struct {
		name string
		mech Mechanism
		want RV
	}{
		{"signature mechanism", Mechanism{Type: MechECDSA}, MechanismInvalid},
		{"unknown", Mechanism{Type: 0x251}, MechanismInvalid},
		{"parameter", Mechanism{Type: MechSHA256, Param: []byte{0}}, MechanismParamInvalid},
	} {
		if rv := m.DigestInit(h, c.mech); rv != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, rv, c.want)
		}
	}
	if _, _, rv := m.DigestFinal(h, Output{Room: 64}); rv != OperationNotInitialized {
		t.Fatalf("DigestFinal without init: %#x", rv)
	}
	if rv := m.DigestInit(h, Mechanism{Type: MechSHA256}); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.DigestInit(h, Mechanism{Type: MechSHA256}); rv != OperationActive {
		t.Fatalf("second DigestInit: %#x", rv)
	}
	if rv := m.DigestUpdate(h, []byte("x")); rv != OK {
		t.Fatal(rv)
	}
	if _, _, rv := m.Digest(h, []byte("x"), Output{Room: 64}); rv != OperationActive {
		t.Fatalf("C_Digest after C_DigestUpdate: %#x", rv)
	}
	// Every key is sensitive, or (a public key object) has no value.
	for _, key := range []uint{priv, pub} {
		if rv := m.DigestInit(h, Mechanism{Type: MechSHA256}); rv != OK {
			t.Fatal(rv)
		}
		if rv := m.DigestKey(h, key); rv != KeyIndigestible {
			t.Fatalf("DigestKey(%d): %#x", key, rv)
		}
		if rv := m.DigestUpdate(h, []byte("x")); rv != OperationNotInitialized {
			t.Fatalf("the digest outlived a failed C_DigestKey: %#x", rv)
		}
	}
	if rv := m.DigestInit(h, Mechanism{Type: MechSHA256}); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.DigestKey(h, 1<<30); rv != KeyHandleInvalid {
		t.Fatalf("DigestKey of no key: %#x", rv)
	}
	// Closing the session ends its operations with it.
	if rv := m.DigestInit(h, Mechanism{Type: MechSHA256}); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.CloseSession(h); rv != OK {
		t.Fatal(rv)
	}
	if rv := m.DigestUpdate(h, []byte("x")); rv != SessionHandleInvalid {
		t.Fatalf("DigestUpdate on a closed session: %#x", rv)
	}
}
