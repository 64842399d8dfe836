package wire

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// The codecs in messages_gen.go are what msggen makes of messages.go today:
// a layout changed in one and not the other fails here.
func TestGeneratedIsCurrent(t *testing.T) {
	out := filepath.Join(t.TempDir(), "messages_gen.go")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "run", "./internal/msggen", "-in", "messages.go", "-out", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("msggen: %v\n%s", err, msg)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("messages_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("messages_gen.go is out of date: run go generate in rpc/internal/wire")
	}
}
