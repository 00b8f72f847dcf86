package commands

import (
	"context"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// fakeLifecycle stores config changes as the deployer would and pretends
// to scale and roll back: these tests are about the commands' input
// checks and output.
type fakeLifecycle struct{ st store.Store }

func (f fakeLifecycle) SetConfig(ctx context.Context, app names.App, set map[string]string, unset []string, _ bool, out func(string)) error {
	_, err := f.st.SetConfig(ctx, app.Namespace, app.Name, set, unset)
	out("config changed")
	return err
}
func (fakeLifecycle) Scale(_ context.Context, app names.App, change map[string]int, out func(string)) error {
	out("scaled " + app.String())
	return nil
}
func (fakeLifecycle) Rollback(_ context.Context, _ names.App, version int, out func(string)) (store.Release, error) {
	out("rolled back")
	return store.Release{Version: version + 1, Config: store.ReleaseConfig{Note: "rollback"}}, nil
}

func TestLifecycleBadInput(t *testing.T) {
	w := newWorld(t)
	rewire(w.env, nil, fakeLifecycle{st: w.env.Store}, store.Quota{}, false)
	for _, c := range []struct {
		args, stdin, want string
	}{
		{"config set acme/web 1FOO=x", "", `error: invalid config var name "1FOO": use letters, digits and _, not starting with a digit (like DATABASE_URL)`},
		{"config set acme/web FOO-BAR=x", "", `error: invalid config var name "FOO-BAR"`},
		{"config set acme/web PORT=1", "", "error: config var PORT is reserved: the platform sets it in every container"},
		{"config set acme/web FOO", "", `error: "FOO" is not KEY=VALUE`},
		{"config set acme/web", "", "error: ssh upscale@host config set needs KEY=VALUE pairs after acme/web"},
		{"config set acme/web A=1 A=2", "", "error: config var A is given twice"},
		{"config set acme/web --stdin BIG", strings.Repeat("x", 1<<20), "error: config var BIG is too large: over 32768 bytes, the limit is 32768 bytes (32 KiB) per value"},
		{"config set acme/web BIG=" + strings.Repeat("x", 40000), "", "error: config var BIG is too large: 40000 bytes, the limit is 32768 bytes (32 KiB) per value"},
		{"config get acme/web NOPE", "", `error: config var "NOPE" is not set on acme/web`},
		{"config unset acme/web NOPE", "", `error: config var "NOPE" is not set on acme/web`},
		{"app scale acme/web -1", "", "error: web=-1: the count must be from 0 to 100"},
		{"app scale acme/web 10000", "", "error: web=10000: the count must be from 0 to 100"},
		{"app scale acme/web two", "", "error: web=two: the count must be a whole number from 0 to 100"},
		{"app scale acme/web 1 2", "", `error: "1": with several counts, write each as TYPE=N (web=2 worker=1)`},
		{"rollback acme/web three", "", `error: "three" is not a release; write it as v3`},
	} {
		r := run(w.env, w.admin, c.stdin, strings.Fields(c.args)...)
		if r.code == 0 || !strings.HasPrefix(r.stderr, c.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q; want an error starting %q", msgtext.Truncate(c.args, 60), r.code, r.stderr, c.want)
		}
	}
	if vars, _ := w.env.Store.GetConfig(context.Background(), "acme", "web"); vars != nil {
		t.Errorf("bad input stored config vars: %v", vars)
	}
}

func TestConfigCommands(t *testing.T) {
	w := newWorld(t)
	rewire(w.env, nil, fakeLifecycle{st: w.env.Store}, store.Quota{}, false)
	mustRun(t, w.env, w.member, "", "config", "set", "acme/web", "B=two words", "A=1", "EMPTY=")
	mustRun(t, w.env, w.member, "line one\nline two\n", "config", "set", "acme/web", "--stdin", "CERT")
	if got := mustRun(t, w.env, w.member, "", "config", "get", "acme/web", "B"); got != "two words\n" {
		t.Errorf("config get B: %q", got)
	}
	if got := mustRun(t, w.env, w.member, "", "config", "list", "acme/web"); got != "A=1\nB=two words\nCERT=line one\nline two\nEMPTY=\n" {
		t.Errorf("config list: %q", got)
	}
	mustRun(t, w.env, w.member, "", "config", "unset", "acme/web", "A", "CERT")
	if got := mustRun(t, w.env, w.member, "", "config", "list", "acme/web", "--format", "json"); got != "{\n  \"B\": \"two words\",\n  \"EMPTY\": \"\"\n}\n" {
		t.Errorf("config list --format json: %q", got)
	}
}

// A command line of the wrong shape is a usage error, exit status 2, as
// cobra's own are; values that are wrong stay failures (1).
func TestShapeErrorsAreUsageErrors(t *testing.T) {
	w := newWorld(t)
	rewire(w.env, nil, fakeLifecycle{st: w.env.Store}, store.Quota{}, false)
	for _, c := range []struct {
		args string
		code int
	}{
		{"config set acme/web", 2},
		{"config set acme/web FOO", 2},
		{"app set acme/web deploy-branch", 2},
		{"app scale acme/web 1 2", 2},
		{"namespace quota set acme apps", 2},
		{"config set", 2},
		{"config set acme/web 1FOO=x", 1},
		{"app scale acme/web -1", 1},
	} {
		if r := run(w.env, w.admin, "", strings.Fields(c.args)...); r.code != c.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", c.args, r.code, c.code, r.stderr)
		}
	}
}
