// Package shellquote quotes words for a POSIX shell, for the commands that
// messages tell an operator to run.
package shellquote

import "strings"

// Quote returns s as one word of a POSIX shell command: as it is when it
// needs no quoting, else in single quotes.
func Quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./+,:@%=-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
