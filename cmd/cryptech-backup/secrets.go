package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/term"

	"github.com/hsmkit/cryptech-backup/backup"
	"github.com/hsmkit/cryptech-backup/hsm"
)

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

// readSecretFile reads a secret (what names it: "PIN", "passphrase") from
// the first line of path. It reads no more than that line, and at most max
// bytes of it: a file or device without a line end (/dev/zero) is refused,
// and a FIFO whose writer keeps it open after the line does not hold the
// command up.
func readSecretFile(path, what string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s file: %w", what, err)
	}
	defer f.Close()
	tooLong := fmt.Errorf("%s file %s: the first line is longer than %d bytes, the longest %s", what, path, max, what)
	// A line end ("\r\n") after the longest secret is allowed.
	data, err := readLimited(&firstLine{r: f}, path, max+2)
	if errors.As(err, new(tooLargeError)) {
		return nil, tooLong
	}
	if err != nil {
		return nil, fmt.Errorf("read %s file: %w", what, err)
	}
	// Bytes, not strings: a string copy of the secret could not be cleared.
	secret := bytes.TrimSuffix(bytes.TrimSuffix(data, []byte("\n")), []byte("\r"))
	switch {
	case len(secret) > max:
		clear(data)
		return nil, tooLong
	case len(secret) == 0:
		clear(data)
		return nil, fmt.Errorf("%s file %s: the first line is empty", what, path)
	}
	return secret, nil
}

// errNoPassphrase: a soft KEKEK's passphrase was not given and there is no
// terminal to ask on.
var errNoPassphrase = errors.New("no passphrase given and no terminal to ask for one (give it with --passphrase-file FILE)")

// readPassphrase finds a soft KEKEK's passphrase: the first line of file,
// else a prompt without echo, twice when confirm (a new passphrase).
func readPassphrase(ctx context.Context, e *env, file string, confirm bool) ([]byte, error) {
	if file != "" {
		return readSecretFile(file, "passphrase", backup.MaxPassphraseLength)
	}
	if e.readSecret == nil {
		return nil, errNoPassphrase
	}
	pass, err := e.readSecret(ctx, "KEKEK passphrase: ")
	if err != nil || !confirm {
		return pass, err
	}
	again, err := e.readSecret(ctx, "KEKEK passphrase again: ")
	defer clear(again)
	if err != nil {
		clear(pass)
		return nil, err
	}
	if subtle.ConstantTimeCompare(pass, again) != 1 {
		clear(pass)
		return nil, errors.New("the two passphrases differ")
	}
	return pass, nil
}
