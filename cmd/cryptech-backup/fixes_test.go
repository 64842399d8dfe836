package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/rpc"
)

const fixesPIN = "wheel-pin-1"

// makeSource creates an emulated HSM in dir with an exportable EC key and
// an exportable HSS key (32 signatures), and a KEKEK file for a second HSM;
// it returns the KEKEK file's path and the HSS key's UUID.
func makeSource(t *testing.T, dir string) (string, hsmapi.UUID) {
	t.Helper()
	ctx := context.Background()
	pin := []byte(fixesPIN)
	var hss hsmapi.UUID
	for _, d := range []string{"src", "dst"} {
		h, err := hsm.Create(filepath.Join(dir, d), hsm.InitConfig{WheelPIN: pin, SOPIN: pin, UserPIN: pin, Blocks: 64}, testOptions)
		if err != nil {
			t.Fatal(err)
		}
		s := h.NewSession()
		if err := s.Login(ctx, hsmapi.UserWheel, pin); err != nil {
			t.Fatal(err)
		}
		flags := hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable
		if d == "src" {
			if _, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256, Flags: flags}); err != nil {
				t.Fatal(err)
			}
			k, err := s.GenerateKey(ctx, hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Flags: flags,
				Levels: []hashsig.Level{{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W8}}})
			if err != nil {
				t.Fatal(err)
			}
			hss = k.UUID
		} else {
			f, err := backup.Setup(ctx, s, backup.SetupOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			backup.Write(&buf, f)
			if err := os.WriteFile(filepath.Join(dir, "kekek.json"), buf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "kekek.json"), hss
}

// oneLine checks that stderr is one line matching re.
func checkOneLine(t *testing.T, stderr, re string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !regexp.MustCompile(re).MatchString(strings.TrimSuffix(stderr, "\n")) {
		t.Errorf("stderr %q: want one line matching %s", stderr, re)
	}
}

func pinEnv(stdout, stderr io.Writer) *env {
	return &env{stdin: strings.NewReader(""), stdout: stdout, stderr: stderr, hsmOptions: testOptions,
		getenv: func(k string) string {
			if k == "CRYPTECH_PIN" {
				return fixesPIN
			}
			return ""
		}}
}

// An export whose stdout is a closed pipe fails with one line that says
// the HSS keys were split, instead of dying of SIGPIPE without a word.
func TestExportToClosedPipe(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGPIPE")
	}
	dir := t.TempDir()
	kekek, _ := makeSource(t, dir)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	cmd := exec.Command("cryptech-backup", "export", "--hsm", filepath.Join(dir, "src"), "-i", kekek)
	cmd.Env = append(os.Environ(), "CRYPTECH_PIN="+fixesPIN)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	err = cmd.Run()
	w.Close()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("export to a closed pipe: %v, want exit status 1; stderr %q", err, stderr.String())
	}
	checkOneLine(t, stderr.String(), `^cryptech-backup: error: .*broken pipe; the 1 HSS keys were split for this bundle`)
}

// cancelOnExport cancels the command's context as the HSM exports key.
type cancelOnExport struct {
	hsmapi.Token
	key    hsmapi.UUID
	cancel func()
}

func (c cancelOnExport) Export(ctx context.Context, req hsmapi.ExportRequest) (hsmapi.WrappedKey, error) {
	if req.Key == c.key {
		c.cancel()
	}
	return c.Token.Export(ctx, req)
}

// A Ctrl-C once Export splits HSS keys does not throw the bundle away.
func TestExportInterruptedWhileSplitting(t *testing.T) {
	dir := t.TempDir()
	kekek, hss := makeSource(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	e := pinEnv(&stdout, &stderr)
	e.ctx = ctx
	e.wrapToken = func(tok hsmapi.Token) hsmapi.Token { return cancelOnExport{tok, hss, cancel} }
	out := filepath.Join(dir, "backup.json")
	if status := run([]string{"export", "--hsm", filepath.Join(dir, "src"), "-i", kekek, "-o", out}, e); status != 0 {
		t.Fatalf("exit status %d, stderr %q", status, stderr.String())
	}
	if ctx.Err() == nil {
		t.Fatal("the HSS key was not exported: the test proved nothing")
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), hss.String()) {
		t.Errorf("the bundle lacks the HSS key %s", hss)
	}
}

// A command that fails because the connection to the daemon was lost says
// the operation may have finished.
func TestLostConnectionHint(t *testing.T) {
	dir := t.TempDir()
	makeSource(t, dir)
	h, err := hsm.Open(filepath.Join(dir, "src"), testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv := rpc.NewServer(h, slog.New(slog.NewTextHandler(io.Discard, nil)))
	sock := filepath.Join(dir, "hsm.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())
	// The proxy passes the handshake's two requests (GetVersion,
	// ExtCapabilities) and their answers, then passes the third (the
	// login) but drops the connection instead of answering.
	proxySock := filepath.Join(dir, "proxy.sock")
	pl, err := net.Listen("unix", proxySock)
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	go func() {
		c, err := pl.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		d, err := net.Dial("unix", sock)
		if err != nil {
			return
		}
		defer d.Close()
		buf := make([]byte, 1<<16)
		for i := range 3 {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			d.Write(buf[:n])
			if i < 2 {
				n, err := d.Read(buf)
				if err != nil {
					return
				}
				c.Write(buf[:n])
			}
		}
		time.Sleep(100 * time.Millisecond)
	}()
	var stdout, stderr bytes.Buffer
	status := run([]string{"list", "--rpc", "unix:" + proxySock}, pinEnv(&stdout, &stderr))
	if status != 1 {
		t.Errorf("exit status %d, want 1", status)
	}
	checkOneLine(t, stderr.String(), `^cryptech-backup: error: .*\(the connection to the HSM was lost; it may have finished the operation: check with list\)$`)

	// A connection never made began nothing: no such hint.
	stderr.Reset()
	pl.Close()
	os.Remove(proxySock)
	run([]string{"list", "--rpc", "unix:" + proxySock}, pinEnv(&stdout, &stderr))
	if strings.Contains(stderr.String(), "may have finished") {
		t.Errorf("a failed connect says %q", stderr.String())
	}
}

// One SIGTERM ends a command blocked opening a FIFO nobody writes to: one
// line, exit 1, within the grace period and a little.
func TestSignalEndsBlockedCommand(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no FIFOs or SIGTERM")
	}
	dir := t.TempDir()
	makeSource(t, dir)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	for _, args := range [][]string{
		{"import", "--hsm", filepath.Join(dir, "dst"), "-i", fifo},
		{"list", "--hsm", filepath.Join(dir, "dst"), "--pin-file", fifo},
	} {
		cmd := exec.Command("cryptech-backup", args...)
		cmd.Env = append(os.Environ(), "CRYPTECH_PIN="+fixesPIN)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("%s: %v, want exit status 1", args[0], err)
			}
			checkOneLine(t, stderr.String(), `^cryptech-backup: interrupted$`)
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("%s: still running 10s after SIGTERM", args[0])
		}
	}
}

// serve logs the address a tcp:HOST:0 listener got.
func TestServeLogsListenerAddress(t *testing.T) {
	dir := t.TempDir()
	makeSource(t, dir)
	cmd := exec.Command("cryptech-backup", "serve", "--hsm", filepath.Join(dir, "src"), "--listen", "tcp:127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		io.Copy(io.Discard, stderr)
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`listen=tcp:127\.0\.0\.1:[1-9][0-9]*$`).MatchString(strings.TrimSpace(line)) {
		t.Errorf("serve logged %q, want the port it got", line)
	}
}

// Two daemons started at once on one socket path: one serves, the other
// exits 1 with one line, and the socket stays the first one's.
func TestServeTwoDaemonsOneSocket(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix sockets")
	}
	dir := t.TempDir()
	makeSource(t, dir)
	for i := range 5 {
		sock := filepath.Join(dir, "s.sock")
		var cmds [2]*exec.Cmd
		var errs [2]bytes.Buffer
		exited := make(chan int, 2)
		var wg sync.WaitGroup
		for j := range cmds {
			// Each daemon has an HSM of its own: the HSM's lock must not
			// be what keeps the second out.
			hsmDir := filepath.Join(dir, []string{"src", "dst"}[j])
			cmds[j] = exec.Command("cryptech-backup", "serve", "--hsm", hsmDir, "--listen", "unix:"+sock)
			cmds[j].Stderr = &errs[j]
		}
		for j := range cmds {
			if err := cmds[j].Start(); err != nil {
				t.Fatal(err)
			}
		}
		for j := range cmds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cmds[j].Wait()
				exited <- j
			}()
		}
		var loser int
		select {
		case loser = <-exited:
		case <-time.After(15 * time.Second):
			t.Fatalf("run %d: both daemons still running", i)
		}
		winner := 1 - loser
		if code := cmds[loser].ProcessState.ExitCode(); code != 1 {
			t.Errorf("run %d: the second daemon exited %d, want 1; stderr %q", i, code, errs[loser].String())
		}
		checkOneLine(t, errs[loser].String(), `^cryptech-backup: error: .*s\.sock: another daemon is serving there$`)
		waitFor(t, sock)
		cmds[winner].Process.Signal(syscall.SIGTERM)
		wg.Wait()
		if code := cmds[winner].ProcessState.ExitCode(); code != 0 {
			t.Errorf("run %d: the serving daemon exited %d; stderr %q", i, code, errs[winner].String())
		}
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("run %d: the socket is left after the daemon stopped: %v", i, err)
		}
	}
}

type fullWriter struct{}

func (fullWriter) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// A command whose output to stdout is lost fails, with one line.
func TestStdoutWriteError(t *testing.T) {
	dir := t.TempDir()
	kekek, _ := makeSource(t, dir)
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	var stdout, stderr bytes.Buffer
	mustRun := func(args ...string) string {
		t.Helper()
		stdout.Reset()
		stderr.Reset()
		if status := run(args, pinEnv(&stdout, &stderr)); status != 0 {
			t.Fatalf("%v: exit status %d, stderr %q", args, status, stderr.String())
		}
		return strings.TrimSpace(stdout.String())
	}
	bundle := filepath.Join(dir, "backup.json")
	mustRun("export", "--hsm", src, "-i", kekek, "-o", bundle, "--skip-exhausted")
	key := mustRun("keygen", "ec", "--hsm", src)
	msg, sig := filepath.Join(dir, "msg"), filepath.Join(dir, "msg.sig")
	os.WriteFile(msg, []byte("message"), 0o600)
	mustRun("sign", "--hsm", src, "--key", key, "-i", msg, "-o", sig)
	for _, args := range [][]string{
		{"keygen", "ec", "--hsm", src},
		{"import", "--hsm", dst, "-i", bundle},
		{"verify", "--hsm", src, "--key", key, "--sig", sig, "-i", msg},
		{"list", "--hsm", src},
		{"--help"},
	} {
		stderr.Reset()
		if status := run(args, pinEnv(fullWriter{}, &stderr)); status != 1 {
			t.Errorf("%v >/dev/full: exit status %d, want 1", args, status)
		}
		checkOneLine(t, stderr.String(), `^cryptech-backup: error: .*no space left on device$`)
	}
}

// A prefix that layers of wrapping repeat is said once.
func TestOneLineSaysPrefixesOnce(t *testing.T) {
	err := fmt.Errorf("import: %w", fmt.Errorf("import: %w", errors.New("flash full")))
	if got := oneLine(err); got != "import: flash full" {
		t.Errorf("oneLine = %q", got)
	}
	err = fmt.Errorf("read %s: %w", "/tmp", &os.PathError{Op: "read", Path: "/tmp", Err: syscall.EISDIR})
	if got := oneLine(err); got != "read /tmp: is a directory" {
		t.Errorf("oneLine = %q", got)
	}
}
