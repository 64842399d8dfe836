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
	"github.com/hsmkit/cryptech-backup/hsm"
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
	pin := []byte("rpc-kill-pin")
	work := t.TempDir()
	create := func(dir string) {
		h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: pin, SOPIN: pin, UserPIN: pin, Blocks: 128}, testOptions)
		if err != nil {
			t.Fatal(err)
		}
		h.Close()
	}
	srcDir, dstDir := filepath.Join(work, "src"), filepath.Join(work, "dst")
	create(srcDir)
	create(dstDir)
	h, _ := hsm.Open(srcDir, testOptions)
	src := h.NewSession()
	src.Login(ctx, hsm.UserWheel, pin)
	const n = 30
	for range n {
		if _, err := src.GenerateKey(ctx, hsm.GenerateRequest{Type: hsm.KeyTypeECPrivate, Curve: hsm.CurveP256,
			Flags: hsm.FlagDigitalSignature | hsm.FlagToken | hsm.FlagExportable}); err != nil {
			t.Fatal(err)
		}
	}
	hd, _ := hsm.Open(dstDir, testOptions)
	dst := hd.NewSession()
	dst.Login(ctx, hsm.UserWheel, pin)
	kekek, err := backup.Setup(ctx, dst, backup.SetupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.Export(ctx, src, kekek, backup.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src.Close()
	h.Close()
	dst.Close()
	hd.Close()
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
		}
		hh, err := hsm.Open(dir, testOptions)
		if err != nil {
			t.Fatalf("run %d: the HSM does not open after its daemon died: %v", i, err)
		}
		s := hh.NewSession()
		s.Login(ctx, hsm.UserWheel, pin)
		found := 0
		for _, k := range b.Keys {
			id, _ := hsm.ParseUUID(k.UUID)
			if _, err := s.Key(ctx, id); err == nil {
				found++
			}
		}
		s.Close()
		hh.Close()
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
