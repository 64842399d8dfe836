package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
)

// TestModuleSOTrust loads the built module with miekg/pkcs11: the user
// imports an RSA public key (C_CreateObject) and cannot wrap a
// CKA_WRAP_WITH_TRUSTED key under it nor trust it; the SO finds it, may
// change nothing of it but CKA_TRUSTED, and trusts it; then the user's
// C_WrapKey works and the blob opens under the RSA private key. The same
// in process and over RPC (EXT_REFUSAL tells the refused wrap from a
// session not logged in, EXT_TRUST_CANDIDATE shows the SO the key,
// EXT_LOAD_SECRET stores the AES key).
func TestModuleSOTrust(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(*testing.T) (*pkcs11.Ctx, pkcs11.SessionHandle)
	}{{"in process", loggedInModule}, {"over RPC", loggedInModuleOverRPC}} {
		t.Run(tc.name, func(t *testing.T) { soTrust(t, tc.open) })
	}
}

func soTrust(t *testing.T, open func(*testing.T) (*pkcs11.Ctx, pkcs11.SessionHandle)) {
	p, s := open(t)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := p.CreateObject(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, rk.N.Bytes()), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "destination")})
	if err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 32)
	rand.Read(value)
	guarded, err := p.CreateObject(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, value), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true), pkcs11.NewAttribute(pkcs11.CKA_WRAP_WITH_TRUSTED, true)})
	if err != nil {
		t.Fatal(err)
	}
	params := pkcs11.NewOAEPParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, pkcs11.CKZ_DATA_SPECIFIED, nil)
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, params)}
	_, err = p.WrapKey(s, mech, pub, guarded)
	wantErr(t, "wrap under an untrusted key", err, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED)
	trust := func(on bool) []*pkcs11.Attribute {
		return []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TRUSTED, on)}
	}
	wantErr(t, "the user trusts", p.SetAttributeValue(s, pub, trust(true)), pkcs11.CKR_ATTRIBUTE_READ_ONLY)

	if err := p.Logout(s); err != nil {
		t.Fatal(err)
	}
	if err := p.Login(s, pkcs11.CKU_SO, string(hsmtest.PIN)); err != nil {
		t.Fatal(err)
	}
	if err := p.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "destination")}); err != nil {
		t.Fatal(err)
	}
	found, _, err := p.FindObjects(s, 10)
	p.FindObjectsFinal(s)
	if err != nil || len(found) != 1 || found[0] != pub {
		t.Fatalf("the SO finds %v (%v), want %d", found, err, pub)
	}
	wantErr(t, "the SO relabels", p.SetAttributeValue(s, pub, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, "mine")}), pkcs11.CKR_ATTRIBUTE_READ_ONLY)
	if err := p.SetAttributeValue(s, pub, trust(true)); err != nil {
		t.Fatalf("the SO trusts: %v", err)
	}
	if err := p.Logout(s); err != nil {
		t.Fatal(err)
	}
	if err := p.Login(s, pkcs11.CKU_USER, string(hsmtest.PIN)); err != nil {
		t.Fatal(err)
	}
	a, err := p.GetAttributeValue(s, pub, trust(false))
	if err != nil || !bytes.Equal(a[0].Value, []byte{1}) {
		t.Fatalf("CKA_TRUSTED the user reads: %v %v", a, err)
	}
	blob, err := p.WrapKey(s, mech, pub, guarded)
	if err != nil {
		t.Fatalf("wrap under the trusted key: %v", err)
	}
	if got, err := rsa.DecryptOAEP(sha256.New(), nil, rk, blob, nil); err != nil || !bytes.Equal(got, value) {
		t.Fatalf("the wrapped key: %x %v", got, err)
	}
}
