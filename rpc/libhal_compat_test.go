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
	"log/slog"
	"math/big"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/testkeys"
	"github.com/hsmkit/cryptech-backup/rpc/internal/wire"
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
		line := sc.Text()
		name, value, ok := strings.Cut(line, " = ")
		if !ok || strings.HasPrefix(line, "#") {
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
	if st := r.call(wire.FuncLogin, &wire.LoginRequest{User: uint32(hsmapi.UserNormal), PIN: userPIN}, &wire.LoginResponse{}); st != wire.StatusOK {
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

	var load wire.PkeyLoadResponse
	if st := r.call(wire.FuncPkeyLoad, &wire.PkeyLoadRequest{DER: libhalSPKI, Flags: uint32(hsmapi.FlagDigitalSignature)}, &load); st != wire.StatusOK {
		t.Fatalf("PKEY_LOAD of libhal's HSS SubjectPublicKeyInfo: %v", st)
	}
	if st := r.call(wire.FuncPkeyVerify, &wire.PkeyVerifyRequest{Pkey: load.Pkey, Data: msg, Signature: sig}, &wire.PkeyVerifyResponse{}); st != wire.StatusOK {
		t.Fatalf("PKEY_VERIFY of RFC 8554's signature under the loaded key: %v", st)
	}
	bad := bytes.Clone(sig)
	bad[len(bad)-1] ^= 1
	if st := r.call(wire.FuncPkeyVerify, &wire.PkeyVerifyRequest{Pkey: load.Pkey, Data: msg, Signature: bad}, &wire.PkeyVerifyResponse{}); st != wire.StatusInvalidSignature {
		t.Fatalf("PKEY_VERIFY of a flipped signature: %v", st)
	}
	var n wire.PkeyGetPublicKeyLenResponse
	var got wire.PkeyGetPublicKeyResponse
	if st := r.call(wire.FuncPkeyGetPublicKeyLen, &wire.PkeyGetPublicKeyLenRequest{Pkey: load.Pkey}, &n); st != wire.StatusOK {
		t.Fatal(st)
	}
	if st := r.call(wire.FuncPkeyGetPublicKey, &wire.PkeyGetPublicKeyRequest{Pkey: load.Pkey, Max: n.Len}, &got); st != wire.StatusOK {
		t.Fatal(st)
	}
	if !bytes.Equal(got.DER, libhalSPKI) || n.Len != uint32(len(libhalSPKI)) {
		t.Fatalf("PKEY_GET_PUBLIC_KEY (length %d) answered\n%x\nnot libhal's\n%x", n.Len, got.DER, libhalSPKI)
	}

	// A key made here goes out in libhal's layout too, and the client
	// reads it back as RFC 9708.
	var gen wire.PkeyGenerateHashsigResponse
	if st := r.call(wire.FuncPkeyGenerateHashsig, &wire.PkeyGenerateHashsigRequest{L: 1, LMSType: uint32(hashsig.LMS_SHA256_M32_H5),
		LMOTSType: uint32(hashsig.LMOTS_SHA256_N32_W8), Flags: uint32(hsmapi.FlagDigitalSignature | hsmapi.FlagToken)}, &gen); st != wire.StatusOK {
		t.Fatal(st)
	}
	if st := r.call(wire.FuncPkeyGetPublicKey, &wire.PkeyGetPublicKeyRequest{Pkey: gen.Pkey, Max: 1024}, &got); st != wire.StatusOK {
		t.Fatal(st)
	}
	if prefix := mustHexString(t, "3053 300f 060b2a864886f70d0109100311 0500 0340 00 303d 020101 020105 020104 0410"); !bytes.HasPrefix(got.DER, prefix) {
		t.Fatalf("PKEY_GET_PUBLIC_KEY of a generated HSS key: %x, not libhal's layout", got.DER)
	}
	c := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	k, err := c.Key(ctx, hsmapi.UUID(gen.UUID))
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
	var gen wire.PkeyGenerateHashsigResponse
	if st := r.call(wire.FuncPkeyGenerateHashsig, &wire.PkeyGenerateHashsigRequest{L: 1, LMSType: uint32(hashsig.LMS_SHA256_M32_H5),
		LMOTSType: uint32(hashsig.LMOTS_SHA256_N32_W8), Flags: uint32(hsmapi.FlagDigitalSignature | hsmapi.FlagToken)}, &gen); st != wire.StatusOK {
		t.Fatal(st)
	}
	var spki wire.PkeyGetPublicKeyResponse
	if st := r.call(wire.FuncPkeyGetPublicKey, &wire.PkeyGetPublicKeyRequest{Pkey: gen.Pkey, Max: 1024}, &spki); st != wire.StatusOK {
		t.Fatal(st)
	}
	pk, err := hashsig.ParsePKIXPublicKey(spki.DER)
	if err != nil {
		t.Fatal(err)
	}
	message := bytes.Repeat([]byte("a message longer than a packet "), 1000)
	hashOf := func() uint32 {
		t.Helper()
		var h wire.HashInitializeResponse
		if st := r.call(wire.FuncHashInitialize, &wire.HashInitializeRequest{Alg: 3 /* SHA-256 */}, &h); st != wire.StatusOK {
			t.Fatal(st)
		}
		for chunk := range slices.Chunk(message, 8000) {
			if st := r.call(wire.FuncHashUpdate, &wire.HashUpdateRequest{Hash: h.Hash, Data: chunk}, &wire.HashUpdateResponse{}); st != wire.StatusOK {
				t.Fatal(st)
			}
		}
		return h.Hash
	}
	var sig wire.PkeySignResponse
	if st := r.call(wire.FuncPkeySign, &wire.PkeySignRequest{Pkey: gen.Pkey, Hash: hashOf(), Max: 8192}, &sig); st != wire.StatusOK {
		t.Fatalf("PKEY_SIGN with an HSS key and a hash handle: %v", st)
	}
	digest := sha256.Sum256(message)
	if err := pk.Verify(digest[:], sig.Signature); err != nil {
		t.Fatalf("the signature does not cover the digest's bytes: %v", err)
	}
	if err := pk.Verify(message, sig.Signature); err == nil {
		t.Fatal("the signature covers the message itself")
	}
	if st := r.call(wire.FuncPkeyVerify, &wire.PkeyVerifyRequest{Pkey: gen.Pkey, Hash: hashOf(), Signature: sig.Signature}, &wire.PkeyVerifyResponse{}); st != wire.StatusOK {
		t.Fatalf("PKEY_VERIFY with an HSS key and a hash handle: %v", st)
	}
	sig.Signature[len(sig.Signature)-1] ^= 1
	if st := r.call(wire.FuncPkeyVerify, &wire.PkeyVerifyRequest{Pkey: gen.Pkey, Hash: hashOf(), Signature: sig.Signature}, &wire.PkeyVerifyResponse{}); st != wire.StatusInvalidSignature {
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
		var sig wire.PkeySignResponse
		if st := r.call(wire.FuncPkeySign, &wire.PkeySignRequest{Pkey: pkey, Data: data, Max: 4096}, &sig); st != wire.StatusOK {
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
		var attrs wire.PkeyGetAttributesResponse
		if st := r.call(wire.FuncPkeyGetAttributes, &wire.PkeyGetAttributesRequest{Pkey: pkey, Types: []uint32{hsmapi.CKALocal}, BufferLen: 16}, &attrs); st != wire.StatusOK {
			t.Fatalf("CKA_LOCAL of the loaded key: %v", st)
		}
		if len(attrs.Attributes) != 1 || !bytes.Equal(attrs.Attributes[0].Value, []byte{0}) {
			t.Fatalf("CKA_LOCAL of the loaded key: %+v, want false", attrs.Attributes)
		}
	}

	var before wire.PkeyMatchResponse
	match := &wire.PkeyMatchRequest{Max: 100, Previous: make([]byte, 16)}
	r.call(wire.FuncPkeyMatch, match, &before)
	sk, err := hashsig.GenerateKey(nil, []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	hssDER, err := sk.MarshalPKCS8()
	if err != nil {
		t.Fatal(err)
	}
	if st := r.call(wire.FuncPkeyLoad, &wire.PkeyLoadRequest{DER: hssDER, Flags: 1}, &wire.PkeyLoadResponse{}); st != wire.StatusUnsupportedKey {
		t.Fatalf("PKEY_LOAD of an HSS private key: %v, want UNSUPPORTED_KEY", st)
	}
	var after wire.PkeyMatchResponse
	r.call(wire.FuncPkeyMatch, match, &after)
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
		c := dialAs(t, addr, hsmapi.UserNormal, userPIN)
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
		k, err := c.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: hsmapi.FlagDigitalSignature, Label: "soft kekek",
			Attributes: []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: []byte{0x0a, 0x01}}}})
		if err != nil {
			t.Fatalf("plain=%v: %v", plain, err)
		}
		if k.Type != hsmapi.KeyTypeECPrivate || k.Label != "soft kekek" || !hsmapi.SamePublicKey(k.PublicKey, mustSPKI(t, ecKey.Public())) {
			t.Fatalf("plain=%v: loaded %+v", plain, k)
		}
		digest := sha256.Sum256([]byte("x"))
		sig, err := c.Sign(ctx, k.UUID, digest[:], crypto.SHA256)
		if err != nil || !ecdsa.VerifyASN1(&ecKey.PublicKey, digest[:], sig) {
			t.Fatalf("plain=%v: signature of the loaded key: %v", plain, err)
		}
		attrs, err := c.KeyAttributes(ctx, k.UUID)
		want := []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: []byte{0x0a, 0x01}}, {Type: hsmapi.CKALocal, Value: []byte{0}}}
		if err != nil || !sameAttributes(attrs, want) {
			t.Errorf("plain=%v: attributes %+v, %v; want %+v", plain, attrs, err, want)
		}
		if _, err := c.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Label: "bad\x00label"}); !errors.Is(err, hsmapi.ErrBadArguments) {
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
		enc := hsmapi.KEKOAEPSHA256
		if plain {
			src.ext, dst.ext, enc = nil, nil, hsmapi.KEKPKCS1v15
		}
		kekek, err := dst.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken})
		if err != nil {
			t.Fatal(err)
		}
		for name, key := range map[string]*rsa.PrivateKey{"1024": rsa1024, "1024-e3": testkeys.RSA1024E3(t), "8192": testkeys.RSA8192(t)} {
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			k, err := src.LoadPrivateKey(ctx, hsmapi.LoadRequest{PKCS8: der, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable, Label: name})
			if err != nil {
				t.Fatalf("plain=%v %s: load: %v", plain, name, err)
			}
			kekekPub, err := hsmapi.ParseKEKEK(kekek.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			w, err := src.Export(ctx, hsmapi.ExportRequest{Key: k.UUID, KEKEKPublicKey: kekekPub, Encryption: enc})
			if err != nil {
				t.Fatalf("plain=%v %s: export: %v", plain, name, err)
			}
			res, err := dst.Import(ctx, hsmapi.ImportRequest{KEKEKUUID: kekek.UUID, Wrapped: w, Encryption: enc, UUID: k.UUID, Label: name,
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

// TestGetAttributesAsLibhal: PKEY_GET_ATTRIBUTES answers as libhal's
// hal_ks_get_attributes does, byte for byte: lengths only, an attribute the
// key lacks has length 0; with a buffer, it is ATTRIBUTE_NOT_FOUND; a key
// with no attributes at all is ATTRIBUTE_NOT_FOUND either way.
func TestGetAttributesAsLibhal(t *testing.T) {
	addr, _ := served(t)
	r := dialRaw(t, addr)
	loginRaw(t, r)
	var bare, withID wire.PkeyGenerateECResponse
	for _, g := range []*wire.PkeyGenerateECResponse{&bare, &withID} {
		if st := r.call(wire.FuncPkeyGenerateEC, &wire.PkeyGenerateECRequest{Curve: uint32(hsmapi.CurveP256), Flags: uint32(hsmapi.FlagDigitalSignature)}, g); st != wire.StatusOK {
			t.Fatal(st)
		}
	}
	if st := r.call(wire.FuncPkeySetAttributes, &wire.PkeySetAttributesRequest{Pkey: withID.Pkey,
		Attributes: []wire.Attribute{{Type: hsmapi.CKAID, Value: []byte{0x0a, 0x01}}}}, &wire.PkeySetAttributesResponse{}); st != wire.StatusOK {
		t.Fatal(st)
	}
	// uint pkey, uint n, n x uint type, uint buffer_len.
	get := func(pkey uint32, buffer uint32, types ...uint32) []byte {
		req := binary.BigEndian.AppendUint32(mustHexString(t, "0000001c 00000000"), pkey)
		req = binary.BigEndian.AppendUint32(req, uint32(len(types)))
		for _, ty := range types {
			req = binary.BigEndian.AppendUint32(req, ty)
		}
		answer := r.roundTrip(binary.BigEndian.AppendUint32(req, buffer))
		if !bytes.Equal(answer[:4], req[:4]) {
			t.Fatalf("answer %x to PKEY_GET_ATTRIBUTES", answer)
		}
		return answer[8:] // status, results
	}
	for _, c := range []struct {
		name   string
		answer []byte
		want   string
	}{
		// status 0, n 2, (3, length 0), (0x102, length 2)
		{"lengths, label missing", get(withID.Pkey, 0, 3, hsmapi.CKAID), "00000000 00000002 00000003 00000000 00000102 00000002"},
		// status 0, n 1, (0x102, bytes 0a01)
		{"value", get(withID.Pkey, 2, hsmapi.CKAID), "00000000 00000001 00000102 00000002 0a010000"},
		{"value, label missing", get(withID.Pkey, 64, 3, hsmapi.CKAID), "00000028"},
		{"buffer too short", get(withID.Pkey, 1, hsmapi.CKAID), "0000000e"},
		{"no attributes at all, lengths", get(bare.Pkey, 0, 3), "00000028"},
		{"no attributes at all, value", get(bare.Pkey, 64, 3), "00000028"},
		{"none asked for", get(withID.Pkey, 0), "00000001"},
		{"buffer over a packet", get(withID.Pkey, wire.MaxPacket, hsmapi.CKAID), "0000001d"},
	} {
		if want := mustHexString(t, c.want); !bytes.Equal(c.answer, want) {
			t.Errorf("%s: answered %x, want %x", c.name, c.answer, want)
		}
	}
}

// TestLabelOfAnyBytes: over RPC a label is any bytes, as libhal stores it;
// the client reads them back as they are.
func TestLabelOfAnyBytes(t *testing.T) {
	addr, _ := served(t)
	c := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	k, err := c.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken})
	if err != nil {
		t.Fatal(err)
	}
	handle := c.open[k.UUID].handle
	for _, label := range []string{"\xff\x00label\n\x1b[31m", strings.Repeat("long label ", 90)} {
		if err := c.call(wire.FuncPkeySetAttributes, &wire.PkeySetAttributesRequest{Pkey: handle,
			Attributes: []wire.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte(label)}}}, &wire.PkeySetAttributesResponse{}); err != nil {
			t.Fatalf("label %q: %v", label, err)
		}
		got, err := c.Key(ctx, k.UUID)
		if err != nil || got.Label != label {
			t.Fatalf("label %q read back as %q, %v", label, got.Label, err)
		}
		keys, err := c.Keys(ctx, hsmapi.Filter{Attributes: []hsmapi.Attribute{{Type: hsmapi.AttributeLabel, Value: []byte(label)}}})
		if err != nil || len(keys) != 1 {
			t.Fatalf("match by label %q: %d keys, %v", label, len(keys), err)
		}
	}
	if err := c.call(wire.FuncPkeySetAttributes, &wire.PkeySetAttributesRequest{Pkey: handle,
		Attributes: []wire.Attribute{{Type: hsmapi.AttributeLabel, Value: make([]byte, hsmapi.MaxAttributeSize+1)}}}, &wire.PkeySetAttributesResponse{}); !errors.Is(err, wire.StatusBadArguments) {
		t.Fatalf("a label over %d bytes: %v", hsmapi.MaxAttributeSize, err)
	}
}

// TestListProvokesNoFailures: listing keys with and without labels and
// attributes fails no request on the server (each failure is a WARN line
// in serve's log).
func TestListProvokesNoFailures(t *testing.T) {
	var log syncBuffer
	addr, _, _, _ := servedHSM(t, testOptions, func(s *Server) { s.log = slog.New(slog.NewTextHandler(&log, nil)) })
	c := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	for _, label := range []string{"", "labelled"} {
		if _, err := c.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken, Label: label}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken,
		Levels: []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}}); err != nil {
		t.Fatal(err)
	}
	fresh := dialAs(t, addr, hsmapi.UserNormal, userPIN)
	keys, err := fresh.Keys(ctx, hsmapi.Filter{})
	if err != nil || len(keys) != 3 {
		t.Fatalf("%d keys, %v", len(keys), err)
	}
	for _, k := range keys {
		if _, err := fresh.KeyAttributes(ctx, k.UUID); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(log.String(), "request failed") {
		t.Errorf("listing keys made requests fail:\n%s", log.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLibhalArgumentChecks: the other places where libhal's rpc_server.c
// and rpc_api.c answer otherwise than a plain reading would, matched.
func TestLibhalArgumentChecks(t *testing.T) {
	addr, _ := served(t)
	anon := dialRaw(t, addr)
	// GET_RANDOM of no bytes: an empty answer.
	if answer := anon.roundTrip(mustHexString(t, "00000001 00000000 00000000")); !bytes.Equal(answer[8:], mustHexString(t, "00000000 00000000")) {
		t.Errorf("GET_RANDOM 0: %x", answer)
	}
	if st := anon.call(wire.FuncIsLoggedIn, &wire.IsLoggedInRequest{User: 7}, nil); st != wire.StatusBadArguments {
		t.Errorf("IS_LOGGED_IN of no such user: %v", st)
	}
	// PKEY_MATCH not logged in: no keys, no error.
	var m wire.PkeyMatchResponse
	if st := anon.call(wire.FuncPkeyMatch, &wire.PkeyMatchRequest{Max: 10, Previous: make([]byte, 16)}, &m); st != wire.StatusOK || len(m.UUIDs) != 0 {
		t.Errorf("PKEY_MATCH without a login: %v, %d keys", st, len(m.UUIDs))
	}

	r := dialRaw(t, addr)
	loginRaw(t, r)
	if st := r.call(wire.FuncPkeyMatch, &wire.PkeyMatchRequest{Max: 0, Previous: make([]byte, 16)}, nil); st != wire.StatusBadArguments {
		t.Errorf("PKEY_MATCH of at most 0 keys: %v", st)
	}
	var n wire.PkeyGetPublicKeyLenResponse
	if st := r.call(wire.FuncPkeyGetPublicKeyLen, &wire.PkeyGetPublicKeyLenRequest{Pkey: 12345}, &n); st != wire.StatusOK || n.Len != 0 {
		t.Errorf("PKEY_GET_PUBLIC_KEY_LEN of no key: %v, %d", st, n.Len)
	}
	if st := r.call(wire.FuncPkeyGenerateRSA, &wire.PkeyGenerateRSARequest{KeyLen: 2048, Exponent: []byte{3}, Flags: 1}, nil); st != wire.StatusUnsupportedKey {
		t.Errorf("PKEY_GENERATE_RSA with e = 3: %v", st)
	}
	if st := r.call(wire.FuncPkeyGenerateRSA, &wire.PkeyGenerateRSARequest{KeyLen: 2047, Exponent: []byte{1, 0, 1}, Flags: 1}, nil); st != wire.StatusBadArguments {
		t.Errorf("PKEY_GENERATE_RSA of 2047 bits: %v", st)
	}
	var sigKey, verifyOnly wire.PkeyGenerateECResponse
	if st := r.call(wire.FuncPkeyGenerateEC, &wire.PkeyGenerateECRequest{Curve: uint32(hsmapi.CurveP256), Flags: uint32(hsmapi.FlagDigitalSignature)}, &sigKey); st != wire.StatusOK {
		t.Fatal(st)
	}
	if st := r.call(wire.FuncPkeyGenerateEC, &wire.PkeyGenerateECRequest{Curve: uint32(hsmapi.CurveP256), Flags: uint32(hsmapi.FlagKeyEncipherment)}, &verifyOnly); st != wire.StatusOK {
		t.Fatal(st)
	}
	if st := r.call(wire.FuncPkeySetAttributes, &wire.PkeySetAttributesRequest{Pkey: sigKey.Pkey}, nil); st != wire.StatusBadArguments {
		t.Errorf("PKEY_SET_ATTRIBUTES of nothing: %v", st)
	}
	digest := sha256.Sum256([]byte("x"))
	var h wire.HashInitializeResponse
	if st := r.call(wire.FuncHashInitialize, &wire.HashInitializeRequest{Alg: 3}, &h); st != wire.StatusOK {
		t.Fatal(st)
	}
	for name, req := range map[string]*wire.PkeySignRequest{
		"both a hash handle and data": {Pkey: sigKey.Pkey, Hash: h.Hash, Data: digest[:], Max: 512},
		"neither":                     {Pkey: sigKey.Pkey, Max: 512},
	} {
		if st := r.call(wire.FuncPkeySign, req, nil); st != wire.StatusBadArguments {
			t.Errorf("PKEY_SIGN with %s: %v", name, st)
		}
	}
	if st := r.call(wire.FuncPkeySign, &wire.PkeySignRequest{Pkey: sigKey.Pkey, Data: digest[:], Max: wire.MaxPacket}, nil); st != wire.StatusRPCPacketOverflow {
		t.Errorf("PKEY_SIGN with room for more than a packet: %v", st)
	}
	var sig wire.PkeySignResponse
	if st := r.call(wire.FuncPkeySign, &wire.PkeySignRequest{Pkey: sigKey.Pkey, Data: digest[:], Max: 512}, &sig); st != wire.StatusOK {
		t.Fatal(st)
	}
	if st := r.call(wire.FuncPkeyVerify, &wire.PkeyVerifyRequest{Pkey: verifyOnly.Pkey, Data: digest[:], Signature: sig.Signature}, nil); st != wire.StatusForbidden {
		t.Errorf("PKEY_VERIFY with a key without digitalsignature: %v", st)
	}
}

// TestAttributesCrossRPC: a key with a full set of PKCS#11 attributes goes
// from an emulated HSM to one behind serve (RPC) and on to another emulated
// HSM, and arrives with every attribute it left with (but CKA_LOCAL, false
// on arrival): through the
// extensions exactly; through libhal's functions alone all but those with
// an empty value, which a Cryptech HSM's lengths cannot tell from absent.
func TestAttributesCrossRPC(t *testing.T) {
	flags := hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable
	attrs := []hsmapi.Attribute{
		{Type: hsmapi.CKAToken, Value: []byte{1}}, {Type: hsmapi.CKAPrivate, Value: []byte{1}},
		{Type: hsmapi.CKASubject, Value: []byte{}}, {Type: hsmapi.CKAID, Value: []byte{0x0a, 0x01}},
		{Type: hsmapi.CKASensitive, Value: []byte{0}}, {Type: hsmapi.CKADecrypt, Value: []byte{0}},
		{Type: hsmapi.CKAUnwrap, Value: []byte{1}}, {Type: hsmapi.CKASign, Value: []byte{1}}, {Type: hsmapi.CKADerive, Value: []byte{1}},
		{Type: hsmapi.CKAExtractable, Value: []byte{1}}, {Type: hsmapi.CKALocal, Value: []byte{1}},
		{Type: hsmapi.CKAModifiable, Value: []byte{0}},
		{Type: hsmapi.AttributePublicObject, Value: hsmapi.EncodeAttributes([]hsmapi.Attribute{
			{Type: hsmapi.CKAID, Value: []byte{0x0a, 0x01}}, {Type: hsmapi.CKAVerify, Value: []byte{1}}, {Type: hsmapi.CKAEncrypt, Value: []byte{0}}})},
	}
	var nonEmpty []hsmapi.Attribute
	for _, a := range attrs {
		if len(a.Value) > 0 {
			nonEmpty = append(nonEmpty, a)
		}
	}
	for _, plain := range []bool{false, true} {
		src, dst := hsmtest.New(t), hsmtest.New(t)
		addr, _ := served(t)
		mid := dialLogin(t, addr)
		enc, want := hsmapi.KEKOAEPSHA256, attrs
		if plain {
			mid.ext, enc, want = nil, hsmapi.KEKPKCS1v15, nonEmpty
		}
		// An imported key is never CKA_LOCAL, whatever it left with.
		want = slices.Clone(want)
		want[slices.IndexFunc(want, func(a hsmapi.Attribute) bool { return a.Type == hsmapi.CKALocal })].Value = []byte{0}
		k, err := src.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: flags, Label: "moved"})
		if err != nil {
			t.Fatal(err)
		}
		if err := src.SetAttributes(ctx, k.UUID, attrs); err != nil {
			t.Fatal(err)
		}
		hop := func(from, to hsmapi.Token, toReader hsmapi.AttributeReader) {
			t.Helper()
			kekek, err := to.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048, Flags: hsmapi.FlagKeyEncipherment | hsmapi.FlagToken})
			if err != nil {
				t.Fatal(err)
			}
			kekekPub, err := hsmapi.ParseKEKEK(kekek.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			w, err := from.Export(ctx, hsmapi.ExportRequest{Key: k.UUID, KEKEKPublicKey: kekekPub, Encryption: enc})
			if err != nil {
				t.Fatal(err)
			}
			have, err := from.(hsmapi.AttributeReader).KeyAttributes(ctx, k.UUID)
			if err != nil {
				t.Fatal(err)
			}
			res, err := to.Import(ctx, hsmapi.ImportRequest{KEKEKUUID: kekek.UUID, Wrapped: w, Encryption: enc, UUID: k.UUID,
				Label: "moved", Flags: flags, PublicKey: k.PublicKey, Attributes: have})
			if err != nil {
				t.Fatalf("plain=%v: import: %v", plain, err)
			}
			got, err := toReader.KeyAttributes(ctx, res.Key.UUID)
			if err != nil || !sameAttributes(got, want) {
				t.Fatalf("plain=%v: arrived with attributes\n%+v, %v\nwant\n%+v", plain, got, err, want)
			}
			k = res.Key
		}
		hop(src, mid, mid)
		hop(mid, dst, dst)
		if k.Label != "moved" {
			t.Errorf("plain=%v: label %q", plain, k.Label)
		}
		digest := sha256.Sum256([]byte("after two hops"))
		sig, err := dst.Sign(ctx, k.UUID, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if err := hsmapi.VerifySignature(k.PublicKey, digest[:], sig, crypto.SHA256); err != nil {
			t.Fatalf("plain=%v: %v", plain, err)
		}
	}
}

// TestImportAttributesNeedExtensionVersion2: a server whose import
// extension cannot carry attributes is not given a key without them.
func TestImportAttributesNeedExtensionVersion2(t *testing.T) {
	addr, _ := served(t)
	c := dialLogin(t, addr)
	c.ext.Version = 1
	pub := mustSPKI(t, &testkeys.RSA1024E3(t).PublicKey)
	_, err := c.Import(ctx, hsmapi.ImportRequest{UUID: hsmapi.UUID{1}, PublicKey: pub, Flags: hsmapi.FlagToken,
		Attributes: []hsmapi.Attribute{{Type: hsmapi.CKAID, Value: []byte{1}}}})
	if !errors.Is(err, hsmapi.ErrUnsupported) {
		t.Fatalf("import with attributes through version 1: %v", err)
	}
	if keys, err := c.Keys(ctx, hsmapi.Filter{}); err != nil || len(keys) != 0 {
		t.Fatalf("%d keys stored, %v", len(keys), err)
	}
}

// sameAttributes compares attribute lists, an empty value as nil.
func sameAttributes(a, b []hsmapi.Attribute) bool {
	return slices.EqualFunc(a, b, func(x, y hsmapi.Attribute) bool {
		return x.Type == y.Type && x.Delete == y.Delete && bytes.Equal(x.Value, y.Value)
	})
}
