package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/transfertest"
)

// TestDaemonDiesMidImport kills the serve daemon of the destination while
// cryptech-backup import runs against it over RPC: the import fails with
// one line (or had finished), and the HSM, opened afterwards, holds all of
// the bundle's keys or none.
func TestDaemonDiesMidImport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills many daemons; not under -short")
	}
	ctx := context.Background()
	pin := hsmtest.PIN
	work := t.TempDir()
	dstDir := filepath.Join(work, "dst")
	src, dst := hsmtest.Create(t, filepath.Join(work, "src")), hsmtest.Create(t, dstDir)
	const n = 30
	for range n {
		if _, err := src.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
			Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable}); err != nil {
			t.Fatal(err)
		}
	}
	_, b := transfertest.ExportFor(t, src, dst)
	var buf bytes.Buffer
	backup.Write(&buf, b)
	bundle := filepath.Join(work, "backup.json")
	os.WriteFile(bundle, buf.Bytes(), 0o600)

	killed := 0
	for i := range 12 {
		dir := filepath.Join(work, "run", string(rune('a'+i)))
		cloneHSM(t, dstDir, dir)
		sock := filepath.Join(work, string(rune('a'+i))+".sock")
		daemon := exec.Command("cryptech-backup", "serve", "--hsm", dir, "--listen", "unix:"+sock)
		if err := daemon.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, sock)
		imp := exec.Command("cryptech-backup", "import", "--rpc", "unix:"+sock, "-i", bundle)
		imp.Env = append(os.Environ(), "CRYPTECH_PIN="+string(pin))
		var stderr bytes.Buffer
		imp.Stderr = &stderr
		if err := imp.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i) * 8 * time.Millisecond)
		daemon.Process.Signal(syscall.SIGKILL)
		daemon.Wait()
		if err := imp.Wait(); err != nil {
			killed++
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "cryptech-backup: error: ") || strings.Contains(stderr.String(), "goroutine") {
				t.Errorf("run %d: the import failed with %q, not one line", i, stderr.String())
			}
			// Cut off after it began, the import may have finished: the
			// line must not let it pass for "nothing changed".
			if lost := strings.Contains(stderr.String(), "rpc transport error") && !strings.Contains(stderr.String(), "connect to"); lost &&
				!strings.Contains(stderr.String(), "(the connection to the HSM was lost; it may have finished the operation: check with list)") {
				t.Errorf("run %d: the import lost its connection without saying it may have finished: %q", i, stderr.String())
			}
		}
		found := keysPresent(t, dir, b)
		if found != 0 && found != n {
			t.Errorf("run %d: %d of %d keys present", i, found, n)
		}
	}
	t.Logf("%d of 12 imports were cut off by the daemon's death", killed)
	if killed == 0 {
		t.Error("no import was cut off: the test proved nothing")
	}
}

func waitFor(t *testing.T, sock string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no daemon on %s: %v", sock, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
