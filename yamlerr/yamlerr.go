// Package yamlerr places yaml.v3's errors on the line they name, so that
// app.yaml and runtime files report problems as FILE:LINE: message.
package yamlerr

import (
	"regexp"
	"strconv"
	"strings"

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
