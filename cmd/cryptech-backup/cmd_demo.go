package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hashsig"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/softhsm"
	"github.com/hsmkit/cryptech-backup/p11"
	"github.com/hsmkit/cryptech-backup/rpc"
)

var demoCommand = &command{
	name:    "demo",
	args:    "[--dir DIR] [--keys N] [--rpc | --pkcs11 [--module PATH] [--to-module [--cryptech-module PATH]] | --master]",
	summary: "the whole transfer between two emulated HSMs, checked key by key",
	examples: `  cryptech-backup demo
  cryptech-backup demo --dir ./demo --keys 5     # keeps both HSMs and the JSON files
  cryptech-backup demo --rpc                     # both HSMs as serve daemons, the transfer over sockets
  cryptech-backup demo --pkcs11                  # between two SoftHSM2 tokens
  cryptech-backup demo --pkcs11 --to-module      # from SoftHSM2 to an emulated HSM through the project's PKCS#11 module
  cryptech-backup demo --master                  # the tamper drill: store keys outside, back up 3-of-5, zeroize, restore
`,
	define: defineDemo,
}

// defineDemo registers the flags of demo and returns what runs it.
func defineDemo(fs *flag.FlagSet) runFunc {
	var dir string
	var n int
	var overRPC, pkcs11, toModule, master bool
	var module, cryptechModule string
	fs.StringVar(&dir, "dir", "", "keep the two HSMs, their PINs (mode 0600) and the files here (must be new or empty; default a temporary directory, removed after)")
	fs.IntVar(&n, "keys", 20, "number of exportable keys on the source, 1 to 500")
	fs.BoolVar(&overRPC, "rpc", false, "run both HSMs as serve daemons in child processes and do the transfer over Unix sockets")
	fs.BoolVar(&pkcs11, "pkcs11", false, "transfer between two SoftHSM2 tokens made in the demo's directory")
	fs.StringVar(&module, "module", "", "with --pkcs11: the SoftHSM2 module (default: found in the usual places)")
	fs.BoolVar(&toModule, "to-module", false, "with --pkcs11: the destination is an emulated HSM loaded through this project's PKCS#11 module (libcryptech-pkcs11.so), in place of a second SoftHSM2 token")
	fs.BoolVar(&master, "master", false, "instead of a transfer, the tamper drill on one emulated HSM: keys, some stored outside (store --delete), the master key backed up 3-of-5, zeroized, every key refused, two shares (still refused), a third (every key and stored file works again)")
	fs.StringVar(&cryptechModule, "cryptech-module", "", "with --to-module: the module to load (default: built with go build -buildmode=c-shared into the demo's directory, which needs Go and this project's source tree as the working directory)")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		if n < 1 || n > 500 {
			return usageError{"--keys takes 1 to 500"}
		}
		if overRPC && pkcs11 {
			return usageError{"--rpc and --pkcs11 exclude each other"}
		}
		if master && (overRPC || pkcs11) {
			return usageError{"--master runs on an emulated HSM in this process: not with --rpc or --pkcs11"}
		}
		for _, f := range []string{"module", "to-module"} {
			if c.given(f) && !pkcs11 {
				return usageError{"--" + f + " only means something with --pkcs11"}
			}
		}
		if c.given("cryptech-module") && !toModule {
			return usageError{"--cryptech-module only means something with --to-module"}
		}
		kind := demoEmulated
		switch {
		case overRPC:
			kind = demoRPC
		case pkcs11:
			kind = demoPKCS11
		}
		keep := dir != ""
		if !keep {
			tmp, err := os.MkdirTemp("", "cryptech-backup-demo-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		} else if err := emptyDir(dir); err != nil {
			return err
		}
		b := &demoBackend{kind: kind, dir: dir, keep: keep}
		if kind == demoPKCS11 {
			if err := b.setupSoftHSM(module); err != nil {
				return err
			}
		}
		if toModule {
			if err := b.setupModule(ctx, e, cryptechModule); err != nil {
				return err
			}
		}
		if master {
			return runMasterDrill(ctx, e, b, n)
		}
		return runDemo(ctx, e, b, n)
	}
}

func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return err
	}
	if len(entries) != 0 {
		return fmt.Errorf("%s is not empty; the demo needs a new or empty directory", dir)
	}
	return nil
}

// demoMix is the cycle of key types the demo generates, so that any count
// of keys has a mix of types and sizes.
var demoMix = []hsmapi.GenerateRequest{
	{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256},
	{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048},
	{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384},
	{Type: hsmapi.KeyTypeRSAPrivate, Bits: 3072},
	{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP521},
	{Type: hsmapi.KeyTypeRSAPrivate, Bits: 4096},
	{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256},
	{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048},
	{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP384},
	{Type: hsmapi.KeyTypeRSAPrivate, Bits: 2048},
}

// demoHashsig are the parameters of the demo's hash-based key, its last
// exportable key: two levels of height 5, 1,024 signatures.
var demoHashsig = []hashsig.Level{
	{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4},
	{LMS: hashsig.LMS_SHA256_M32_H5, LMOTS: hashsig.LMOTS_SHA256_N32_W4},
}

// demoHSM is one of the demo's two emulated HSMs, logged in as wheel: in
// this process, or behind a serve daemon in a child process.
type demoHSM struct {
	tok   hsmapi.Token
	close func()
}

// demoBackend says where the demo's two HSMs live.
type demoBackend struct {
	kind int
	dir  string
	// keep: the HSMs stay in dir after the demo, and their PINs with them.
	keep    bool
	softhsm *softhsm.Env
	// cryptechModule, with --to-module, is the PKCS#11 module through
	// which the destination, an emulated HSM, is reached.
	cryptechModule string
}

const (
	demoEmulated = iota
	demoRPC
	demoPKCS11
)

// setupSoftHSM points SoftHSM2 at a token directory of the demo's own,
// before anything loads the module.
func (b *demoBackend) setupSoftHSM(module string) error {
	if module == "" {
		var err error
		if module, err = softhsm.FindModule(); err != nil {
			return err
		}
	}
	env, err := softhsm.SetupModule(filepath.Join(b.dir, "softhsm"), module)
	if err != nil {
		return err
	}
	b.softhsm = env
	return nil
}

// setupModule finds the project's PKCS#11 module, or builds it into the
// demo's directory from the source tree the demo runs in.
func (b *demoBackend) setupModule(ctx context.Context, e *env, module string) error {
	if module != "" {
		abs, err := filepath.Abs(module)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("--cryptech-module: %w", err)
		}
		b.cryptechModule = abs
		return nil
	}
	out := filepath.Join(b.dir, "libcryptech-pkcs11.so")
	fmt.Fprintf(e.stderr, "demo: building the PKCS#11 module: go build -buildmode=c-shared -o %s %s\n", shellQuote(out), demoModulePackage)
	cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-o", out, demoModulePackage)
	if msg, err := cmd.CombinedOutput(); err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(string(msg)), "\n")
		if first == "" {
			first = err.Error()
		}
		return fmt.Errorf("build the PKCS#11 module (run the demo in this project's source tree with Go and cgo, or give --cryptech-module PATH): %s", first)
	}
	b.cryptechModule = out
	return nil
}

// demoModulePackage is the PKCS#11 module's package, which go build finds
// from anywhere in this project's source tree.
const demoModulePackage = "github.com/hsmkit/cryptech-backup/cmd/cryptech-pkcs11"

// newModuleHSM creates an emulated HSM and opens it through the PKCS#11
// module, as an application would: the module finds it through
// $CRYPTECH_HSM, and the user logs in with the user's PIN (CKU_USER is the
// HSM's user).
func newModuleHSM(ctx context.Context, e *env, b *demoBackend, dir string, pins [3][]byte) (*demoHSM, error) {
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: pins[0], SOPIN: pins[1], UserPIN: pins[2]}, e.hsmOptions)
	if err != nil {
		return nil, err
	}
	label := h.Identity().Label
	if err := h.Close(); err != nil {
		return nil, err
	}
	// The module reads it at C_Initialize: this process loads it once.
	if err := os.Setenv("CRYPTECH_HSM", dir); err != nil {
		return nil, err
	}
	tok, err := p11.Open(p11.Config{Module: b.cryptechModule, TokenLabel: label})
	if err != nil {
		return nil, fmt.Errorf("open the emulated HSM through %s: %w", b.cryptechModule, err)
	}
	if err := tok.Login(ctx, hsmapi.UserNormal, pins[2]); err != nil {
		tok.Close()
		return nil, err
	}
	return &demoHSM{tok, func() { tok.Close() }}, nil
}

func newDemoHSM(ctx context.Context, e *env, b *demoBackend, name string) (*demoHSM, error) {
	var pins [3][]byte
	for i := range pins {
		pins[i] = []byte(hex.EncodeToString(randomBytes(16)))
		defer clear(pins[i])
	}
	dir := filepath.Join(b.dir, name)
	if b.keep {
		if err := b.writePINs(name, pins); err != nil {
			return nil, err
		}
	}
	if b.cryptechModule != "" && name == "destination" {
		return newModuleHSM(ctx, e, b, dir, pins)
	}
	if b.kind == demoPKCS11 {
		if err := b.softhsm.InitToken(name, string(pins[1]), string(pins[2])); err != nil {
			return nil, err
		}
		tok, err := p11.Open(p11.Config{Module: b.softhsm.Module(), TokenLabel: name})
		if err != nil {
			return nil, err
		}
		if err := tok.Login(ctx, hsmapi.UserNormal, pins[2]); err != nil {
			tok.Close()
			return nil, err
		}
		return &demoHSM{tok, func() { tok.Close() }}, nil
	}
	overRPC := b.kind == demoRPC
	h, err := hsm.Create(dir, hsm.InitConfig{WheelPIN: pins[0], SOPIN: pins[1], UserPIN: pins[2]}, e.hsmOptions)
	if err != nil {
		return nil, err
	}
	if !overRPC {
		s := h.NewSession()
		if err := s.Login(ctx, hsmapi.UserWheel, pins[0]); err != nil {
			h.Close()
			return nil, err
		}
		return &demoHSM{s, func() { s.Close(); h.Close() }}, nil
	}
	h.Close()
	d, err := startDaemon(ctx, dir, dir+".sock")
	if err != nil {
		return nil, err
	}
	if err := d.client.Login(ctx, hsmapi.UserWheel, pins[0]); err != nil {
		d.stop()
		return nil, err
	}
	return &demoHSM{d.client, d.stop}, nil
}

// writePINs writes the PINs of the HSM name beside it, one file each
// (NAME.wheel-pin, NAME.so-pin, NAME.user-pin, mode 0600), each usable
// with --pin-file. A SoftHSM2 token has no wheel PIN: commands use its
// user PIN.
func (b *demoBackend) writePINs(name string, pins [3][]byte) error {
	for i, which := range []string{"wheel", "so", "user"} {
		if which == "wheel" && b.kind == demoPKCS11 && !(name == "destination" && b.cryptechModule != "") {
			continue
		}
		line := append(append([]byte(nil), pins[i]...), '\n')
		err := writeFileAtomic(filepath.Join(b.dir, name+"."+which+"-pin"), line, false, true)
		clear(line)
		if err != nil {
			return fmt.Errorf("write the PINs of %s: %w", name, err)
		}
	}
	return nil
}

// pinNote says, on stderr, where the kept HSMs' PINs are and how to use them.
func (b *demoBackend) pinNote(e *env) {
	d := b.dir
	switch b.kind {
	case demoPKCS11:
		if b.cryptechModule != "" {
			fmt.Fprintf(e.stderr, "demo: the destination is the emulated HSM %s, reached through %s with CRYPTECH_HSM=%s; its PINs are in %s; the source's are in %s (mode 0600); for example: %s list --hsm %s --pin-file %s\n",
				shellQuote(filepath.Join(d, "destination")), shellQuote(b.cryptechModule), shellQuote(filepath.Join(d, "destination")),
				filepath.Join(d, "destination.{wheel,so,user}-pin"), filepath.Join(d, "source.{so,user}-pin"),
				progName, shellQuote(filepath.Join(d, "destination")), shellQuote(filepath.Join(d, "destination.wheel-pin")))
			return
		}
		fmt.Fprintf(e.stderr, "demo: the tokens' PINs are in %s (mode 0600); for example: SOFTHSM2_CONF=%s %s list --module %s --token destination --pin-file %s\n",
			filepath.Join(d, "{source,destination}.{so,user}-pin"), shellQuote(filepath.Join(d, "softhsm", "softhsm2.conf")),
			progName, shellQuote(b.softhsm.Module()), shellQuote(filepath.Join(d, "destination.user-pin")))
	default:
		fmt.Fprintf(e.stderr, "demo: the HSMs' PINs are in %s (mode 0600); for example: %s list --hsm %s --pin-file %s\n",
			filepath.Join(d, "{source,destination}.{wheel,so,user}-pin"), progName,
			shellQuote(filepath.Join(d, "destination")), shellQuote(filepath.Join(d, "destination.wheel-pin")))
	}
}

// daemon is a serve child process and a client connected to it.
type daemon struct {
	cmd    *exec.Cmd
	client *rpc.Client
}

// startDaemon runs "cryptech-backup serve" on an HSM directory and waits
// until it answers on its socket.
func startDaemon(ctx context.Context, dir, sock string) (*daemon, error) {
	// os.Args[0] is how this program was started, so the child is this very
	// program (go run, an installed binary, or a test's copy).
	cmd := exec.Command(os.Args[0], "serve", "--hsm", dir, "--listen", "unix:"+sock)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start serve daemon: %w", err)
	}
	d := &daemon{cmd: cmd}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := rpc.Dial(ctx, "unix:"+sock, nil)
		if err == nil {
			d.client = c
			return d, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.stop()
			return nil, fmt.Errorf("serve daemon for %s did not answer: %w", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the daemon as an operator would: SIGTERM, and it finishes.
func (d *daemon) stop() {
	if d.client != nil {
		d.client.Close()
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// demoRow is one line of the demo's table.
type demoRow struct {
	key                          hsmapi.KeyInfo
	exported, imported, verified bool
	problem                      string
}

func runDemo(ctx context.Context, e *env, b *demoBackend, n int) error {
	start := time.Now()
	dir := b.dir
	src, err := newDemoHSM(ctx, e, b, "source")
	if err != nil {
		return fmt.Errorf("source HSM: %w", err)
	}
	defer src.close()
	dst, err := newDemoHSM(ctx, e, b, "destination")
	if err != nil {
		return fmt.Errorf("destination HSM: %w", err)
	}
	defer dst.close()
	if b.keep {
		b.pinNote(e)
	}

	fmt.Fprintf(e.stderr, "demo: generating %d exportable keys and 1 non-exportable key on the source\n", n)
	// PKCS#11 tokens hold no hash-based keys.
	withHashsig := b.kind != demoPKCS11
	keys, err := generateDemoKeys(ctx, src.tok, n, withHashsig)
	if err != nil {
		return err
	}
	kekek, err := backup.Setup(ctx, dst.tok, backup.SetupOptions{})
	if err != nil {
		return err
	}
	if err := writeJSON(e, filepath.Join(dir, "kekek.json"), kekek, true); err != nil {
		return err
	}
	exported, err := backup.Export(ctx, src.tok, kekek, backup.ExportOptions{})
	if err != nil {
		return err
	}
	bundleFile := filepath.Join(dir, "backup.json")
	if err := writeJSON(e, bundleFile, exported, true); err != nil {
		return err
	}
	// The destination imports what travelled: the file, not the bundle in memory.
	bundle, err := parseInput(e, bundleFile, bundleKind, backup.ReadBundle)
	if err != nil {
		return err
	}
	if _, err := backup.Import(ctx, dst.tok, bundle, backup.ImportOptions{}); err != nil {
		return err
	}

	inBundle := map[string]bool{}
	for _, k := range bundle.Keys {
		inBundle[k.UUID] = true
	}
	rows := make([]demoRow, len(keys))
	failed := 0
	for i, k := range keys {
		rows[i] = checkDemoKey(ctx, src.tok, dst.tok, k, inBundle[k.UUID.String()])
		if rows[i].problem != "" {
			failed++
		}
	}
	printDemoTable(e, rows)
	if failed > 0 {
		return fmt.Errorf("demo failed: %d of %d keys did not end up where they should", failed, len(keys))
	}
	hss := ""
	if withHashsig {
		hss = "; the hash-based key signed on both HSMs with disjoint indexes"
	}
	fmt.Fprintf(e.stdout, "demo: %d of %d exportable keys exported, imported and verified with %s%s; the non-exportable key stayed home (%.1fs)\n",
		n, n, bundle.KEKEncryption, hss, time.Since(start).Seconds())
	return nil
}

// generateDemoKeys makes n exportable keys of mixed types, then one that is
// not exportable, on all cores.
func generateDemoKeys(ctx context.Context, tok hsmapi.Token, n int, withHashsig bool) ([]hsmapi.KeyInfo, error) {
	reqs := make([]hsmapi.GenerateRequest, n+1)
	for i := range n {
		reqs[i] = demoMix[i%len(demoMix)]
		if i == n-1 && withHashsig {
			reqs[i] = hsmapi.GenerateRequest{Type: hsmapi.KeyTypeHashsigPrivate, Levels: demoHashsig}
		}
		reqs[i].Flags = hsmapi.FlagDigitalSignature | hsmapi.FlagToken | hsmapi.FlagExportable
		reqs[i].Label = fmt.Sprintf("demo-%d", i+1)
	}
	reqs[n] = hsmapi.GenerateRequest{Type: hsmapi.KeyTypeECPrivate, Curve: hsmapi.CurveP256,
		Flags: hsmapi.FlagDigitalSignature | hsmapi.FlagToken, Label: "stays-home"}

	keys := make([]hsmapi.KeyInfo, len(reqs))
	errs := make([]error, len(reqs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for i := range next {
				if errs[i] = ctx.Err(); errs[i] == nil {
					keys[i], errs[i] = tok.GenerateKey(ctx, reqs[i])
				}
			}
		})
	}
	for i := range reqs {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return keys, nil
}

// checkDemoKey checks one source key on the destination: an exportable key
// must be there and sign so that the source's public key verifies it; the
// other must not be there at all.
func checkDemoKey(ctx context.Context, src, dst hsmapi.Token, k hsmapi.KeyInfo, exported bool) demoRow {
	row := demoRow{key: k, exported: exported}
	_, err := dst.Key(ctx, k.UUID)
	row.imported = err == nil
	if k.Flags&hsmapi.FlagExportable == 0 {
		if exported || row.imported {
			row.problem = "a non-exportable key left the source"
		}
		return row
	}
	if !exported || !row.imported {
		row.problem = "missing"
		return row
	}
	if k.Hashsig != nil {
		err = checkDemoHashsig(ctx, src, dst, k)
	} else {
		digest := sha256.Sum256([]byte("signed on the destination, verified with the source's public key: " + k.UUID.String()))
		var sig []byte
		sig, err = dst.Sign(ctx, k.UUID, digest[:], crypto.SHA256)
		if err == nil {
			err = hsmapi.VerifySignature(k.PublicKey, digest[:], sig, crypto.SHA256)
		}
	}
	row.verified = err == nil
	if err != nil {
		row.problem = err.Error()
	}
	return row
}

// checkDemoHashsig has both HSMs sign with their parts of a hash-based key:
// every signature must verify under the one public key, and no signature
// index may appear twice.
func checkDemoHashsig(ctx context.Context, src, dst hsmapi.Token, k hsmapi.KeyInfo) error {
	used := map[uint64]string{}
	for round := range 4 {
		for _, side := range []struct {
			name string
			tok  hsmapi.Token
		}{{"source", src}, {"destination", dst}} {
			msg := []byte(fmt.Sprintf("hash-based signature %d by the %s", round, side.name))
			sig, err := side.tok.Sign(ctx, k.UUID, msg, crypto.Hash(0))
			if err != nil {
				return fmt.Errorf("%s: %w", side.name, err)
			}
			if err := hsmapi.VerifySignature(k.PublicKey, msg, sig, crypto.Hash(0)); err != nil {
				return fmt.Errorf("%s: %w", side.name, err)
			}
			idx, err := hashsig.SignatureIndex(sig)
			if err != nil {
				return err
			}
			if other, dup := used[idx]; dup {
				return fmt.Errorf("signature index %d used by the %s and the %s", idx, other, side.name)
			}
			used[idx] = side.name
		}
	}
	return nil
}

func printDemoTable(e *env, rows []demoRow) {
	yes := map[bool]string{true: "yes", false: "no"}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tLABEL\tTYPE\tEXPORTED\tIMPORTED\tVERIFIED")
	for _, r := range rows {
		verified := yes[r.verified]
		if r.key.Flags&hsmapi.FlagExportable == 0 {
			verified = "-"
		}
		if r.problem != "" {
			verified += " (" + r.problem + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.key.UUID, r.key.Label, demoKind(r.key), yes[r.exported], yes[r.imported], verified)
	}
	tw.Flush()
}

// demoKind names a key's type and size for the demo's tables.
func demoKind(k hsmapi.KeyInfo) string {
	switch {
	case k.Curve != hsmapi.CurveNone:
		return "ec-" + k.Curve.String()
	case k.Hashsig != nil:
		return fmt.Sprintf("hss-L%d", k.Hashsig.L)
	}
	return fmt.Sprintf("rsa-%d", k.Bits)
}
