// Package runtimes is the catalog of runtimes an app can name in app.yaml:
// the built-in YAML files embedded in the binary, plus the operator's own
// files, which add runtimes or replace built-ins by name without a rebuild.
package runtimes

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/yamlerr"
)

//go:embed *.yaml
var builtin embed.FS

const (
	schemaVersion = 1 // the only one this code reads
	maxFileSize   = 64 << 10
)

var (
	packagePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`) // Debian policy 5.6.1
	envPattern     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Runtime is one runtime file. Build steps and Start are each run with
// /bin/sh -c in the app's directory.
type Runtime struct {
	Version     int      `yaml:"version"`
	Name        string   `yaml:"name"`
	Description string   `yaml:"description"`
	Packages    []string `yaml:"packages"`
	Detect      []string `yaml:"detect"` // file names or path.Match patterns, at the top of a repository
	Build       []string `yaml:"build"`
	Start       string   `yaml:"start"`
	PortEnv     string   `yaml:"port_env"` // "PORT" when the file leaves it out

	// Source is "builtin" or the path of the operator's file.
	Source string `yaml:"-"`
}

// fields lists the keys of a runtime file, for "unknown field" messages.
var fields = []string{"version", "name", "description", "packages", "detect", "build", "start", "port_env"}

// Catalog is a loaded set of runtimes, read-only once built.
type Catalog struct {
	byName map[string]Runtime
}

// Load reads the built-in runtimes and, when dir is not "", every *.yaml file
// in dir: a file adds a runtime or replaces the built-in of the same name
// whole. Each file must be named after its runtime (node.yaml holds
// "name: node"). Files whose name starts with "." are skipped, as editors
// leave those behind.
func Load(dir string) (*Catalog, error) {
	c := &Catalog{byName: map[string]Runtime{}}
	entries, err := builtin.ReadDir(".")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		data, err := builtin.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		if err := c.add("runtimes/"+e.Name(), e.Name(), data, "builtin"); err != nil {
			return nil, err
		}
	}
	if dir == "" {
		return c, nil
	}
	entries, err = os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("runtimes: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".yaml") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := readFile(path)
		if err != nil {
			return nil, err
		}
		if err := c.add(path, e.Name(), data, path); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// readFile reads at most one byte past the limit, so a huge file is refused
// without being read whole.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("runtimes: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("runtimes: %w", err)
	}
	return data, nil
}

func (c *Catalog) add(path, base string, data []byte, source string) error {
	rt, err := parse(path, data)
	if err != nil {
		return err
	}
	if want := strings.TrimSuffix(base, ".yaml"); rt.Name != want {
		return fmt.Errorf("%s:%d: name %q does not match the file name: call the runtime %s or the file %s.yaml", path, rt.line("name"), rt.Name, names.Quote(want), rt.Name)
	}
	rt.Source = source
	c.byName[rt.Name] = rt.Runtime
	return nil
}

// Names returns the runtime names, sorted.
func (c *Catalog) Names() []string {
	return slices.Sorted(maps.Keys(c.byName))
}

// Get returns the named runtime. Its slices are copies: callers cannot
// change the catalog.
func (c *Catalog) Get(name string) (Runtime, bool) {
	rt, ok := c.byName[name]
	if !ok {
		return Runtime{}, false
	}
	rt.Packages = slices.Clone(rt.Packages)
	rt.Detect = slices.Clone(rt.Detect)
	rt.Build = slices.Clone(rt.Build)
	return rt, true
}

// All returns every runtime, sorted by name.
func (c *Catalog) All() []Runtime {
	var all []Runtime
	for _, name := range c.Names() {
		rt, _ := c.Get(name)
		all = append(all, rt)
	}
	return all
}

// parsed is a Runtime with the line of each top-level key, so that checks
// made after decoding can still point at a line.
type parsed struct {
	Runtime
	lines map[string]int
	top   int
}

// line returns the line of field, or of the mapping when it is absent.
func (p parsed) line(field string) int {
	if l, ok := p.lines[field]; ok {
		return l
	}
	return p.top
}

// parse decodes one runtime file strictly and checks it. path is used in
// messages only. Every error is one line: "PATH:LINE: message".
func parse(path string, data []byte) (parsed, error) {
	p, prob := decode(data)
	if prob == nil {
		return p, nil
	}
	// yaml.v3's own text may carry the file's bytes; keep it on one line.
	msg := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, prob.msg)
	if prob.line <= 0 {
		return parsed{}, errors.New(path + ": " + msg)
	}
	return parsed{}, fmt.Errorf("%s:%d: %s", path, prob.line, msg)
}

type problem struct {
	line int
	msg  string
}

func problemf(line int, format string, args ...any) *problem {
	return &problem{line, fmt.Sprintf(format, args...)}
}

func decode(data []byte) (parsed, *problem) {
	if len(data) > maxFileSize {
		return parsed{}, problemf(0, "over the 64 KiB limit")
	}

	// A first pass into nodes gives the lines and the document's shape;
	// the strict decode below gives the types and unknown fields.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, next yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return parsed{}, problemf(0, "the file is empty")
		}
		return parsed{}, yamlError(err)
	}
	if err := dec.Decode(&next); err == nil {
		return parsed{}, problemf(next.Line, "a second YAML document starts here; a runtime file holds one")
	} else if !errors.Is(err, io.EOF) {
		return parsed{}, yamlError(err)
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return parsed{}, problemf(top.Line, "expected a mapping of runtime fields, found %s", kind(top.ShortTag()))
	}
	p := parsed{lines: map[string]int{}, top: top.Line}
	var keys []*yaml.Node
	for i := 0; i < len(top.Content); i += 2 {
		k := top.Content[i]
		if _, dup := p.lines[k.Value]; !dup {
			p.lines[k.Value] = k.Line
		}
		keys = append(keys, k)
	}

	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&p.Runtime); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			return parsed{}, typeError(te.Errors[0], keys)
		}
		return parsed{}, yamlError(err)
	}
	if prob := check(p); prob != nil {
		return parsed{}, prob
	}
	if p.PortEnv == "" {
		p.PortEnv = "PORT"
	}
	return p, nil
}

// check validates what the types alone do not: required fields, and every
// value that later reaches a command line (debootstrap, /bin/sh -c).
func check(p parsed) *problem {
	for _, f := range []struct {
		name    string
		missing bool
	}{
		{"version", p.Version == 0},
		{"name", p.Name == ""},
		{"description", p.Description == ""},
		{"packages", len(p.Packages) == 0},
		{"start", strings.TrimSpace(p.Start) == ""},
	} {
		if f.missing {
			return problemf(p.line(f.name), "%s is missing or empty", f.name)
		}
	}
	switch {
	case p.Version != schemaVersion:
		return problemf(p.line("version"), "version %d is not supported: this Upscale reads version %d", p.Version, schemaVersion)
	case names.Check("runtime", p.Name) != nil:
		return problemf(p.line("name"), "%v", names.Check("runtime", p.Name))
	case strings.ContainsAny(p.Description, "\r\n"):
		return problemf(p.line("description"), "description must be one line")
	case p.PortEnv != "" && !envPattern.MatchString(p.PortEnv):
		return problemf(p.line("port_env"), "invalid port_env %s: use letters, digits and _, not starting with a digit", names.Quote(p.PortEnv))
	case strings.ContainsRune(p.Start, 0):
		return problemf(p.line("start"), "start contains a NUL byte")
	}
	for _, pkg := range p.Packages {
		if !packagePattern.MatchString(pkg) {
			return problemf(p.line("packages"), "invalid Debian package name %s", names.Quote(pkg))
		}
	}
	for _, name := range p.Detect {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
			return problemf(p.line("detect"), "detect: %s is not a file name (files are looked for at the top of the repository)", names.Quote(name))
		}
		if _, err := path.Match(name, ""); err != nil {
			return problemf(p.line("detect"), "detect: %s is not a valid pattern (use names such as package.json, or * and ? as in *.py)", names.Quote(name))
		}
	}
	for i, step := range p.Build {
		if strings.TrimSpace(step) == "" || strings.ContainsRune(step, 0) {
			return problemf(p.line("build"), "build: step %d is empty or contains a NUL byte", i+1)
		}
	}
	return nil
}

var (
	unknownRE   = regexp.MustCompile(`(?s)^field (.*) not found in type \S+$`)
	typeErrorRE = regexp.MustCompile(`(?s)^cannot unmarshal (!!\w+)(?: .*)? into (\S+)$`)
)

func yamlError(err error) *problem {
	line, msg := yamlerr.Syntax(err)
	return &problem{line, msg}
}

// typeError rewrites one of yaml.v3's unmarshal errors in the file's terms.
func typeError(e string, keys []*yaml.Node) *problem {
	line, msg := yamlerr.Split(e)
	if m := unknownRE.FindStringSubmatch(msg); m != nil {
		return problemf(line, "unknown field %s; known: %s", names.Quote(m[1]), strings.Join(fields, ", "))
	}
	m := typeErrorRE.FindStringSubmatch(msg)
	if m == nil {
		return problemf(line, "%s", msg)
	}
	want := map[string]string{"string": "a string", "[]string": "a list of strings", "int": "a whole number"}[m[2]]
	return problemf(line, "%sexpected %s, found %s", fieldAt(line, keys), want, kind(m[1]))
}

// fieldAt returns "FIELD: " for the top-level field whose value holds line:
// the last key at or before it. yaml.v3 gives no column, so when several
// keys share that line it cannot tell which one and returns "".
func fieldAt(line int, keys []*yaml.Node) string {
	var at *yaml.Node
	shared := false
	for _, k := range keys {
		if k.Line > line {
			break
		}
		shared = at != nil && k.Line == at.Line
		at = k
	}
	if at == nil || shared {
		return ""
	}
	return at.Value + ": "
}

// kind names a YAML tag for "found X" messages.
func kind(tag string) string {
	switch tag {
	case "!!seq":
		return "a list"
	case "!!map":
		return "a mapping"
	case "!!str":
		return "a string"
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "true or false"
	case "!!null":
		return "nothing"
	}
	return "a value tagged " + names.Quote(tag)
}
