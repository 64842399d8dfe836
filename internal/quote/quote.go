// Package quote shows, in an error message, a value read from a file or
// the wire: quoted, so that no byte of it reaches a terminal raw, and cut
// short, so that a value of any length makes one short line.
package quote

import (
	"strconv"
	"unicode/utf8"
)

// maxShown is how many bytes of a value a message shows: enough to
// recognise a UUID, a name or a number, the whole of any a well-formed file
// holds where messages name them.
const maxShown = 40

// Short returns s quoted as Go quotes strings (bytes that are not
// printable UTF-8 escaped), at most its first maxShown bytes; when it is
// longer, it says so and how long it is: "abc..."... (65000 bytes).
func Short(s string) string {
	head, cut := clip(s)
	if !cut {
		return strconv.Quote(s)
	}
	return strconv.Quote(head) + tail(s)
}

// Clip returns s unquoted, cut as Short cuts it, for what is plain ASCII by
// the time it is shown (a JSON number).
func Clip(s string) string {
	head, cut := clip(s)
	if !cut {
		return s
	}
	return head + tail(s)
}

// clip cuts s to at most maxShown bytes, never within a character.
func clip(s string) (string, bool) {
	if len(s) <= maxShown {
		return s, false
	}
	n := maxShown
	for n > maxShown-utf8.UTFMax && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}

func tail(s string) string {
	return "... (" + strconv.Itoa(len(s)) + " bytes)"
}
