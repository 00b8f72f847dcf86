// The checks of app.yaml's fields, one method per field, collecting problems with their lines.

package appspec

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/upscalehq/upscale/names"
)

type checker struct {
	runtimes []string // sorted
	// procfile is the Procfile's types with their commands, nil when the
	// repository has none: a type under processes with no command takes
	// the Procfile's.
	procfile map[string]string
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
	case CommandProblem(v.Value) != "":
		c.addf(v.Line, "%s: %s", where, CommandProblem(v.Value))
	default:
		return v.Value
	}
	return ""
}

// CommandProblem says what is wrong with a shell command of a process, or
// "": the Procfile's commands follow app.yaml's rules.
func CommandProblem(cmd string) string {
	switch {
	case strings.TrimSpace(cmd) == "":
		return "the command is empty"
	case len(cmd) > maxCommand:
		return fmt.Sprintf("the command is %d bytes, over the %d-byte limit", len(cmd), maxCommand)
	case strings.ContainsRune(cmd, 0):
		return "the command contains a NUL byte"
	}
	return ""
}

// TypeProblem says what is wrong with a process type's name, or "". Types
// become parts of container names and arguments of app scale.
func TypeProblem(name string) string {
	if processRE.MatchString(name) {
		return ""
	}
	return fmt.Sprintf("invalid type %s: use lowercase letters, digits and -, starting with a letter, at most 20 characters", names.Quote(name))
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
		case TypeProblem(name) != "":
			c.addf(line, "processes: %s", TypeProblem(name))
			continue
		case lines[name] != 0:
			c.addf(line, "processes: duplicate type %s (first at line %d)", name, lines[name])
			continue
		}
		lines[name] = line
		cmd := c.resolve(v.Content[i+1])
		if cmd.ShortTag() == "!!null" {
			if pc, ok := c.procfile[name]; ok {
				procs[name] = pc // a type named, its command from the Procfile
				continue
			}
			if name == web {
				procs[name] = "" // like "start:", the runtime's start command
				continue
			}
			if c.procfile != nil {
				c.addf(line, "processes: %s has no command, and the Procfile has no %s type", name, name)
				continue
			}
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
