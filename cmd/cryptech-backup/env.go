package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hsmkit/cryptech-backup/hsm"
	"github.com/hsmkit/cryptech-backup/hsmapi"
)

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
	wrapToken func(hsmapi.Token) hsmapi.Token
	// exit ends the process when a command does not return after an
	// interrupt; os.Exit if nil.
	exit func(int)
	// holds counts the sections (an export splitting HSS keys) that an
	// interrupt must not cut short; see hold.
	holdMu sync.Mutex
	holds  int
	// progressDelay passes before a progress line shows (see progress):
	// progressDelay in a real run, none in tests that give a terminal.
	progressDelay time.Duration
	// progressLine is the last progress line begun (see endProgress).
	progressMu   sync.Mutex
	progressLine *progressLine
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

func newEnv() *env {
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, progressDelay: progressDelay}
	if tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err == nil {
		tty.Close()
		e.readSecret = readSecretFromTTY
	}
	return e
}
