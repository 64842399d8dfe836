package backup

import (
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/hsmkit/cryptech-backup/internal/quote"
)

// scanner reads a JSON document (RFC 8259) one token at a time, through a
// buffer of its own, and builds no Go value: a string's decoded bytes stay
// in its scratch until the next token, for the decoder to keep or not.
// json.Decoder.Token, which it replaces, made an error message for every
// value it read (1,000 attributes of a few bytes cost 17 bytes of memory
// for each byte of file), and read bytes that are not UTF-8, and escaped
// halves of surrogate pairs, as U+FFFD, where cryptech_backup (Python)
// refuses the first and keeps the second: two tools would read one file as
// two labels. It refuses both.
type scanner struct {
	r        io.Reader
	buf      []byte // buf[pos:end] is read and not yet scanned
	pos, end int
	off      int64 // of buf[0] in the file
	rerr     error // the first error reading r but io.EOF; nothing is read after it
	eof      bool
	err      error // what more found wrong, for the next token

	stack []byte // '{' or '[' of each value open
	state scanState
	run   int // bytes of the atom outside strings so far (see maxAtom)

	// The token just read: for a string its bytes decoded, for a number as
	// written.
	kind tokenKind
	text []byte
}

type scanState uint8

const (
	wantValue      scanState = iota // at the start, after ':' or an array's ','
	wantFirstValue                  // after '[': a value or ']'
	wantFirstName                   // after '{': a name or '}'
	wantName                        // after an object's ','
	wantColon                       // after a name
	wantMore                        // after a value: ',' or the close, or the end
)

type tokenKind uint8

const (
	tokenString tokenKind = iota + 1
	tokenNumber
	tokenTrue
	tokenFalse
	tokenNull
	tokenBeginObject
	tokenEndObject
	tokenBeginArray
	tokenEndArray
)

// maxAtom bounds a JSON string, and any run of other bytes between two of
// {}[],: outside strings (a number, a literal, white space), as written.
// The longest a real file has is an attribute's value: 2,050 bytes.
const maxAtom = 64 << 10

// scanBuffer is what the scanner reads at a time.
const scanBuffer = 32 << 10

func newScanner(r io.Reader) *scanner { return &scanner{r: r} }

// streamError is a fault of the JSON itself (or of reading it), which
// belongs to no field.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

var (
	errTrailing  = errors.New("data after the JSON document")
	errTruncated = errors.New("truncated or empty JSON")
)

// at is the offset of buf[i] in the file as messages give it: the first
// byte is byte 1.
func (s *scanner) at(i int) int64 { return s.off + int64(i) + 1 }

func (s *scanner) syntaxError(i int, format string, args ...any) error {
	return &streamError{fmt.Errorf("not JSON at byte %d: %s", s.at(i), fmt.Sprintf(format, args...))}
}

// atomError: the atom whose first byte is at offset start (as at gives
// it) passes maxAtom at its maxAtom+1st byte.
func atomError(start int64) error {
	return &streamError{fmt.Errorf("more than %d bytes in one JSON string or value, at byte %d", maxAtom, start+maxAtom)}
}

// runError: the byte before pos took the atom outside strings past maxAtom.
func (s *scanner) runError() error { return atomError(s.at(s.pos) - int64(s.run)) }

// endError is what running out of input means: a read error, or a
// truncated document.
func (s *scanner) endError() error {
	if s.rerr != nil {
		return &streamError{s.rerr}
	}
	return &streamError{errTruncated}
}

// fill reads more of the file, keeping buf[pos:end], and reports whether
// any byte came.
func (s *scanner) fill() bool {
	if s.eof {
		return false
	}
	if s.buf == nil {
		s.buf = make([]byte, scanBuffer)
	}
	if s.pos > 0 {
		s.end = copy(s.buf, s.buf[s.pos:s.end])
		s.off += int64(s.pos)
		s.pos = 0
	}
	// As bufio does: a reader that gives nothing 100 times is broken.
	for range 100 {
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err != nil {
			s.eof = true
			if err != io.EOF {
				s.rerr = err
			}
			return n > 0
		}
		if n > 0 {
			return true
		}
	}
	s.eof, s.rerr = true, io.ErrNoProgress
	return false
}

// ensure reads until n bytes are unscanned, and reports whether they are.
func (s *scanner) ensure(n int) bool {
	for s.end-s.pos < n {
		if !s.fill() {
			return false
		}
	}
	return true
}

// space skips white space and returns the next byte, unscanned.
func (s *scanner) space() (byte, error) {
	for {
		for s.pos < s.end {
			switch c := s.buf[s.pos]; c {
			case ' ', '\t', '\n', '\r':
				s.pos++
				if s.run++; s.run > maxAtom {
					return 0, s.runError()
				}
			default:
				return c, nil
			}
		}
		if !s.fill() {
			return 0, s.endError()
		}
	}
}

// delim takes the structural byte at pos.
func (s *scanner) delim() {
	s.pos++
	s.run = 0
}

// next reads the next token.
func (s *scanner) next() error {
	if s.err != nil {
		return s.err
	}
	for {
		c, err := s.space()
		if err != nil {
			return err
		}
		switch s.state {
		case wantFirstValue:
			if c == ']' {
				return s.close(c)
			}
			return s.value(c)
		case wantValue:
			return s.value(c)
		case wantFirstName:
			if c == '}' {
				return s.close(c)
			}
			fallthrough
		case wantName:
			if c != '"' {
				return s.syntaxError(s.pos, "%s where a field name belongs", charName(c))
			}
			if err := s.string(); err != nil {
				return err
			}
			s.state = wantColon
			return nil
		case wantColon:
			if c != ':' {
				return s.syntaxError(s.pos, "%s after a field name, where ':' belongs", charName(c))
			}
			s.delim()
			s.state = wantValue
		case wantMore:
			if len(s.stack) == 0 {
				return &streamError{errTrailing}
			}
			open := s.stack[len(s.stack)-1]
			switch {
			case c == ',' && open == '{':
				s.delim()
				s.state = wantName
			case c == ',':
				s.delim()
				s.state = wantValue
			case c == '}' && open == '{', c == ']' && open == '[':
				return s.close(c)
			case open == '{':
				return s.syntaxError(s.pos, "%s after a field's value, where ',' or '}' belongs", charName(c))
			default:
				return s.syntaxError(s.pos, "%s after an array's element, where ',' or ']' belongs", charName(c))
			}
		}
	}
}

// more reports whether the object or array being read has another element
// (as json.Decoder.More: the next byte does not close it). At an error it
// says no, and the next token returns the error.
func (s *scanner) more() bool {
	c, err := s.space()
	if err != nil {
		s.err = err
		return false
	}
	return c != '}' && c != ']'
}

// finish reads the white space after the document, and refuses anything else.
func (s *scanner) finish() error {
	if _, err := s.space(); err == nil {
		return &streamError{errTrailing}
	} else if s.rerr != nil || !errors.Is(err, errTruncated) {
		return err
	}
	return nil
}

func (s *scanner) close(c byte) error {
	s.delim()
	s.stack = s.stack[:len(s.stack)-1]
	s.state = wantMore
	s.kind = tokenEndArray
	if c == '}' {
		s.kind = tokenEndObject
	}
	return nil
}

// value reads the value that starts with c.
func (s *scanner) value(c byte) error {
	s.state = wantMore
	switch {
	case c == '{' || c == '[':
		s.delim()
		s.stack = append(s.stack, c)
		s.state, s.kind = wantFirstName, tokenBeginObject
		if c == '[' {
			s.state, s.kind = wantFirstValue, tokenBeginArray
		}
		return nil
	case c == '"':
		return s.string()
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	case c == 't':
		return s.literal("true", tokenTrue)
	case c == 'f':
		return s.literal("false", tokenFalse)
	case c == 'n':
		return s.literal("null", tokenNull)
	}
	return s.syntaxError(s.pos, "%s where a value belongs", charName(c))
}

func (s *scanner) literal(word string, kind tokenKind) error {
	if !s.ensure(len(word)) {
		return s.endError()
	}
	if string(s.buf[s.pos:s.pos+len(word)]) != word {
		return s.syntaxError(s.pos, "not %s, nor any value", word)
	}
	s.pos += len(word)
	if s.run += len(word); s.run > maxAtom {
		return s.runError()
	}
	s.kind = kind
	return nil
}

// number reads a number as written, and checks it is one.
func (s *scanner) number() error {
	start := s.at(s.pos)
	s.text = s.text[:0]
	for {
		for s.pos < s.end {
			c := s.buf[s.pos]
			if !('0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
				return s.checkNumber(start)
			}
			s.text = append(s.text, c)
			s.pos++
			if s.run++; s.run > maxAtom {
				return s.runError()
			}
		}
		if !s.fill() {
			return s.checkNumber(start)
		}
	}
}

func (s *scanner) checkNumber(at int64) error {
	if !isNumber(s.text) {
		return &streamError{fmt.Errorf("not JSON at byte %d: %s is not a number", at, quote.Short(string(s.text)))}
	}
	s.kind = tokenNumber
	return nil
}

// isNumber reports whether b is a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isNumber(b []byte) bool {
	digits := func() int {
		n := 0
		for n < len(b) && '0' <= b[n] && b[n] <= '9' {
			n++
		}
		b = b[n:]
		return n
	}
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	switch {
	case len(b) > 0 && b[0] == '0':
		b = b[1:]
	case digits() == 0:
		return false
	}
	if len(b) > 0 && b[0] == '.' {
		b = b[1:]
		if digits() == 0 {
			return false
		}
	}
	if len(b) > 0 && (b[0] == 'e' || b[0] == 'E') {
		b = b[1:]
		if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
			b = b[1:]
		}
		if digits() == 0 {
			return false
		}
	}
	return len(b) == 0
}

// textError is a string that is not text: bytes that are not UTF-8, or an
// escaped half of a surrogate pair. It belongs to the field it is in.
type textError struct{ err error }

func (e *textError) Error() string { return e.err.Error() }

// string reads the string whose '"' is at pos into text, decoded.
func (s *scanner) string() error {
	start := s.at(s.pos)
	s.pos++
	s.run = 0
	s.text = s.text[:0]
	n := 1 // bytes of the string as written so far
	for {
		i := s.pos
		for i < s.end {
			if c := s.buf[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
				break
			}
			i++
		}
		n += i - s.pos
		if n > maxAtom {
			return atomError(start)
		}
		s.text = append(s.text, s.buf[s.pos:i]...)
		s.pos = i
		if s.pos == s.end {
			if !s.fill() {
				return s.endError()
			}
			continue
		}
		switch c := s.buf[s.pos]; {
		case c == '"':
			if n++; n > maxAtom {
				return atomError(start)
			}
			s.pos++
			s.kind = tokenString
			return nil
		case c == '\\':
			size, err := s.escape()
			if err != nil {
				return err
			}
			if n += size; n > maxAtom {
				return atomError(start)
			}
		case c < 0x20:
			return s.syntaxError(s.pos, "control character 0x%02x in a string (it is written \\u%04x)", c, c)
		default:
			for !utf8.FullRune(s.buf[s.pos:s.end]) {
				if !s.fill() {
					return s.endError()
				}
			}
			r, size := utf8.DecodeRune(s.buf[s.pos:s.end])
			if r == utf8.RuneError && size == 1 {
				return &textError{fmt.Errorf("not UTF-8 at byte %d", s.at(s.pos))}
			}
			if n += size; n > maxAtom {
				return atomError(start)
			}
			s.text = append(s.text, s.buf[s.pos:s.pos+size]...)
			s.pos += size
		}
	}
}

// escape decodes the escape at pos into text, and returns its length as
// written.
func (s *scanner) escape() (int, error) {
	if !s.ensure(2) {
		return 0, s.endError()
	}
	c := s.buf[s.pos+1]
	if c != 'u' {
		b, ok := escapes[c]
		if !ok {
			return 0, s.syntaxError(s.pos+1, "%s after '\\' in a string, which is no escape", charName(c))
		}
		s.text = append(s.text, b)
		s.pos += 2
		return 2, nil
	}
	r, err := s.hex4(0)
	if err != nil {
		return 0, err
	}
	size := 6
	if utf16.IsSurrogate(r) {
		// Python 2 writes a character beyond U+FFFF as a pair; either half
		// alone is no character.
		var low rune = -1
		if s.ensure(12) && s.buf[s.pos+6] == '\\' && s.buf[s.pos+7] == 'u' {
			if low, err = s.hex4(6); err != nil {
				return 0, err
			}
		}
		if r = utf16.DecodeRune(r, low); r == utf8.RuneError {
			return 0, &textError{fmt.Errorf("%s at byte %d is half a UTF-16 surrogate pair", s.buf[s.pos:s.pos+6], s.at(s.pos))}
		}
		size = 12
	}
	s.text = utf8.AppendRune(s.text, r)
	s.pos += size
	return size, nil
}

// hex4 reads the \uXXXX escape at pos+rel.
func (s *scanner) hex4(rel int) (rune, error) {
	if !s.ensure(rel + 6) {
		return 0, s.endError()
	}
	i := s.pos + rel
	var r rune
	for j, c := range s.buf[i+2 : i+6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, s.syntaxError(i+2+j, "%s in a \\u escape, where a hexadecimal digit belongs", charName(s.buf[i+2+j]))
		}
		r = r<<4 | rune(c)
	}
	return r, nil
}

var escapes = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// charName names a byte for a message.
func charName(c byte) string {
	if ' ' < c && c < 0x7f {
		return fmt.Sprintf("'%c'", c)
	}
	return fmt.Sprintf("byte 0x%02x", c)
}
