package rpc

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/big"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/internal/testkeys"
)

// Tests of the places where this server answers as libhal's rpc_server.c
// and rpc_pkey.c do, byte for byte, and of the client against them.

// rfc8554Case1 reads RFC 8554 Test Case 1 (public key, message, signature)
// from the hashsig package's test data.
func rfc8554Case1(t *testing.T) (pub, msg, sig []byte) {
	t.Helper()
	f, err := os.Open("../hashsig/testdata/rfc8554.vec")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() && sig == nil {
		name, value, ok := strings.Cut(sc.Text(), " = ")
		if !ok {
			continue
		}
		b, err := hex.DecodeString(value)
		if err != nil {
			t.Fatal(err)
		}
		switch name {
		case "PublicKey":
			pub = b
		case "Msg":
			msg = b
		case "Signature":
			sig = b
		}
	}
	if pub == nil || msg == nil || sig == nil {
		t.Fatal("RFC 8554 test case 1 not found")
	}
	return pub, msg, sig
}

func mustHexString(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loginRaw logs a raw connection in as the normal user.
func loginRaw(t *testing.T, r *rawConn) {
	t.Helper()
	if st := r.call(FuncLogin, &LoginRequest{User: uint32(hsm.UserNormal), PIN: userPIN}, &LoginResponse{}); st != StatusOK {
		t.Fatalf("LOGIN: %v", st)
	}
}

// TestHashsigPublicKeyInLibhalEncoding: PKEY_GET_PUBLIC_KEY answers an HSS
// key in libhal's encoding, PKEY_LOAD takes it, and the key so loaded
// verifies RFC 8554's own signature; the client reads RFC 9708 back.
func TestHashsigPublicKeyInLibhalEncoding(t *testing.T) {
	addr, _ := served(t)
	r := dialRaw(t, addr)
	loginRaw(t, r)

	// RFC 8554 Test Case 1's key, in libhal's layout, built by hand.
	pub, msg, sig := rfc8554Case1(t)
	if want := mustHexString(t, "00000002 00000005 00000004"); !bytes.Equal(pub[:12], want) {
		t.Fatalf("test case 1 starts %x, not %x", pub[:12], want)
	}
	libhalSPKI := append(mustHexString(t, "3053 300f 060b2a864886f70d0109100311 0500 0340 00 303d 020102 020105 020104 0410"), pub[12:28]...)
	libhalSPKI = append(append(libhalSPKI, 0x04, 0x20), pub[28:]...)

	var load PkeyLoadResponse
	if st := r.call(FuncPkeyLoad, &PkeyLoadRequest{DER: libhalSPKI, Flags: uint32(hsm.FlagDigitalSignature)}, &load); st != StatusOK {
		t.Fatalf("PKEY_LOAD of libhal's HSS SubjectPublicKeyInfo: %v", st)
	}
	if st := r.call(FuncPkeyVerify, &PkeyVerifyRequest{Pkey: load.Pkey, Data: msg, Signature: sig}, &PkeyVerifyResponse{}); st != StatusOK {
		t.Fatalf("PKEY_VERIFY of RFC 8554's signature under the loaded key: %v", st)
	}
	bad := bytes.Clone(sig)
	bad[len(bad)-1] ^= 1
	if st := r.call(FuncPkeyVerify, &PkeyVerifyRequest{Pkey: load.Pkey, Data: msg, Signature: bad}, &PkeyVerifyResponse{}); st != StatusInvalidSignature {
		t.Fatalf("PKEY_VERIFY of a flipped signature: %v", st)
	}
	var n PkeyGetPublicKeyLenResponse
	var got PkeyGetPublicKeyResponse
	if st := r.call(FuncPkeyGetPublicKeyLen, &PkeyGetPublicKeyLenRequest{Pkey: load.Pkey}, &n); st != StatusOK {
		t.Fatal(st)
	}
	if st := r.call(FuncPkeyGetPublicKey, &PkeyGetPublicKeyRequest{Pkey: load.Pkey, Max: n.Len}, &got); st != StatusOK {
		t.Fatal(st)
	}
	if !bytes.Equal(got.DER, libhalSPKI) || n.Len != uint32(len(libhalSPKI)) {
		t.Fatalf("PKEY_GET_PUBLIC_KEY (length %d) answered\n%x\nnot libhal's\n%x", n.Len, got.DER, libhalSPKI)
	}

	// A key made here goes out in libhal's layout too, and the client
	// reads it back as RFC 9708.
	var gen PkeyGenerateHashsigResponse
	if st := r.call(FuncPkeyGenerateHashsig, &PkeyGenerateHashsigRequest{L: 1, LMSType: uint32(hashsig.LMS_SHA256_M32_H5),
		LMOTSType: uint32(hashsig.LMOTS_SHA256_N32_W8), Flags: uint32(hsm.FlagDigitalSignature | hsm.FlagToken)}, &gen); st != StatusOK {
		t.Fatal(st)
	}
	if st := r.call(FuncPkeyGetPublicKey, &PkeyGetPublicKeyRequest{Pkey: gen.Pkey, Max: 1024}, &got); st != StatusOK {
		t.Fatal(st)
	}
	if prefix := mustHexString(t, "3053 300f 060b2a864886f70d0109100311 0500 0340 00 303d 020101 020105 020104 0410"); !bytes.HasPrefix(got.DER, prefix) {
		t.Fatalf("PKEY_GET_PUBLIC_KEY of a generated HSS key: %x, not libhal's layout", got.DER)
	}
	c := dialAs(t, addr, hsm.UserNormal, userPIN)
	k, err := c.Key(ctx, hsm.UUID(gen.UUID))
	if err != nil {
		t.Fatal(err)
	}
	pk, err := hashsig.ParsePKIXPublicKey(got.DER)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.PublicKey, hashsig.MarshalPKIXPublicKey(pk)) {
		t.Errorf("Client.Key gave %x, not the RFC 9708 encoding of the key", k.PublicKey)
	}
}

// TestHashsigThroughHashHandle: an HSS key given a hash handle signs, and
// verifies, the digest's bytes as the message, as libhal does.
func TestHashsigThroughHashHandle(t *testing.T) {
	addr, _ := served(t)
	r := dialRaw(t, addr)
	loginRaw(t, r)
	var gen PkeyGenerateHashsigResponse
	if st := r.call(FuncPkeyGenerateHashsig, &PkeyGenerateHashsigRequest{L: 1, LMSType: uint32(hashsig.LMS_SHA256_M32_H5),
		LMOTSType: uint32(hashsig.LMOTS_SHA256_N32_W8), Flags: uint32(hsm.FlagDigitalSignature | hsm.FlagToken)}, &gen); st != StatusOK {
		t.Fatal(st)
	}
	var spki PkeyGetPublicKeyResponse
	if st := r.call(FuncPkeyGetPublicKey, &PkeyGetPublicKeyRequest{Pkey: gen.Pkey, Max: 1024}, &spki); st != StatusOK {
		t.Fatal(st)
	}
	pk, err := hashsig.ParsePKIXPublicKey(spki.DER)
	if err != nil {
		t.Fatal(err)
	}
	message := bytes.Repeat([]byte("a message longer than a packet "), 1000)
	hashOf := func() uint32 {
		t.Helper()
		var h HashInitializeResponse
		if st := r.call(FuncHashInitialize, &HashInitializeRequest{Alg: 3 /* SHA-256 */}, &h); st != StatusOK {
			t.Fatal(st)
		}
		for chunk := range slices.Chunk(message, 8000) {
			if st := r.call(FuncHashUpdate, &HashUpdateRequest{Hash: h.Hash, Data: chunk}, &HashUpdateResponse{}); st != StatusOK {
				t.Fatal(st)
			}
		}
		return h.Hash
	}
	var sig PkeySignResponse
	if st := r.call(FuncPkeySign, &PkeySignRequest{Pkey: gen.Pkey, Hash: hashOf(), Max: 8192}, &sig); st != StatusOK {
		t.Fatalf("PKEY_SIGN with an HSS key and a hash handle: %v", st)
	}
	digest := sha256.Sum256(message)
	if err := pk.Verify(digest[:], sig.Signature); err != nil {
		t.Fatalf("the signature does not cover the digest's bytes: %v", err)
	}
	if err := pk.Verify(message, sig.Signature); err == nil {
		t.Fatal("the signature covers the message itself")
	}
	if st := r.call(FuncPkeyVerify, &PkeyVerifyRequest{Pkey: gen.Pkey, Hash: hashOf(), Signature: sig.Signature}, &PkeyVerifyResponse{}); st != StatusOK {
		t.Fatalf("PKEY_VERIFY with an HSS key and a hash handle: %v", st)
	}
	sig.Signature[len(sig.Signature)-1] ^= 1
	if st := r.call(FuncPkeyVerify, &PkeyVerifyRequest{Pkey: gen.Pkey, Hash: hashOf(), Signature: sig.Signature}, &PkeyVerifyResponse{}); st != StatusInvalidSignature {
		t.Fatalf("PKEY_VERIFY of a flipped signature: %v", st)
	}
}

// xdrBytes is an XDR bytes item written out by hand: length, data, zero
// padding to a multiple of four.
func xdrBytes(b []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	out = append(out, b...)
	return append(out, make([]byte, -len(b)&3)...)
}

// TestPkeyLoadPrivateKey: PKEY_LOAD takes a PKCS#8 PrivateKeyInfo, RSA or
// EC, as libhal does; the key signs, and says it was not made here. An HSS
// private key is refused and nothing is stored.
func TestPkeyLoadPrivateKey(t *testing.T) {
	addr, _ := served(t)
	r := dialRaw(t, addr)
	loginRaw(t, r)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("loaded in the clear"))
	for _, signer := range []crypto.Signer{ecKey, rsaKey} {
		der, err := x509.MarshalPKCS8PrivateKey(signer)
		if err != nil {
			t.Fatal(err)
		}
		// PKEY_LOAD: func 13, client, session 0, bytes der, uint flags
		// (digitalsignature), as libhal.py writes it.
		req := mustHexString(t, "0000000d 00000000 00000000")
		req = append(req, xdrBytes(der)...)
		req = append(req, mustHexString(t, "00000001")...)
		answer := r.roundTrip(req)
		// func, client (any), status 0, uint pkey, bytes uuid (16).
		if len(answer) != 12+4+4+16 || !bytes.Equal(answer[:4], req[:4]) || !bytes.Equal(answer[8:12], make([]byte, 4)) ||
			!bytes.Equal(answer[16:20], mustHexString(t, "00000010")) {
			t.Fatalf("PKEY_LOAD of a PKCS#8 %T answered %x", signer, answer)
		}
		pkey := binary.BigEndian.Uint32(answer[12:])

		data := digest[:]
		if _, ok := signer.(*rsa.PrivateKey); ok {
			data = mustDigestInfo(t, crypto.SHA256, digest[:])
		}
		var sig PkeySignResponse
		if st := r.call(FuncPkeySign, &PkeySignRequest{Pkey: pkey, Data: data, Max: 4096}, &sig); st != StatusOK {
			t.Fatalf("PKEY_SIGN with the loaded %T: %v", signer, st)
		}
		switch pub := signer.Public().(type) {
		case *rsa.PublicKey:
			err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig.Signature)
		case *ecdsa.PublicKey:
			if !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig.Signature[:32]), new(big.Int).SetBytes(sig.Signature[32:])) {
				err = errors.New("ECDSA signature does not verify")
			}
		}
		if err != nil {
			t.Fatalf("signature of the loaded %T: %v", signer, err)
		}
		var attrs PkeyGetAttributesResponse
		if st := r.call(FuncPkeyGetAttributes, &PkeyGetAttributesRequest{Pkey: pkey, Types: []uint32{hsm.CKALocal}, BufferLen: 16}, &attrs); st != StatusOK {
			t.Fatalf("CKA_LOCAL of the loaded key: %v", st)
		}
		if len(attrs.Attributes) != 1 || !bytes.Equal(attrs.Attributes[0].Value, []byte{0}) {
			t.Fatalf("CKA_LOCAL of the loaded key: %+v, want false", attrs.Attributes)
		}
	}

	var before PkeyMatchResponse
	match := &PkeyMatchRequest{Max: 100, Previous: make([]byte, 16)}
	r.call(FuncPkeyMatch, match, &before)
	sk, err := hashsig.GenerateKey(nil, []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hssDER, err := sk.MarshalPKCS8()
	if err != nil {
		t.Fatal(err)
	}
	if st := r.call(FuncPkeyLoad, &PkeyLoadRequest{DER: hssDER, Flags: 1}, &PkeyLoadResponse{}); st != StatusUnsupportedKey {
		t.Fatalf("PKEY_LOAD of an HSS private key: %v, want UNSUPPORTED_KEY", st)
	}
	var after PkeyMatchResponse
	r.call(FuncPkeyMatch, match, &after)
	if len(after.UUIDs) != len(before.UUIDs) {
		t.Fatalf("a refused HSS load left %d keys, %d before", len(after.UUIDs), len(before.UUIDs))
	}
}

// TestClientLoadPrivateKey: rpc.Client's LoadPrivateKey stores the key
// with its label and attributes, not local, against this server and
// against one without the extensions.
func TestClientLoadPrivateKey(t *testing.T) {
	addr, _ := served(t)
	for _, plain := range []bool{false, true} {
		c := dialAs(t, addr, hsm.UserNormal, userPIN)
		if plain {
			c.ext = nil // as against a Cryptech HSM
		}
		ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(ecKey)
		if err != nil {
			t.Fatal(err)
		}
		k, err := c.LoadPrivateKey(ctx, hsm.LoadRequest{PKCS8: der, Flags: hsm.FlagDigitalSignature, Label: "soft kekek",
			Attributes: []hsm.Attribute{{Type: hsm.CKAID, Value: []byte{0x0a, 0x01}}}})
		if err != nil {
			t.Fatalf("plain=%v: %v", plain, err)
		}
		if k.Type != hsm.KeyTypeECPrivate || k.Label != "soft kekek" || !hsm.SamePublicKey(k.PublicKey, mustSPKI(t, ecKey.Public())) {
			t.Fatalf("plain=%v: loaded %+v", plain, k)
		}
		digest := sha256.Sum256([]byte("x"))
		sig, err := c.Sign(ctx, k.UUID, digest[:], crypto.SHA256)
		if err != nil || !ecdsa.VerifyASN1(&ecKey.PublicKey, digest[:], sig) {
			t.Fatalf("plain=%v: signature of the loaded key: %v", plain, err)
		}
		for typ, want := range map[uint32][]byte{hsm.CKAID: {0x0a, 0x01}, hsm.CKALocal: {0}} {
			v, err := c.attribute(c.open[k.UUID].handle, typ)
			if err != nil || !bytes.Equal(v, want) {
				t.Errorf("plain=%v: attribute 0x%x = %x, %v; want %x", plain, typ, v, err, want)
			}
		}
		if _, err := c.LoadPrivateKey(ctx, hsm.LoadRequest{PKCS8: der, Label: "bad\x00label"}); !errors.Is(err, hsm.ErrBadArguments) {
			t.Errorf("plain=%v: a label with a NUL: %v", plain, err)
		}
	}
}

func mustSPKI(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustDigestInfo(t *testing.T, h crypto.Hash, digest []byte) []byte {
	t.Helper()
	der, err := digestInfoDER(h, digest)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestLegacyRSAOverRPC: RSA keys of 1024 to 8192 bits, and with e = 3,
// load, export, import and sign over RPC, through the extensions and
// through libhal's functions alone.
func TestLegacyRSAOverRPC(t *testing.T) {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	srcAddr, _ := served(t)
	dstAddr, _ := served(t)
	for _, plain := range []bool{false, true} {
		src, dst := dialLogin(t, srcAddr), dialLogin(t, dstAddr)
		enc := hsm.KEKOAEPSHA256
		if plain {
			src.ext, dst.ext, enc = nil, nil, hsm.KEKPKCS1v15
		}
		kekek, err := dst.GenerateKey(ctx, hsm.GenerateRequest{Type: hsm.KeyTypeRSAPrivate, Bits: 2048, Flags: hsm.FlagKeyEncipherment | hsm.FlagToken})
		if err != nil {
			t.Fatal(err)
		}
		for name, key := range map[string]*rsa.PrivateKey{"1024": rsa1024, "1024-e3": testkeys.RSA1024E3(t), "8192": testkeys.RSA8192(t)} {
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			k, err := src.LoadPrivateKey(ctx, hsm.LoadRequest{PKCS8: der, Flags: hsm.FlagDigitalSignature | hsm.FlagToken | hsm.FlagExportable, Label: name})
			if err != nil {
				t.Fatalf("plain=%v %s: load: %v", plain, name, err)
			}
			w, err := src.Export(ctx, hsm.ExportRequest{Key: k.UUID, KEKEK: kekek.PublicKey, Encryption: enc})
			if err != nil {
				t.Fatalf("plain=%v %s: export: %v", plain, name, err)
			}
			res, err := dst.Import(ctx, hsm.ImportRequest{KEKEK: kekek.UUID, Wrapped: w, Encryption: enc, UUID: k.UUID, Label: name,
				Flags: k.Flags, PublicKey: k.PublicKey})
			if err != nil {
				t.Fatalf("plain=%v %s: import: %v", plain, name, err)
			}
			if res.Key.Bits != key.N.BitLen() || res.Key.Label != name {
				t.Fatalf("plain=%v %s: imported %+v", plain, name, res.Key)
			}
			digest := sha256.Sum256([]byte("legacy over RPC"))
			sig, err := dst.Sign(ctx, res.Key.UUID, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatalf("plain=%v %s: sign: %v", plain, name, err)
			}
			if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, digest[:], sig); err != nil {
				t.Fatalf("plain=%v %s: the destination's signature: %v", plain, name, err)
			}
			if err := src.Verify(ctx, k.UUID, digest[:], sig, crypto.SHA256); err != nil {
				t.Fatalf("plain=%v %s: verify on the source: %v", plain, name, err)
			}
		}
	}
}
