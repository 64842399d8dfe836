//go:build cgo

package p11

import (
	"bytes"
	"context"
	"encoding/asn1"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/lockassert"
)

var _ hsmapi.PrivateKeyLoader = (*Token)(nil)

// LoadPrivateKey stores an RSA private key given in the clear (a PKCS#8
// PrivateKeyInfo) with C_CreateObject: a session object unless the flags
// say token, with the attributes its flags give (flagTemplates: always
// CKA_SENSITIVE and CKA_PRIVATE, extractable only when exportable, and no
// usage the flags do not give; keyencipherment is CKA_UNWRAP alone, never
// CKA_DECRYPT, which would let the PIN's holder decrypt a bundle's KEKs),
// and unmodifiable. The token marks it not made there (CKA_LOCAL false). A soft KEKEK is loaded so, unwraps the KEKs of one import, and
// goes when it is deleted or the session closes.
//
// The key's numbers are read from the DER in place, never copied into Go
// big integers, so the caller's wipe of the buffer clears them (the PKCS#11
// library's own copies are its business). EC keys are not loaded: a token
// object of one needs its public point beside it.
func (t *Token) LoadPrivateKey(_ context.Context, req hsmapi.LoadRequest) (hsmapi.KeyInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k, err := t.loadPrivate(req)
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("load key: %w", err)
	}
	return k, nil
}

// loadPrivate is LoadPrivateKey. Called with t.mu held.
func (t *Token) loadPrivate(req hsmapi.LoadRequest) (hsmapi.KeyInfo, error) {
	lockassert.Held(&t.mu)
	if _, err := t.session(); err != nil {
		return hsmapi.KeyInfo{}, err
	}
	if err := hsmapi.CheckLabel(req.Label); err != nil {
		return hsmapi.KeyInfo{}, err
	}
	if len(req.Attributes) != 0 {
		return hsmapi.KeyInfo{}, fmt.Errorf("%w: attributes on a key loaded into a PKCS#11 token", hsmapi.ErrUnsupported)
	}
	if req.Flags&hsmapi.FlagPublic != 0 || !req.Flags.Valid() {
		return hsmapi.KeyInfo{}, fmt.Errorf("%w: flags 0x%x for a private key", hsmapi.ErrBadArguments, uint32(req.Flags))
	}
	parts, err := parseRSAPKCS8(req.PKCS8)
	if err != nil {
		return hsmapi.KeyInfo{}, err
	}
	id, err := hsmapi.NewUUID(nil)
	if err != nil {
		return hsmapi.KeyInfo{}, err
	}
	// Exactly what the flags grant, as for a key made on the token.
	tmpl, _ := keyTemplates(req.Flags, id[:], req.Label)
	tmpl.set(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)
	tmpl.set(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA)
	tmpl.set(pkcs11.CKA_MODIFIABLE, false)
	for _, a := range []struct {
		typ uint
		v   []byte
	}{
		{pkcs11.CKA_MODULUS, parts.N}, {pkcs11.CKA_PUBLIC_EXPONENT, parts.E},
		{pkcs11.CKA_PRIVATE_EXPONENT, parts.D}, {pkcs11.CKA_PRIME_1, parts.P},
		{pkcs11.CKA_PRIME_2, parts.Q}, {pkcs11.CKA_EXPONENT_1, parts.Dp},
		{pkcs11.CKA_EXPONENT_2, parts.Dq}, {pkcs11.CKA_COEFFICIENT, parts.Qinv},
	} {
		// Not NewAttribute, which would copy the number into a buffer of
		// its own that nobody clears.
		tmpl = append(tmpl, &pkcs11.Attribute{Type: a.typ, Value: a.v})
	}
	h, err := t.raw.CreateObject(t.sess, tmpl.final())
	if err != nil {
		return hsmapi.KeyInfo{}, fmt.Errorf("create private key: %w", err)
	}
	// Found as any key is, so that it is described (and named) the same.
	o, err := t.object(id)
	if err != nil {
		t.raw.DestroyObject(t.sess, h)
		return hsmapi.KeyInfo{}, err
	}
	return o.info, nil
}

// rsaParts are an RSA private key's numbers as unsigned big-endian bytes,
// slices of the DER they were read from.
type rsaParts struct{ N, E, D, P, Q, Dp, Dq, Qinv []byte }

var oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}

// parseRSAPKCS8 reads a PrivateKeyInfo holding an RSA key (RFC 5208, RFC
// 8017 A.1.2, two primes) without copying its numbers.
func parseRSAPKCS8(der []byte) (rsaParts, error) {
	var pki struct {
		Version   int
		Algorithm struct {
			Algorithm  asn1.ObjectIdentifier
			Parameters asn1.RawValue `asn1:"optional"`
		}
		// A RawValue, not []byte, which asn1 would copy: its Bytes are a
		// slice of der.
		PrivateKey asn1.RawValue
	}
	bad := func(why string) (rsaParts, error) {
		return rsaParts{}, fmt.Errorf("%w: PKCS#8: %s", hsmapi.ErrBadArguments, why)
	}
	rest, err := asn1.Unmarshal(der, &pki)
	if err != nil || len(rest) != 0 || pki.Version != 0 || pki.PrivateKey.Tag != asn1.TagOctetString || pki.PrivateKey.Class != asn1.ClassUniversal {
		return bad("not a PrivateKeyInfo")
	}
	if !pki.Algorithm.Algorithm.Equal(oidRSAEncryption) {
		return rsaParts{}, fmt.Errorf("%w: only RSA private keys load into a PKCS#11 token", hsmapi.ErrUnsupportedKey)
	}
	var k struct {
		Version                     int
		N, E, D, P, Q, Dp, Dq, Qinv asn1.RawValue
	}
	if rest, err := asn1.Unmarshal(pki.PrivateKey.Bytes, &k); err != nil || len(rest) != 0 || k.Version != 0 {
		return bad("not a two-prime RSAPrivateKey")
	}
	var p rsaParts
	for _, f := range []struct {
		dst *[]byte
		v   asn1.RawValue
	}{{&p.N, k.N}, {&p.E, k.E}, {&p.D, k.D}, {&p.P, k.P}, {&p.Q, k.Q}, {&p.Dp, k.Dp}, {&p.Dq, k.Dq}, {&p.Qinv, k.Qinv}} {
		if f.v.Tag != asn1.TagInteger || f.v.Class != asn1.ClassUniversal || len(f.v.Bytes) == 0 || f.v.Bytes[0]&0x80 != 0 {
			return bad("a number that is not a positive INTEGER")
		}
		*f.dst = bytes.TrimLeft(f.v.Bytes, "\x00")
	}
	return p, nil
}
