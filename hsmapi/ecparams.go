package hsmapi

import (
	"crypto/elliptic"
	"encoding/asn1"
	"fmt"
)

// namedCurves are the curves this HSM holds, by the OIDs that name them in
// a SubjectPublicKeyInfo and in PKCS#11's CKA_EC_PARAMS.
var namedCurves = []struct {
	oid   asn1.ObjectIdentifier
	curve Curve
}{
	{asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}, CurveP256},
	{asn1.ObjectIdentifier{1, 3, 132, 0, 34}, CurveP384},
	{asn1.ObjectIdentifier{1, 3, 132, 0, 35}, CurveP521},
}

// Elliptic is the curve as package crypto/elliptic has it; nil for
// CurveNone and unknown curves.
func (c Curve) Elliptic() elliptic.Curve {
	switch c {
	case CurveP256:
		return elliptic.P256()
	case CurveP384:
		return elliptic.P384()
	case CurveP521:
		return elliptic.P521()
	}
	return nil
}

// ECParams is PKCS#11's CKA_EC_PARAMS for curve c: the DER of its named
// curve's OID.
func ECParams(c Curve) ([]byte, error) {
	for _, n := range namedCurves {
		if n.curve == c {
			return asn1.Marshal(n.oid)
		}
	}
	return nil, fmt.Errorf("%w: unknown curve %v", ErrBadArguments, c)
}

// ParseECParams names the curve of a CKA_EC_PARAMS, refusing curves this
// HSM does not hold, explicit parameters, and anything but exactly one DER
// OID.
func ParseECParams(params []byte) (Curve, error) {
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(params, &oid); err == nil && len(rest) == 0 {
		for _, n := range namedCurves {
			if n.oid.Equal(oid) {
				if again, _ := asn1.Marshal(oid); string(again) == string(params) {
					return n.curve, nil
				}
			}
		}
	}
	return CurveNone, fmt.Errorf("%w: EC parameters %x", ErrUnsupportedKey, params)
}
