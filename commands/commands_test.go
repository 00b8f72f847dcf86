package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/store"
)

func TestSeedCommandForms(t *testing.T) {
	env := newEnv(t)
	admin := keys.Local
	if out := mustRun(t, env, admin, "", "namespace", "create", "--namespace", "test"); out != "Namespace test created.\n" {
		t.Fatalf("namespace create: %q", out)
	}
	mustRun(t, env, admin, "", "namespace", "create", "other")
	out := mustRun(t, env, admin, "", "app", "create", "--namespace", "test", "--application", "test")
	for _, want := range []string{"Application test/test created.", "git remote add upscale ssh://upscale@host:2222/test/test.git", "http://test.test.upscale.localhost"} {
		if !strings.Contains(out, want) {
			t.Errorf("app create output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(env.Repos.Root, "test", "test.git", "hooks", "pre-receive")); err != nil {
		t.Fatalf("app create made no repository: %v", err)
	}
	mustRun(t, env, admin, "", "app", "create", "other/two")

	// The seed's keys add, as OpenSSH delivers it: the unquoted key text
	// arrives as separate words.
	line := newKeyLine(t, "user@host")
	words, _ := Split("keys add --namespace test --name test --public " + line)
	mustRun(t, env, admin, "", words...)
	p, _ := keys.Parse(line)
	k, err := env.Store.KeyByFingerprint(context.Background(), p.Fingerprint)
	if err != nil || k.Name != "test" || k.Namespace != "test" || k.Role != keys.RoleNamespace || k.AddedBy != "local" {
		t.Fatalf("stored key %+v, %v", k, err)
	}
	member := k.Principal()

	// A namespace key creates apps in its own namespace with a bare name.
	mustRun(t, env, member, "", "app", "create", "mine")
	if _, err := env.Store.GetApp(context.Background(), "test", "mine"); err != nil {
		t.Fatalf("app create mine: %v", err)
	}
	// Key text on stdin, and a deploy key.
	mustRun(t, env, member, newKeyLine(t, "ci")+"\n", "keys", "add", "--app", "test/mine", "--name", "ci")

	var apps []appView
	if err := json.Unmarshal([]byte(mustRun(t, env, member, "", "app", "list", "--format", "json")), &apps); err != nil {
		t.Fatal(err)
	}
	if len(apps) != 2 || apps[0].Name != "mine" || apps[1].Name != "test" {
		t.Fatalf("member's app list: %+v", apps)
	}
	if err := json.Unmarshal([]byte(mustRun(t, env, admin, "", "app", "list", "--format", "json")), &apps); err != nil || len(apps) != 3 {
		t.Fatalf("admin's app list: %+v %v", apps, err)
	}
	var ks []keyView
	json.Unmarshal([]byte(mustRun(t, env, member, "", "keys", "list", "--format", "json")), &ks)
	if len(ks) != 2 || ks[0].Name != "ci" || ks[0].Role != "deploy" || ks[0].App != "mine" {
		t.Fatalf("member's keys list: %+v", ks)
	}
	var info appView
	json.Unmarshal([]byte(mustRun(t, env, member, "", "app", "info", "test/test", "--format", "json")), &info)
	if info.URL != "http://test.test.upscale.localhost" || info.DeployBranch != "master" || info.LastPush != nil {
		t.Fatalf("app info: %+v", info)
	}
	mustRun(t, env, member, "", "app", "set", "test/test", "deploy-branch", "main")
	json.Unmarshal([]byte(mustRun(t, env, member, "", "app", "info", "test/test", "--format", "json")), &info)
	if info.DeployBranch != "main" {
		t.Fatalf("deploy branch after app set: %q", info.DeployBranch)
	}
	if out := mustRun(t, env, member, "", "keys", "remove", "ci"); !strings.Contains(out, "Key ci") {
		t.Fatalf("keys remove: %q", out)
	}
	mustRun(t, env, admin, "", "app", "delete", "other/two")
	if _, err := os.Stat(filepath.Join(env.Repos.Root, "other", "two.git")); !os.IsNotExist(err) {
		t.Fatalf("app delete left the repository: %v", err)
	}
	mustRun(t, env, admin, "", "namespace", "delete", "other")
	if out := mustRun(t, env, admin, "", "namespace", "list"); strings.Contains(out, "other") || !strings.Contains(out, "test ") {
		t.Fatalf("namespace list: %q", out)
	}
	if out := mustRun(t, env, admin, "", "help"); !strings.Contains(out, "ssh upscale@host app create NS/APP") {
		t.Fatalf("help: %q", out)
	}
	if out := mustRun(t, env, admin, "", "app", "create", "--help"); !strings.Contains(out, "--application") {
		t.Fatalf("app create --help: %q", out)
	}
}

// Every bad input gets one clear line on stderr, a non-zero exit status,
// and changes nothing.
func TestBadInput(t *testing.T) {
	w := newWorld(t)
	key := newKeyLine(t, "dup")
	mustRun(t, w.env, w.admin, "", "keys", "add", "--namespace", "acme", "--name", "dup", "--public", key)
	long := strings.Repeat("a", 200)
	for _, tc := range []struct {
		args string
		code int
		want string
	}{
		{"namespace create Test", 1, `invalid namespace name "Test"`},
		{"namespace create a/../b", 1, `invalid namespace name "a/../b"`},
		{"namespace create 'x;rm -rf /'", 1, `invalid namespace name "x;rm -rf /"`},
		{"namespace create " + long, 1, `invalid namespace name "aaaa`},
		{"namespace create ''", 1, "namespace name is empty"},
		{"namespace create", 1, "which namespace?"},
		{"namespace create acme", 1, "namespace acme already exists"},
		{"namespace create x --namespace y", 1, "namespace given twice"},
		{"namespace delete acme", 1, "namespace acme still has apps"},
		{"namespace delete nope", 1, "namespace nope not found"},
		{"app create acme/Web", 1, `invalid application name "Web"`},
		{"app create acme/web", 1, "app acme/web already exists"},
		{"app create nope/web", 1, "namespace nope not found"},
		{"app create web", 1, "which namespace?"},
		{"app create acme/a/b", 1, `invalid application name "a/b"`},
		{"app info acme", 1, `invalid application "acme": want NAMESPACE/APP`},
		{"app info ../etc/passwd", 1, "invalid"},
		{"app info", 2, "needs NS/APP"},
		{"app info acme/nope", 1, "app acme/nope not found"},
		{"app set acme/web color blue", 1, `unknown setting "color"`},
		{"app set acme/web deploy-branch ../x", 1, `invalid branch name "../x"`},
		{"app list --format yaml", 1, `--format must be text or json, not "yaml"`},
		{"frobnicate", 2, `unknown command "frobnicate"`},
		{"app frobnicate", 2, `unknown command "frobnicate" for "ssh upscale@host app"`},
		{"app list --bogus", 2, "unknown flag: --bogus"},
		{"keys add --namespace acme --name k --public 'not a key'", 1, "key text is not an SSH public key"},
		{"keys add --namespace acme --name k --public '-----BEGIN OPENSSH PRIVATE KEY----- abc'", 1, "that is a private key"},
		{"keys add --namespace acme --name dup2 --public '" + key + "'", 1, "is already registered"},
		{"keys add --namespace acme --name dup --public '" + newKeyLine(t, "x") + "'", 1, "a key named dup already exists to namespace acme"},
		{"keys add --namespace acme --public '" + newKeyLine(t, "x") + "'", 1, "keys add needs --name NAME"},
		{"keys add --name k --public '" + newKeyLine(t, "x") + "'", 1, "which namespace?"},
		{"keys add --admin --namespace acme --name k --public '" + newKeyLine(t, "x") + "'", 1, "--admin keys belong to no namespace"},
		{"keys add --app acme/nope --name k --public '" + newKeyLine(t, "x") + "'", 1, "app acme/nope not found"},
		{"keys remove nobody", 1, `key "nobody" not found`},
		{"keys remove", 2, "needs a key NAME"},
		{"git-receive-pack /var/lib/upscale/repos/acme/web.git", 1, `invalid repository path "/var/lib/upscale/repos/acme/web.git"`},
		{"git-receive-pack acme/../globex/web.git", 1, "invalid repository path"},
		{"git-upload-pack acme//web.git", 1, "invalid repository path"},
		{"git-upload-pack acme/web.git", 1, "git is served over ssh only"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			args, err := Split(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, w.env)
			r := run(w.env, w.admin, "", args...)
			if r.code != tc.code || !strings.HasPrefix(r.stderr, "error: ") || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
				t.Fatalf("exit %d (want %d), stderr %q (want one line with %q)", r.code, tc.code, r.stderr, tc.want)
			}
			if r.stdout != "" {
				t.Fatalf("stdout %q", r.stdout)
			}
			if after := snapshot(t, w.env); after != before {
				t.Fatalf("store changed:\n%s\n---\n%s", before, after)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"app list", []string{"app", "list"}, false},
		{"  app   list  ", []string{"app", "list"}, false},
		{`git-receive-pack 'test/test.git'`, []string{"git-receive-pack", "test/test.git"}, false},
		{`keys add --public "ssh-ed25519 AAAA me@host"`, []string{"keys", "add", "--public", "ssh-ed25519 AAAA me@host"}, false},
		{`a "b \"c\" d" e\ f`, []string{"a", `b "c" d`, "e f"}, false},
		{`''`, []string{""}, false},
		{`a 'b`, nil, true},
		{`a \`, nil, true},
		{"", nil, false},
	} {
		got, err := Split(tc.in)
		if (err != nil) != tc.err || strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("Split(%q) = %q, %v", tc.in, got, err)
		}
	}
}

// FuzzCommandLine throws ssh command lines at the whole tree as a member
// and as an admin: nothing panics, failures are one line with exit 1 or 2.
func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{
		"app list", "app info acme/web --format json", "namespace create --namespace test",
		"keys add --namespace acme --name x --public ssh-ed25519 AAAA x@y", "git-upload-pack '/acme/web.git'",
		"app create acme/x --application y", "keys remove SHA256:abc", "help app", "app set acme/web deploy-branch=main",
	} {
		f.Add(s, false)
	}
	w := newWorld(f)
	w.env.Git = fakeGit{}
	f.Fuzz(func(t *testing.T, line string, asAdmin bool) {
		args, err := Split(line)
		if err != nil {
			return
		}
		who := w.member
		if asAdmin {
			who = w.admin
		}
		r := run(w.env, who, "", args...)
		switch r.code {
		case 0:
		case 1, 2:
			if !strings.HasPrefix(r.stderr, "error: ") || strings.Count(r.stderr, "\n") != 1 {
				t.Fatalf("%q: exit %d with stderr %q", line, r.code, r.stderr)
			}
		default:
			t.Fatalf("%q: exit %d", line, r.code)
		}
	})
}

func TestDenialNamesTheCommand(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"hosts", "list"}, "error: not allowed: \"hosts list\" needs an admin key\n"},
		{[]string{"namespace", "create", "x"}, "error: not allowed: \"namespace create\" needs an admin key\n"},
		{[]string{"keys", "add", "--admin", "--name", "x", "--public", newKeyLine(t, "x")}, "error: not allowed: \"keys add\" needs an admin key\n"},
	} {
		if r := run(w.env, w.member, "", tc.args...); r.code != 1 || r.stderr != tc.want {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// Over ssh, `app exec NS/APP -- sh -c 'exit 7'` arrives as the words
// sh -c exit 7: the words after -c are the script the user typed.
func TestShellScriptJoinsWhatSSHSplit(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"sh", "-c", "exit", "7"}, []string{"sh", "-c", "exit 7"}},
		{[]string{"bash", "-c", "echo", "$HOME;", "exit", "3"}, []string{"bash", "-c", "echo $HOME; exit 3"}},
		{[]string{"sh", "-c", "exit 7"}, []string{"sh", "-c", "exit 7"}},
		{[]string{"echo", "-c", "a", "b"}, []string{"echo", "-c", "a", "b"}},
		{[]string{"sh", "-e", "a", "b"}, []string{"sh", "-e", "a", "b"}},
		{[]string{"python3", "manage.py", "migrate"}, []string{"python3", "manage.py", "migrate"}},
	} {
		if got := shellScript(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("shellScript(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// app list shows what runs: the live release and instances in JSON (as
// app info does) and a state in text.
func TestAppListShowsReleaseInstancesAndState(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	rel, err := w.env.Store.CreateRelease(ctx, store.Release{Namespace: "acme", App: "web", Commit: strings.Repeat("a", 40), Runtime: "python"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.env.Store.FinishBuild(ctx, "acme", "web", rel.Version, "art", "d", 1); err != nil {
		t.Fatal(err)
	}
	if err := w.env.Store.Activate(ctx, "acme", "web", rel.Version, []store.Instance{{Name: "acme-web-v1-a", Host: "box"}, {Name: "acme-web-v1-b", Host: "box"}}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, w.env, w.admin, "", "app", "create", "acme/idle")
	w.env.Store.SetStopped(ctx, "acme", "api", true)

	var apps []appView
	if err := json.Unmarshal([]byte(mustRun(t, w.env, w.member, "", "app", "list", "--format", "json")), &apps); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, a := range apps {
		got[a.Name] = fmt.Sprintf("%s %q %d", a.State, a.Release, a.Instances)
	}
	want := map[string]string{"web": `running "v1" 2`, "api": `stopped "" 0`, "idle": `not deployed "" 0`}
	if !maps.Equal(got, want) {
		t.Errorf("app list --format json: %v, want %v", got, want)
	}
	text := mustRun(t, w.env, w.member, "", "app", "list")
	for _, re := range []string{`(?m)^APP\s+STATE\s+RELEASE\s+INSTANCES\s`, `(?m)^acme/web\s+running\s+v1\s+2\s`, `(?m)^acme/api\s+stopped\s+-\s+0\s`, `(?m)^acme/idle\s+not deployed\s+-\s+0\s`} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("app list: no line matching %s in\n%s", re, text)
		}
	}
}

// config list of an app with no vars says so, on stderr: stdout stays
// KEY=VALUE lines for scripts.
func TestEmptyConfigListSaysSo(t *testing.T) {
	w := newWorld(t)
	r := run(w.env, w.member, "", "config", "list", "acme/api")
	if r.code != 0 || r.stdout != "" || r.stderr != "acme/api has no config vars; set one with: ssh upscale@host config set acme/api KEY=VALUE\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := run(w.env, w.member, "", "config", "list", "acme/api", "--format", "json"); r.stdout != "{}\n" {
		t.Errorf("json: %q", r.stdout)
	}
}
