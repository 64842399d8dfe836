package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"

	"github.com/hsmkit/cryptech-backup/backup"
)

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
