package hsm

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hsmkit/cryptech-backup/hsmapi"
)

// copyDir copies the regular files of one state directory into another.
func copyDir(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		in, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		out, err := os.OpenFile(filepath.Join(to, e.Name()), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err == nil {
			_, err = io.Copy(out, in)
			out.Close()
		}
		in.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// parseKEKEK parses a public KEKEK, as an export does once.
func parseKEKEK(t testing.TB, spki []byte) *hsmapi.PublicKEKEK {
	t.Helper()
	k, err := hsmapi.ParseKEKEK(spki)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
