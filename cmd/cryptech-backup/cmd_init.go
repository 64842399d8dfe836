package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"

	"github.com/hsmkit/cryptech-backup/hsm"
)

var initCommand = &command{
	name:    "init",
	args:    "[--hsm DIR] [--wheel-pin P] [--so-pin P] [--user-pin P] [--blocks N]",
	summary: "create an emulated HSM: master key and PINs",
	examples: `  cryptech-backup init --hsm ./hsm-a      # prompts for the three PINs
  cryptech-backup init --hsm ./hsm-b --wheel-pin "$W" --so-pin "$S" --user-pin "$U"
`,
	define: defineInit,
}

// defineInit registers the flags of init and returns what runs it.
func defineInit(fs *flag.FlagSet) runFunc {
	var dir, wheel, so, user string
	var blocks int
	registerHSMDir(fs, &dir, "state directory of the new HSM", "")
	fs.StringVar(&wheel, "wheel-pin", "", "wheel PIN (default -p/--pin or $CRYPTECH_PIN, else prompted)")
	fs.StringVar(&wheel, "p", "", "same as --wheel-pin")
	fs.StringVar(&wheel, "pin", "", "same as --wheel-pin")
	fs.StringVar(&so, "so-pin", "", "security officer PIN (prompted if not given)")
	fs.StringVar(&user, "user-pin", "", "normal user PIN (prompted if not given)")
	fs.IntVar(&blocks, "blocks", 0, "flash size in 8 KiB blocks, one key each (default 1024)")
	return func(ctx context.Context, e *env, c *call) error {
		if err := noArgs(c); err != nil {
			return err
		}
		c.hsmDir = dir
		// Only an absent --blocks means the default.
		given := false
		c.fs.Visit(func(f *flag.Flag) { given = given || f.Name == "blocks" })
		if given && (blocks < hsm.MinBlocks || blocks > hsm.MaxBlocks) {
			return usageError{fmt.Sprintf("--blocks takes %d to %d", hsm.MinBlocks, hsm.MaxBlocks)}
		}
		for _, p := range []struct{ flag, pin string }{{"--wheel-pin", wheel}, {"--so-pin", so}, {"--user-pin", user}} {
			if p.pin != "" {
				if err := checkPINFlag(p.flag, p.pin); err != nil {
					return err
				}
			}
		}
		if wheel == "" {
			wheel = e.getenv("CRYPTECH_PIN")
		}
		var pins [3][]byte
		defer func() {
			for _, p := range pins {
				clear(p)
			}
		}()
		for i, p := range []struct {
			given, name string
		}{{wheel, "wheel"}, {so, "security officer"}, {user, "user"}} {
			var err error
			if pins[i], err = newPIN(ctx, e, p.given, p.name); err != nil {
				return err
			}
		}
		h, err := hsm.Create(c.dir(e), hsm.InitConfig{WheelPIN: pins[0], SOPIN: pins[1], UserPIN: pins[2], Blocks: blocks}, e.hsmOptions)
		if errors.Is(err, hsm.ErrBoardExists) {
			d := shellQuote(c.dir(e))
			return hintError{fmt.Errorf("%s already holds an emulated HSM", c.dir(e)),
				fmt.Sprintf("use it with --hsm %s; to make a new one there, remove it first with rm -r %s, which destroys its keys", d, d)}
		}
		if err != nil {
			return err
		}
		id := h.Identity()
		fmt.Fprintf(e.stderr, "%s: created an emulated HSM in %s (serial %s, label %s)\n", progName, c.dir(e), id.Serial, id.Label)
		return h.Close()
	}
}

// newPIN takes a PIN from a flag, or asks for it twice on the terminal.
func newPIN(ctx context.Context, e *env, given, name string) ([]byte, error) {
	if given != "" {
		return []byte(given), nil
	}
	if e.readSecret == nil {
		return nil, usageError{fmt.Sprintf("no %s PIN given and no terminal to ask for one", name)}
	}
	pin, err := e.readSecret(ctx, fmt.Sprintf("New %s PIN: ", name))
	if err != nil {
		return nil, err
	}
	again, err := e.readSecret(ctx, fmt.Sprintf("New %s PIN again: ", name))
	defer clear(again)
	if err != nil || subtle.ConstantTimeCompare(pin, again) != 1 {
		clear(pin)
		return nil, fmt.Errorf("the two %s PINs differ", name)
	}
	return pin, nil
}
