package backup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// checkFieldNames walks a JSON document and refuses any object key that is
// not, exactly, a field of the Go type it decodes into, and any key given
// twice. encoding/json alone matches names without regard to case and keeps
// the last of duplicates; cryptech_backup (Python) reads exact names, so the
// two tools could otherwise read different values from one file.
func checkFieldNames(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return walkValue(dec, t, "")
}

var unmarshaler = reflect.TypeFor[json.Unmarshaler]()

func walkValue(dec *json.Decoder, t reflect.Type, path string) error {
	if t != nil && reflect.PointerTo(t).Implements(unmarshaler) {
		// A type that reads itself checks its own form.
		var skip json.RawMessage
		return dec.Decode(&skip)
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch tok {
	case json.Delim('{'):
		fields := map[string]reflect.Type{}
		if t != nil && t.Kind() == reflect.Struct {
			for i := range t.NumField() {
				f := t.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				fields[name] = f.Type
			}
		}
		seen := map[string]bool{}
		for dec.More() {
			keyTok, err := dec.Token()
			if err != nil {
				return err
			}
			key := keyTok.(string)
			ft, ok := fields[key]
			if !ok {
				return fmt.Errorf("unknown field %q%s", key, at(path))
			}
			if seen[key] {
				return fmt.Errorf("field %q given twice%s", key, at(path))
			}
			seen[key] = true
			if err := walkValue(dec, ft, path+"/"+key); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
		return err
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walkValue(dec, elem, fmt.Sprintf("%s/%d", path, i)); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
		return err
	}
	return nil
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

// decodeStrict reads exactly one JSON document whose field names are exactly
// those of v, with nothing after it. It holds the document once: a
// json.Decoder would buffer a copy of it, which for a large bundle doubles
// what an import takes in memory; checkFieldNames refuses unknown fields.
func decodeStrict(r io.Reader, v any) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %s", ErrFormat, describeJSONError(err))
	}
	if err := checkFieldNames(data, reflect.TypeOf(v)); err != nil {
		return fmt.Errorf("%w: %v", ErrFormat, err)
	}
	return nil
}

// describeJSONError says what is wrong with a file in the terms of the file,
// not of Go types.
func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated or empty JSON"
	// json.Unmarshal's words for these two.
	case errors.As(err, &syntax) && syntax.Error() == "unexpected end of JSON input":
		return "truncated or empty JSON"
	case errors.As(err, &syntax) && strings.HasSuffix(syntax.Error(), "after top-level value"):
		return "data after the JSON document"
	case errors.As(err, &syntax):
		return fmt.Sprintf("not JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Sprintf("the document is a JSON %s, not an object", typ.Value)
		}
		return fmt.Sprintf("field %s: a JSON %s where %s belongs", typ.Field, typ.Value, jsonKind(typ.Type))
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Bool:
		return "true or false"
	}
	return "a number"
}
