package runtimes

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const node = `version: 1
name: node
description: Node.js 18 (Debian bookworm)
packages: [nodejs, npm]
detect: [package.json]
build:
  - if [ -f package-lock.json ]; then npm ci; fi
start: exec node server.js
`

func TestBuiltins(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Names(), []string{"go", "node", "php", "python", "ruby", "static"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	py, ok := c.Get("python")
	if !ok {
		t.Fatal(`Get("python") found nothing`)
	}
	want := Runtime{
		Version:     1,
		Name:        "python",
		Description: "Python 3.11 (Debian bookworm); pip installs requirements.txt into .venv",
		Packages:    []string{"python3", "python3-venv"},
		Detect:      []string{"requirements.txt", "pyproject.toml", "*.py"},
		Build: []string{
			"if [ -f requirements.txt ]; then python3 -m venv .venv && .venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt; fi",
		},
		Start:   `export PATH="$PWD/.venv/bin:$PATH"; exec python3 app.py`,
		PortEnv: "PORT",
		Source:  "builtin",
	}
	if !reflect.DeepEqual(py, want) {
		t.Errorf("python:\ngot  %+v\nwant %+v", py, want)
	}
	for _, rt := range c.All() {
		if rt.Source != "builtin" || rt.PortEnv != "PORT" || len(rt.Detect) == 0 || len(rt.Build) == 0 {
			t.Errorf("%s: %+v", rt.Name, rt)
		}
		// The steps run with /bin/sh -c: at least they must parse.
		for _, script := range append(rt.Build, rt.Start) {
			if out, err := exec.Command("/bin/sh", "-n", "-c", script).CombinedOutput(); err != nil {
				t.Errorf("%s: sh -n -c %q: %v %s", rt.Name, script, err, out)
			}
		}
	}
	if _, ok := c.Get("elixir"); ok {
		t.Error(`Get("elixir") found a runtime`)
	}
}

func TestGetReturnsCopies(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := c.Get("php")
	rt.Packages[0] = "changed"
	rt.Build[0] = "changed"
	if again, _ := c.Get("php"); again.Packages[0] == "changed" || again.Build[0] == "changed" {
		t.Error("changing a returned Runtime changed the catalog")
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadDir(t *testing.T) {
	for _, tc := range []struct {
		name   string
		files  map[string]string
		names  []string
		source map[string]string // runtime → "builtin" or the file's base name
		start  map[string]string
	}{
		{
			name:   "empty dir",
			files:  nil,
			names:  []string{"go", "node", "php", "python", "ruby", "static"},
			source: map[string]string{"php": "builtin", "python": "builtin", "ruby": "builtin"},
		},
		{
			name:   "addition",
			files:  map[string]string{"elixir.yaml": strings.ReplaceAll(node, "node", "elixir")},
			names:  []string{"elixir", "go", "node", "php", "python", "ruby", "static"},
			source: map[string]string{"elixir": "elixir.yaml", "python": "builtin"},
			start:  map[string]string{"elixir": "exec elixir server.js"},
		},
		{
			name:   "override of node",
			files:  map[string]string{"node.yaml": node},
			names:  []string{"go", "node", "php", "python", "ruby", "static"},
			source: map[string]string{"node": "node.yaml", "go": "builtin"},
			start:  map[string]string{"node": "exec node server.js"},
		},
		{
			name: "override",
			files: map[string]string{"python.yaml": `version: 1
name: python
description: Python with gunicorn
packages: [python3, gunicorn]
start: exec gunicorn --bind 0.0.0.0:$HTTP_PORT app:app
port_env: HTTP_PORT
`},
			names:  []string{"go", "node", "php", "python", "ruby", "static"},
			source: map[string]string{"python": "python.yaml", "php": "builtin"},
			start:  map[string]string{"python": "exec gunicorn --bind 0.0.0.0:$HTTP_PORT app:app"},
		},
		{
			name: "other files ignored",
			files: map[string]string{
				"README.md":        "not a runtime",
				"node.yml":         "not read: only .yaml",
				".python.yaml.swp": "editor file",
				".node.yaml":       "hidden",
			},
			names:  []string{"go", "node", "php", "python", "ruby", "static"},
			source: map[string]string{"python": "builtin"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, tc.files)
			c, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Names(); !reflect.DeepEqual(got, tc.names) {
				t.Errorf("Names() = %q, want %q", got, tc.names)
			}
			for name, want := range tc.source {
				if want != "builtin" {
					want = filepath.Join(dir, want)
				}
				if rt, _ := c.Get(name); rt.Source != want {
					t.Errorf("%s: Source = %q, want %q", name, rt.Source, want)
				}
			}
			for name, want := range tc.start {
				if rt, _ := c.Get(name); rt.Start != want {
					t.Errorf("%s: Start = %q, want %q", name, rt.Start, want)
				}
			}
			var all []string
			for _, rt := range c.All() {
				all = append(all, rt.Name)
			}
			if !reflect.DeepEqual(all, tc.names) {
				t.Errorf("All() names = %q, want %q", all, tc.names)
			}
		})
	}
}

func TestLoadBadFiles(t *testing.T) {
	known := "known: version, name, description, packages, detect, build, start, port_env"
	for _, tc := range []struct {
		name string
		file string // written as FILE.yaml
		text string
		want string // FILE stands for the file's path
	}{
		{"unknown field", "node", node + "env: {A: 1}\n", `FILE:9: unknown field "env"; ` + known},
		{"unknown field, odd name", "node", node + "\"a\\nb\": 1\n", `FILE:9: unknown field "a\nb"; ` + known},
		{"wrong type, list", "node", strings.Replace(node, "packages: [nodejs, npm]", "packages: nodejs", 1), `FILE:4: packages: expected a list of strings, found a string`},
		{"wrong type, item", "node", strings.Replace(node, "packages: [nodejs, npm]", "packages:\n  - nodejs\n  - {npm: 9}", 1), `FILE:6: packages: expected a string, found a mapping`},
		{"wrong type, string", "node", strings.Replace(node, "start: exec node server.js", "start: [node, server.js]", 1), `FILE:8: start: expected a string, found a list`},
		{"wrong type, version", "node", strings.Replace(node, "version: 1", "version: one", 1), `FILE:1: version: expected a whole number, found a string`},
		{"wrong type, flow", "node", "{version: 1, name: [node]}", `FILE:1: expected a string, found a list`},
		{"duplicate key", "node", node + "name: node\n", `FILE:9: mapping key "name" already defined at line 2`},
		{"bad name", "Node", strings.Replace(node, "name: node", "name: Node", 1), `FILE:2: invalid runtime name "Node": use 1-40 lowercase letters, digits and dashes, starting with a letter`},
		{"name too long", "node", strings.Replace(node, "name: node", "name: "+strings.Repeat("n", 60), 1), `FILE:2: invalid runtime name "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn": use 1-40 lowercase letters, digits and dashes, starting with a letter`},
		{"name is not the file name", "nodejs", node, `FILE:2: name "node" does not match the file name: call the runtime "nodejs" or the file node.yaml`},
		{"too big", "node", node + strings.Repeat("#", 64<<10), `FILE: over the 64 KiB limit`},
		{"not YAML", "node", "name: node\n  version: 1\n", `FILE:2: not valid YAML: mapping values are not allowed in this context`},
		{"not YAML, tab", "node", "name: node\n\tversion: 1\n", `FILE:2: not valid YAML: found a tab character that violates indentation`},
		{"empty", "node", "# nothing\n", `FILE: the file is empty`},
		{"list", "node", "- name: node\n", `FILE:1: expected a mapping of runtime fields, found a list`},
		{"two documents", "node", node + "---\n" + node, `FILE:9: a second YAML document starts here; a runtime file holds one`},
		{"missing version", "node", strings.Replace(node, "version: 1\n", "", 1), `FILE:1: version is missing or empty`},
		{"missing start", "node", strings.Replace(node, "start: exec node server.js\n", "", 1), `FILE:1: start is missing or empty`},
		{"empty packages", "node", strings.Replace(node, "packages: [nodejs, npm]", "packages: []", 1), `FILE:4: packages is missing or empty`},
		{"version 2", "node", strings.Replace(node, "version: 1", "version: 2", 1), `FILE:1: version 2 is not supported: this Upscale reads version 1`},
		{"bad package", "node", strings.Replace(node, "[nodejs, npm]", "[nodejs, 'npm; rm -rf /']", 1), `FILE:4: invalid Debian package name "npm; rm -rf /"`},
		{"bad package option", "node", strings.Replace(node, "[nodejs, npm]", "[--force-yes]", 1), `FILE:4: invalid Debian package name "--force-yes"`},
		{"bad detect", "node", strings.Replace(node, "[package.json]", "[../package.json]", 1), `FILE:5: detect: "../package.json" is not a file name (files are looked for at the top of the repository)`},
		{"bad detect pattern", "node", strings.Replace(node, "[package.json]", "['[a-']", 1), `FILE:5: detect: "[a-" is not a valid pattern (use names such as package.json, or * and ? as in *.py)`},
		{"empty build step", "node", strings.Replace(node, "  - if [ -f package-lock.json ]; then npm ci; fi", "  - ''", 1), `FILE:6: build: step 1 is empty or contains a NUL byte`},
		{"bad port_env", "node", node + "port_env: HTTP-PORT\n", `FILE:9: invalid port_env "HTTP-PORT": use letters, digits and _, not starting with a digit`},
		{"multi-line description", "node", strings.Replace(node, "description: Node.js 18 (Debian bookworm)", "description: \"a\\nb\"", 1), `FILE:3: description must be one line`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{tc.file + ".yaml": tc.text})
			_, err := Load(dir)
			want := strings.ReplaceAll(tc.want, "FILE", filepath.Join(dir, tc.file+".yaml"))
			if err == nil || err.Error() != want {
				t.Errorf("got  %v\nwant %s", err, want)
			}
		})
	}
}

func TestLoadMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	_, err := Load(dir)
	if want := "runtimes: open " + dir + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}
