package detect

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/runtimes"
)

// tree is a commit's top: file name to content. Names ending in "/" are
// directories, which Files leaves out as repos.Source does.
type tree map[string]string

func (t tree) Files(context.Context) ([]string, error) {
	var names []string
	for n := range t {
		if !strings.HasSuffix(n, "/") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

func (t tree) ReadFile(_ context.Context, name string, max int64) ([]byte, string, error) {
	data, ok := t[name]
	switch {
	case !ok:
		return nil, name + ": missing at the root of abc1234", nil
	case int64(len(data)) > max:
		return nil, fmt.Sprintf("%s: %d bytes is over the %d KiB limit", name, len(data), max>>10), nil
	}
	return []byte(data), "", nil
}

func catalog(t *testing.T) *runtimes.Catalog {
	t.Helper()
	c, err := runtimes.Load("")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// One test per rule of the issue, on the built-in catalog's patterns.
func TestDetectRuntime(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   tree
		runtime string
		reasons []string
	}{
		{"package.json", tree{"package.json": "{}", "server.js": ""}, "node", []string{"detected node: package.json"}},
		{"go.mod", tree{"go.mod": "module x", "main.go": ""}, "go", []string{"detected go: go.mod"}},
		{"*.go without go.mod", tree{"main.go": ""}, "go", []string{"detected go: main.go, as *.go"}},
		{".static", tree{".static": "", "index.html": ""}, "static", []string{"detected static: .static"}},
		{"lone index.html", tree{"index.html": "", "style.css": ""}, "static", []string{"detected static: index.html"}},
		{"requirements.txt", tree{"requirements.txt": "flask", "app.py": ""}, "python", []string{"detected python: requirements.txt"}},
		{"pyproject.toml", tree{"pyproject.toml": ""}, "python", []string{"detected python: pyproject.toml"}},
		{"*.py", tree{"main.py": ""}, "python", []string{"detected python: main.py, as *.py"}},
		{"Gemfile", tree{"Gemfile": "", "config.ru": ""}, "ruby", []string{"detected ruby: Gemfile"}},
		{"composer.json", tree{"composer.json": "{}"}, "php", []string{"detected php: composer.json"}},
		{"index.php", tree{"index.php": ""}, "php", []string{"detected php: index.php"}},
		{"a directory does not count", tree{"package.json/": "", "index.php": ""}, "php", []string{"detected php: index.php"}},

		// Two runtimes: which wins, and why.
		{"Rails with front-end tools", tree{"Gemfile": "", "package.json": "{}"}, "ruby", []string{
			"detected ruby: Gemfile",
			"also matched node (package.json); ruby wins: runtimes matched as strongly are taken in the order ruby, python, php, go, node, static (package.json is often there for front-end tools only); add an app.yaml to choose",
		}},
		{"Django with front-end tools", tree{"requirements.txt": "", "manage.py": "", "package.json": "{}"}, "python", []string{
			"detected python: requirements.txt",
			"also matched node (package.json); python wins: runtimes matched as strongly are taken in the order ruby, python, php, go, node, static (package.json is often there for front-end tools only); add an app.yaml to choose",
		}},
		{"node with a Python script", tree{"package.json": "{}", "build.py": ""}, "node", []string{
			"detected node: package.json",
			"also matched python (build.py, as *.py); node wins: a file it names outright beats a file pattern",
		}},
		{"Go with a page", tree{"main.go": "", "index.html": ""}, "go", []string{
			"detected go: main.go, as *.go",
			"also matched static (index.html); go wins: index.html counts for static only when no other runtime matches (add .static to serve the files as they are)",
		}},
		{"the marker wins", tree{".static": "", "package.json": "{}", "index.html": ""}, "static", []string{
			"detected static: .static",
			"also matched node (package.json); static wins: .static is a marker file that chooses the runtime outright",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, problems, err := Detect(context.Background(), tc.files, catalog(t))
			if err != nil || problems != nil {
				t.Fatalf("problems %q, err %v", problems, err)
			}
			want := &appspec.Spec{Runtime: tc.runtime, Instances: 1}
			if !reflect.DeepEqual(res.Spec, want) || res.Instances != nil || res.Release != "" {
				t.Errorf("result %+v, spec %+v; want spec %+v and nothing else", res, res.Spec, want)
			}
			if !reflect.DeepEqual(res.Reasons, tc.reasons) {
				t.Errorf("reasons\n%q\nwant\n%q", res.Reasons, tc.reasons)
			}
		})
	}
}

func TestDetectNothing(t *testing.T) {
	_, problems, err := Detect(context.Background(), tree{"README.md": "", "src/": ""}, catalog(t))
	want := []string{"no app.yaml, and no runtime matches the files at the top of the repository; looked for " +
		"go.mod or *.go (go), package.json (node), index.php or composer.json (php), requirements.txt or pyproject.toml or *.py (python), " +
		"Gemfile or config.ru or app.rb (ruby), .static or index.html (static). " +
		`Add an app.yaml naming the runtime, such as "runtime: python"`}
	if err != nil || !reflect.DeepEqual(problems, want) {
		t.Errorf("problems\n%q\nwant\n%q (err %v)", problems, want, err)
	}
}

// The operator's own runtime is detected by its patterns too, after the
// built-ins when both match as strongly.
func TestDetectOperatorRuntime(t *testing.T) {
	all := []runtimes.Runtime{{Name: "elixir", Detect: []string{"mix.exs"}}, {Name: "node", Detect: []string{"package.json"}}}
	rt, reasons, problem := Runtime([]string{"mix.exs", "package.json"}, all)
	if rt != "node" || problem != "" || len(reasons) != 2 || !strings.HasPrefix(reasons[1], "also matched elixir (mix.exs); node wins") {
		t.Errorf("Runtime = %q, %q, %q", rt, reasons, problem)
	}
	if rt, _, _ := Runtime([]string{"mix.exs"}, all); rt != "elixir" {
		t.Errorf("mix.exs alone: %q", rt)
	}
}

func TestDetectProcfile(t *testing.T) {
	for _, tc := range []struct {
		name      string
		files     tree
		spec      appspec.Spec
		instances map[string]int
		release   string
		reasons   []string
	}{
		{"web, worker and release", tree{"package.json": "{}", "Procfile": "web: node server.js\nworker: node worker.js\nrelease: node migrate.js\n"},
			appspec.Spec{Runtime: "node", Instances: 1, Processes: map[string]string{"web": "node server.js", "worker": "node worker.js"}},
			map[string]int{"web": 1, "worker": 0}, "node migrate.js", []string{
				"detected node: package.json",
				"processes from the Procfile: web, worker; web is routed; worker starts with 0 instances until app scale (worker=1)",
				"release command from the Procfile: node migrate.js",
			}},
		{"web only", tree{"requirements.txt": "", "Procfile": "web: gunicorn app:app\n"},
			appspec.Spec{Runtime: "python", Instances: 1, Processes: map[string]string{"web": "gunicorn app:app"}},
			map[string]int{"web": 1}, "", []string{"detected python: requirements.txt", "processes from the Procfile: web"}},
		{"worker-only", tree{"main.go": "", "Procfile": "worker: ./bin/worker\n"},
			appspec.Spec{Runtime: "go", Instances: 0, Processes: map[string]string{"worker": "./bin/worker"}},
			map[string]int{"worker": 0}, "", []string{
				"detected go: main.go, as *.go",
				"processes from the Procfile: worker; no web type, so nothing is routed; worker starts with 0 instances until app scale (worker=1)",
			}},
		{"release only", tree{"Gemfile": "", "Procfile": "release: bundle exec rake db:migrate\n"},
			appspec.Spec{Runtime: "ruby", Instances: 1}, nil, "bundle exec rake db:migrate",
			[]string{"detected ruby: Gemfile", "release command from the Procfile: bundle exec rake db:migrate"}},

		// With app.yaml, app.yaml wins and may name the Procfile's types.
		{"app.yaml without processes", tree{"app.yaml": "runtime: node\ninstances: 2\n", "Procfile": "web: node a.js\nclock: node clock.js\n"},
			appspec.Spec{Runtime: "node", Instances: 2, Processes: map[string]string{"web": "node a.js", "clock": "node clock.js"}},
			map[string]int{"web": 2, "clock": 0}, "", []string{
				"runtime node: from app.yaml",
				"processes from the Procfile: clock, web; web is routed; clock starts with 0 instances until app scale (clock=1)",
			}},
		{"app.yaml's start over the Procfile's web", tree{"app.yaml": "runtime: node\nstart: node b.js\n", "Procfile": "web: node a.js\n"},
			appspec.Spec{Runtime: "node", Instances: 1, Processes: map[string]string{"web": "node b.js"}},
			map[string]int{"web": 1}, "", []string{
				"runtime node: from app.yaml",
				"web command: app.yaml's start, over the Procfile's",
				"processes from the Procfile: web",
			}},
		{"app.yaml names the Procfile's types", tree{"app.yaml": "runtime: node\nprocesses:\n  web:\n  worker:\n", "Procfile": "web: node a.js\nworker: node w.js\nclock: node c.js\n"},
			appspec.Spec{Runtime: "node", Instances: 1, Processes: map[string]string{"web": "node a.js", "worker": "node w.js"}},
			map[string]int{"web": 1, "worker": 1}, "", []string{
				"runtime node: from app.yaml",
				"not run: the Procfile's clock (app.yaml's processes list the types that run)",
			}},
		{"app.yaml wins over detection", tree{"app.yaml": "runtime: static\n", "package.json": "{}"},
			appspec.Spec{Runtime: "static", Instances: 1}, nil, "", []string{"runtime static: from app.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, problems, err := Detect(context.Background(), tc.files, catalog(t))
			if err != nil || problems != nil {
				t.Fatalf("problems %q, err %v", problems, err)
			}
			if !reflect.DeepEqual(*res.Spec, tc.spec) {
				t.Errorf("spec %+v, want %+v", *res.Spec, tc.spec)
			}
			if !reflect.DeepEqual(res.Instances, tc.instances) || res.Release != tc.release {
				t.Errorf("instances %v release %q, want %v %q", res.Instances, res.Release, tc.instances, tc.release)
			}
			if !reflect.DeepEqual(res.Reasons, tc.reasons) {
				t.Errorf("reasons\n%q\nwant\n%q", res.Reasons, tc.reasons)
			}
		})
	}
}

// Each bad input refuses the push with one line naming the file and what
// is wrong.
func TestDetectBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files tree
		want  []string
	}{
		{"Procfile syntax", tree{"package.json": "{}", "Procfile": "web: node a.js\nworker node w.js\n"},
			[]string{`Procfile:2: expected "type: command", such as "web: node server.js", found "worker node w.js"`}},
		{"Procfile duplicate type", tree{"package.json": "{}", "Procfile": "web: a\nweb: b\n"},
			[]string{"Procfile:2: duplicate type web (first at line 1)"}},
		{"Procfile empty command", tree{"package.json": "{}", "Procfile": "web:\n"},
			[]string{"Procfile:1: web: the command is empty"}},
		{"Procfile too big", tree{"package.json": "{}", "Procfile": strings.Repeat("#", 70<<10)},
			[]string{"Procfile: 71680 bytes is over the 64 KiB limit"}},
		{"Procfile is a directory", tree{"package.json": "{}", "Procfile/": ""}, nil},
		{"app.yaml names a type the Procfile lacks", tree{"app.yaml": "runtime: node\nprocesses:\n  clock:\n", "Procfile": "web: a\n"},
			[]string{"app.yaml:3: processes: clock has no command, and the Procfile has no clock type"}},
		{"app.yaml wrong", tree{"app.yaml": "runtime: nod\n", "package.json": "{}"},
			[]string{`app.yaml:1: unknown runtime "nod"; known: go, node, php, python, ruby, static (did you mean node?)`}},
		{"worker-only with health", tree{"app.yaml": "runtime: go\nhealth: /\n", "Procfile": "worker: ./w\n"},
			[]string{"app.yaml: health: the Procfile has no web type, and only web is checked over HTTP"}},
		{"worker-only with instances", tree{"app.yaml": "runtime: go\ninstances: 3\n", "Procfile": "worker: ./w\n"},
			[]string{"app.yaml: instances: the Procfile has no web type, and instances counts web containers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, problems, err := Detect(context.Background(), tc.files, catalog(t))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil { // a directory named Procfile is no Procfile
				if problems != nil || res.Spec.Runtime != "node" || res.Spec.Processes != nil {
					t.Errorf("got %+v %q", res, problems)
				}
				return
			}
			if res != nil || !reflect.DeepEqual(problems, tc.want) {
				t.Errorf("got %+v, problems\n%q\nwant\n%q", res, problems, tc.want)
			}
		})
	}
}

type broken struct{ tree }

func (broken) Files(context.Context) ([]string, error) {
	return nil, errors.New("git ls-tree: exit status 128")
}

func TestDetectReadFailure(t *testing.T) {
	_, problems, err := Detect(context.Background(), broken{}, catalog(t))
	if err == nil || problems != nil || err.Error() != "detect: git ls-tree: exit status 128" {
		t.Errorf("problems %q, err %v", problems, err)
	}
}
