package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/term"

	"github.com/hsmkit/cryptech-backup/backup"
)

// fileKind is a kind of file that a command takes with -i: a KEKEK file or
// a bundle. The two are easily swapped; the messages say which is which.
type fileKind struct {
	name  string
	limit int
	// takes says which command takes it and where it comes from.
	takes string
	// is tells from a file's top-level field names whether it is one;
	// whole says whether they are all of them (the object ended).
	is func(fields map[string]bool, whole bool) bool
}

var (
	kekekFileKind = fileKind{
		name:  "KEKEK file",
		limit: maxKEKEKFile,
		takes: "export takes the KEKEK file that setup writes on the destination: " + progName + " setup --hsm DST -o kekek.json",
		is:    func(f map[string]bool, whole bool) bool { return whole && f["kekek_pubkey"] && !f["keys"] },
	}
	bundleKind = fileKind{
		name:  "bundle",
		limit: maxBundle,
		takes: "import takes the bundle that export writes on the source: " + progName + " export --hsm SRC -i kekek.json -o backup.json",
		is:    func(f map[string]bool, _ bool) bool { return f["keys"] },
	}
)

// other is the kind a file of kind k is mistaken for.
func (k fileKind) other() fileKind {
	if k.name == bundleKind.name {
		return kekekFileKind
	}
	return bundleKind
}

// parseInput parses a file of kind k (or stdin). It reads what it parses
// once, into the parser: a bundle near its bound is not held twice. A file
// of the other kind, or none, is named as such, with what to give instead.
func parseInput[T any](e *env, path string, k fileKind, parse func(io.Reader) (T, error)) (T, error) {
	var zero T
	r, name, done, err := e.input(path)
	if errors.Is(err, fs.ErrNotExist) {
		return zero, hintError{err, k.takes}
	}
	if err != nil {
		return zero, err
	}
	defer done()
	if f, ok := r.(*os.File); ok && name == "-" && term.IsTerminal(int(f.Fd())) {
		return zero, usageError{fmt.Sprintf("stdin is a terminal: give the %s with -i FILE", k.name)}
	}
	r, _, err = limitInput(r, name, k.limit)
	if err != nil {
		return zero, err
	}
	// The start of the file, to tell a file of the other kind.
	var head prefixWriter
	br := bufio.NewReader(io.TeeReader(r, &head))
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		return zero, fmt.Errorf("%s: the file starts with a byte order mark (U+FEFF); save it as UTF-8 without one", name)
	}
	v, err := parse(br)
	if err == nil {
		return v, nil
	}
	if other := k.other(); other.is(topLevelFields(head.data)) {
		return zero, hintError{fmt.Errorf("%s is a %s, not a %s", name, other.name, k.name), k.takes}
	}
	if tl := (tooLargeError{}); errors.As(err, &tl) {
		return zero, tl
	}
	if errors.Is(err, backup.ErrFormat) {
		return zero, hintError{err, k.takes}
	}
	return zero, err
}

// prefixWriter keeps the first 64 KiB written to it.
type prefixWriter struct{ data []byte }

func (p *prefixWriter) Write(b []byte) (int, error) {
	if room := 64<<10 - len(p.data); room > 0 {
		p.data = append(p.data, b[:min(room, len(b))]...)
	}
	return len(b), nil
}

// topLevelFields returns the field names of the JSON object that data
// starts with, as far as data goes, and whether the object ended there.
func topLevelFields(data []byte) (map[string]bool, bool) {
	fields := map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fields, false
	}
	for {
		t, err := dec.Token()
		if err != nil {
			return fields, false
		}
		name, ok := t.(string)
		if !ok {
			return fields, t == json.Delim('}')
		}
		fields[name] = true
		if skipValue(dec) != nil {
			return fields, false
		}
	}
}

// skipValue reads one JSON value, however deep.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// hintError carries the hint that goes on its line: what to do instead.
type hintError struct {
	err  error
	text string
}

func (h hintError) Error() string { return h.err.Error() }
func (h hintError) Unwrap() error { return h.err }
func (h hintError) hint() string  { return h.text }
