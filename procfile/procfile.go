// Package procfile parses a Procfile, the list of an app's process types
// that Heroku, Dokku and foreman read: one "type: command" a line, comments
// and blank lines between. It is stricter than foreman, which skips any line
// it does not understand: a line that is not a process is an error with
// its line number, as is a type given twice or a type without a command.
package procfile

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

// MaxSize is the largest Procfile read, in bytes, as for app.yaml.
const MaxSize = 64 << 10

// maxTypes is app.yaml's limit on processes; release is not one.
const maxTypes = 20

// Release is the type Heroku runs once per release before it goes live,
// not as a process.
const Release = "release"

// Heroku's own pattern for a line (foreman and procfile-util use the
// same); the type is then held to app.yaml's stricter rules, with its own
// message.
var lineRE = regexp.MustCompile(`^([A-Za-z0-9_-]+):[ \t]*(.*)$`)

// Process is one line of a Procfile.
type Process struct {
	Type    string
	Command string
	Line    int
}

// Error is a problem with one line, or with the file when Line is 0.
type Error struct {
	Line    int
	Message string
}

func (e *Error) Error() string {
	if e.Line <= 0 {
		return "Procfile: " + e.Message
	}
	return fmt.Sprintf("Procfile:%d: %s", e.Line, e.Message)
}

// Parse reads a Procfile. It returns its processes in the file's order, or
// the first problem as an *Error.
func Parse(data []byte) ([]Process, error) {
	if len(data) > MaxSize {
		return nil, &Error{0, fmt.Sprintf("%d bytes is over the %d KiB limit", len(data), MaxSize>>10)}
	}
	if !utf8.Valid(data) {
		return nil, &Error{0, "not UTF-8 text"}
	}
	// Editors on Windows leave a byte-order mark and CRLF line ends.
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	var procs []Process
	first := map[string]int{}
	kinds := 0 // process types, release aside
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			return nil, &Error{n, fmt.Sprintf(`expected "type: command", such as "web: node server.js", found %s`, names.Quote(msgtext.Truncate(line, 60)))}
		}
		typ, cmd := m[1], strings.TrimSpace(m[2])
		if p := appspec.TypeProblem(typ); p != "" {
			return nil, &Error{n, p}
		}
		if at, dup := first[typ]; dup {
			return nil, &Error{n, fmt.Sprintf("duplicate type %s (first at line %d)", typ, at)}
		}
		if p := appspec.CommandProblem(cmd); p != "" {
			return nil, &Error{n, typ + ": " + p}
		}
		first[typ] = n
		procs = append(procs, Process{Type: typ, Command: cmd, Line: n})
		if typ != Release {
			if kinds++; kinds > maxTypes {
				return nil, &Error{n, fmt.Sprintf("more than %d process types", maxTypes)}
			}
		}
	}
	if len(procs) == 0 {
		return nil, &Error{0, `no process types; add at least one line such as "web: node server.js"`}
	}
	return procs, nil
}
