package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsm"
)

const progName = "cryptech-backup"

// env is the outside world of one run: streams and environment, so that
// tests can run the CLI in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// readSecret prompts on the terminal without echo; nil when there is no
	// terminal.
	readSecret func(ctx context.Context, prompt string) ([]byte, error)
	// hsmOptions tune every emulated HSM the run opens or creates.
	hsmOptions hsm.Options
}

func newEnv() *env {
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	if tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err == nil {
		tty.Close()
		e.readSecret = readSecretFromTTY
	}
	return e
}

// readSecretFromTTY reads from the controlling terminal, so a prompt works
// even when stdin and stdout carry files. An interrupt (Ctrl-C) gives the
// terminal its echo back and returns the context's error.
func readSecretFromTTY(ctx context.Context, prompt string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	fd := int(tty.Fd())
	state, err := term.GetState(fd)
	if err != nil {
		tty.Close()
		return nil, err
	}
	fmt.Fprint(tty, prompt)
	type answer struct {
		secret []byte
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		secret, err := term.ReadPassword(fd)
		done <- answer{secret, err}
	}()
	select {
	case a := <-done:
		fmt.Fprint(tty, "\r\033[K")
		tty.Close()
		return a.secret, a.err
	case <-ctx.Done():
		// The reader stays blocked on the terminal until the process exits.
		term.Restore(fd, state)
		fmt.Fprint(tty, "\r\n")
		return nil, ctx.Err()
	}
}

// command is one subcommand.
type command struct {
	name, args, summary string
	// define registers the command's own flags and returns what runs once
	// they are parsed.
	define func(fs *flag.FlagSet) runFunc
	// needsHSM: the command takes the common flags that choose an HSM.
	needsHSM bool
	examples string
	// subcommands, when set, make the command a group: "hashsig keygen".
	subcommands []*command
}

type runFunc func(ctx context.Context, e *env, c *call) error

// call holds the parsed common flags of one invocation.
type call struct {
	fs      *flag.FlagSet
	hsmDir  string
	pin     string
	pinFile string
	rpc     string
	tls     tlsFlags
	module  string
	token   string
	slot    int
}

// addBool registers a boolean flag under a short and a long name.
func addBool(fs *flag.FlagSet, p *bool, short, long, usage string) {
	fs.BoolVar(p, long, false, usage)
	if short != "" {
		fs.BoolVar(p, short, false, "same as --"+long)
	}
}

// addString registers a string flag under a short and a long name.
func addString(fs *flag.FlagSet, p *string, short, long, value, usage string) {
	fs.StringVar(p, long, value, usage)
	if short != "" {
		fs.StringVar(p, short, value, "same as --"+long)
	}
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// errInvalidSignature makes verify exit 1 with its own message.
var errInvalidSignature = errors.New("invalid signature")

func run(args []string, e *env) (status int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(e.stderr, "%s: internal error: %v\n", progName, r)
			if e.getenv("CRYPTECH_BACKUP_DEBUG") != "" {
				e.stderr.Write(debug.Stack())
			}
			status = 1
		}
	}()
	// The first Ctrl-C asks the command to stop between steps (the keystore
	// is crash-safe either way, but files get cleaned up); a second one kills.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()

	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(e.stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "version" {
		fmt.Fprintln(e.stdout, progName, version())
		return 0
	}
	cmd := lookup(commands(), args[0])
	if cmd == nil {
		fmt.Fprintf(e.stderr, "%s: error: unknown command %q\n", progName, args[0])
		fmt.Fprintf(e.stderr, "%s: hint: run '%s --help' for the list of commands\n", progName, progName)
		return 2
	}
	name := cmd.name
	if cmd.subcommands != nil {
		group := cmd
		if len(args) < 2 || args[1] == "-h" || args[1] == "--help" || args[1] == "help" {
			printGroupUsage(e.stderr, group)
			if len(args) < 2 {
				return 2
			}
			return 0
		}
		if cmd = lookup(group.subcommands, args[1]); cmd == nil {
			fmt.Fprintf(e.stderr, "%s: error: unknown command %q\n", progName, group.name+" "+args[1])
			fmt.Fprintf(e.stderr, "%s: hint: run '%s %s --help' for its commands\n", progName, progName, group.name)
			return 2
		}
		name, args = group.name+" "+cmd.name, args[1:]
	}
	c := &call{}
	c.fs = flag.NewFlagSet(progName+" "+name, flag.ContinueOnError)
	c.fs.SetOutput(e.stderr)
	c.fs.Usage = func() { commandUsage(e.stderr, name, cmd, c.fs) }
	if cmd.needsHSM {
		c.fs.StringVar(&c.hsmDir, "hsm", "", "emulated HSM state directory (default $CRYPTECH_HSM, else ./hsm)")
		addString(c.fs, &c.pin, "p", "pin", "", "wheel PIN (visible to other users in ps: prefer --pin-file or $CRYPTECH_PIN)")
		c.fs.StringVar(&c.pinFile, "pin-file", "", "read the PIN from the first line of this file")
		c.fs.StringVar(&c.rpc, "rpc", "", "use the HSM behind a libhal RPC socket instead of --hsm: unix:PATH or tcp:HOST:PORT")
		c.tls.registerClient(c.fs)
		c.fs.StringVar(&c.module, "module", "", "use a PKCS#11 token instead of --hsm: the module's path (the PIN is the token's user PIN)")
		c.fs.StringVar(&c.token, "token", "", "with --module: the token's label")
		c.fs.IntVar(&c.slot, "slot", -1, "with --module: the token's slot ID, instead of --token")
	}
	runCmd := cmd.define(c.fs)
	if err := c.fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	err := runCmd(ctx, e, c)
	switch {
	case err == nil:
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(e.stderr, "%s %s: %v\n", progName, name, err)
		fmt.Fprintf(e.stderr, "%s: hint: run '%s %s --help'\n", progName, progName, name)
		return 2
	case errors.Is(err, errInvalidSignature):
		fmt.Fprintf(e.stderr, "%s: %s\n", progName, oneLine(err))
		return 1
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Fprintf(e.stderr, "%s: interrupted\n", progName)
		return 1
	}
	fmt.Fprintf(e.stderr, "%s: error: %s\n", progName, oneLine(err))
	for _, h := range hints(err) {
		fmt.Fprintf(e.stderr, "%s: hint: %s\n", progName, h)
	}
	return 1
}

// oneLine keeps an error message on one line, whatever joined errors hold.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// hints suggest the flag the user probably needs.
func hints(err error) []string {
	switch {
	case errors.Is(err, backup.ErrLegacy):
		return []string{"--legacy-kek allows RSA PKCS#1 v1.5 KEK encryption, which libhal and cryptech_backup use; it is open to padding-oracle attacks"}
	case errors.Is(err, errNoPIN):
		return []string{"give the PIN with --pin-file FILE, $CRYPTECH_PIN or -p PIN, or run on a terminal to be prompted"}
	case errors.Is(err, errNoHSM):
		return []string{"create one with 'cryptech-backup init --hsm DIR', or point --hsm or $CRYPTECH_HSM at an existing one"}
	}
	return nil
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func lookup(cmds []*command, name string) *command {
	for _, c := range cmds {
		if c.name == name {
			return c
		}
	}
	return nil
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "%s moves private keys between HSMs without their ever being in the clear.\n\n", progName)
	fmt.Fprintf(w, "Usage: %s COMMAND [flags]\n\nCommands:\n", progName)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
A transfer, destination DST and source SRC:
  %[1]s setup  --hsm DST -o kekek.json
  %[1]s export --hsm SRC -i kekek.json -o backup.json
  %[1]s import --hsm DST -i backup.json

Run '%[1]s COMMAND --help' for a command's flags.
Exit status: 0 done, 1 failed (nothing changed), 2 usage error.
`, progName)
}

func printGroupUsage(w io.Writer, group *command) {
	fmt.Fprintf(w, "%s\n\nUsage: %s %s COMMAND [flags]\n\nCommands:\n", group.summary, progName, group.name)
	for _, c := range group.subcommands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun '%s %s COMMAND --help' for a command's flags.\n", progName, group.name)
}

func commandUsage(w io.Writer, name string, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s %s %s\n\n%s\n\nFlags:\n", progName, name, cmd.args, cmd.summary)
	fs.PrintDefaults()
	if cmd.examples != "" {
		fmt.Fprintf(w, "\nExamples:\n%s", cmd.examples)
	}
}

// errNoPIN: no PIN was given and there is no terminal to ask on.
var errNoPIN = errors.New("no PIN given and no terminal to ask for one")

// readPIN finds the PIN: --pin, --pin-file, $CRYPTECH_PIN, else a prompt.
func (c *call) readPIN(ctx context.Context, e *env, prompt string) ([]byte, error) {
	switch {
	case c.pin != "":
		return []byte(c.pin), nil
	case c.pinFile != "":
		data, err := os.ReadFile(c.pinFile)
		if err != nil {
			return nil, fmt.Errorf("read PIN file: %w", err)
		}
		// Bytes, not strings: a string copy of the PIN could not be cleared.
		line, _, _ := bytes.Cut(data, []byte("\n"))
		pin := bytes.Clone(bytes.TrimSuffix(line, []byte("\r")))
		clear(data)
		return pin, nil
	case e.getenv("CRYPTECH_PIN") != "":
		return []byte(e.getenv("CRYPTECH_PIN")), nil
	case e.readSecret != nil:
		return e.readSecret(ctx, prompt)
	}
	return nil, errNoPIN
}

// dir returns the emulated HSM's state directory.
func (c *call) dir(e *env) string {
	if c.hsmDir != "" {
		return c.hsmDir
	}
	if d := e.getenv("CRYPTECH_HSM"); d != "" {
		return d
	}
	return "hsm"
}

// input opens a file to read, "-" or "" meaning stdin.
func (e *env) input(path string) (io.ReadCloser, error) {
	if path == "" || path == "-" {
		return io.NopCloser(e.stdin), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// maxInput bounds what a command reads, so a wrong file cannot exhaust memory.
const maxInput = 256 << 20

func (e *env) readInput(path string) ([]byte, error) {
	r, err := e.input(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxInput {
		return nil, fmt.Errorf("%s: larger than %d MiB", path, maxInput>>20)
	}
	return data, nil
}

// output writes data to path ("-" or "" meaning stdout): mode 0600, through
// a temporary file renamed into place, so that no partial file is ever left;
// an existing file is replaced only with force. A path that exists and is not
// a regular file (/dev/null, a pipe) is written to directly.
func (e *env) output(path string, data []byte, force, binary bool) error {
	if path == "" || path == "-" {
		if err := e.checkStdout(binary); err != nil {
			return err
		}
		_, err := e.stdout.Write(data)
		return err
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		if fi.IsDir() {
			return fmt.Errorf("write %s: is a directory", path)
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		_, err = f.Write(data)
		return errors.Join(err, f.Close())
	}
	if err := writeFileAtomic(path, data, force); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// checkStdout refuses binary output to a terminal.
func (e *env) checkStdout(binary bool) error {
	if f, ok := e.stdout.(*os.File); binary && ok && term.IsTerminal(int(f.Fd())) {
		return usageError{"refusing to write binary output to a terminal; use -o FILE"}
	}
	return nil
}

// checkOutput tells, before a command does what it cannot undo (advance a
// hash-based key, split keys for an export, make a key), whether output
// would refuse path: an existing file without force, a directory, a
// directory that is missing or not writable, binary data for a terminal. It
// creates and removes a temporary file next to path, as output does. Stdout
// and an existing path that is not a regular file (/dev/null) pass. Output
// can still fail afterwards (a full disk, a file created in between: that
// one is never replaced without force), but not for these reasons.
func (e *env) checkOutput(path string, force, binary bool) error {
	if path == "" || path == "-" {
		return e.checkStdout(binary)
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("write %s: is a directory", path)
	case err == nil && !fi.Mode().IsRegular():
		return nil
	case err == nil && !force:
		return fmt.Errorf("write %s: %w", path, errFileExists)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("write %s: %w", path, unwrapPathError(err))
	case err != nil && !force:
		// A symlink to nowhere: writeFileAtomic's link would find it.
		if _, lerr := os.Lstat(path); lerr == nil {
			return fmt.Errorf("write %s: %w", path, errFileExists)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), tempPattern(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, unwrapPathError(err))
	}
	return errors.Join(tmp.Close(), os.Remove(tmp.Name()))
}

// errFileExists: an output file exists and --force was not given.
var errFileExists = errors.New("file exists; use --force to replace it")

// tempPattern names writeFileAtomic's temporary files for path, in path's
// directory (os.CreateTemp replaces the *).
func tempPattern(path string) string { return "." + filepath.Base(path) + ".tmp*" }

// removeStaleTemps removes the temporary files a writeFileAtomic to path
// left when the process died before renaming them: copies of what it was
// writing, which for a hash-based key file include the key's seed.
func removeStaleTemps(path string) {
	dir, name := filepath.Split(path)
	entries, _ := os.ReadDir(filepath.Clean(dir))
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Name(), "."+name+".tmp"); ok && rest != "" && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func writeFileAtomic(path string, data []byte, force bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), tempPattern(path))
	if err != nil {
		return unwrapPathError(err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if err = errors.Join(err, tmp.Close()); err != nil {
		return unwrapPathError(err)
	}
	if force {
		err = os.Rename(tmp.Name(), path)
	} else if err = os.Link(tmp.Name(), path); errors.Is(err, os.ErrExist) {
		// A hard link fails if path exists: no check-then-write race.
		return errFileExists
	}
	if err != nil {
		return unwrapPathError(err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return unwrapPathError(err)
	}
	defer d.Close()
	return unwrapPathError(d.Sync())
}

// unwrapPathError drops the temporary file's name from an error: the
// caller names the real one.
func unwrapPathError(err error) error {
	var pe *os.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		return pe.Err
	case errors.As(err, &le):
		return le.Err
	}
	return err
}
