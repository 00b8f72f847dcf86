// Package yamlerr places yaml.v3's errors on the line they name, so that
// app.yaml and runtime files report problems as FILE:LINE: message.
package yamlerr

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/upscalehq/upscale/msgtext"
)

// A parse error reads "yaml: line N: msg"; each entry of a TypeError's
// list reads "line N: msg".
var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// Split takes the line number off one of yaml.v3's messages: N and msg
// for "yaml: line N: msg" or "line N: msg", else 0 and msg unchanged.
func Split(msg string) (int, string) {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, msg
	}
	line, _ := strconv.Atoi(m[1])
	return line, msg[len(m[0]):]
}

// Syntax is the line (0 when it names none) and the message for a
// document yaml.v3 could not parse. The parser's text is not ours to trust
// to fit on a line: it quotes what it found.
func Syntax(err error) (int, string) {
	line, msg := Split(err.Error())
	return line, "not valid YAML: " + msgtext.OneLine(strings.TrimPrefix(msg, "yaml: "))
}

// SyntaxIn is Syntax for a document, doc, with the line found again.
// yaml.v3 often names the line where the construct around the problem
// began, and for parser errors that line counted from 0: "build: [a" on
// line 2 is reported on line 1. The problem is on the first line whose
// prefix of the document fails with the same message (found by bisection:
// once the problem is in, every longer prefix fails the same way). The
// parser's own line stays when no prefix shows the message.
func SyntaxIn(doc []byte, err error) (int, string) {
	line, msg := Syntax(err)
	var ends []int // the end of each line, newline included
	for i, c := range doc {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(doc) {
		ends = append(ends, len(doc))
	}
	fails := func(k int) bool { return syntaxMessage(doc[:ends[k-1]]) == msg }
	if !fails(len(ends)) {
		return line, msg
	}
	lo, hi := 1, len(ends)
	for lo < hi {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, msg
}

// syntaxMessage is Syntax's message for the first document of data that
// does not parse, or "" when all do.
func syntaxMessage(data []byte) string {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return ""
		}
		if err != nil {
			_, msg := Syntax(err)
			return msg
		}
	}
}
