package hsmapi

import (
	"encoding/hex"
	"testing"
)

func TestECParams(t *testing.T) {
	for c, want := range map[Curve]string{
		CurveP256: "06082a8648ce3d030107",
		CurveP384: "06052b81040022",
		CurveP521: "06052b81040023",
	} {
		der, err := ECParams(c)
		if err != nil || hex.EncodeToString(der) != want {
			t.Errorf("ECParams(%v) = %x, %v; want %s", c, der, err, want)
		}
		if back, err := ParseECParams(der); back != c || err != nil {
			t.Errorf("ParseECParams(%x) = %v, %v", der, back, err)
		}
		if c.Elliptic() == nil || c.Elliptic().Params().BitSize != map[Curve]int{CurveP256: 256, CurveP384: 384, CurveP521: 521}[c] {
			t.Errorf("%v.Elliptic() = %v", c, c.Elliptic())
		}
	}
	if _, err := ECParams(CurveNone); err == nil {
		t.Error("ECParams(CurveNone) succeeded")
	}
	for _, bad := range []string{
		"",
		"06082a8648ce3d03010700", // trailing byte
		"06052b8104000a",         // secp256k1
		"0500",                   // NULL (implicit curve)
		"3003020101",             // explicit parameters of sorts
		"0681082a8648ce3d030107", // OID with a non-minimal length
	} {
		b, _ := hex.DecodeString(bad)
		if c, err := ParseECParams(b); err == nil {
			t.Errorf("ParseECParams(%s) = %v, want an error", bad, c)
		}
	}
}
