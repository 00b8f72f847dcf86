package yamlerr

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		line int
		msg  string
	}{
		{"yaml: line 3: did not find expected key", 3, "did not find expected key"},
		{"line 12: field nmae not found in type runtimes.Runtime", 12, "field nmae not found in type runtimes.Runtime"},
		{"yaml: control characters are not allowed", 0, "yaml: control characters are not allowed"},
		{"yaml: line x: no number", 0, "yaml: line x: no number"},
		{"prefix yaml: line 3: not at the start", 0, "prefix yaml: line 3: not at the start"},
	} {
		line, msg := Split(tc.in)
		if line != tc.line || msg != tc.msg {
			t.Errorf("Split(%q) = %d, %q; want %d, %q", tc.in, line, msg, tc.line, tc.msg)
		}
	}
}

func TestSyntax(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		line int
		msg  string
	}{
		{"runtime: python\n  start: x\n", 2, "not valid YAML: mapping values are not allowed in this context"},
		{"runtime: \x01\n", 0, "not valid YAML: control characters are not allowed"},
		{"runtime: *py\n", 0, "not valid YAML: unknown anchor 'py' referenced"},
	} {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(tc.doc), &n)
		if err == nil {
			t.Fatalf("%q parsed", tc.doc)
		}
		if line, msg := Syntax(err); line != tc.line || msg != tc.msg {
			t.Errorf("Syntax(%q) = %d, %q; want %d, %q", err, line, msg, tc.line, tc.msg)
		}
	}
	if _, msg := Syntax(errors.New("yaml: line 1: found \"\x1b[2J\"\n")); msg != `not valid YAML: found " [2J"` {
		t.Errorf("Syntax kept the control characters: %q", msg)
	}
}

// FuzzSyntax: whatever a document holds, its problem is one line.
func FuzzSyntax(f *testing.F) {
	for _, doc := range []string{
		"runtime: python\n  start: x\n",
		"runtime: python\nbuild:\n  - a\n b: 1\n",
		"runtime: [python\n",
		"runtime: python\n\tstart: x\n",
		"name: node\n  version: 1\n",
		"runtime: \"\x1b[2J\n",
	} {
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(doc), &n)
		if err == nil {
			return
		}
		line, msg := Syntax(err)
		if line < 0 || !strings.HasPrefix(msg, "not valid YAML: ") || strings.ContainsAny(msg, "\r\n\x1b") || !utf8.ValidString(msg) {
			t.Fatalf("Syntax(%q) = %d, %q", err, line, msg)
		}
	})
}

// The line of a syntax error is the problem's, not where yaml.v3's
// enclosing construct began.
func TestSyntaxInNamesTheProblemsLine(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		line int
	}{
		{"runtime: python\nbuild: [a\n", 2},
		{"runtime: python\nenv:\n  A: 1\n B: 2\n", 4},
		{"runtime: python\n- a\n", 2},
		{"runtime: python\nstart: x\n\tbuild: y\n", 3},
		{"runtime: python\n  start: x\n", 2},
		{"runtime: 'python\nstart: x\n", 1},
		{"build: [a,\n  b]\nstart: x: y\n", 3},
		{"runtime: python\nenv: {a: 1\nstart: x\n", 2},
		{"runtime: python\n---\nruntime: [x\n", 3},
		{"runtime: python\nbuild: [a", 2},
	} {
		var n yaml.Node
		dec := yaml.NewDecoder(strings.NewReader(tc.doc))
		err := dec.Decode(&n)
		if err == nil {
			err = dec.Decode(&n)
		}
		if err == nil {
			t.Fatalf("%q parsed", tc.doc)
		}
		if line, _ := SyntaxIn([]byte(tc.doc), err); line != tc.line {
			t.Errorf("SyntaxIn(%q) = line %d (yaml.v3 said %q), want %d", tc.doc, line, err, tc.line)
		}
	}
}

// FuzzSyntaxIn: the line is one of the document's, and the message is
// Syntax's.
func FuzzSyntaxIn(f *testing.F) {
	for _, doc := range []string{
		"runtime: python\nbuild: [a\n",
		"runtime: python\nenv:\n  A: 1\n B: 2\n",
		"runtime: 'python\nstart: x\n",
		"build: [a,\n  b]\nstart: x: y\n",
		"runtime: python\n---\nruntime: [x\n",
	} {
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(doc), &n)
		if err == nil {
			return
		}
		line, msg := SyntaxIn([]byte(doc), err)
		if _, want := Syntax(err); msg != want || line < 0 || line > strings.Count(doc, "\n")+1 {
			t.Fatalf("SyntaxIn(%q) = %d, %q", doc, line, msg)
		}
	})
}
