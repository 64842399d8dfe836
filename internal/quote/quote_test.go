package quote

import (
	"strings"
	"testing"
)

func TestShort(t *testing.T) {
	long := strings.Repeat("\u202e", 20_000)
	for _, tc := range []struct{ in, short, clip string }{
		{"", `""`, ""},
		{"rsa-oaep-sha256", `"rsa-oaep-sha256"`, "rsa-oaep-sha256"},
		{strings.Repeat("a", 40), `"` + strings.Repeat("a", 40) + `"`, strings.Repeat("a", 40)},
		{strings.Repeat("9", 65_000), `"` + strings.Repeat("9", 40) + `"... (65000 bytes)`, strings.Repeat("9", 40) + "... (65000 bytes)"},
		{strings.Repeat("\xff", 65_000), `"` + strings.Repeat(`\xff`, 40) + `"... (65000 bytes)`, strings.Repeat("\xff", 40) + "... (65000 bytes)"},
		// Never cut inside a character: 13 of U+202E are 39 bytes.
		{long, `"` + strings.Repeat(`\u202e`, 13) + `"... (60000 bytes)`, strings.Repeat("\u202e", 13) + "... (60000 bytes)"},
		{"a\nb", `"a\nb"`, "a\nb"},
	} {
		if got := Short(tc.in); got != tc.short {
			t.Errorf("Short(%.20q): %s, want %s", tc.in, got, tc.short)
		}
		if got := Clip(tc.in); got != tc.clip {
			t.Errorf("Clip(%.20q): %s, want %s", tc.in, got, tc.clip)
		}
	}
}
