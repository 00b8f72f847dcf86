package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

func lsRemote(t *testing.T, w *world, app, ref string) string {
	t.Helper()
	out, errs, code := w.srv.Git(w.member.key, t.TempDir(), "ls-remote", w.srv.Remote(app), ref)
	if code != 0 {
		t.Fatalf("ls-remote: %s", errs)
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func TestPushAndCloneRoundTrip(t *testing.T) {
	w := newWorld(t)
	dir := rig.Repo(t, helloApp(t, "v1", "runtime: python\ninstances: 2\n"))
	first := gitOut(t, dir, "rev-parse", "HEAD")
	_, errs, code := w.srv.Git(w.member.key, dir, "push", w.srv.Remote("acme/web"), "master")
	if code != 0 {
		t.Fatalf("push: %s", errs)
	}
	for _, want := range []string{
		"remote: -----> Checking app.yaml at " + first[:7],
		"remote:        runtime python, 2 instance(s): ok",
		"remote: -----> Building " + first[:7] + " (v1)",
		"remote: -----> Starting 2 instance(s) of v1",
		"remote: =====> Application deployed: http://web.acme.upscale.localhost:",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("push output lacks %q:\n%s", want, errs)
		}
	}
	if got := lsRemote(t, w, "acme/web", "refs/heads/master"); got != first {
		t.Fatalf("master is %s, want %s", got, first)
	}
	// The push is recorded: commit, pusher, subject.
	var info struct {
		LastPush struct{ Commit, Subject, By string } `json:"last_push"`
	}
	json.Unmarshal([]byte(mustSSH(t, w.srv, w.member.key, "", "app", "info", "acme/web", "--format", "json")), &info)
	if info.LastPush.Commit != first || info.LastPush.By != "alice" || info.LastPush.Subject != "initial commit" {
		t.Fatalf("recorded push %+v", info.LastPush)
	}

	// The deploy key pushes a second commit; a clone gets it back whole.
	files := helloApp(t, "v2", "runtime: python\ninstances: 2\n")
	files["data.bin"] = strings.Repeat("\x00\x01\xff", 100000)
	second := rig.Commit(t, dir, "second", files)
	if _, errs, code := w.srv.Git(w.deploy.key, dir, "push", w.srv.Remote("acme/web"), "master"); code != 0 {
		t.Fatalf("deploy key push: %s", errs)
	}
	clone := filepath.Join(t.TempDir(), "clone")
	if _, errs, code := w.srv.Git(w.deploy.key, t.TempDir(), "clone", "--quiet", w.srv.Remote("acme/web"), clone); code != 0 {
		t.Fatalf("clone: %s", errs)
	}
	if head := gitOut(t, clone, "rev-parse", "HEAD"); head != second {
		t.Fatalf("clone HEAD %s, want %s", head, second)
	}
	if b, _ := os.ReadFile(filepath.Join(clone, "data.bin")); len(b) != 300000 {
		t.Fatalf("clone has %d bytes of data.bin", len(b))
	}
	// Protocol v2 works (git sends GIT_PROTOCOL over ssh's SetEnv).
	if _, errs, code := w.srv.Git(w.member.key, t.TempDir(), "-c", "protocol.version=2", "ls-remote", w.srv.Remote("acme/web")); code != 0 {
		t.Fatalf("protocol v2 ls-remote: %s", errs)
	}
}

func TestBrokenAppYAMLIsRejectedAndNothingMoves(t *testing.T) {
	w := newWorld(t)
	dir := rig.Repo(t, helloApp(t, "good", "runtime: python\n"))
	if _, errs, code := w.srv.Git(w.member.key, dir, "push", w.srv.Remote("acme/web"), "master"); code != 0 {
		t.Fatalf("first push: %s", errs)
	}
	good := lsRemote(t, w, "acme/web", "refs/heads/master")
	// A billion laughs: 10^9 strings if expanded, refused at a glance.
	bomb := "runtime: python\nenv:\n  L0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
	for i := 1; i < 9; i++ {
		bomb += fmt.Sprintf("  L%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 9), ", "))
	}
	bomb += "build: *l8\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"not YAML", map[string]string{"app.yaml": "runtime: python\n  bad: [\n"}, []string{"remote: app.yaml:2: not valid YAML"}},
		{"a list", map[string]string{"app.yaml": "- runtime: python\n"}, []string{`remote: app.yaml:1: expected a mapping such as "runtime: python", found a list`}},
		{"10 MB", map[string]string{"app.yaml": "runtime: python\n" + strings.Repeat("#", 10<<20)}, []string{"remote: app.yaml: 10485776 bytes is over the 64 KiB limit"}},
		{"alias bomb", map[string]string{"app.yaml": bomb}, []string{"remote: app.yaml:3: env: L0: expected a value such as a string or a number, found a list", "remote: app.yaml:11: build: step 1:"}},
		{"wrong types", map[string]string{"app.yaml": "runtime: python\ninstances: two\nmemory: [1]\nenv: x\n"}, []string{
			`remote: app.yaml:2: instances: expected a whole number from 1 to 100, found "two"`,
			"remote: app.yaml:3: memory:", "remote: app.yaml:4: env:"}},
		{"unknown runtime", map[string]string{"app.yaml": "runtime: pyhton\n"}, []string{`remote: app.yaml:1: unknown runtime "pyhton"; known: go, node, php, python, ruby, static (did you mean python?)`}},
		{"unknown field", map[string]string{"app.yaml": "runtime: python\nmemroy: 1G\n"}, []string{`remote: app.yaml:2: unknown field "memroy"`}},
		{"missing", map[string]string{"app.yaml": ""}, []string{"remote: app.yaml: missing at the root of"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "missing" {
				gitOut(t, dir, "rm", "-q", "app.yaml")
				defer rig.Commit(t, dir, "restore", map[string]string{"app.yaml": "runtime: python\n"})
				rig.Commit(t, dir, "drop app.yaml", nil)
			} else {
				rig.Commit(t, dir, tc.name, tc.files)
			}
			_, errs, code := w.srv.Git(w.member.key, dir, "push", w.srv.Remote("acme/web"), "HEAD:master")
			if code == 0 {
				t.Fatalf("push accepted:\n%s", errs)
			}
			for _, want := range append(tc.want, "remote: error: push rejected; acme/web is unchanged", "[remote rejected] HEAD -> master (pre-receive hook declined)") {
				if !strings.Contains(errs, want) {
					t.Errorf("push output lacks %q:\n%s", want, errs)
				}
			}
			if got := lsRemote(t, w, "acme/web", "refs/heads/master"); got != good {
				t.Fatalf("master moved to %s", got)
			}
			gitOut(t, dir, "reset", "-q", "--hard", good)
		})
	}
}

func TestBranchesTagsAndDeployBranch(t *testing.T) {
	w := newWorld(t)
	dir := rig.Repo(t, helloApp(t, "branches", "runtime: python\n"))
	remote := w.srv.Remote("acme/web")
	w.srv.Git(w.member.key, dir, "push", remote, "master")
	master := lsRemote(t, w, "acme/web", "refs/heads/master")

	// Another branch is kept, not deployed — even without an app.yaml.
	gitOut(t, dir, "checkout", "-q", "-b", "feature")
	gitOut(t, dir, "rm", "-q", "app.yaml")
	feature := rig.Commit(t, dir, "wip", nil)
	_, errs, code := w.srv.Git(w.member.key, dir, "push", remote, "feature")
	if code != 0 || !strings.Contains(errs, "remote: -----> branch feature kept, not deployed (the deploy branch is master)") {
		t.Fatalf("feature push: exit %d\n%s", code, errs)
	}
	if lsRemote(t, w, "acme/web", "refs/heads/feature") != feature {
		t.Fatal("feature branch not stored")
	}
	_, errs, code = w.srv.Git(w.member.key, dir, "push", remote, "master:refs/tags/v1")
	if code != 0 || !strings.Contains(errs, "tag v1 kept") {
		t.Fatalf("tag push: exit %d\n%s", code, errs)
	}

	// Deleting the deploy branch is refused; deleting another is fine.
	_, errs, code = w.srv.Git(w.member.key, dir, "push", remote, ":master")
	if code == 0 || !strings.Contains(errs, "remote: error: deleting the deploy branch master is refused") {
		t.Fatalf("deleting master: exit %d\n%s", code, errs)
	}
	if lsRemote(t, w, "acme/web", "refs/heads/master") != master {
		t.Fatal("master moved")
	}
	if _, errs, code = w.srv.Git(w.member.key, dir, "push", remote, ":feature"); code != 0 {
		t.Fatalf("deleting feature: %s", errs)
	}

	// Switch the deploy branch to main: now main is checked, master is not.
	mustSSH(t, w.srv, w.member.key, "", "app", "set", "acme/web", "deploy-branch", "main")
	_, errs, code = w.srv.Git(w.member.key, dir, "push", remote, "HEAD:main")
	if code == 0 || !strings.Contains(errs, "app.yaml: missing") {
		t.Fatalf("main without app.yaml accepted: exit %d\n%s", code, errs)
	}
	_, errs, code = w.srv.Git(w.member.key, dir, "push", remote, "HEAD:master")
	if code != 0 || !strings.Contains(errs, "branch master kept, not deployed (the deploy branch is main)") {
		t.Fatalf("master push after switch: exit %d\n%s", code, errs)
	}
	if _, errs, code = w.srv.Git(w.member.key, dir, "push", remote, master+":refs/heads/main"); code != 0 || !strings.Contains(errs, "=====> Application deployed") {
		t.Fatalf("main push: exit %d\n%s", code, errs)
	}
	// Pushes through the file system (not via ssh) are refused by the hook.
	repo := filepath.Join(w.srv.Data, "repos", "acme", "web.git")
	_, errs, code = gitLocal(dir, "push", repo, "HEAD:refs/heads/main")
	if code == 0 || !strings.Contains(errs, "runs only inside a push through the Upscale ssh service") {
		t.Fatalf("direct push: exit %d\n%s", code, errs)
	}
}
