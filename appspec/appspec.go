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
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

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
	return ParseWithProcfile(data, runtimes, nil)
}

// ParseWithProcfile is Parse for a repository with a Procfile, whose types
// and commands are in procfile: app.yaml's processes may then name a type
// without a command ("worker:") to run the Procfile's command for it, web
// included. A nil procfile is Parse.
func ParseWithProcfile(data []byte, runtimes []string, procfile map[string]string) (spec *Spec, problems Problems) {
	if len(data) > MaxSize {
		return nil, Problems{{0, fmt.Sprintf("%d bytes is over the 64 KiB limit", len(data))}}
	}
	top, p := document(data)
	if p != nil {
		return nil, Problems{*p}
	}
	c := &checker{runtimes: slices.Sorted(slices.Values(runtimes)), procfile: procfile}
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
		return nil, yamlProblem(data, err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, &Problem{next.Line, "a second YAML document starts here; app.yaml must hold exactly one"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlProblem(data, err)
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

func yamlProblem(data []byte, err error) *Problem {
	line, msg := yamlerr.SyntaxIn(data, err)
	return &Problem{line, msg}
}

type aliasBomb struct{ line int }
