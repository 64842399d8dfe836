package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/p11"
	"github.com/hsmkit/cryptech-backup/rpc"
	"github.com/hsmkit/cryptech-backup/sim"
)

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
	h, err := hsm.Open(dir, e.hsmOptions)
	if errors.Is(err, sim.ErrNoBoard) {
		return nil, nil, noHSMError{dir}
	}
	if errors.Is(err, sim.ErrBoardInUse) {
		return nil, nil, hintError{fmt.Errorf("the HSM in %s is open in another process", dir),
			"if " + progName + " serve runs on it, reach it through serve's socket: --rpc unix:PATH instead of --hsm"}
	}
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
