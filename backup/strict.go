package backup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/hsmkit/cryptech-backup/hsm"
)

// Files are read one JSON token at a time, straight into their Go types,
// and every bound is checked as soon as it is passed: the 10,001st key, a
// binary field's 145th line, a line's 77th character. A file near the size
// the CLI accepts then costs about its size in memory, whatever it holds;
// json.Unmarshal would first build all of it (a keys array of empty objects
// took 230 bytes of memory per byte of file). Field names must be exactly
// those of the types, once each: encoding/json alone matches names without
// regard to case and keeps the last of duplicates, and cryptech_backup
// (Python) reads exact names, so the two tools could otherwise read
// different values from one file.

// decodeStrict reads exactly one JSON document into v, a pointer to a
// struct, with nothing but white space after it. An error reading r is
// returned as it is; anything wrong with the document is ErrFormat.
func decodeStrict(r io.Reader, v any) error {
	src := &sourceReader{r: r}
	d := newDecoder(src)
	err := d.value(reflect.ValueOf(v).Elem())
	if err == nil {
		// Anything after the document, even a syntax error, is trailing data.
		if _, terr := d.dec.Token(); terr != io.EOF {
			err = &streamError{errTrailing}
		}
	}
	if err == nil {
		return nil
	}
	if src.err != nil {
		return src.err
	}
	return fmt.Errorf("%w: %s", ErrFormat, d.describe(err))
}

// decodeValue decodes one JSON value into v (for the UnmarshalJSON methods
// of types that decode themselves).
func decodeValue(data []byte, v streamDecoder) error {
	d := newDecoder(bytes.NewReader(data))
	if err := v.decodeJSON(d); err != nil {
		return errors.New(d.describe(err))
	}
	return nil
}

// sourceReader keeps the first error of r other than io.EOF, and reads
// r no more after it (a json.Decoder reads again after an error): a file
// that could not be read (or is larger than the caller reads) is that
// error, not a malformed file.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// maxAtom bounds a JSON string, and any run of other bytes between two of
// {}[],: outside strings (a number, a literal, white space), as written.
// A json.Decoder holds each token whole, and the white space before one, so
// this bounds what it holds. The longest a real file has is an attribute's
// value: 2,050 bytes.
const maxAtom = 64 << 10

// atomGuard passes a document on to the decoder, and stops it at the first
// atom longer than maxAtom.
type atomGuard struct {
	r                 io.Reader
	inString, escaped bool
	run               int   // bytes of the current atom so far
	off               int64 // of the next byte read
	err               error
}

func (g *atomGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	// The state in locals: this loop sees every byte of a bundle.
	inString, escaped, run := g.inString, g.escaped, g.run
	for i, c := range p[:n] {
		switch {
		case inString:
			run++
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString, run = false, 0
			}
		case c == '"':
			inString, run = true, 1
		case c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || c == ':':
			run = 0
		default:
			run++
		}
		if run > maxAtom {
			g.err = fmt.Errorf("more than %d bytes in one JSON string or value, at byte %d", maxAtom, g.off+int64(i))
			return i, g.err
		}
	}
	g.inString, g.escaped, g.run = inString, escaped, run
	g.off += int64(n)
	return n, err
}

// streamDecoder is a type that reads itself from the token stream.
type streamDecoder interface {
	decodeJSON(d *decoder) error
}

// decoder reads a document's tokens into Go values.
type decoder struct {
	dec   *json.Decoder
	guard *atomGuard
	// scratch collects a binary field's Base64 lines, attrs a key's
	// attributes, reused for each.
	scratch []byte
	attrs   Attributes
}

func newDecoder(r io.Reader) *decoder {
	g := &atomGuard{r: r}
	dec := json.NewDecoder(g)
	dec.UseNumber()
	return &decoder{dec: dec, guard: g}
}

// streamError is a fault of the JSON itself (or of reading it), which
// belongs to no field.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

var errTrailing = errors.New("data after the JSON document")

// fieldError places an error at a field of the document: at is a path
// such as keys[3].flags.
type fieldError struct {
	at  string
	err error
}

func (e *fieldError) Error() string { return e.at + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// within places err in the field or element at; faults of the stream stay
// where they are.
func within(at string, err error) error {
	var se *streamError
	var fe *fieldError
	switch {
	case err == nil || errors.As(err, &se):
		return err
	case errors.As(err, &fe):
		sep := "."
		if strings.HasPrefix(fe.at, "[") {
			sep = ""
		}
		return &fieldError{at + sep + fe.at, fe.err}
	}
	return &fieldError{at, err}
}

// token reads the next token.
func (d *decoder) token() (json.Token, error) {
	t, err := d.dec.Token()
	if err != nil {
		return nil, &streamError{err}
	}
	return t, nil
}

// open reads the '{' or '[' that starts a value of the given kind.
func (d *decoder) open(delim json.Delim, want string) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t != delim {
		return wrongType(t, want)
	}
	return nil
}

// close reads the '}' or ']' that More has announced.
func (d *decoder) close() error {
	_, err := d.token()
	return err
}

// str reads a string.
func (d *decoder) str(want string) (string, error) {
	t, err := d.token()
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		return "", wrongType(t, want)
	}
	return s, nil
}

// wrongType says what was found where want belongs.
func wrongType(t json.Token, want string) error {
	var found string
	switch t := t.(type) {
	case json.Delim:
		found = map[json.Delim]string{'{': "an object", '[': "an array"}[t]
	case string:
		found = "a string"
	case json.Number:
		found = string(t)
	case bool:
		found = strconv.FormatBool(t)
	case nil:
		found = "null"
	}
	return fmt.Errorf("%s where %s belongs", found, want)
}

var flagsType = reflect.TypeFor[hsm.Flags]()

// value reads one value into v. Pointers are made, and null is refused
// everywhere: each value has one encoding.
func (d *decoder) value(v reflect.Value) error {
	switch p := v.Addr().Interface().(type) {
	case streamDecoder:
		return p.decodeJSON(d)
	case json.Unmarshaler:
		// Its own reading would be bypassed, unbounded.
		return fmt.Errorf("no streaming reader for %s", v.Type())
	}
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		return d.value(v.Elem())
	case reflect.Struct:
		return d.object(v)
	case reflect.Slice:
		return d.array(v)
	case reflect.String:
		s, err := d.str("a string")
		v.SetString(s)
		return err
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return d.number(v, "an integer", func(s string) error {
			n, err := strconv.ParseInt(s, 10, v.Type().Bits())
			v.SetInt(n)
			return err
		})
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want := "a non-negative integer"
		if v.Type() == flagsType {
			want = "a flag set (a non-negative integer)"
		}
		return d.number(v, want, func(s string) error {
			n, err := strconv.ParseUint(s, 10, v.Type().Bits())
			v.SetUint(n)
			return err
		})
	}
	return fmt.Errorf("no streaming reader for %s", v.Type())
}

// number reads a number that set takes.
func (d *decoder) number(v reflect.Value, want string, set func(string) error) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	n, ok := t.(json.Number)
	if !ok || set(string(n)) != nil {
		return wrongType(t, want)
	}
	return nil
}

// object reads a JSON object into the struct v: each field by its exact
// JSON name, at most once, and nothing else.
func (d *decoder) object(v reflect.Value) error {
	if err := d.open('{', "an object"); err != nil {
		return err
	}
	fields := fieldsOf(v.Type())
	var seen uint64
	for d.dec.More() {
		name, err := d.str("a field name")
		if err != nil {
			return err
		}
		i := fields.index(name)
		switch {
		case i < 0:
			return fmt.Errorf("unknown field %q", name)
		case seen&(1<<i) != 0:
			return fmt.Errorf("field %q given twice", name)
		}
		seen |= 1 << i
		if err := d.value(v.Field(fields[i].index)); err != nil {
			return within(name, err)
		}
	}
	return d.close()
}

// arrayBounds bounds each array a file may hold, by what it holds, and
// names its elements for the message.
var arrayBounds = map[reflect.Type]struct {
	max  int
	noun string
}{
	reflect.TypeFor[BundleKey]():         {MaxKeys, "keys"},
	reflect.TypeFor[hsm.KEKEncryption](): {len(hsm.KEKEncryptions), "KEK encryptions"},
}

// array reads a JSON array into the slice v, no longer than its bound.
func (d *decoder) array(v reflect.Value) error {
	bound, ok := arrayBounds[v.Type().Elem()]
	if !ok {
		return fmt.Errorf("no bound for arrays of %s", v.Type().Elem())
	}
	if err := d.open('[', "an array"); err != nil {
		return err
	}
	v.Set(reflect.MakeSlice(v.Type(), 0, 0))
	for i := 0; d.dec.More(); i++ {
		if i == bound.max {
			return fmt.Errorf("more than %d %s", bound.max, bound.noun)
		}
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
		if err := d.value(v.Index(i)); err != nil {
			return within(fmt.Sprintf("[%d]", i), err)
		}
	}
	return d.close()
}

// structFields lists a struct's fields by JSON name.
type structFields []struct {
	name  string
	index int
}

func (f structFields) index(name string) int {
	for i := range f {
		if f[i].name == name {
			return i
		}
	}
	return -1
}

var fieldCache sync.Map // reflect.Type -> structFields

func fieldsOf(t reflect.Type) structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(structFields)
	}
	var f structFields
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		f = append(f, struct {
			name  string
			index int
		}{name, i})
	}
	if len(f) > 64 {
		panic("backup: a file's object has more than 64 fields") // seen is a uint64
	}
	fieldCache.Store(t, f)
	return f
}

// describe says what is wrong with a file in the terms of the file, not of
// Go types.
func (d *decoder) describe(err error) string {
	var se *streamError
	if !errors.As(err, &se) {
		return err.Error()
	}
	var syntax *json.SyntaxError
	switch {
	case d.guard.err != nil:
		return d.guard.err.Error()
	case errors.Is(se.err, io.EOF) || errors.Is(se.err, io.ErrUnexpectedEOF):
		return "truncated or empty JSON"
	case errors.As(se.err, &syntax):
		return fmt.Sprintf("not JSON at byte %d: %v", syntax.Offset, syntax)
	}
	return strings.TrimPrefix(se.err.Error(), "json: ")
}
