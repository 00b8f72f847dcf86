// Package detect works out an app's spec from the files of a commit when
// app.yaml leaves things out: the runtime from the files at the top of the
// repository (each runtime's detect patterns), the processes from a
// Procfile. It is pure: the caller gives a way to read the commit (the push
// gives repos.Source) and the catalog, and gets the spec with the reasons
// to show the pusher, or the problems that refuse the push.
package detect

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/procfile"
	"github.com/upscalehq/upscale/runtimes"
)

// Files reads the commit being detected. problem is a user-facing reason a
// file cannot be used; err is the caller's own failure.
type Files interface {
	// Files lists the names of the files at the top of the repository.
	Files(ctx context.Context) ([]string, error)
	// ReadFile reads one of them, refusing more than max bytes.
	ReadFile(ctx context.Context, name string, max int64) (data []byte, problem string, err error)
}

// Result is what a push would run.
type Result struct {
	Spec *appspec.Spec
	// Instances is how many containers each process type starts with: the
	// web count from app.yaml (1 by default), every other type 1 when
	// app.yaml's processes names it and 0 when it comes from the Procfile
	// only, until `app scale` (as on Heroku and Dokku). Empty when the app
	// has the single web process of Spec.Start.
	Instances map[string]int
	// Release is the Procfile's release command, "" without one: run once
	// per release, before it goes live.
	Release string
	// Reasons are lines for the push output: what was detected and why.
	Reasons []string
}

// order breaks ties between runtimes matched as strongly: each manifest
// before package.json, which apps of other languages often carry for
// front-end tools only; static last. The operator's own runtimes come
// after these, by name.
var order = []string{"ruby", "python", "php", "go", "node", "static"}

const static = "static"

// How strongly a pattern shows a runtime, strongest first.
const (
	marker = iota // a dot file whose only job is to choose (.static)
	named         // a file named outright (package.json, Gemfile)
	glob          // a pattern (*.py)
	lone          // static's index.html: counts when nothing else does
)

type match struct {
	runtime string
	file    string // the first file that matched
	pattern string
	tier    int
	rank    int // place in order
}

// Detect reads the commit's app.yaml, Procfile and file names. With
// app.yaml, app.yaml is checked strictly and wins; without, the runtime is
// detected. problems non-empty means the push is refused, each line ready
// to show; err is a failure to read the commit.
func Detect(ctx context.Context, files Files, cat *runtimes.Catalog) (res *Result, problems []string, err error) {
	names, err := files.Files(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("detect: %w", err)
	}
	var procs []procfile.Process
	if slices.Contains(names, "Procfile") {
		data, problem, err := files.ReadFile(ctx, "Procfile", procfile.MaxSize)
		if err != nil {
			return nil, nil, fmt.Errorf("detect: %w", err)
		}
		if problem != "" {
			return nil, []string{problem}, nil
		}
		if procs, err = procfile.Parse(data); err != nil {
			return nil, []string{err.Error()}, nil
		}
	}
	release, types := split(procs)
	res = &Result{Release: release}
	if slices.Contains(names, "app.yaml") {
		data, problem, err := files.ReadFile(ctx, "app.yaml", appspec.MaxSize)
		if err != nil {
			return nil, nil, fmt.Errorf("detect: %w", err)
		}
		if problem != "" {
			return nil, []string{problem}, nil
		}
		spec, ps := appspec.ParseWithProcfile(data, cat.Names(), typeMap(types))
		if ps != nil {
			return nil, lines(ps), nil
		}
		res.Spec = spec
		res.Reasons = append(res.Reasons, "runtime "+spec.Runtime+": from app.yaml")
	} else {
		rt, reasons, problem := Runtime(names, cat.All())
		if problem != "" {
			return nil, []string{problem}, nil
		}
		res.Spec = &appspec.Spec{Runtime: rt, Instances: 1}
		res.Reasons = append(res.Reasons, reasons...)
	}
	if problem := res.processes(types); problem != "" {
		return nil, []string{problem}, nil
	}
	if release != "" {
		res.Reasons = append(res.Reasons, "release command from the Procfile: "+release)
	}
	return res, nil, nil
}

// split takes the release command out of a Procfile's lines.
func split(procs []procfile.Process) (release string, types []procfile.Process) {
	for _, p := range procs {
		if p.Type == procfile.Release {
			release = p.Command
			continue
		}
		types = append(types, p)
	}
	return release, types
}

func typeMap(types []procfile.Process) map[string]string {
	if types == nil {
		return nil
	}
	m := map[string]string{}
	for _, p := range types {
		m[p.Type] = p.Command
	}
	return m
}

func lines(ps appspec.Problems) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// processes merges the Procfile's types into the spec. app.yaml's
// processes, when it has them, are the whole list (appspec already took
// the commands of the types it names without one); otherwise the
// Procfile's types are, with app.yaml's start, if any, as the web command.
func (r *Result) processes(types []procfile.Process) string {
	s := r.Spec
	if s.Processes != nil {
		r.Instances = map[string]int{}
		for typ := range s.Processes {
			r.Instances[typ] = 1
		}
		if _, ok := s.Processes["web"]; ok {
			r.Instances["web"] = s.Instances
		}
		var left []string
		for _, p := range types {
			if _, ok := s.Processes[p.Type]; !ok {
				left = append(left, p.Type)
			}
		}
		if len(left) > 0 {
			r.Reasons = append(r.Reasons, "not run: the Procfile's "+strings.Join(left, ", ")+" (app.yaml's processes list the types that run)")
		}
		return ""
	}
	if len(types) == 0 {
		return ""
	}
	procs := typeMap(types)
	if s.Start != "" {
		procs["web"] = s.Start
		r.Reasons = append(r.Reasons, "web command: app.yaml's start, over the Procfile's")
	}
	if _, ok := procs["web"]; !ok {
		// A worker-only app: nothing to route or check over HTTP.
		if s.Health != "" {
			return "app.yaml: health: the Procfile has no web type, and only web is checked over HTTP"
		}
		if s.Instances != 1 {
			return "app.yaml: instances: the Procfile has no web type, and instances counts web containers"
		}
		s.Instances = 0
	}
	s.Start, s.Processes = "", procs
	r.Instances = map[string]int{}
	var idle []string
	for _, typ := range slices.Sorted(maps.Keys(procs)) {
		if typ == "web" {
			r.Instances[typ] = s.Instances
			continue
		}
		r.Instances[typ] = 0
		idle = append(idle, typ)
	}
	line := "processes from the Procfile: " + strings.Join(slices.Sorted(maps.Keys(procs)), ", ")
	switch {
	case s.Instances == 0:
		line += "; no web type, so nothing is routed"
	case len(procs) > 1:
		line += "; web is routed"
	}
	if len(idle) > 0 {
		verb := "start"
		if len(idle) == 1 {
			verb = "starts"
		}
		line += fmt.Sprintf("; %s %s with 0 instances until app scale (%s=1)", strings.Join(idle, ", "), verb, idle[0])
	}
	r.Reasons = append(r.Reasons, line)
	return ""
}

// Runtime picks the runtime for a repository whose top holds the files
// names, from each runtime's detect patterns. It returns the runtime and
// the reasons for the push output, or a problem naming what was looked
// for when nothing matches.
func Runtime(names []string, all []runtimes.Runtime) (runtime string, reasons []string, problem string) {
	var found []match
	for _, rt := range all {
		m, ok := matchRuntime(rt, names)
		if ok {
			found = append(found, m)
		}
	}
	if len(found) == 0 {
		return "", nil, "no app.yaml, and no runtime matches the files at the top of the repository; looked for " + lookedFor(all) +
			`. Add an app.yaml naming the runtime, such as "runtime: python"`
	}
	slices.SortStableFunc(found, func(a, b match) int {
		if a.tier != b.tier {
			return a.tier - b.tier
		}
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		return strings.Compare(a.runtime, b.runtime)
	})
	win := found[0]
	reasons = []string{fmt.Sprintf("detected %s: %s", win.runtime, shown(win))}
	for _, m := range found[1:] {
		reasons = append(reasons, fmt.Sprintf("also matched %s (%s); %s wins: %s", m.runtime, shown(m), win.runtime, why(win, m)))
	}
	return win.runtime, reasons, ""
}

func matchRuntime(rt runtimes.Runtime, names []string) (match, bool) {
	best := match{runtime: rt.Name, tier: lone + 1, rank: rank(rt.Name)}
	for _, p := range rt.Detect {
		for _, name := range names {
			if ok, _ := path.Match(p, name); !ok {
				continue
			}
			if t := tier(rt.Name, p); t < best.tier {
				best.file, best.pattern, best.tier = name, p, t
			}
			break
		}
	}
	return best, best.tier <= lone
}

func tier(runtime, pattern string) int {
	isMarker := strings.HasPrefix(pattern, ".") && !strings.ContainsAny(pattern, `*?[\`)
	switch {
	case isMarker:
		return marker
	case runtime == static:
		return lone
	case strings.ContainsAny(pattern, `*?[\`):
		return glob
	}
	return named
}

func rank(runtime string) int {
	if i := slices.Index(order, runtime); i >= 0 {
		return i
	}
	return len(order)
}

// shown is the file that matched, with the pattern when it was one.
func shown(m match) string {
	if m.pattern != m.file {
		return m.file + ", as " + m.pattern
	}
	return m.file
}

// why one match beat another, in the pusher's terms.
func why(win, lost match) string {
	switch {
	case win.tier == marker:
		return win.file + " is a marker file that chooses the runtime outright"
	case lost.tier == lone:
		return lost.file + " counts for static only when no other runtime matches (add .static to serve the files as they are)"
	case win.tier == named && lost.tier == glob:
		return "a file it names outright beats a file pattern"
	}
	s := "runtimes matched as strongly are taken in the order " + strings.Join(order, ", ")
	if lost.runtime == "node" && lost.file == "package.json" {
		s += " (package.json is often there for front-end tools only)"
	}
	return s + "; add an app.yaml to choose"
}

// lookedFor lists each runtime's patterns, for the refusal.
func lookedFor(all []runtimes.Runtime) string {
	var parts []string
	for _, rt := range all {
		if len(rt.Detect) > 0 {
			parts = append(parts, strings.Join(rt.Detect, " or ")+" ("+rt.Name+")")
		}
	}
	if len(parts) == 0 {
		return "nothing (no runtime has detect patterns)"
	}
	return strings.Join(parts, ", ")
}
