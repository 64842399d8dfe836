package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/hsmkit/cryptech-backup/hsmapi"
	"github.com/hsmkit/cryptech-backup/internal/quote"
)

// Files are read one JSON token at a time (scanner), straight into their
// Go types, and every bound is checked as soon as it is passed: the 10,001st
// key, a binary field's 145th line, a line's 77th character, a label's
// 257th byte, the bundle's 640,001st attribute, and what all the values
// read so far keep in memory. So a file costs at most about its size in
// memory, whatever it holds and however long it is; json.Unmarshal would
// first build all of it (a keys array of empty objects took 230 bytes of
// memory per byte of file). Field names must be exactly those of the
// types, once each: encoding/json alone matches names without regard to
// case and keeps the last of duplicates, and cryptech_backup (Python) reads
// exact names, so the two tools could otherwise read different values from
// one file.

// maxKept bounds what a reader keeps of one file, counted as the bytes of
// its strings, decoded binary fields and attribute values, and the Go
// values that hold them: the largest real bundle (10,000 keys of the
// largest kind, see cmd/cryptech-backup's TestMaxBundleHoldsLargestBundle)
// keeps 101 MB. The CLI reads no bundle over 168 MiB; this bounds the
// memory of a reader given a longer one, or one that keeps more than it
// takes in the file.
const maxKept = 160 << 20

// decodeStrict reads exactly one JSON document into v, a pointer to a
// struct, with nothing but white space after it. An error reading r is
// returned as it is; anything wrong with the document is ErrFormat.
func decodeStrict(r io.Reader, v any) error { return decodeWithin(r, v, maxKept) }

// decodeWithin is decodeStrict keeping at most budget bytes.
func decodeWithin(r io.Reader, v any, budget int64) error {
	d := &decoder{s: newScanner(r), budget: budget}
	err := d.value(reflect.ValueOf(v).Elem(), 0)
	if err == nil {
		err = d.s.finish()
	}
	switch {
	case err == nil:
		return nil
	case d.s.rerr != nil:
		return d.s.rerr
	}
	return fmt.Errorf("%w: %s", ErrFormat, err)
}

// decodeValue decodes one JSON value into v (for the UnmarshalJSON methods
// of types that decode themselves).
func decodeValue(data []byte, v streamDecoder) error {
	d := &decoder{s: newScanner(bytes.NewReader(data)), budget: maxKept}
	err := v.decodeJSON(d)
	if err == nil {
		err = d.s.finish()
	}
	return err
}

// streamDecoder is a type that reads itself from the token stream.
type streamDecoder interface {
	decodeJSON(d *decoder) error
}

// decoder reads a document's tokens into Go values.
type decoder struct {
	s *scanner
	// kept counts what the values read so far keep, against budget.
	kept, budget int64
	// attributes counts the attributes of the whole file.
	attributes int
	// scratch collects a binary field's Base64 lines, or a key's attribute
	// values, and attrs its attributes, decoded a binary field, reused for
	// each.
	scratch, decoded []byte
	attrs            []attributeSpan
}

// keep counts n more bytes kept, and refuses them past the budget.
func (d *decoder) keep(n int) error {
	if d.kept += int64(n); d.kept > d.budget {
		return fmt.Errorf("more than %d bytes to keep in all, more than any real file holds", d.budget)
	}
	return nil
}

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
func (d *decoder) token() (tokenKind, error) {
	if err := d.s.next(); err != nil {
		return 0, err
	}
	return d.s.kind, nil
}

// more reports whether the object or array being read has another element.
func (d *decoder) more() bool { return d.s.more() }

// open reads the '{' or '[' that starts a value of the given kind.
func (d *decoder) open(kind tokenKind, want string) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t != kind {
		return d.wrongType(want)
	}
	return nil
}

// close reads the '}' or ']' that more has announced.
func (d *decoder) close() error {
	_, err := d.token()
	return err
}

// text reads a string, and returns its bytes until the next token.
func (d *decoder) text(want string) ([]byte, error) {
	t, err := d.token()
	if err != nil {
		return nil, err
	}
	if t != tokenString {
		return nil, d.wrongType(want)
	}
	return d.s.text, nil
}

// wrongType says what was read where want belongs.
func (d *decoder) wrongType(want string) error {
	var found string
	switch d.s.kind {
	case tokenBeginObject:
		found = "an object"
	case tokenBeginArray:
		found = "an array"
	case tokenString:
		found = "a string"
	case tokenNumber:
		found = quote.Clip(string(d.s.text))
	case tokenTrue:
		found = "true"
	case tokenFalse:
		found = "false"
	case tokenNull:
		found = "null"
	}
	return fmt.Errorf("%s where %s belongs", found, want)
}

var flagsType = reflect.TypeFor[hsmapi.Flags]()

// value reads one value into v; a string of at most max bytes. Pointers are
// made, and null is refused everywhere: each value has one encoding.
func (d *decoder) value(v reflect.Value, max int) error {
	if p, ok := v.Addr().Interface().(streamDecoder); ok {
		return p.decodeJSON(d)
	}
	switch v.Kind() {
	case reflect.Pointer:
		if err := d.keep(int(v.Type().Elem().Size())); err != nil {
			return err
		}
		v.Set(reflect.New(v.Type().Elem()))
		return d.value(v.Elem(), max)
	case reflect.Struct:
		return d.object(v)
	case reflect.Slice:
		return d.array(v, max)
	case reflect.String:
		s, err := d.text("a string")
		if err != nil {
			return err
		}
		if len(s) > max {
			return fmt.Errorf("%d bytes, more than the %d it may have", len(s), max)
		}
		if err := d.keep(len(s)); err != nil {
			return err
		}
		v.SetString(string(s))
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return d.number("an integer", func(s string) error {
			n, err := strconv.ParseInt(s, 10, v.Type().Bits())
			v.SetInt(n)
			return err
		})
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want := "a non-negative integer"
		if v.Type() == flagsType {
			want = "a flag set (a non-negative integer)"
		}
		return d.number(want, func(s string) error {
			n, err := strconv.ParseUint(s, 10, v.Type().Bits())
			v.SetUint(n)
			return err
		})
	}
	return fmt.Errorf("no streaming reader for %s", v.Type())
}

// number reads a number that set takes.
func (d *decoder) number(want string, set func(string) error) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t != tokenNumber || set(string(d.s.text)) != nil {
		return d.wrongType(want)
	}
	return nil
}

// object reads a JSON object into the struct v: each field by its exact
// JSON name, at most once, and nothing else. A field a file may leave out
// is not given its zero value instead: a file has one form.
func (d *decoder) object(v reflect.Value) error {
	if err := d.open(tokenBeginObject, "an object"); err != nil {
		return err
	}
	fields := fieldsOf(v.Type())
	var seen uint64
	for d.more() {
		name, err := d.text("a field name")
		if err != nil {
			return err
		}
		i := fields.index(name)
		switch {
		case i < 0:
			return fmt.Errorf("unknown field %s", quote.Short(string(name)))
		case seen&(1<<i) != 0:
			return fmt.Errorf("field %q given twice", fields[i].name)
		}
		seen |= 1 << i
		f := &fields[i]
		fv := v.Field(f.index)
		if err := d.value(fv, f.max); err != nil {
			return within(f.name, err)
		}
		if f.omitEmpty && isEmpty(fv) {
			what := "empty"
			if fv.CanInt() {
				what = "0"
			}
			return within(f.name, fmt.Errorf("%s, which a file says by leaving the field out", what))
		}
	}
	return d.close()
}

// isEmpty reports whether v is the value encoding/json's omitempty leaves
// out.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Slice:
		return v.Len() == 0
	case reflect.Pointer:
		return v.IsNil()
	}
	return v.IsZero()
}

// arrayBounds bounds each array a file may hold, by what it holds, and
// names its elements for the message.
var arrayBounds = map[reflect.Type]struct {
	max  int
	noun string
}{
	reflect.TypeFor[BundleKey]():            {MaxKeys, "keys"},
	reflect.TypeFor[hsmapi.KEKEncryption](): {len(hsmapi.KEKEncryptions), "KEK encryptions"},
}

// array reads a JSON array into the slice v, no longer than its bound;
// strings in it of at most max bytes.
func (d *decoder) array(v reflect.Value, max int) error {
	elem := v.Type().Elem()
	bound, ok := arrayBounds[elem]
	if !ok {
		return fmt.Errorf("no bound for arrays of %s", elem)
	}
	if err := d.open(tokenBeginArray, "an array"); err != nil {
		return err
	}
	v.Set(reflect.MakeSlice(v.Type(), 0, 0))
	for i := 0; d.more(); i++ {
		if i == bound.max {
			return fmt.Errorf("more than %d %s", bound.max, bound.noun)
		}
		if err := d.keep(int(elem.Size())); err != nil {
			return err
		}
		v.Set(reflect.Append(v, reflect.Zero(elem)))
		if err := d.value(v.Index(i), max); err != nil {
			return within(fmt.Sprintf("[%d]", i), err)
		}
	}
	return d.close()
}

// Bounds on the strings of the files, in bytes as read, each what the
// longest a file holds has, with room.
const (
	uuidLength = 36
	// maxName bounds a KEK encryption's or a KDF's name: the longest,
	// "rsa-oaep-sha256", has 15 bytes.
	maxName = 32
	// maxComment bounds a comment: the longest either tool writes,
	// cryptech_backup's "Cryptech Alpha encrypted key backup", has 35.
	maxComment = 1 << 10
)

// stringBounds bounds each string field of the files, by its JSON name
// (an array of strings, each of its strings).
var stringBounds = map[string]int{
	"comment":         maxComment,
	"kek_encryption":  maxName,
	"kek_encryptions": maxName,
	"kekek_uuid":      uuidLength,
	"label":           hsmapi.MaxLabelLength,
	"label_hex":       2 * hsmapi.MaxRawLabelLength,
	"name":            maxName,
	"uuid":            uuidLength,
}

// structFields lists a struct's fields by JSON name.
type structFields []struct {
	name      string
	index     int
	omitEmpty bool
	max       int // for a string, or the strings of an array
}

func (f structFields) index(name []byte) int {
	for i := range f {
		if f[i].name == string(name) {
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
	f := make(structFields, t.NumField())
	for i := range f {
		ft := t.Field(i)
		name, opts, _ := strings.Cut(ft.Tag.Get("json"), ",")
		f[i].name, f[i].index, f[i].omitEmpty = name, i, opts == "omitempty"
		f[i].max = stringBounds[name]
		if k := ft.Type.Kind(); (k == reflect.String || k == reflect.Slice && ft.Type.Elem().Kind() == reflect.String) && f[i].max == 0 {
			panic("backup: no bound for the strings of field " + name)
		}
	}
	if len(f) > 64 {
		panic("backup: a file's object has more than 64 fields") // seen is a uint64
	}
	fieldCache.Store(t, f)
	return f
}
