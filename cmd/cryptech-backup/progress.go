package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/hsmkit/cryptech-backup/hsm"
)

// Progress of long work (HSS trees, exports and imports of many keys) is
// one line on stderr, rewritten in place, and only on a terminal: a script
// reading stderr sees exactly what it saw before.
const (
	// progressDelay passes before the line first shows: work done by
	// then needs no progress.
	progressDelay = 500 * time.Millisecond
	// progressEvery is the least time between two updates of the line.
	progressEvery = 250 * time.Millisecond
)

// progressLine draws "cryptech-backup WHAT: DONE/TOTAL UNIT (P%)" over
// itself on a terminal. Its report may be called from several goroutines.
type progressLine struct {
	mu         sync.Mutex
	w          io.Writer
	what, unit string
	now        func() time.Time
	start      time.Time
	delay      time.Duration
	last       time.Time
	// shown: the line is on the terminal; ended: end has run, and late
	// reports are dropped.
	shown, ended bool
}

// progress returns what a long piece of work reports its progress to, and
// what ends the line (clears it, if shown) when the work ends. report is
// nil, and end does nothing, when stderr is not a terminal.
func (e *env) progress(what, unit string) (report func(done, total int), end func()) {
	f, ok := e.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, func() {}
	}
	p := newProgressLine(f, what, unit, time.Now, e.progressDelay)
	e.progressMu.Lock()
	e.progressLine = p
	e.progressMu.Unlock()
	return p.report, p.end
}

// endProgress clears the progress line of the work in progress, if any,
// before the run gives up on it (an unanswered interrupt) and says so.
func (e *env) endProgress() {
	e.progressMu.Lock()
	p := e.progressLine
	e.progressMu.Unlock()
	if p != nil {
		p.end()
	}
}

func newProgressLine(w io.Writer, what, unit string, now func() time.Time, delay time.Duration) *progressLine {
	return &progressLine{w: w, what: what, unit: unit, now: now, start: now(), delay: delay}
}

func (p *progressLine) report(done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.now()
	if p.ended || t.Sub(p.start) < p.delay || (p.shown && t.Sub(p.last) < progressEvery) {
		return
	}
	pct := 100
	if total > 0 {
		pct = int(int64(done) * 100 / int64(total))
	}
	fmt.Fprintf(p.w, "\r%s %s: %d/%d %s (%d%%)", progName, p.what, done, total, p.unit, pct)
	p.shown, p.last = true, t
}

func (p *progressLine) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.shown, p.ended = false, true
}

// buildingTrees follows the command's name in the progress line of work
// that builds HSS trees, counted in leaves.
const buildingTrees = ": building HSS trees"

// hsmProgress returns ctx under which an emulated HSM tells a progress
// line how far it has got (in units), and what ends the line.
func (e *env) hsmProgress(ctx context.Context, what, unit string) (context.Context, func()) {
	report, end := e.progress(what, unit)
	return hsm.WithProgress(ctx, report), end
}
