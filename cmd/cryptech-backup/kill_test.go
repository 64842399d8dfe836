package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/hsmtest"
	"github.com/hsmkit/cryptech-backup/internal/transfertest"
)

// TestImportSurvivesSIGKILL kills cryptech-backup import at a spread of
// moments; every time, the destination opens afterwards and holds all of
// the bundle's keys or none.
func TestImportSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills many processes; not under -short")
	}
	ctx := context.Background()
	pin := hsmtest.PIN
	work := t.TempDir()
	src := hsmtest.Create(t, filepath.Join(work, "src"))
	dstDir := filepath.Join(work, "dst")
	dst := hsmtest.Create(t, dstDir)
	const n = 40
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
	if err := os.WriteFile(bundle, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	dst.Close()

	importInto := func(dir string) *exec.Cmd {
		cmd := exec.Command("cryptech-backup", "import", "--hsm", dir, "-i", bundle)
		// Under -race a process sleeps a second at exit (GORACE
		// atexit_sleep_ms), which would make that second most of a "whole
		// import" and put every kill after the commit.
		cmd.Env = append(os.Environ(), "CRYPTECH_PIN="+string(pin), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
		return cmd
	}
	// How long a whole import takes, so the kills spread across it.
	full := filepath.Join(work, "full")
	cloneHSM(t, dstDir, full)
	start := time.Now()
	if out, err := importInto(full).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	took := time.Since(start)

	killed, complete := 0, 0
	const runs = 24
	for i := range runs {
		dir := filepath.Join(work, "run", string(rune('a'+i)))
		cloneHSM(t, dstDir, dir)
		cmd := importInto(dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(killAt(took, i, runs))
		cmd.Process.Signal(syscall.SIGKILL)
		if err := cmd.Wait(); err != nil {
			killed++
		}
		found := keysPresent(t, dir, b)
		if found != 0 && found != n {
			t.Errorf("run %d: killed after %v, %d of %d keys present", i, killAt(took, i, runs), found, n)
		}
		if found == n {
			complete++
		}
	}
	t.Logf("a whole import took %v; %d of %d runs were killed before they finished; %d ended with every key, the others with none",
		took, killed, runs, complete)
	if killed == 0 || complete == runs {
		t.Error("no run was killed before the import committed: the test proved nothing")
	}
}

// killAt spreads the kills from a third of the way through a whole import,
// when the process is still reading, to just past its end.
func killAt(took time.Duration, i, runs int) time.Duration {
	return took/3 + took*time.Duration(i)/time.Duration(runs-1)
}

// keysPresent opens the emulated HSM in dir, as after a crash, and counts
// how many of the bundle's keys it holds.
func keysPresent(t *testing.T, dir string, b *backup.Bundle) int {
	t.Helper()
	h, err := hsm.Open(dir, testOptions)
	if err != nil {
		t.Fatalf("the HSM in %s does not open after the kill: %v", dir, err)
	}
	defer h.Close()
	s := h.NewSession()
	defer s.Close()
	if err := s.Login(context.Background(), hsmapi.UserWheel, hsmtest.PIN); err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, k := range b.Keys {
		id, _ := hsmapi.ParseUUID(k.UUID)
		if _, err := s.Key(context.Background(), id); err == nil {
			found++
		}
	}
	return found
}

func cloneHSM(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"flash.img", "mkm"} {
		data, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
