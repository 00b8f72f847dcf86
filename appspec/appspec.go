// Package appspec parses app.yaml, the manifest at the root of an app's
// repository. It is pure: the caller passes the runtime names it knows, and
// gets back either a Spec or every problem found, each with its line, ready
// to be shown to the pusher.
package appspec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/yamlerr"
)

// MaxSize is the largest app.yaml accepted, in bytes. It is checked first
// so nothing large is ever parsed.
const MaxSize = 64 << 10

// Limits that bound what aliases could otherwise multiply out of a small
// file.
const (
	maxAliases    = 10000
	maxProblems   = 50
	maxInstances  = 100
	maxBuildSteps = 100
	maxCommand    = 4096
	maxHealthPath = 1024
	maxEnvVars    = 200
	maxEnvKey     = 256
	maxEnvValue   = 32 << 10
	maxEnvTotal   = 64 << 10
	minMemory     = 64 << 20
	maxMemory     = 64 << 30
	maxProcesses  = 20
	minCPU        = 0.01 // a cgroup's smallest quota, 1 ms, at the default 100 ms period
	maxCPU        = 64
)

// web is the process type that is routed, health-checked and counted by
// instances.
const web = "web"

// fields lists app.yaml's fields in the order the docs present them.
var fields = []string{"runtime", "start", "processes", "build", "instances", "memory", "cpu", "health", "env"}

var (
	envKeyRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	processRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)
	memoryRE  = regexp.MustCompile(`(?i)^([0-9]+)([KMG])(i?B?)$`)
)

// Spec is a valid app.yaml.
//
// Without processes, the app has one process type, web, whose command is
// Start. With processes, Start is "" and Processes holds every type; web is
// the only routed one and may be missing (a worker-only app).
type Spec struct {
	Runtime string
	Start   string // "" means the runtime's start command
	// Processes maps a process type to its command; nil when app.yaml sets
	// none. Processes["web"] == "" means the runtime's start command; every
	// other type has a command.
	Processes map[string]string
	Build     []string // run after the runtime's build steps
	// Instances is the number of web containers: 0 when processes has no
	// web. Every other process type starts with 1.
	Instances int
	Memory    int64             // bytes; 0 means the platform's default
	CPU       float64           // share of a core, per container; 0 means the platform's default
	Health    string            // HTTP path for web; "" means a TCP connect check
	Env       map[string]string // nil when app.yaml sets none
}

// Problem is one thing wrong with app.yaml. Line 0 means the file as a whole.
type Problem struct {
	Line    int
	Message string
}

func (p Problem) String() string {
	if p.Line <= 0 {
		return "app.yaml: " + p.Message
	}
	return "app.yaml:" + strconv.Itoa(p.Line) + ": " + p.Message
}

// Problems is every problem found in one app.yaml, in line order.
type Problems []Problem

// Error prints one problem per line, the form the pre-receive hook relays.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Err returns ps as an error, or nil when there are none: a nil Problems
// stored in an error interface would not compare equal to nil.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Parse decodes and checks app.yaml. runtimes lists the runtime names the
// catalog knows. It returns a Spec and no problems, or nil and at least one.
func Parse(data []byte, runtimes []string) (spec *Spec, problems Problems) {
	if len(data) > MaxSize {
		return nil, Problems{{0, fmt.Sprintf("%d bytes is over the 64 KiB limit", len(data))}}
	}
	top, p := document(data)
	if p != nil {
		return nil, Problems{*p}
	}
	c := &checker{runtimes: slices.Sorted(slices.Values(runtimes))}
	defer func() {
		// A document that makes the walk follow too many aliases is hostile
		// or broken; its other problems are noise, so it gets one line.
		if r := recover(); r != nil {
			bomb, ok := r.(aliasBomb)
			if !ok {
				panic(r)
			}
			spec, problems = nil, Problems{{bomb.line, fmt.Sprintf("too many aliases (over %d); write the values out instead", maxAliases)}}
		}
	}()
	spec = c.spec(top)
	if len(c.problems) == 0 {
		return spec, nil
	}
	slices.SortStableFunc(c.problems, func(a, b Problem) int { return a.Line - b.Line })
	if n := len(c.problems); n > maxProblems {
		c.problems = append(c.problems[:maxProblems], Problem{0, fmt.Sprintf("%d more problems not shown", n-maxProblems)})
	}
	return nil, c.problems
}

const emptyFile = `the file is empty; it needs at least a runtime, such as "runtime: python"`

// document parses data as exactly one YAML document holding a mapping.
func document(data []byte) (*yaml.Node, *Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Problem{0, emptyFile}
		}
		return nil, yamlProblem(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, &Problem{next.Line, "a second YAML document starts here; app.yaml must hold exactly one"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlProblem(err)
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.ShortTag() == "!!null" {
		return nil, &Problem{0, emptyFile}
	}
	if top.Kind != yaml.MappingNode {
		return nil, &Problem{top.Line, `expected a mapping such as "runtime: python", found ` + found(top)}
	}
	return top, nil
}

func yamlProblem(err error) *Problem {
	line, msg := yamlerr.Syntax(err)
	return &Problem{line, msg}
}

type aliasBomb struct{ line int }

type checker struct {
	runtimes []string // sorted
	problems Problems
	aliases  int
}

func (c *checker) addf(line int, format string, args ...any) {
	c.problems = append(c.problems, Problem{line, fmt.Sprintf(format, args...)})
}

// resolve follows an alias. It counts every one so that no document, however
// its anchors nest (billion laughs), costs more than maxAliases steps. The
// result carries the alias's line: a problem with a value is reported where
// the value is used, not where its anchor was set.
func (c *checker) resolve(n *yaml.Node) *yaml.Node {
	if n.Kind != yaml.AliasNode {
		return n
	}
	if c.aliases++; c.aliases > maxAliases {
		panic(aliasBomb{n.Line})
	}
	r := *n.Alias
	r.Line = n.Line
	return &r
}

// key returns the text and line of a mapping key, or false after reporting
// why it cannot be one. where prefixes messages ("" at the top level).
func (c *checker) key(n *yaml.Node, where string) (string, int, bool) {
	n = c.resolve(n)
	switch {
	case n.Kind != yaml.ScalarNode:
		c.addf(n.Line, "%sexpected a name, found %s", where, found(n))
	case n.ShortTag() == "!!merge":
		c.addf(n.Line, `%smerge keys ("<<") are not supported; write the fields out`, where)
	default:
		return n.Value, n.Line, true
	}
	return "", 0, false
}

func (c *checker) spec(top *yaml.Node) *Spec {
	s := &Spec{Instances: 1}
	seen := map[string]int{}
	given := map[string]int{} // fields with a value
	for i := 0; i+1 < len(top.Content); i += 2 {
		name, line, ok := c.key(top.Content[i], "")
		if !ok {
			continue
		}
		if !slices.Contains(fields, name) {
			c.addf(line, "unknown field %s; known: %s%s", names.Quote(name), strings.Join(fields, ", "), suggest(name, fields))
			continue
		}
		if first, dup := seen[name]; dup {
			c.addf(line, "duplicate field %s (first at line %d)", name, first)
			continue
		}
		seen[name] = line
		v := c.resolve(top.Content[i+1])
		if v.ShortTag() == "!!null" && name != "runtime" {
			continue // "field:" with no value keeps the default
		}
		given[name] = line
		switch name {
		case "runtime":
			s.Runtime = c.runtime(v)
		case "start":
			s.Start = c.command(v, "start")
		case "processes":
			s.Processes = c.processes(v)
		case "build":
			s.Build = c.build(v)
		case "instances":
			s.Instances = c.instances(v)
		case "memory":
			s.Memory = c.memory(v)
		case "cpu":
			s.CPU = c.cpu(v)
		case "health":
			s.Health = c.health(v)
		case "env":
			s.Env = c.env(v)
		}
	}
	if _, ok := seen["runtime"]; !ok {
		c.addf(top.Line, `runtime is missing; add "runtime: NAME" where NAME is one of %s`, strings.Join(c.runtimes, ", "))
	}
	if s.Processes != nil {
		c.withProcesses(s, given)
	}
	return s
}

// withProcesses checks the fields that mean something else, or nothing, once
// processes is set: start would be a second web command, and without web
// there is nothing to route, health-check or count.
func (c *checker) withProcesses(s *Spec, given map[string]int) {
	if line, ok := given["start"]; ok {
		c.addf(line, "start: set the web command in processes instead, not both")
	}
	if _, ok := s.Processes[web]; ok {
		return
	}
	s.Instances = 0
	if line, ok := given["instances"]; ok {
		c.addf(line, "instances: processes has no web, and instances counts web containers")
	}
	if line, ok := given["health"]; ok {
		c.addf(line, "health: processes has no web, and only web is checked over HTTP")
	}
}

func (c *checker) runtime(v *yaml.Node) string {
	if !isText(v) {
		c.addf(v.Line, "runtime: expected a runtime name such as %q, found %s", "python", found(v))
		return ""
	}
	if slices.Contains(c.runtimes, v.Value) {
		return v.Value
	}
	if len(c.runtimes) == 0 {
		c.addf(v.Line, "unknown runtime %s; this server has no runtimes", names.Quote(v.Value))
		return ""
	}
	c.addf(v.Line, "unknown runtime %s; known: %s%s", names.Quote(v.Value), strings.Join(c.runtimes, ", "), suggest(v.Value, c.runtimes))
	return ""
}

// command checks a shell command; where names it in messages.
func (c *checker) command(v *yaml.Node, where string) string {
	switch {
	case v.Kind == yaml.MappingNode:
		// `- echo a: b` is a mapping to YAML, a classic surprise.
		c.addf(v.Line, `%s: expected a command (a string), found a mapping; put quotes around a command that contains ": "`, where)
	case !isText(v):
		c.addf(v.Line, "%s: expected a command (a string), found %s", where, found(v))
	case strings.TrimSpace(v.Value) == "":
		c.addf(v.Line, "%s: the command is empty", where)
	case len(v.Value) > maxCommand:
		c.addf(v.Line, "%s: the command is %d bytes, over the %d-byte limit", where, len(v.Value), maxCommand)
	case strings.ContainsRune(v.Value, 0):
		c.addf(v.Line, "%s: the command contains a NUL byte", where)
	default:
		return v.Value
	}
	return ""
}

// processes checks the mapping of process type to command. Every type with
// a valid name is in the result, even when its command is not valid, so
// that the checks across fields see what was written.
func (c *checker) processes(v *yaml.Node) map[string]string {
	switch {
	case v.Kind != yaml.MappingNode:
		c.addf(v.Line, `processes: expected a mapping of type: command, such as "worker: ./worker", found %s`, found(v))
		return nil
	case len(v.Content) == 0:
		c.addf(v.Line, `processes: the mapping is empty; add at least one type, such as "web: ./server"`)
		return nil
	case len(v.Content)/2 > maxProcesses:
		c.addf(v.Line, "processes: %d types is over the limit of %d", len(v.Content)/2, maxProcesses)
		return nil
	}
	procs := map[string]string{}
	lines := map[string]int{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		name, line, ok := c.key(v.Content[i], "processes: ")
		if !ok {
			continue
		}
		switch {
		case !processRE.MatchString(name):
			c.addf(line, "processes: invalid type %s: use lowercase letters, digits and -, starting with a letter, at most 20 characters", names.Quote(name))
			continue
		case lines[name] != 0:
			c.addf(line, "processes: duplicate type %s (first at line %d)", name, lines[name])
			continue
		}
		lines[name] = line
		cmd := c.resolve(v.Content[i+1])
		if name == web && cmd.ShortTag() == "!!null" {
			procs[name] = "" // like "start:", the runtime's start command
			continue
		}
		procs[name] = c.command(cmd, "processes: "+name)
	}
	return procs
}

func (c *checker) build(v *yaml.Node) []string {
	if v.Kind != yaml.SequenceNode {
		c.addf(v.Line, "build: expected a list of commands, found %s", found(v))
		return nil
	}
	if len(v.Content) > maxBuildSteps {
		c.addf(v.Line, "build: %d steps is over the limit of %d", len(v.Content), maxBuildSteps)
		return nil
	}
	var steps []string
	for i, item := range v.Content {
		steps = append(steps, c.command(c.resolve(item), fmt.Sprintf("build: step %d", i+1)))
	}
	return steps
}

func (c *checker) instances(v *yaml.Node) int {
	var n int64
	if v.ShortTag() != "!!int" || v.Decode(&n) != nil || n < 1 || n > maxInstances {
		c.addf(v.Line, "instances: expected a whole number from 1 to %d, found %s", maxInstances, found(v))
		return 0
	}
	return int(n)
}

func (c *checker) memory(v *yaml.Node) int64 {
	var n int64
	var err error = errSizeSyntax
	if isText(v) {
		n, err = ParseSize(v.Value)
	}
	switch {
	case errors.Is(err, errSizeSyntax):
		c.addf(v.Line, "memory: expected a size such as 256M or 2G, found %s", found(v))
	case err != nil || n > maxMemory:
		c.addf(v.Line, "memory: %s is above the maximum of 64G", names.Quote(v.Value))
	case n < minMemory:
		c.addf(v.Line, "memory: %s is below the minimum of 64M", names.Quote(v.Value))
	default:
		return n
	}
	return 0
}

var (
	errSizeSyntax = errors.New("expected a size such as 256M or 2G")
	errSizeRange  = errors.New("too large")
)

// ParseSize reads a size as app.yaml's memory writes it: a whole number
// and a binary unit K, M or G (either case, optionally followed by i, B or
// iB), with no space: 256M, 2GiB. Anything else, a bare number included,
// is an error; so is a size of 8 EiB or more.
func ParseSize(s string) (int64, error) {
	m := memoryRE.FindStringSubmatch(s)
	if m == nil {
		return 0, errSizeSyntax
	}
	shift := 10 * uint(1+strings.IndexAny("KMG", strings.ToUpper(m[2])))
	n, err := strconv.ParseUint(m[1], 10, 63)
	if err != nil || n > math.MaxInt64>>shift {
		return 0, errSizeRange
	}
	return int64(n << shift), nil
}

// FormatSize writes n the way ParseSize reads it, in the largest unit that
// divides it (8G, 1536M), or as bytes when none does.
func FormatSize(n int64) string {
	for _, u := range []struct {
		unit  string
		shift uint
	}{{"G", 30}, {"M", 20}, {"K", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.unit
		}
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// cpu checks a share of a core: a YAML number, so "0.5" in quotes is
// refused like "2" is for instances.
func (c *checker) cpu(v *yaml.Node) float64 {
	var f float64
	if tag := v.ShortTag(); tag != "!!int" && tag != "!!float" || v.Decode(&f) != nil || math.IsNaN(f) {
		c.addf(v.Line, "cpu: expected a share of a core such as 0.5 or 2, found %s", found(v))
		return 0
	}
	switch {
	case f < minCPU:
		c.addf(v.Line, "cpu: %s is below the minimum of %g", found(v), float64(minCPU))
	case f > maxCPU:
		c.addf(v.Line, "cpu: %s is above the maximum of %d", found(v), maxCPU)
	default:
		return f
	}
	return 0
}

func (c *checker) health(v *yaml.Node) string {
	switch {
	case !isText(v) || !strings.HasPrefix(v.Value, "/"):
		c.addf(v.Line, `health: expected a URL path starting with "/", such as "/healthz", found %s`, found(v))
	case len(v.Value) > maxHealthPath:
		c.addf(v.Line, "health: the path is %d bytes, over the %d-byte limit", len(v.Value), maxHealthPath)
	case strings.IndexFunc(v.Value, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0:
		c.addf(v.Line, "health: the path may only hold printable ASCII without spaces (percent-encode the rest), found %s", names.Quote(v.Value))
	default:
		return v.Value
	}
	return ""
}

func (c *checker) env(v *yaml.Node) map[string]string {
	if v.Kind != yaml.MappingNode {
		c.addf(v.Line, "env: expected a mapping of NAME: value, found %s", found(v))
		return nil
	}
	if n := len(v.Content) / 2; n > maxEnvVars {
		c.addf(v.Line, "env: %d variables is over the limit of %d", n, maxEnvVars)
		return nil
	}
	env := map[string]string{}
	lines := map[string]int{}
	total := 0
	for i := 0; i+1 < len(v.Content); i += 2 {
		name, line, ok := c.key(v.Content[i], "env: ")
		if !ok {
			continue
		}
		switch {
		case len(name) > maxEnvKey || !envKeyRE.MatchString(name):
			c.addf(line, "env: invalid name %s: use letters, digits and _, not starting with a digit", names.Quote(name))
			continue
		case name == "PORT":
			c.addf(line, "env: PORT is reserved: Upscale sets it to the port your app must listen on")
			continue
		case strings.HasPrefix(name, "UPSCALE_"):
			c.addf(line, "env: %s is reserved: names starting with UPSCALE_ are set by Upscale", name)
			continue
		case lines[name] != 0:
			c.addf(line, "env: duplicate variable %s (first at line %d)", name, lines[name])
			continue
		}
		lines[name] = line
		val := c.resolve(v.Content[i+1])
		switch {
		case val.Kind != yaml.ScalarNode:
			c.addf(val.Line, "env: %s: expected a value such as a string or a number, found %s", name, found(val))
		case len(val.Value) > maxEnvValue:
			c.addf(val.Line, "env: %s: the value is %d bytes, over the 32 KiB limit", name, len(val.Value))
		case strings.ContainsRune(val.Value, 0):
			c.addf(val.Line, "env: %s: the value contains a NUL byte", name)
		default:
			env[name] = val.Value
			total += len(name) + len(val.Value)
		}
	}
	if total > maxEnvTotal {
		c.addf(v.Line, "env: the variables add up to %d bytes, over the 64 KiB limit", total)
	}
	return env
}

// isText reports whether n is a string scalar: `start: 8080` is not a command.
func isText(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str"
}

// found describes what the user wrote, for "expected X, found Y".
func found(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return "nothing"
	case "!!str":
		return names.Quote(n.Value)
	case "!!int", "!!float", "!!bool", "!!timestamp":
		// Plain numbers and booleans read better unquoted; an explicit
		// tag (`!!int "1\n2"`) can still carry anything, so check.
		if len(n.Value) > 48 || strings.IndexFunc(n.Value, func(r rune) bool { return r < ' ' || r >= 0x7f }) >= 0 {
			return names.Quote(n.Value)
		}
		return n.Value
	default:
		return names.Quote(n.Value) + " tagged " + names.Quote(tag)
	}
}

// suggest returns " (did you mean X?)" for the closest candidate when it is
// close enough to be a typo, else "".
func suggest(s string, candidates []string) string {
	if len(s) > 64 {
		return ""
	}
	best, bestDist := "", 0
	for _, c := range candidates {
		d := distance(s, c)
		if d <= max(1, len(c)/3) && (best == "" || d < bestDist) {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// distance is the Levenshtein distance between a and b, in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
