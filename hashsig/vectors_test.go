package hashsig

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"
)

// vectorCase is one public key, message and signature triple.
type vectorCase struct {
	name                string
	publicKey, msg, sig []byte
}

// readVectors parses the .vec format: "Key = hex" lines, cases separated by
// blank lines, "#" comments naming the case that follows.
func readVectors(t *testing.T, path string) []vectorCase {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []vectorCase
	var cur vectorCase
	flush := func() {
		if cur.publicKey != nil {
			cases = append(cases, cur)
		}
		cur = vectorCase{}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			flush()
		case strings.HasPrefix(line, "#"):
			cur.name = strings.TrimSpace(strings.TrimPrefix(line, "#"))
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: bad line %q", path, line)
			}
			b := mustHex(t, strings.TrimSpace(v))
			switch strings.TrimSpace(k) {
			case "PublicKey":
				cur.publicKey = b
			case "Msg":
				cur.msg = b
			case "Signature":
				cur.sig = b
			default:
				t.Fatalf("%s: unknown key %q", path, k)
			}
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

// checkVector verifies one case, then checks that every single-byte change,
// every truncation and a few extensions of the signature are refused.
func checkVector(t *testing.T, c vectorCase) {
	pk, err := ParsePublicKey(c.publicKey)
	if err != nil {
		t.Fatalf("%s: public key: %v", c.name, err)
	}
	if string(pk.Bytes()) != string(c.publicKey) {
		t.Errorf("%s: public key does not round-trip", c.name)
	}
	if err := pk.Verify(c.msg, c.sig); err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	step := 1
	if testing.Short() {
		step = 37
	}
	for i := 0; i < len(c.sig); i += step {
		bad := append([]byte(nil), c.sig...)
		bad[i] ^= 0x01
		if err := pk.Verify(c.msg, bad); err == nil {
			t.Fatalf("%s: signature with byte %d changed verifies", c.name, i)
		}
	}
	for i := 0; i < len(c.sig); i += step {
		if err := pk.Verify(c.msg, c.sig[:i]); err == nil {
			t.Fatalf("%s: signature cut to %d bytes verifies", c.name, i)
		}
	}
	for _, extra := range [][]byte{{0}, make([]byte, 32), c.sig[:4]} {
		if err := pk.Verify(c.msg, append(append([]byte(nil), c.sig...), extra...)); err == nil {
			t.Fatalf("%s: extended signature verifies", c.name)
		}
	}
	msg := append([]byte(nil), c.msg...)
	msg = append(msg, 0)
	if err := pk.Verify(msg, c.sig); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("%s: another message: got %v", c.name, err)
	}
}

// TestRFC8554Vectors runs the two test cases of RFC 8554 Appendix F.
func TestRFC8554Vectors(t *testing.T) {
	runVectorFile(t, "testdata/rfc8554.vec", 2)
}

// TestDraftVectors runs the three test cases of
// draft-fluhrer-lms-more-parm-sets-11 (RFC 9858 Appendix A.1 to A.3):
// SHA-256/192, SHAKE256/192 and SHAKE256/256.
func TestDraftVectors(t *testing.T) {
	runVectorFile(t, draftVectors, 3)
}

// draftVectors holds the test cases of draft-fluhrer-lms-more-parm-sets.
const draftVectors = "testdata/draft-fluhrer-lms-more-parm-sets-11.vec"

// runVectorFile checks every case of a vector file, which must hold n.
func runVectorFile(t *testing.T, path string, n int) {
	cases := readVectors(t, path)
	if len(cases) != n {
		t.Fatalf("%d cases in %s, want %d", len(cases), path, n)
	}
	for _, c := range cases {
		checkVector(t, c)
	}
	t.Logf("%s: %d cases, all must verify", path, len(cases))
}
