package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/shellquote"
	"github.com/hsmkit/cryptech-backup/rpc"
)

const progName = "cryptech-backup"

// interruptGrace is how long a command has to return after the first
// interrupt before run gives up on it (it may be blocked reading a FIFO or
// a terminal) and exits.
const interruptGrace = 3 * time.Second

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
	fs *flag.FlagSet
	// backendFlags are set when the command takes them (needsHSM), or by
	// a command with flags of its own (init's --hsm).
	backendFlags
	// helpHidden are flags the help leaves out, and helpNotes what it adds
	// after them: keygen rsa --help shows neither HSS flags nor their types.
	helpHidden map[string]bool
	helpNotes  string
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
		e.endProgress()
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
		c.backendFlags.register(c.fs)
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

// noArgs refuses arguments after the flags of a command that takes none.
func noArgs(c *call) error {
	if c.fs.NArg() != 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", c.fs.Arg(0))}
	}
	return nil
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
	case errors.Is(err, backup.ErrDamagedSource):
		return []string{"--skip-damaged exports the keys that can be read"}
	case errors.Is(err, backup.ErrHSSSoftKEKEK):
		return []string{"--skip-hss leaves the HSS keys out; --hss-single-restore exports them for a bundle that will be imported into one HSM only, ever"}
	case errors.Is(err, hsmapi.ErrKeyNameInUse) && errors.Is(err, rpc.StatusKeyNameInUse):
		// Over RPC only the status arrives, not the HSM's explanation.
		return []string{"the HSM holds another key under a UUID of the bundle, or this HSS key (or part of it) already; an import cut short by an older version can leave such an HSS record: on the HSM's host, " + progName + " hashsig-history --hsm DIR lists them"}
	case errors.Is(err, errNoPIN):
		return []string{"give it with --pin-file FILE, $CRYPTECH_PIN or -p PIN, or run on a terminal to be prompted"}
	case errors.As(err, &nh):
		return []string{"make one with: " + progName + " init --hsm " + shellQuote(nh.dir)}
	case errors.Is(err, hsmapi.ErrKeyExhausted) && errors.As(err, new(*backup.KeyError)):
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

// commands lists the subcommands in the order --help shows them.
func commands() []*command {
	return []*command{
		initCommand,
		keygenCommand,
		listCommand,
		pubkeyCommand,
		setupCommand,
		exportCommand,
		trustCommand,
		storeCommand,
		restoreCommand,
		masterkeyCommand,
		importCommand,
		signCommand,
		verifyCommand,
		hashsigCommand,
		hashsigHistoryCommand,
		serveCommand,
		demoCommand,
	}
}
