// Package msgtext fits strings into the one-line messages Upscale shows and
// stores: error lines on stderr, events, release failures, progress over
// the bus. Much of what goes in was written by someone else (a remote
// host, yaml.v3, a tenant's commit subject), so it must neither break a
// line nor forge one, and must stay valid UTF-8 once cut.
package msgtext

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Short is a commit id as git log --oneline abbreviates it.
func Short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}

// OneLine makes s one line: every control character (which includes
// newlines and terminal escapes) becomes a space, runs of white space
// become one space, and the ends are trimmed. Invalid UTF-8 becomes U+FFFD.
func OneLine(s string) string {
	return strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)), " ")
}

// ellipsis marks where Truncate cut.
const ellipsis = "…"

// Truncate cuts s to at most n bytes, marking the cut with "…" and never
// splitting a rune: n is a hard cap (a bus frame's size), not a hint.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n < len(ellipsis) {
		return s[:runeStart(s, max(n, 0))]
	}
	return s[:runeStart(s, n-len(ellipsis))] + ellipsis
}

// runeStart is the start of the rune that holds byte i of s (i itself at a
// rune boundary). Invalid UTF-8 is cut anywhere: a rune is at most
// utf8.UTFMax bytes, so no more than that is given up.
func runeStart(s string, i int) int {
	for back := 0; back < utf8.UTFMax-1 && i > 0 && !utf8.RuneStart(s[i]); back++ {
		i--
	}
	return i
}
