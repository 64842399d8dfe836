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
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/internal/atomicfile"
	"github.com/hsmkit/cryptech-backup/internal/shellquote"
	"github.com/hsmkit/cryptech-backup/rpc"
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
	// warnings are printed, one line each, when the command succeeds, and
	// put on the error's line when it fails.
	warnings []string
	// ctx, if set, is the context run derives the command's from (tests
	// cancel it); else context.Background.
	ctx context.Context
	// wrapToken, if set, wraps every token a command opens (tests).
	wrapToken func(hsm.Token) hsm.Token
	// exit ends the process when a command does not return after an
	// interrupt; os.Exit if nil.
	exit func(int)
	// holds counts the sections (an export splitting HSS keys) that an
	// interrupt must not cut short; see hold.
	holdMu sync.Mutex
	holds  int
}

// warn records a warning for the end of the run.
func (e *env) warn(format string, args ...any) {
	e.warnings = append(e.warnings, fmt.Sprintf(format, args...))
}

// hold marks a section that an interrupt must let finish: while it runs,
// the exit that follows an unanswered interrupt waits. The returned
// function ends the section.
func (e *env) hold() func() {
	e.holdMu.Lock()
	e.holds++
	e.holdMu.Unlock()
	return sync.OnceFunc(func() {
		e.holdMu.Lock()
		e.holds--
		e.holdMu.Unlock()
	})
}

func (e *env) held() bool {
	e.holdMu.Lock()
	defer e.holdMu.Unlock()
	return e.holds > 0
}

// stdoutWriter keeps the first error of a write to standard output, so that
// run can fail a command whose output was lost (a full disk, a closed pipe)
// even where the command did not look at the error.
type stdoutWriter struct {
	w   io.Writer
	err error
}

func (s *stdoutWriter) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil && s.err == nil {
		s.err = err
	}
	return n, err
}

// stdoutFile is the file behind e.stdout, if it is one.
func (e *env) stdoutFile() (*os.File, bool) {
	w := e.stdout
	if s, ok := w.(*stdoutWriter); ok {
		w = s.w
	}
	f, ok := w.(*os.File)
	return f, ok
}

// interruptGrace is how long a command has to return after the first
// interrupt before run gives up on it (it may be blocked reading a FIFO or
// a terminal) and exits.
const interruptGrace = 3 * time.Second

// ttyState is the state of a terminal that a PIN prompt put in raw mode,
// for the exit after an unanswered interrupt to restore.
var ttyState struct {
	sync.Mutex
	fd    int
	state *term.State
}

func setTTYState(fd int, state *term.State) {
	ttyState.Lock()
	ttyState.fd, ttyState.state = fd, state
	ttyState.Unlock()
}

func restoreTTY() {
	ttyState.Lock()
	defer ttyState.Unlock()
	if ttyState.state != nil {
		term.Restore(ttyState.fd, ttyState.state)
		ttyState.state = nil
	}
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
	setTTYState(fd, state)
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
		setTTYState(0, nil)
		fmt.Fprint(tty, "\r\033[K")
		tty.Close()
		return a.secret, a.err
	case <-ctx.Done():
		// The reader stays blocked on the terminal until the process exits.
		restoreTTY()
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
	// notes, if set, follow the flags in the help.
	notes string
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
	// helpHidden are flags the help leaves out, and helpNotes what it adds
	// after them: keygen rsa --help shows neither HSS flags nor their types.
	helpHidden map[string]bool
	helpNotes  string
	// pinFrom is where readPIN found the PIN.
	pinFrom string
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
			fmt.Fprintf(e.stderr, "%s: internal error: %s\n", progName, oneLine(fmt.Errorf("%v", r)))
			if e.getenv("CRYPTECH_BACKUP_DEBUG") != "" {
				e.stderr.Write(debug.Stack())
			}
			status = 1
		}
	}()
	sw := &stdoutWriter{w: e.stdout}
	e.stdout = sw
	// The first Ctrl-C asks the command to stop between steps (the keystore
	// is crash-safe either way, but files get cleaned up); a second one kills.
	// A command still blocked interruptGrace later (reading a FIFO or a
	// terminal that never answers) is given up on: one line, exit 1.
	base := e.ctx
	if base == nil {
		base = context.Background()
	}
	ctx, stop := signal.NotifyContext(base, os.Interrupt, syscall.SIGTERM)
	defer stop()
	returned := make(chan struct{})
	defer close(returned)
	go func() {
		select {
		case <-ctx.Done():
		case <-returned:
			return
		}
		stop()
		t := time.NewTimer(interruptGrace)
		defer t.Stop()
		for {
			select {
			case <-returned:
				return
			case <-t.C:
			}
			if !e.held() {
				break
			}
			// An export that has begun to split HSS keys finishes and
			// writes its bundle; a second Ctrl-C still kills.
			t.Reset(100 * time.Millisecond)
		}
		restoreTTY()
		fmt.Fprintf(e.stderr, "%s: interrupted\n", progName)
		exit := e.exit
		if exit == nil {
			exit = os.Exit
		}
		exit(1)
	}()

	name, err := dispatch(ctx, args, e)
	if err == nil && sw.err != nil {
		err = fmt.Errorf("write standard output: %w", unwrapPathError(sw.err))
	}
	if err == nil {
		for _, w := range e.warnings {
			fmt.Fprintf(e.stderr, "%s: warning: %s\n", progName, w)
		}
		return 0
	}
	line, status := report(ctx, name, err)
	// A failure is one line: hints and warnings go on it.
	notes := append(hints(err), e.warnings...)
	if len(notes) > 0 {
		line += " (" + strings.Join(notes, "; ") + ")"
	}
	fmt.Fprintln(e.stderr, line)
	return status
}

// dispatch runs the command args name. It prints help itself; it returns the
// command's name (empty before one is known) and what went wrong.
func dispatch(ctx context.Context, args []string, e *env) (string, error) {
	if len(args) == 0 {
		return "", commandError{"no command given", ""}
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help" {
		printUsage(e.stdout)
		return "", nil
	}
	if args[0] == "--version" || args[0] == "version" {
		fmt.Fprintln(e.stdout, progName, version())
		return "", nil
	}
	cmd := lookup(commands(), args[0])
	if cmd == nil {
		return "", commandError{fmt.Sprintf("unknown command %q", args[0]), ""}
	}
	name := cmd.name
	if cmd.subcommands != nil {
		group := cmd
		if len(args) < 2 {
			return "", commandError{fmt.Sprintf("name a %s command: %s", group.name, subcommandNames(group)), group.name}
		}
		if args[1] == "-h" || args[1] == "--help" || args[1] == "-help" || args[1] == "help" {
			printGroupUsage(e.stdout, group)
			return "", nil
		}
		if cmd = lookup(group.subcommands, args[1]); cmd == nil {
			return "", commandError{fmt.Sprintf("unknown command %q", group.name+" "+args[1]), group.name}
		}
		name, args = group.name+" "+cmd.name, args[1:]
	}
	c := &call{}
	c.fs = flag.NewFlagSet(progName+" "+name, flag.ContinueOnError)
	// Errors are reported in one line by run, help by dispatch.
	c.fs.SetOutput(io.Discard)
	c.fs.Usage = func() {}
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
	err := c.parse(args[1:])
	if err == nil {
		err = runCmd(ctx, e, c)
	}
	if errors.Is(err, flag.ErrHelp) {
		// -h or --help, wherever it came: keygen parses its flags twice.
		commandUsage(e.stdout, name, cmd, c)
		return name, nil
	}
	return name, err
}

// parse parses the command's flags in args: flag.ErrHelp for -h or --help,
// a usageError in one line for a bad flag.
func (c *call) parse(args []string) error {
	err := c.fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if err != nil {
		return usageError{flagProblem(err)}
	}
	// An empty value is not an absent flag: --hsm '' would otherwise mean
	// ./hsm, --pin '' $CRYPTECH_PIN.
	c.fs.Visit(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok && err == nil {
			if v, ok := g.Get().(string); ok && v == "" {
				err = usageError{dashed(f.Name) + " needs a value"}
			}
		}
	})
	return err
}

// given tells whether the flag name was on the command line.
func (c *call) given(name string) bool {
	found := false
	c.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// flagProblem rewords the flag package's errors, which name every flag with
// one dash, as this command line names its flags.
func flagProblem(err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "unknown flag " + dashed(name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return dashed(name) + " needs a value"
	}
	if m := badFlagValue.FindStringSubmatch(msg); m != nil {
		value, name, why := m[1], m[2], m[3]
		switch why {
		case "parse error":
			return fmt.Sprintf("%s takes a number, not %s", dashed(name), value)
		case "value out of range":
			return fmt.Sprintf("%s: %s is out of range", dashed(name), value)
		}
		return fmt.Sprintf("%s: bad value %s: %s", dashed(name), value, why)
	}
	if m := badBoolFlag.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%s takes no value, or true or false, not %s", dashed(m[2]), m[1])
	}
	return oneLine(err)
}

var (
	badFlagValue = regexp.MustCompile(`^invalid value (".*") for flag -(\S+): (.*)$`)
	badBoolFlag  = regexp.MustCompile(`^invalid boolean value (".*") for -(\S+): `)
)

// dashed is a flag's name as the help shows it: -p, --pin.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// commandError is a command line that names no command, or an unknown one:
// exit status 2. group is the command group it was looked up in, if any.
type commandError struct{ msg, group string }

func (c commandError) Error() string { return c.msg }

func subcommandNames(group *command) string {
	var names []string
	for _, c := range group.subcommands {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

// report is the one line that says what went wrong, without hints, and the
// exit status.
func report(ctx context.Context, name string, err error) (string, int) {
	var ce commandError
	switch {
	case errors.As(err, &ce):
		help := progName
		if ce.group != "" {
			help += " " + ce.group
		}
		return fmt.Sprintf("%s: error: %s (%s --help lists the commands)", progName, ce.msg, help), 2
	case errors.As(err, new(usageError)):
		return fmt.Sprintf("%s %s: %s (%s %s --help shows the flags)", progName, name, oneLine(err), progName, name), 2
	case errors.Is(err, errInvalidSignature):
		return fmt.Sprintf("%s: %s", progName, oneLine(err)), 1
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return progName + ": interrupted", 1
	}
	return fmt.Sprintf("%s: error: %s", progName, oneLine(err)), 1
}

// oneLine keeps an error message on one line, whatever joined errors hold,
// and says a prefix that layers of wrapping repeat ("import: import: ...")
// once.
func oneLine(err error) string {
	line := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
	parts := strings.Split(line, ": ")
	kept := parts[:1]
	for _, p := range parts[1:] {
		if p != kept[len(kept)-1] {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ": ")
}

// hints suggest the flag or command the user probably needs; run puts them
// on the error's line.
func hints(err error) []string {
	var nh noHSMError
	var h interface{ hint() string }
	switch {
	case errors.As(err, &h):
		return []string{h.hint()}
	case errors.Is(err, backup.ErrLegacy):
		return []string{"--legacy-kek allows RSA PKCS#1 v1.5 KEK encryption, which libhal and cryptech_backup use; it is open to padding-oracle attacks"}
	case errors.Is(err, backup.ErrWrongKEKEK):
		return []string{"the bundle was exported for another HSM's KEKEK: run setup on this HSM, then export again with the KEKEK file it writes"}
	case errors.Is(err, backup.ErrDamaged):
		return []string{"--skip-damaged exports the keys that can be read"}
	case errors.Is(err, backup.ErrHSSSoftKEKEK):
		return []string{"--skip-hss leaves the HSS keys out; --hss-single-restore exports them for a bundle that will be imported into one HSM only, ever"}
	case errors.Is(err, hsm.ErrKeyNameInUse) && errors.Is(err, rpc.StatusKeyNameInUse):
		// Over RPC only the status arrives, not the HSM's explanation.
		return []string{"the HSM holds another key under a UUID of the bundle, or this HSS key (or part of it) already; an import cut short by an older version can leave such an HSS record: on the HSM's host, " + progName + " hashsig-history --hsm DIR lists them"}
	case errors.Is(err, errNoPIN):
		return []string{"give it with --pin-file FILE, $CRYPTECH_PIN or -p PIN, or run on a terminal to be prompted"}
	case errors.As(err, &nh):
		return []string{"make one with: " + progName + " init --hsm " + shellQuote(nh.dir)}
	case errors.Is(err, hsm.ErrKeyExhausted) && errors.As(err, new(*backup.KeyError)):
		return []string{"--skip-exhausted leaves such HSS keys out"}
	case errors.Is(err, rpc.StatusRPCTransport) && !errors.As(err, new(connectError)):
		return []string{"the connection to the HSM was lost; it may have finished the operation: check with list"}
	}
	return nil
}

// shellQuote quotes s for a POSIX shell, when it needs quoting.
var shellQuote = shellquote.Quote

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

func commandUsage(w io.Writer, name string, cmd *command, c *call) {
	fmt.Fprintf(w, "Usage: %s %s %s\n\n%s\n\nFlags:\n", progName, name, cmd.args, cmd.summary)
	printFlags(w, c.fs, c.helpHidden)
	for _, notes := range []string{cmd.notes, c.helpNotes} {
		if notes != "" {
			fmt.Fprintf(w, "\n%s", notes)
		}
	}
	if cmd.examples != "" {
		fmt.Fprintf(w, "\nExamples:\n%s", cmd.examples)
	}
}

// printFlags lists the flags as flag.PrintDefaults does, but with two
// dashes before a long name, as they are written everywhere else.
func printFlags(w io.Writer, fs *flag.FlagSet, hidden map[string]bool) {
	fs.VisitAll(func(f *flag.Flag) {
		if hidden[f.Name] {
			return
		}
		kind, usage := flag.UnquoteUsage(f)
		line := "  " + dashed(f.Name)
		if kind != "" {
			line += " " + kind
		}
		if def := defaultText(f); def != "" {
			usage += " (default " + def + ")"
		}
		fmt.Fprintf(w, "%s\n    \t%s\n", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
	})
}

// defaultText is a flag's default as the help shows it, or "" for a zero
// value, which needs no mention.
func defaultText(f *flag.Flag) string {
	switch f.DefValue {
	case "", "0", "false":
		return ""
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if _, isString := g.Get().(string); isString {
			return fmt.Sprintf("%q", f.DefValue)
		}
	}
	return f.DefValue
}

// errNoPIN: no PIN was given and there is no terminal to ask on.
var errNoPIN = errors.New("no PIN given and no terminal to ask for one")

// readPIN finds the PIN: --pin, --pin-file, $CRYPTECH_PIN, else a prompt.
// It notes in c.pinFrom where it found it, for the message a wrong PIN gets.
func (c *call) readPIN(ctx context.Context, e *env, prompt string) ([]byte, error) {
	switch {
	case c.pin != "":
		c.pinFrom = "-p/--pin"
		if err := checkPINFlag("--pin", c.pin); err != nil {
			return nil, err
		}
		return []byte(c.pin), nil
	case c.pinFile != "":
		c.pinFrom = "--pin-file " + c.pinFile
		return readPINFile(c.pinFile)
	case e.getenv("CRYPTECH_PIN") != "":
		c.pinFrom = "$CRYPTECH_PIN"
		return []byte(e.getenv("CRYPTECH_PIN")), nil
	case e.readSecret != nil:
		c.pinFrom = "the prompt"
		return e.readSecret(ctx, prompt)
	}
	return nil, errNoPIN
}

// pinName names the PIN the common flags' HSM asks for.
func (c *call) pinName(e *env) string {
	switch {
	case c.module != "" && c.token != "":
		return fmt.Sprintf("the user PIN of token %q", c.token)
	case c.module != "":
		return fmt.Sprintf("the user PIN of the token in slot %d", c.slot)
	case c.rpc != "":
		return "the wheel PIN of the HSM behind " + c.rpc
	}
	return "the wheel PIN of the HSM in " + c.dir(e) + ", which init set"
}

// checkPINFlag refuses, as a command-line mistake, a PIN given in flag
// that no HSM would take.
func checkPINFlag(flag, pin string) error {
	if len(pin) < hsm.MinPINLength || len(pin) > hsm.MaxPINLength {
		return usageError{fmt.Sprintf("%s: a PIN has %d to %d bytes", flag, hsm.MinPINLength, hsm.MaxPINLength)}
	}
	return nil
}

// readPINFile reads the PIN from the first line of path.
func readPINFile(path string) ([]byte, error) {
	return readSecretFile(path, "PIN", hsm.MaxPINLength)
}

// firstLine reads r up to and including its first line end, then ends.
type firstLine struct {
	r    io.Reader
	done bool
}

func (l *firstLine) Read(p []byte) (int, error) {
	if l.done {
		return 0, io.EOF
	}
	n, err := l.r.Read(p)
	if i := bytes.IndexByte(p[:n], '\n'); i >= 0 {
		clear(p[i+1 : n])
		l.done = true
		return i + 1, nil
	}
	return n, err
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

// input opens a file to read, "-" or "" meaning stdin. It returns the
// reader, the name messages give it, and what closes it.
func (e *env) input(path string) (io.Reader, string, func(), error) {
	if path == "" || path == "-" {
		return e.stdin, "-", func() {}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", nil, err
	}
	return f, path, func() { f.Close() }, nil
}

// Bounds on what a command reads whole, so that a wrong file cannot exhaust
// memory. Each is what the largest real file of its kind needs, with room.
const (
	// maxInput bounds messages for HSS keys, which sign what they are
	// given whole: anything a caller may want signed.
	maxInput = 256 << 20
	// maxBundle bounds a bundle. The largest real one holds backup.MaxKeys
	// RSA-4096 keys wrapped for an RSA-4096 KEKEK, each with a label of the
	// longest JSON form (label_hex of the longest label a key keeps) and
	// PKCS#11 attributes at the HSM's limits: 15,633 bytes a key, 156 MB in
	// all (TestMaxBundleHoldsLargestBundle measures it; docs/PERFORMANCE.md
	// has the figures). Reading a bundle takes at most about its size in
	// memory.
	maxBundle = 168 << 20
	// maxKEKEKFile bounds a KEKEK file: an RSA-4096 public key and a few
	// names take under 2 KiB.
	maxKEKEKFile = 64 << 10
	// maxPublicKey bounds a public key file: an RSA-8192 key in PEM takes
	// 1.5 KB, an HSS key 80 bytes.
	maxPublicKey = 64 << 10
	// maxSmallFile bounds signatures (the largest HSS
	// signature, 8 levels of height 25 with Winternitz 1, has 75 KB), HSS
	// key files and TLS certificates and keys (PEM).
	maxSmallFile = 1 << 20
)

// readInput reads a file, "-" or "" meaning stdin, of at most limit bytes.
func (e *env) readInput(path string, limit int) ([]byte, error) {
	r, name, done, err := e.input(path)
	if err != nil {
		return nil, err
	}
	defer done()
	return readLimited(r, name, limit)
}

// readFileLimited reads the file path, of at most limit bytes.
func readFileLimited(path string, limit int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, path, limit)
}

// limitInput refuses, by its size and before a byte is read, an input that
// is a regular file larger than limit; anything else (a pipe, a terminal, a
// device) is read through a reader that fails with a tooLargeError as soon
// as more than limit bytes come. It returns that reader and the file's
// size, or -1 where there is none.
func limitInput(r io.Reader, name string, limit int) (io.Reader, int, error) {
	size := -1
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			if fi.Size() > int64(limit) {
				return nil, 0, tooLargeError{name, limit}
			}
			size = int(fi.Size())
		}
	}
	return &limitedReader{r: r, name: name, limit: limit, left: limit}, size, nil
}

// limitedReader gives at most limit bytes of r, then a tooLargeError if r
// has more.
type limitedReader struct {
	r           io.Reader
	name        string
	limit, left int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left == 0 {
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, tooLargeError{l.name, l.limit}
		}
		return 0, err
	}
	n, err := l.r.Read(p[:min(len(p), l.left)])
	l.left -= n
	return n, err
}

// tooLargeError: an input is larger than a command reads.
type tooLargeError struct {
	name  string
	limit int
}

func (t tooLargeError) Error() string {
	size := fmt.Sprintf("%d bytes", t.limit)
	switch {
	case t.limit >= 1<<20 && t.limit%(1<<20) == 0:
		size = fmt.Sprintf("%d MiB", t.limit>>20)
	case t.limit >= 1<<10 && t.limit%(1<<10) == 0:
		size = fmt.Sprintf("%d KiB", t.limit>>10)
	}
	return fmt.Sprintf("%s: larger than %s", t.name, size)
}

// readLimited reads r to its end, refusing with a tooLargeError what holds
// more than limit bytes: a regular file by its size, before reading it;
// anything else after limit+1 bytes, so a device that never ends
// (/dev/zero) cannot exhaust memory. It clears the buffers it outgrows and,
// on error, what it read: the input may be a PIN or a key.
func readLimited(r io.Reader, name string, limit int) ([]byte, error) {
	r, size, err := limitInput(r, name, limit)
	if err != nil {
		return nil, err
	}
	// A file's size is known: one buffer, and the read that finds its end.
	buf := make([]byte, 0, max(size+1, min(limit+1, 512)))
	for {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*cap(buf), limit+1))
			copy(grown, buf)
			clear(buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			clear(buf)
			return nil, err
		}
	}
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
		if _, err := e.stdout.Write(data); err != nil {
			return fmt.Errorf("write standard output: %w", unwrapPathError(err))
		}
		return nil
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
	if err := writeFileAtomic(path, data, force, false); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// checkStdout refuses binary output to a terminal.
func (e *env) checkStdout(binary bool) error {
	if f, ok := e.stdoutFile(); binary && ok && term.IsTerminal(int(f.Fd())) {
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
	if err := atomicfile.Probe(path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// errFileExists: an output file exists and --force was not given.
var errFileExists = errors.New("file exists; use --force to replace it")

// writeFileAtomic writes data to path through package atomicfile (mode
// 0600), replacing an existing file only with force; secret data's
// temporary copies are scrubbed.
func writeFileAtomic(path string, data []byte, force, secret bool) error {
	return existsError(atomicfile.Write(path, data, atomicfile.Options{Secret: secret, NoReplace: !force}))
}

// existsError says what to do about an output file that exists.
func existsError(err error) error {
	if errors.Is(err, fs.ErrExist) {
		return errFileExists
	}
	return err
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
