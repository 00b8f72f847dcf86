package appspec

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

var known = []string{"python", "php", "ruby"}

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Spec
	}{
		{"minimal", "runtime: python\n", Spec{Runtime: "python", Instances: 1}},
		{"full", `# a comment
runtime: python
start: python3 app.py
build: ["make assets", 'echo "done"']
instances: 2
memory: 256M
health: /healthz?full=1
env:
  KEY: value
  RATIO: 1.50
  DEBUG: true
  EMPTY:
  _under_score: x
  MULTI: |
    line one
    line two
`, Spec{
			Runtime:   "python",
			Start:     "python3 app.py",
			Build:     []string{"make assets", `echo "done"`},
			Instances: 2,
			Memory:    256 << 20,
			Health:    "/healthz?full=1",
			Env: map[string]string{
				"KEY": "value", "RATIO": "1.50", "DEBUG": "true", "EMPTY": "",
				"_under_score": "x", "MULTI": "line one\nline two\n",
			},
		}},
		{"empty values keep defaults", "runtime: ruby\nstart:\ninstances: ~\nenv:\n", Spec{Runtime: "ruby", Instances: 1}},
		{"bounds", "runtime: php\ninstances: 100\nmemory: 64G\n", Spec{Runtime: "php", Instances: 100, Memory: 64 << 30}},
		{"memory 64M", "runtime: php\nmemory: 64M\n", Spec{Runtime: "php", Instances: 1, Memory: 64 << 20}},
		{"memory MiB", "runtime: php\nmemory: 512MiB\n", Spec{Runtime: "php", Instances: 1, Memory: 512 << 20}},
		{"memory MB", "runtime: php\nmemory: 512MB\n", Spec{Runtime: "php", Instances: 1, Memory: 512 << 20}},
		{"memory Gi lowercase", "runtime: php\nmemory: 1gi\n", Spec{Runtime: "php", Instances: 1, Memory: 1 << 30}},
		{"memory K", "runtime: php\nmemory: 65536K\n", Spec{Runtime: "php", Instances: 1, Memory: 64 << 20}},
		{"instances hex", "runtime: php\ninstances: 0x10\n", Spec{Runtime: "php", Instances: 16}},
		{"aliases", "runtime: &r python\nstart: &s ./run\nbuild: [*s, *s]\nenv: {RT: *r}\n", Spec{
			Runtime: "python", Start: "./run", Build: []string{"./run", "./run"}, Instances: 1,
			Env: map[string]string{"RT": "python"},
		}},
		{"explicit document markers", "---\nruntime: python\n...\n", Spec{Runtime: "python", Instances: 1}},
		{"flow mapping", "{runtime: php, instances: 3}", Spec{Runtime: "php", Instances: 3}},
		{"exactly 64 KiB", "runtime: python\n" + strings.Repeat("#", MaxSize-len("runtime: python\n")), Spec{Runtime: "python", Instances: 1}},

		{"processes", `runtime: python
processes:
  web: .venv/bin/gunicorn app:app
  worker: .venv/bin/celery -A tasks worker
  clock-2: "python3 clock.py --every: 5m"
instances: 3
cpu: 0.5
health: /healthz
`, Spec{
			Runtime: "python",
			Processes: map[string]string{
				"web":     ".venv/bin/gunicorn app:app",
				"worker":  ".venv/bin/celery -A tasks worker",
				"clock-2": "python3 clock.py --every: 5m",
			},
			Instances: 3, CPU: 0.5, Health: "/healthz",
		}},
		{"processes, web with the runtime's command", "runtime: ruby\nprocesses:\n  web:\n  worker: bundle exec sidekiq\n", Spec{
			Runtime: "ruby", Processes: map[string]string{"web": "", "worker": "bundle exec sidekiq"}, Instances: 1,
		}},
		{"processes, web only", "runtime: php\nprocesses: {web: php -S 0.0.0.0:$PORT}\n", Spec{
			Runtime: "php", Processes: map[string]string{"web": "php -S 0.0.0.0:$PORT"}, Instances: 1,
		}},
		{"processes, worker only", "runtime: python\nprocesses:\n  worker: python3 worker.py\nstart:\ninstances:\nhealth:\n", Spec{
			Runtime: "python", Processes: map[string]string{"worker": "python3 worker.py"},
		}},
		{"processes, 20 types and long names", "runtime: python\nprocesses: {" + processTypes(19) + "a2345678901234567890: x}\n", Spec{
			Runtime: "python", Processes: processMap(19, "a2345678901234567890"),
		}},
		{"processes, aliases", "runtime: python\nbuild: [&s ./run]\nprocesses: {web: *s, worker: *s}\n", Spec{
			Runtime: "python", Build: []string{"./run"}, Processes: map[string]string{"web": "./run", "worker": "./run"}, Instances: 1,
		}},
		{"processes empty value", "runtime: python\nprocesses:\n", Spec{Runtime: "python", Instances: 1}},

		{"cpu fraction", "runtime: python\ncpu: 0.25\n", Spec{Runtime: "python", Instances: 1, CPU: 0.25}},
		{"cpu whole", "runtime: python\ncpu: 2\n", Spec{Runtime: "python", Instances: 1, CPU: 2}},
		{"cpu bounds", "runtime: python\ncpu: 64\n", Spec{Runtime: "python", Instances: 1, CPU: 64}},
		{"cpu minimum", "runtime: python\ncpu: 0.01\n", Spec{Runtime: "python", Instances: 1, CPU: 0.01}},
		{"cpu exponent", "runtime: python\ncpu: 5e-1\n", Spec{Runtime: "python", Instances: 1, CPU: 0.5}},
		{"cpu empty", "runtime: python\ncpu:\n", Spec{Runtime: "python", Instances: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := Parse([]byte(tc.in), known)
			if problems != nil {
				t.Fatalf("problems:\n%s", problems)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestParseProblems(t *testing.T) {
	fields := "known: runtime, start, processes, build, instances, memory, cpu, health, env"
	for _, tc := range []struct {
		name string
		in   string
		want string // the whole error, one problem per line
	}{
		// The file as a whole.
		{"empty", "", `app.yaml: the file is empty; it needs at least a runtime, such as "runtime: python"`},
		{"only comments", "# nothing yet\n", `app.yaml: the file is empty; it needs at least a runtime, such as "runtime: python"`},
		{"null document", "---\n~\n", `app.yaml: the file is empty; it needs at least a runtime, such as "runtime: python"`},
		{"list", "- runtime: python\n", `app.yaml:1: expected a mapping such as "runtime: python", found a list`},
		{"scalar", "python\n", `app.yaml:1: expected a mapping such as "runtime: python", found "python"`},
		{"number", "42\n", `app.yaml:1: expected a mapping such as "runtime: python", found 42`},
		{"not YAML", "runtime: python\n  start: x\n", `app.yaml:2: not valid YAML: mapping values are not allowed in this context`},
		{"not YAML, bad indent", "runtime: python\nbuild:\n  - a\n b: 1\n", `app.yaml:4: not valid YAML: did not find expected key`}, // yaml.v3 says line 3
		{"not YAML, unclosed", "runtime: [python\n", `app.yaml:1: not valid YAML: did not find expected ',' or ']'`},
		{"not YAML, tab", "runtime: python\n\tstart: x\n", `app.yaml:2: not valid YAML: found a tab character that violates indentation`},
		{"not YAML, control character", "runtime: \x01\n", `app.yaml:1: not valid YAML: control characters are not allowed`},
		{"unknown anchor", "runtime: *py\n", `app.yaml:1: not valid YAML: unknown anchor 'py' referenced`},
		{"two documents", "runtime: python\n---\nruntime: php\n", `app.yaml:2: a second YAML document starts here; app.yaml must hold exactly one`},
		{"trailing separator", "runtime: python\n---\n", `app.yaml:2: a second YAML document starts here; app.yaml must hold exactly one`},
		{"broken second document", "runtime: python\n---\n[\n", `app.yaml:3: not valid YAML: did not find expected node content`},
		{"10 MB", strings.Repeat("a", 10<<20), `app.yaml: 10485760 bytes is over the 64 KiB limit`},
		{"64 KiB + 1", strings.Repeat("#", MaxSize+1), `app.yaml: 65537 bytes is over the 64 KiB limit`},

		// Fields.
		{"unknown field", "runtime: python\nport: 80\n", `app.yaml:2: unknown field "port"; ` + fields},
		{"unknown field, suggestion", "runtime: python\nmemroy: 1G\n", `app.yaml:2: unknown field "memroy"; ` + fields + ` (did you mean memory?)`},
		{"unknown field, no value", "runtime: python\nfoo:\n", `app.yaml:2: unknown field "foo"; ` + fields},
		{"unknown field, singular", "runtime: python\nprocess: {web: x}\n", `app.yaml:2: unknown field "process"; ` + fields + ` (did you mean processes?)`},
		{"unknown field, cpus", "runtime: python\ncpus: 2\n", `app.yaml:2: unknown field "cpus"; ` + fields + ` (did you mean cpu?)`},
		{"unknown field, process type at the top", "runtime: python\nworker: ./worker\n", `app.yaml:2: unknown field "worker"; ` + fields},
		{"unknown field, long name", "runtime: python\n" + strings.Repeat("x", 100) + ": 1\n", `app.yaml:2: unknown field "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"...; ` + fields},
		{"key is a list", "runtime: python\n[a]: 1\n", `app.yaml:2: expected a name, found a list`},
		{"merge key", "runtime: python\n<<: {start: x}\n", `app.yaml:2: merge keys ("<<") are not supported; write the fields out`},
		{"duplicate key", "runtime: python\ninstances: 1\nruntime: php\n", `app.yaml:3: duplicate field runtime (first at line 1)`},

		{"missing runtime", "\n\ninstances: 2\n", `app.yaml:3: runtime is missing; add "runtime: NAME" where NAME is one of php, python, ruby`},
		{"runtime empty", "runtime:\n", `app.yaml:1: runtime: expected a runtime name such as "python", found nothing`},
		{"runtime list", "runtime: [python]\n", `app.yaml:1: runtime: expected a runtime name such as "python", found a list`},
		{"runtime number", "runtime: 3\n", `app.yaml:1: runtime: expected a runtime name such as "python", found 3`},
		{"runtime custom tag", "runtime: !py python\n", `app.yaml:1: runtime: expected a runtime name such as "python", found "python" tagged "!py"`},
		{"unknown runtime, suggestion", "runtime: pyhton\n", `app.yaml:1: unknown runtime "pyhton"; known: php, python, ruby (did you mean python?)`},
		{"unknown runtime, case", "runtime: Ruby\n", `app.yaml:1: unknown runtime "Ruby"; known: php, python, ruby (did you mean ruby?)`},
		{"unknown runtime, no suggestion", "runtime: node\n", `app.yaml:1: unknown runtime "node"; known: php, python, ruby`},
		{"unknown runtime, hostile", "runtime: \"a\\nb\\u202e\\x1b[31m\"\n", `app.yaml:1: unknown runtime "a\nb\u202e\x1b[31m"; known: php, python, ruby`},

		{"start list", "runtime: python\nstart: [python3, app.py]\n", `app.yaml:2: start: expected a command (a string), found a list`},
		{"start number", "runtime: python\nstart: 8080\n", `app.yaml:2: start: expected a command (a string), found 8080`},
		{"start blank", "runtime: python\nstart: '  '\n", `app.yaml:2: start: the command is empty`},
		{"start NUL", "runtime: python\nstart: \"a\\0b\"\n", `app.yaml:2: start: the command contains a NUL byte`},
		{"start too long", "runtime: python\nstart: " + strings.Repeat("x", 5000) + "\n", `app.yaml:2: start: the command is 5000 bytes, over the 4096-byte limit`},
		{"start colon", "runtime: python\nstart: {echo: hi}\n", `app.yaml:2: start: expected a command (a string), found a mapping; put quotes around a command that contains ": "`},

		{"build string", "runtime: python\nbuild: make\n", `app.yaml:2: build: expected a list of commands, found "make"`},
		{"build mapping", "runtime: python\nbuild: {a: b}\n", `app.yaml:2: build: expected a list of commands, found a mapping`},
		{"build items", "runtime: python\nbuild:\n  - make\n  - echo a: b\n  - [x]\n  - 3\n  -\n", strings.Join([]string{
			`app.yaml:4: build: step 2: expected a command (a string), found a mapping; put quotes around a command that contains ": "`,
			`app.yaml:5: build: step 3: expected a command (a string), found a list`,
			`app.yaml:6: build: step 4: expected a command (a string), found 3`,
			`app.yaml:7: build: step 5: expected a command (a string), found nothing`,
		}, "\n")},
		{"build too many", "runtime: python\nbuild: [" + strings.Repeat("a,", 101) + "]\n", `app.yaml:2: build: 101 steps is over the limit of 100`},

		{"instances 0", "runtime: python\ninstances: 0\n", `app.yaml:2: instances: expected a whole number from 1 to 100, found 0`},
		{"instances 101", "runtime: python\ninstances: 101\n", `app.yaml:2: instances: expected a whole number from 1 to 100, found 101`},
		{"instances -1", "runtime: python\ninstances: -1\n", `app.yaml:2: instances: expected a whole number from 1 to 100, found -1`},
		{"instances quoted", "runtime: python\ninstances: \"2\"\n", `app.yaml:2: instances: expected a whole number from 1 to 100, found "2"`},
		{"instances word", "runtime: python\ninstances: two\n", `app.yaml:2: instances: expected a whole number from 1 to 100, found "two"`},
		{"instances float", "runtime: python\ninstances: 2.5\n", `app.yaml:2: instances: expected a whole number from 1 to 100, found 2.5`},
		{"instances bool", "runtime: python\ninstances: true\n", `app.yaml:2: instances: expected a whole number from 1 to 100, found true`},
		{"instances list", "runtime: python\ninstances: [2]\n", `app.yaml:2: instances: expected a whole number from 1 to 100, found a list`},
		{"instances huge", "runtime: python\ninstances: 99999999999999999999\n", `app.yaml:2: instances: expected a whole number from 1 to 100, found 99999999999999999999`},
		{"instances tagged", "runtime: python\ninstances: !!int \"1\\n2\"\n", `app.yaml:2: instances: expected a whole number from 1 to 100, found "1\n2"`},

		{"memory no unit", "runtime: python\nmemory: 256\n", `app.yaml:2: memory: expected a size such as 256M or 2G, found 256`},
		{"memory word", "runtime: python\nmemory: lots\n", `app.yaml:2: memory: expected a size such as 256M or 2G, found "lots"`},
		{"memory fraction", "runtime: python\nmemory: 1.5G\n", `app.yaml:2: memory: expected a size such as 256M or 2G, found "1.5G"`},
		{"memory space", "runtime: python\nmemory: 256 M\n", `app.yaml:2: memory: expected a size such as 256M or 2G, found "256 M"`},
		{"memory terabytes", "runtime: python\nmemory: 1T\n", `app.yaml:2: memory: expected a size such as 256M or 2G, found "1T"`},
		{"memory negative", "runtime: python\nmemory: -1G\n", `app.yaml:2: memory: expected a size such as 256M or 2G, found "-1G"`},
		{"memory list", "runtime: python\nmemory: [1G]\n", `app.yaml:2: memory: expected a size such as 256M or 2G, found a list`},
		{"memory too small", "runtime: python\nmemory: 32M\n", `app.yaml:2: memory: "32M" is below the minimum of 64M`},
		{"memory zero", "runtime: python\nmemory: 0G\n", `app.yaml:2: memory: "0G" is below the minimum of 64M`},
		{"memory too big", "runtime: python\nmemory: 65G\n", `app.yaml:2: memory: "65G" is above the maximum of 64G`},
		{"memory overflow", "runtime: python\nmemory: 99999999999999999999999K\n", `app.yaml:2: memory: "99999999999999999999999K" is above the maximum of 64G`},

		{"health no slash", "runtime: python\nhealth: healthz\n", `app.yaml:2: health: expected a URL path starting with "/", such as "/healthz", found "healthz"`},
		{"health URL", "runtime: python\nhealth: http://x/healthz\n", `app.yaml:2: health: expected a URL path starting with "/", such as "/healthz", found "http://x/healthz"`},
		{"health list", "runtime: python\nhealth: [/a]\n", `app.yaml:2: health: expected a URL path starting with "/", such as "/healthz", found a list`},
		{"health space", "runtime: python\nhealth: /a b\n", `app.yaml:2: health: the path may only hold printable ASCII without spaces (percent-encode the rest), found "/a b"`},
		{"health control", "runtime: python\nhealth: \"/a\\r\\nHost: x\"\n", `app.yaml:2: health: the path may only hold printable ASCII without spaces (percent-encode the rest), found "/a\r\nHost: x"`},
		{"health non-ASCII", "runtime: python\nhealth: /é\n", `app.yaml:2: health: the path may only hold printable ASCII without spaces (percent-encode the rest), found "/é"`},
		{"health too long", "runtime: python\nhealth: /" + strings.Repeat("a", 1024) + "\n", `app.yaml:2: health: the path is 1025 bytes, over the 1024-byte limit`},

		{"env list", "runtime: python\nenv: [A=1]\n", `app.yaml:2: env: expected a mapping of NAME: value, found a list`},
		{"env string", "runtime: python\nenv: A=1\n", `app.yaml:2: env: expected a mapping of NAME: value, found "A=1"`},
		{"env keys", "runtime: python\nenv:\n  1A: x\n  A-B: x\n  A B: x\n  \"\": x\n  [A]: x\n  <<: {B: 1}\n", strings.Join([]string{
			`app.yaml:3: env: invalid name "1A": use letters, digits and _, not starting with a digit`,
			`app.yaml:4: env: invalid name "A-B": use letters, digits and _, not starting with a digit`,
			`app.yaml:5: env: invalid name "A B": use letters, digits and _, not starting with a digit`,
			`app.yaml:6: env: invalid name "": use letters, digits and _, not starting with a digit`,
			`app.yaml:7: env: expected a name, found a list`,
			`app.yaml:8: env: merge keys ("<<") are not supported; write the fields out`,
		}, "\n")},
		{"env reserved", "runtime: python\nenv:\n  PORT: 80\n  UPSCALE_APP: x\n  port: 80\n", strings.Join([]string{
			`app.yaml:3: env: PORT is reserved: Upscale sets it to the port your app must listen on`,
			`app.yaml:4: env: UPSCALE_APP is reserved: names starting with UPSCALE_ are set by Upscale`,
		}, "\n")},
		{"env values", "runtime: python\nenv:\n  A: [1]\n  B: {x: 1}\n  C: \"a\\0b\"\n", strings.Join([]string{
			`app.yaml:3: env: A: expected a value such as a string or a number, found a list`,
			`app.yaml:4: env: B: expected a value such as a string or a number, found a mapping`,
			`app.yaml:5: env: C: the value contains a NUL byte`,
		}, "\n")},
		{"env duplicate", "runtime: python\nenv:\n  A: 1\n  B: 2\n  A: 3\n", `app.yaml:5: env: duplicate variable A (first at line 3)`},
		{"env value too big", "runtime: python\nenv:\n  A: " + strings.Repeat("x", 33<<10) + "\n", `app.yaml:3: env: A: the value is 33792 bytes, over the 32 KiB limit`},
		{"env too many", "runtime: python\nenv: {" + envVars(201, "") + "}\n", `app.yaml:2: env: 201 variables is over the limit of 200`},
		{"env total too big", "runtime: python\nv: &v " + strings.Repeat("x", 30<<10) + "\nenv: {A: *v, B: *v, C: *v}\n", strings.Join([]string{
			`app.yaml:2: unknown field "v"; ` + fields,
			`app.yaml:3: env: the variables add up to 92163 bytes, over the 64 KiB limit`,
		}, "\n")},
		{"alias value reported where used", "runtime: python\nx: &l [1]\nenv:\n  A: *l\n", strings.Join([]string{
			`app.yaml:2: unknown field "x"; ` + fields,
			`app.yaml:4: env: A: expected a value such as a string or a number, found a list`,
		}, "\n")},

		{"processes list", "runtime: python\nprocesses:\n  - web: ./server\n", `app.yaml:3: processes: expected a mapping of type: command, such as "worker: ./worker", found a list`},
		{"processes string", "runtime: python\nprocesses: ./server\n", `app.yaml:2: processes: expected a mapping of type: command, such as "worker: ./worker", found "./server"`},
		{"processes empty", "runtime: python\nprocesses: {}\n", `app.yaml:2: processes: the mapping is empty; add at least one type, such as "web: ./server"`},
		{"processes too many", "runtime: python\nprocesses: {" + processTypes(21) + "}\n", `app.yaml:2: processes: 21 types is over the limit of 20`},
		{"processes names", "runtime: python\nprocesses:\n  Web: x\n  1a: x\n  -a: x\n  a_b: x\n  a b: x\n  \"\": x\n  a23456789012345678901: x\n  [a]: x\n  <<: {b: x}\n  3: x\n", strings.Join([]string{
			`app.yaml:3: processes: invalid type "Web": use lowercase letters, digits and -, starting with a letter, at most 20 characters`,
			`app.yaml:4: processes: invalid type "1a": use lowercase letters, digits and -, starting with a letter, at most 20 characters`,
			`app.yaml:5: processes: invalid type "-a": use lowercase letters, digits and -, starting with a letter, at most 20 characters`,
			`app.yaml:6: processes: invalid type "a_b": use lowercase letters, digits and -, starting with a letter, at most 20 characters`,
			`app.yaml:7: processes: invalid type "a b": use lowercase letters, digits and -, starting with a letter, at most 20 characters`,
			`app.yaml:8: processes: invalid type "": use lowercase letters, digits and -, starting with a letter, at most 20 characters`,
			`app.yaml:9: processes: invalid type "a23456789012345678901": use lowercase letters, digits and -, starting with a letter, at most 20 characters`,
			`app.yaml:10: processes: expected a name, found a list`,
			`app.yaml:11: processes: merge keys ("<<") are not supported; write the fields out`,
			`app.yaml:12: processes: invalid type "3": use lowercase letters, digits and -, starting with a letter, at most 20 characters`,
		}, "\n")},
		{"processes duplicate", "runtime: python\nprocesses:\n  web: a\n  worker: b\n  web: c\n", `app.yaml:5: processes: duplicate type web (first at line 3)`},
		{"processes commands", "runtime: python\nprocesses:\n  web: ''\n  worker:\n  a: 3\n  b: [x]\n  c: {echo: hi}\n  d: \"a\\0b\"\n  e: " + strings.Repeat("x", 4097) + "\n", strings.Join([]string{
			`app.yaml:3: processes: web: the command is empty`,
			`app.yaml:4: processes: worker: expected a command (a string), found nothing`,
			`app.yaml:5: processes: a: expected a command (a string), found 3`,
			`app.yaml:6: processes: b: expected a command (a string), found a list`,
			`app.yaml:7: processes: c: expected a command (a string), found a mapping; put quotes around a command that contains ": "`,
			`app.yaml:8: processes: d: the command contains a NUL byte`,
			`app.yaml:9: processes: e: the command is 4097 bytes, over the 4096-byte limit`,
		}, "\n")},
		{"processes alias to a list", "runtime: python\nbuild: &b [make]\nprocesses:\n  worker: *b\n", `app.yaml:4: processes: worker: expected a command (a string), found a list`},
		{"start and web", "runtime: python\nstart: ./server\nprocesses:\n  web: ./server\n  worker: ./worker\n", `app.yaml:2: start: set the web command in processes instead, not both`},
		{"start and web with the runtime's command", "runtime: python\nprocesses: {web: , worker: ./worker}\nstart: ./server\n", `app.yaml:3: start: set the web command in processes instead, not both`},
		{"start without web", "runtime: python\nstart: ./server\nprocesses: {worker: ./worker}\n", `app.yaml:2: start: set the web command in processes instead, not both`},
		{"start not valid and web", "runtime: python\nstart: [x]\nprocesses: {web: x}\n", strings.Join([]string{
			`app.yaml:2: start: expected a command (a string), found a list`,
			`app.yaml:2: start: set the web command in processes instead, not both`,
		}, "\n")},
		{"instances without web", "runtime: python\nprocesses: {worker: ./worker}\ninstances: 2\n", `app.yaml:3: instances: processes has no web, and instances counts web containers`},
		{"instances not valid without web", "runtime: python\nprocesses: {worker: ./worker}\ninstances: 0\n", strings.Join([]string{
			`app.yaml:3: instances: expected a whole number from 1 to 100, found 0`,
			`app.yaml:3: instances: processes has no web, and instances counts web containers`,
		}, "\n")},
		{"health without web", "runtime: python\nhealth: /healthz\nprocesses:\n  worker: ./worker\n", `app.yaml:2: health: processes has no web, and only web is checked over HTTP`},
		{"web not valid still counts as web", "runtime: python\nprocesses: {web: [x]}\ninstances: 2\nhealth: /h\n", `app.yaml:2: processes: web: expected a command (a string), found a list`},

		{"cpu zero", "runtime: python\ncpu: 0\n", `app.yaml:2: cpu: 0 is below the minimum of 0.01`},
		{"cpu too small", "runtime: python\ncpu: 0.001\n", `app.yaml:2: cpu: 0.001 is below the minimum of 0.01`},
		{"cpu negative", "runtime: python\ncpu: -1\n", `app.yaml:2: cpu: -1 is below the minimum of 0.01`},
		{"cpu too big", "runtime: python\ncpu: 64.5\n", `app.yaml:2: cpu: 64.5 is above the maximum of 64`},
		{"cpu huge", "runtime: python\ncpu: 99999999999999999999\n", `app.yaml:2: cpu: 99999999999999999999 is above the maximum of 64`},
		{"cpu infinity", "runtime: python\ncpu: .inf\n", `app.yaml:2: cpu: .inf is above the maximum of 64`},
		{"cpu not a number", "runtime: python\ncpu: .nan\n", `app.yaml:2: cpu: expected a share of a core such as 0.5 or 2, found .nan`},
		{"cpu quoted", "runtime: python\ncpu: \"0.5\"\n", `app.yaml:2: cpu: expected a share of a core such as 0.5 or 2, found "0.5"`},
		{"cpu percent", "runtime: python\ncpu: 50%\n", `app.yaml:2: cpu: expected a share of a core such as 0.5 or 2, found "50%"`},
		{"cpu millicores", "runtime: python\ncpu: 500m\n", `app.yaml:2: cpu: expected a share of a core such as 0.5 or 2, found "500m"`},
		{"cpu fraction", "runtime: python\ncpu: 1/2\n", `app.yaml:2: cpu: expected a share of a core such as 0.5 or 2, found "1/2"`},
		{"cpu bool", "runtime: python\ncpu: true\n", `app.yaml:2: cpu: expected a share of a core such as 0.5 or 2, found true`},
		{"cpu list", "runtime: python\ncpu: [1]\n", `app.yaml:2: cpu: expected a share of a core such as 0.5 or 2, found a list`},
		{"cpu tagged", "runtime: python\ncpu: !!float \"1\\n2\"\n", `app.yaml:2: cpu: expected a share of a core such as 0.5 or 2, found "1\n2"`},

		// Many problems at once, in line order, whatever order they are found in.
		{"all in order", "instances: 0\nmemory: 1\nhealth: x\nenv: {PORT: 1}\nfoo: 1\ninstances: 2\n", strings.Join([]string{
			`app.yaml:1: instances: expected a whole number from 1 to 100, found 0`,
			`app.yaml:1: runtime is missing; add "runtime: NAME" where NAME is one of php, python, ruby`,
			`app.yaml:2: memory: expected a size such as 256M or 2G, found 1`,
			`app.yaml:3: health: expected a URL path starting with "/", such as "/healthz", found "x"`,
			`app.yaml:4: env: PORT is reserved: Upscale sets it to the port your app must listen on`,
			`app.yaml:5: unknown field "foo"; ` + fields,
			`app.yaml:6: duplicate field instances (first at line 1)`,
		}, "\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, problems := Parse([]byte(tc.in), known)
			if spec != nil {
				t.Errorf("spec = %+v, want nil", spec)
			}
			if got := problems.Error(); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// envVars returns n flow-mapping entries "V0: x, V1: x, ...".
func envVars(n int, value string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "V%d: x%s, ", i, value)
	}
	return b.String()
}

// processTypes returns n flow-mapping entries "p0: x, p1: x, ...".
func processTypes(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "p%d: x, ", i)
	}
	return b.String()
}

// processMap is what processTypes(n) parses to, plus one more type.
func processMap(n int, more string) map[string]string {
	m := map[string]string{more: "x"}
	for i := range n {
		m[fmt.Sprintf("p%d", i)] = "x"
	}
	return m
}

func TestParseNoRuntimes(t *testing.T) {
	_, problems := Parse([]byte("runtime: python\n"), nil)
	if got, want := problems.Error(), `app.yaml:1: unknown runtime "python"; this server has no runtimes`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseTooManyProblems(t *testing.T) {
	in := "runtime: python\n" + strings.Repeat("x: 1\n", 80)
	_, problems := Parse([]byte(in), known)
	if len(problems) != maxProblems+1 {
		t.Fatalf("got %d problems, want %d", len(problems), maxProblems+1)
	}
	if got, want := problems[maxProblems-1].String(), `app.yaml:51: unknown field "x"; known: runtime, start, processes, build, instances, memory, cpu, health, env`; got != want {
		t.Errorf("last shown: got %q, want %q", got, want)
	}
	if got, want := problems[maxProblems].String(), "app.yaml: 30 more problems not shown"; got != want {
		t.Errorf("summary: got %q, want %q", got, want)
	}
}

// billionLaughs nests lists of aliases levels deep, ten wide, so a reader
// that expands aliases would build 10^levels strings from about 1 KiB, and
// uses the top anchor in every field that takes a list or a mapping.
func billionLaughs(levels int) string {
	var b strings.Builder
	b.WriteString("runtime: python\nenv:\n  L0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < levels; i++ {
		fmt.Fprintf(&b, "  L%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
	}
	fmt.Fprintf(&b, "  TOP: *l%d\nbuild: *l%d\nstart: *l%d\n", levels-1, levels-1, levels-1)
	return b.String()
}

func TestParseBillionLaughs(t *testing.T) {
	in := []byte(billionLaughs(9))
	var problems Problems
	allocs := testing.AllocsPerRun(10, func() { _, problems = Parse(in, known) })
	// 9 lists in env, the top one again, 10 build steps that are lists,
	// and start: 21 lines, however deep the nesting goes.
	if len(problems) != 21 {
		t.Fatalf("got %d problems, want 21:\n%s", len(problems), problems)
	}
	want := "app.yaml:14: start: expected a command (a string), found a list"
	if got := problems[len(problems)-1].String(); got != want {
		t.Errorf("last problem: got %q, want %q", got, want)
	}
	// Parsing these ~600 bytes takes a few hundred allocations; expanding
	// the aliases would take a billion.
	if allocs > 2000 {
		t.Errorf("%v allocations per parse, want at most 2000", allocs)
	}
}

func TestParseAliasBudget(t *testing.T) {
	// Each "*k" costs 3 bytes, so a file under the size limit can still
	// make the walk follow more than maxAliases of them.
	in := "{runtime: &k python" + strings.Repeat(",*k", maxAliases+1) + "}"
	if len(in) > MaxSize {
		t.Fatalf("test input is %d bytes, over the size limit", len(in))
	}
	_, problems := Parse([]byte(in), known)
	if got, want := problems.Error(), "app.yaml:1: too many aliases (over 10000); write the values out instead"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestProblemsError(t *testing.T) {
	var none Problems
	if err := none.Err(); err != nil {
		t.Errorf("empty Problems.Err() = %v, want nil", err)
	}
	ps := Problems{{0, "whole file"}, {3, "line three"}}
	var err error = ps.Err()
	var got Problems
	if !errors.As(err, &got) || len(got) != 2 {
		t.Fatalf("errors.As(%v) = %v", err, got)
	}
	if want := "app.yaml: whole file\napp.yaml:3: line three"; err.Error() != want {
		t.Errorf("got %q, want %q", err.Error(), want)
	}
}

func TestSuggest(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"pyhton", " (did you mean python?)"},
		{"pythn", " (did you mean python?)"},
		{"rubi", " (did you mean ruby?)"},
		{"phpp", " (did you mean php?)"},
		{"pp", " (did you mean php?)"},
		{"pl", ""},
		{"node", ""},
		{"", ""},
		{strings.Repeat("python", 20), ""},
	} {
		if got := suggest(tc.in, known); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"256M", 256 << 20, true}, {"8G", 8 << 30, true}, {"2GiB", 2 << 30, true}, {"1536mb", 1536 << 20, true}, {"4k", 4 << 10, true},
		{"8589934591G", 8589934591 << 30, true},
		{"8589934592G", 0, false}, {"256", 0, false}, {"1.5G", 0, false}, {"-1G", 0, false}, {" 1G", 0, false}, {"1T", 0, false}, {"", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok {
			if back, err := ParseSize(FormatSize(got)); err != nil || back != got {
				t.Errorf("FormatSize(%d) = %q reads back as %d, %v", got, FormatSize(got), back, err)
			}
		}
	}
	if got := FormatSize(1536 << 20); got != "1536M" {
		t.Errorf("FormatSize(1536M) = %q", got)
	}
}

// With a Procfile, a type under processes without a command runs the
// Procfile's; one the Procfile lacks is refused with its line. Without a
// Procfile, only web may go without a command, as before.
func TestParseWithProcfile(t *testing.T) {
	procfile := map[string]string{"web": "node server.js", "worker": "node worker.js"}
	for _, tc := range []struct {
		name     string
		in       string
		procfile map[string]string
		want     map[string]string
		problem  string
	}{
		{"types named", "runtime: node\nprocesses:\n  web:\n  worker:\n", procfile,
			map[string]string{"web": "node server.js", "worker": "node worker.js"}, ""},
		{"app.yaml's command wins", "runtime: node\nprocesses:\n  web: node other.js\n  worker:\n", procfile,
			map[string]string{"web": "node other.js", "worker": "node worker.js"}, ""},
		{"web not in the Procfile", "runtime: node\nprocesses:\n  web:\n", map[string]string{"worker": "w"},
			map[string]string{"web": ""}, ""},
		{"type not in the Procfile", "runtime: node\nprocesses:\n  web:\n  clock:\n", procfile,
			nil, "app.yaml:4: processes: clock has no command, and the Procfile has no clock type"},
		{"no Procfile", "runtime: node\nprocesses:\n  worker:\n", nil,
			nil, "app.yaml:3: processes: worker: expected a command (a string), found nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, problems := ParseWithProcfile([]byte(tc.in), []string{"node"}, tc.procfile)
			if tc.problem != "" {
				if problems.Error() != tc.problem {
					t.Errorf("problems %q, want %q", problems.Error(), tc.problem)
				}
				return
			}
			if problems != nil {
				t.Fatal(problems)
			}
			if !reflect.DeepEqual(spec.Processes, tc.want) {
				t.Errorf("processes %q, want %q", spec.Processes, tc.want)
			}
		})
	}
}

func TestTypeAndCommandProblems(t *testing.T) {
	for in, want := range map[string]string{
		"web": "", "clock-2": "", "Worker": `invalid type "Worker": use lowercase letters, digits and -, starting with a letter, at most 20 characters`,
		"sidekiq_worker": `invalid type "sidekiq_worker": use lowercase letters, digits and -, starting with a letter, at most 20 characters`,
	} {
		if got := TypeProblem(in); got != want {
			t.Errorf("TypeProblem(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"./server": "", " \t": "the command is empty", "a\x00b": "the command contains a NUL byte",
		strings.Repeat("x", 4097): "the command is 4097 bytes, over the 4096-byte limit",
	} {
		if got := CommandProblem(in); got != want {
			t.Errorf("CommandProblem(%.20q) = %q, want %q", in, got, want)
		}
	}
}
