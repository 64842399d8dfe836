package shellquote

import (
	"os/exec"
	"testing"
)

func TestQuote(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"./hsm", "./hsm"},
		{"/var/lib/hsm-1", "/var/lib/hsm-1"},
		{"", "''"},
		{"my hsm", "'my hsm'"},
		{"it's", `'it'\''s'`},
		{"$HOME;rm", "'$HOME;rm'"},
	} {
		if got := Quote(c.in); got != c.want {
			t.Errorf("Quote(%q) = %s, want %s", c.in, got, c.want)
		}
	}
	// The shell reads each back as the one word it was.
	for _, w := range []string{"a b", "it's", "$(x)`y`", "new\nline", "*"} {
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(w)).Output()
		if err != nil || string(out) != w {
			t.Errorf("sh read %q back as %q (%v)", w, out, err)
		}
	}
}
