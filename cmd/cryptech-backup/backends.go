package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/p11"
	"github.com/hsmkit/cryptech-backup/rpc"
)

// backendFlags are the common flags that choose the HSM a command works
// on (the emulator's directory, a libhal RPC socket, a PKCS#11 token) and
// how to log in to it. They are registered and interpreted here only.
type backendFlags struct {
	hsmDir  string
	pin     string
	pinFile string
	rpc     string
	tls     tlsFlags
	module  string
	token   string
	slot    int
	// pinFrom is where readPIN found the PIN.
	pinFrom string
}

// backendFlagNames are the names register gives the flags, in the order
// a command that opens no HSM checks that none was given.
var backendFlagNames = []string{"hsm", "rpc", "module", "token", "slot", "pin", "p", "pin-file", "tls-cert", "tls-key", "tls-ca"}

// register registers the backend flags on fs.
func (b *backendFlags) register(fs *flag.FlagSet) {
	registerHSMDir(fs, &b.hsmDir, "emulated HSM state directory", "")
	addString(fs, &b.pin, "p", "pin", "", "wheel PIN (visible to other users in ps: prefer --pin-file or $CRYPTECH_PIN)")
	fs.StringVar(&b.pinFile, "pin-file", "", "read the PIN from the first line of this file")
	fs.StringVar(&b.rpc, "rpc", "", "use the HSM behind a libhal RPC socket instead of --hsm: unix:PATH or tcp:HOST:PORT")
	fs.StringVar(&b.tls.cert, "tls-cert", "", "with --rpc tcp:...: this client's certificate (PEM)")
	fs.StringVar(&b.tls.key, "tls-key", "", "with --rpc tcp:...: this client's private key (PEM)")
	fs.StringVar(&b.tls.ca, "tls-ca", "", "with --rpc tcp:...: the CA certificate (PEM) that signed the server's certificate")
	fs.StringVar(&b.module, "module", "", "use a PKCS#11 token instead of --hsm: the module's path (the PIN is the token's user PIN)")
	fs.StringVar(&b.token, "token", "", "with --module: the token's label")
	fs.IntVar(&b.slot, "slot", -1, "with --module: the token's slot ID, instead of --token")
}

// registerHSMDir registers --hsm into p: the common flags' and, for the
// commands that work on an emulated HSM's directory without the other
// backend flags (init, serve, hashsig-history), their own. The default it
// states is the one dir applies; note follows it in the help.
func registerHSMDir(fs *flag.FlagSet, p *string, what, note string) {
	fs.StringVar(p, "hsm", "", what+" (default $CRYPTECH_HSM, else ./hsm)"+note)
}

// noBackendFlag refuses, for a command that opens no HSM, any backend flag
// given: why says what the command does instead.
func (c *call) noBackendFlag(why string) error {
	for _, f := range backendFlagNames {
		if c.given(f) {
			return usageError{fmt.Sprintf("%s: %s", dashed(f), why)}
		}
	}
	return nil
}

// noHSMError: the state directory holds no emulated HSM.
type noHSMError struct{ dir string }

func (n noHSMError) Error() string { return "no emulated HSM in " + n.dir }

// openToken opens the HSM the common flags name and logs in as wheel, as
// cryptech_backup does. The returned function logs out and closes it.
func (c *call) openToken(ctx context.Context, e *env) (hsmapi.Token, func(), error) {
	// Flags that only mean something with another backend would be
	// silently ignored.
	for _, f := range []struct{ name, with string }{
		{"tls-cert", "rpc"}, {"tls-key", "rpc"}, {"tls-ca", "rpc"},
		{"token", "module"}, {"slot", "module"},
	} {
		if c.given(f.name) && !c.given(f.with) {
			return nil, nil, usageError{fmt.Sprintf("--%s only means something with --%s", f.name, f.with)}
		}
	}
	tok, done, err := c.openBackend(ctx, e)
	if err == nil && e.wrapToken != nil {
		tok = e.wrapToken(tok)
	}
	return tok, done, err
}

func (c *call) openBackend(ctx context.Context, e *env) (hsmapi.Token, func(), error) {
	switch {
	case c.rpc != "" && c.module != "":
		return nil, nil, usageError{"--rpc and --module exclude each other"}
	case c.rpc != "":
		return c.openRemote(ctx, e)
	case c.module != "":
		return c.openPKCS11(ctx, e)
	}
	dir := c.dir(e)
	h, err := openEmulated(e, dir, "if "+progName+" serve runs on it, reach it through serve's socket: --rpc unix:PATH instead of --hsm")
	if err != nil {
		return nil, nil, err
	}
	if bad := h.DamagedBlocks(); len(bad) > 0 {
		e.warn("flash blocks %v of the HSM in %s failed their CRC; they are left as they are and the keys in them cannot be used", bad, dir)
	}
	s := h.NewSession()
	return c.login(ctx, e, s, func() {
		s.Close()
		h.Close()
	})
}

// openRemote connects to the HSM behind --rpc.
func (c *call) openRemote(ctx context.Context, e *env) (hsmapi.Token, func(), error) {
	if c.hsmDir != "" {
		return nil, nil, usageError{"--hsm and --rpc exclude each other"}
	}
	if _, _, err := rpc.ParseAddress(c.rpc); err != nil {
		return nil, nil, usageError{"--rpc: " + err.Error()}
	}
	conf, err := c.tls.client()
	if err != nil {
		return nil, nil, err
	}
	cl, err := rpc.Dial(ctx, c.rpc, conf)
	if err != nil {
		return nil, nil, connectError{err}
	}
	return c.login(ctx, e, cl, func() { cl.Close() })
}

// connectError: the connection to the daemon could not be made, so no
// operation began.
type connectError struct{ err error }

func (c connectError) Error() string { return c.err.Error() }

func (c connectError) Unwrap() error { return c.err }

// openPKCS11 opens the PKCS#11 token --module and --token (or --slot) name.
func (c *call) openPKCS11(ctx context.Context, e *env) (hsmapi.Token, func(), error) {
	if c.hsmDir != "" {
		return nil, nil, usageError{"--hsm and --module exclude each other"}
	}
	cfg := p11.Config{Module: c.module, TokenLabel: c.token}
	if c.slot >= 0 {
		slot := uint(c.slot)
		cfg.Slot = &slot
	}
	if (cfg.TokenLabel == "") == (cfg.Slot == nil) {
		return nil, nil, usageError{"with --module, name the token with --token LABEL or --slot N"}
	}
	tok, err := p11.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	return c.login(ctx, e, tok, func() { tok.Close() })
}

// login logs tok in as wheel with the PIN the flags give, closing it on
// failure.
func (c *call) login(ctx context.Context, e *env, tok hsmapi.Token, closeAll func()) (hsmapi.Token, func(), error) {
	prompt := "Wheel PIN: "
	if c.module != "" {
		prompt = "Token user PIN: "
	}
	pin, err := c.readPIN(ctx, e, prompt)
	if err == nil {
		err = tok.Login(ctx, hsmapi.UserWheel, pin)
		clear(pin)
	}
	if errors.Is(err, hsmapi.ErrPINIncorrect) {
		err = hintError{err, fmt.Sprintf("give %s; this one came from %s", c.pinName(e), c.pinFrom)}
	}
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return tok, closeAll, nil
}

// withToken opens the HSM the common flags name, logged in, runs f on it and
// closes it.
func (c *call) withToken(ctx context.Context, e *env, f func(hsmapi.Token) error) error {
	tok, done, err := c.openToken(ctx, e)
	if err != nil {
		return err
	}
	defer done()
	return f(tok)
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

// openEmulated opens the emulated HSM in dir, turning the directory's
// errors into what an operator can act on; inUse is the hint when another
// process holds it (none: the error says so as it is).
func openEmulated(e *env, dir, inUse string) (*hsm.HSM, error) {
	opts := e.hsmOptions
	if opts.PINTickets == nil {
		opts.PINTickets = hsm.PINTicketsFromEnv(e.getenv)
	}
	h, err := hsm.Open(dir, opts)
	switch {
	case errors.Is(err, hsm.ErrNoBoard):
		return nil, noHSMError{dir}
	case inUse != "" && errors.Is(err, hsm.ErrBoardInUse):
		return nil, hintError{fmt.Errorf("the HSM in %s is open in another process", dir), inUse}
	}
	return h, err
}
