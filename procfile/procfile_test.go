package procfile

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Process
	}{
		{"heroku's example", "web: bundle exec rails server -p $PORT\nworker: bundle exec rake jobs:work\n", []Process{
			{"web", "bundle exec rails server -p $PORT", 1}, {"worker", "bundle exec rake jobs:work", 2},
		}},
		{"comments, blank lines, CRLF, BOM, no final newline", "\uFEFF# processes\r\n\r\n  web:   node server.js  \r\n\t# worker later\r\nrelease: ./migrate.sh # a shell comment stays", []Process{
			{"web", "node server.js", 3}, {"release", "./migrate.sh # a shell comment stays", 5},
		}},
		{"colons in the command", "clock: echo 'a: b' && date +%H:%M\n", []Process{{"clock", "echo 'a: b' && date +%H:%M", 1}}},
		{"no space after the colon", "web:python3 app.py\n", []Process{{"web", "python3 app.py", 1}}},
		{"release only", "release: ./migrate\n", []Process{{"release", "./migrate", 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseProblems(t *testing.T) {
	many := ""
	for i := range 21 {
		many += fmt.Sprintf("w%d: run\n", i)
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"no colon", "web: node server.js\nnode worker.js\n", `Procfile:2: expected "type: command", such as "web: node server.js", found "node worker.js"`},
		{"space before the colon", "web : node server.js\n", `Procfile:1: expected "type: command", such as "web: node server.js", found "web : node server.js"`},
		{"duplicate type", "web: a\n\nworker: b\nweb: c\n", "Procfile:4: duplicate type web (first at line 1)"},
		{"empty command", "# x\nweb:\n", "Procfile:2: web: the command is empty"},
		{"blank command", "worker:   \t\n", "Procfile:1: worker: the command is empty"},
		{"uppercase type", "Web: a\n", `Procfile:1: invalid type "Web": use lowercase letters, digits and -, starting with a letter, at most 20 characters`},
		{"underscore type", "sidekiq_worker: a\n", `Procfile:1: invalid type "sidekiq_worker": use lowercase letters, digits and -, starting with a letter, at most 20 characters`},
		{"long command", "web: " + strings.Repeat("x", 5000) + "\n", "Procfile:1: web: the command is 5000 bytes, over the 4096-byte limit"},
		{"NUL", "web: a\x00b\n", "Procfile:1: web: the command contains a NUL byte"},
		{"too many types", many, "Procfile:21: more than 20 process types"},
		{"only comments", "# nothing yet\n\n", `Procfile: no process types; add at least one line such as "web: node server.js"`},
		{"empty", "", `Procfile: no process types; add at least one line such as "web: node server.js"`},
		{"too big", strings.Repeat("#", 64<<10+1), "Procfile: 65537 bytes is over the 64 KiB limit"},
		{"not UTF-8", "web: \xff\n", "Procfile: not UTF-8 text"},
		{"control characters quoted", "\x1b[31mweb\n", `Procfile:1: expected "type: command", such as "web: node server.js", found "\x1b[31mweb"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in))
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v, %v\nwant %s", got, err, tc.want)
			}
		})
	}
	// Release is not a process: 20 of them and a release is fine.
	if _, err := Parse([]byte(strings.Join(strings.Split(many, "\n")[:20], "\n") + "\nrelease: x\n")); err != nil {
		t.Errorf("20 types and release: %v", err)
	}
}
