// Package shellquote makes strings into words for a POSIX shell. Paths,
// environment values and whole scripts reach /bin/sh through it, some of
// them written by tenants, so there is exactly one way to do it.
package shellquote

import "strings"

// Quote makes s one single-quoted word for a POSIX shell (sh, dash, bash,
// busybox ash, zsh). Inside single quotes nothing is special, so the only
// work is closing the quote around each embedded quote. A shell cannot
// carry a NUL byte in a word; s must not hold one.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
