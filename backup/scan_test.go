package backup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
)

// scanTokens reads one JSON document with the scanner, as encoding/json's
// tokens.
func scanTokens(data []byte) ([]any, error) {
	s := newScanner(bytes.NewReader(data))
	var out []any
	for {
		if err := s.next(); err != nil {
			return out, err
		}
		switch s.kind {
		case tokenBeginObject:
			out = append(out, json.Delim('{'))
		case tokenEndObject:
			out = append(out, json.Delim('}'))
		case tokenBeginArray:
			out = append(out, json.Delim('['))
		case tokenEndArray:
			out = append(out, json.Delim(']'))
		case tokenString:
			out = append(out, string(s.text))
		case tokenNumber:
			out = append(out, json.Number(s.text))
		case tokenTrue, tokenFalse:
			out = append(out, s.kind == tokenTrue)
		case tokenNull:
			out = append(out, nil)
		}
		if len(s.stack) == 0 {
			return out, s.finish()
		}
	}
}

// jsonTokens reads one JSON document with encoding/json.
func jsonTokens(data []byte) ([]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out []any
	depth := 0
	for {
		t, err := dec.Token()
		if err != nil {
			return out, err
		}
		out = append(out, t)
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			break
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return out, errTrailing
	}
	return out, nil
}

// FuzzScanner: the scanner reads exactly the documents encoding/json reads,
// as the same tokens, but for the strings it refuses as not text, where
// encoding/json reads U+FFFD.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `{"a": [1, -2.5e+3, "x\u00e9\ud83d\ude00\"\\\/\b\f\n\r\t", true, false, null]}`,
		` {"a":{"b":[[],{}]}} `, `[1,]`, `{"a" 1}`, `01`, `-`, `1.`, `1e`, `"\ud800"`, "\"\xff\"", `"\u00g0"`,
		"\"a\x01\"", `{"a":1}{}`, `[1 2]`, `{,}`, `nul`, `truex`, `"\uD83D\uDE00"`, `"\ude00\ud83d"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := scanTokens(data)
		want, wantErr := jsonTokens(data)
		var te *textError
		if errors.As(err, &te) {
			if wantErr == nil && !bytes.ContainsRune([]byte(fmt.Sprint(want)), '\uFFFD') {
				t.Fatalf("refused as not text (%v) what encoding/json reads without U+FFFD: %q", err, want)
			}
			return
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("scanner: %v; encoding/json: %v", err, wantErr)
		}
		if err == nil && fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
			t.Fatalf("scanner read %#v, encoding/json %#v", got, want)
		}
	})
}
