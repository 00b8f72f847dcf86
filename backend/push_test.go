package backend

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/upscalehq/upscale/backend/backendtest"
	"github.com/upscalehq/upscale/hooks"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// commit writes a commit holding app.yaml (and nothing else) into app's
// repository without moving any ref, as git has a pushed commit's objects
// when pre-receive runs (here outside the quarantine, which only changes
// where they are), and returns its id.
func commit(t *testing.T, w *world, app names.App, appYAML string) string {
	t.Helper()
	repo, err := w.repos.Path(app)
	if err != nil {
		t.Fatal(err)
	}
	git := func(stdin string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Env = []string{"GIT_DIR=" + repo, "GIT_AUTHOR_NAME=Alice", "GIT_AUTHOR_EMAIL=a@example.test",
			"GIT_COMMITTER_NAME=Alice", "GIT_COMMITTER_EMAIL=a@example.test"}
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	blob := git(appYAML, "hash-object", "-w", "--stdin")
	tree := git("100644 blob "+blob+"\tapp.yaml\n", "mktree")
	return git("Add app.yaml\n", "commit-tree", tree)
}

// setBranch moves app's branch to id, as an accepted push leaves it.
func setBranch(t *testing.T, w *world, app names.App, branch, id string) {
	t.Helper()
	repo, _ := w.repos.Path(app)
	if out, err := exec.Command("git", "--git-dir", repo, "update-ref", "refs/heads/"+branch, id).CombinedOutput(); err != nil {
		t.Fatalf("update-ref: %v: %s", err, out)
	}
}

// said collects what a use case tells the pusher.
type said struct {
	mu    sync.Mutex
	lines []string
}

func (s *said) out(l string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, l)
}

func (s *said) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func deployPush(old, new string) hooks.Request {
	return hooks.Request{Updates: []hooks.Update{{Old: old, New: new, Ref: "refs/heads/master"}}}
}

// A push to the deploy branch is checked, built and rolled out inside
// pre-receive, with the app's lock handed to the transport; every refusal
// names what is wrong and ends with the line git's client shows last.
func TestPreReceive(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	good := commit(t, w, acmeWeb, "runtime: python\n")
	bad := commit(t, w, acmeWeb, "runtime: cobol\n")
	ci := w.who["deploy"] // a deploy key may push its app

	var held []func()
	hold := func(unlock func()) { held = append(held, unlock) }
	var s said
	if err := w.b.PreReceive(ctx, ci, acmeWeb, deployPush(hooks.ZeroID, good), hold, s.out); err != nil {
		t.Fatalf("a good push: %v\n%s", err, &s)
	}
	short := good[:7]
	want := []string{
		"-----> Checking app.yaml at " + short,
		"       runtime python, 1 instance(s): ok",
		"-----> Building " + short,
	}
	got := strings.Split(s.String(), "\n")
	if len(got) != 5 || strings.Join(got[:3], "\n") != strings.Join(want, "\n") ||
		!strings.HasPrefix(got[3], "       checks ") || got[4] != "=====> Application deployed: http://web.acme.upscale.localhost (v1)" {
		t.Fatalf("a good push said:\n%s", &s)
	}
	if d := w.deploys.Done(); len(d) != 1 || d[0] != "push acme/web "+short+" by ci" {
		t.Fatalf("the engine was asked %q", d)
	}
	// The lock stays taken until the transport lets it go.
	if len(held) != 1 {
		t.Fatalf("%d locks handed over", len(held))
	}
	if _, ok := w.deploys.TryLock(acmeWeb); ok {
		t.Fatal("the app's deploy lock is free before git is done")
	}
	held[0]()
	setBranch(t, w, acmeWeb, "master", good)

	for _, tc := range []struct {
		name string
		req  hooks.Request
		want string // what the pusher reads, the error's line last
	}{
		{"bad app.yaml", deployPush(good, bad), "-----> Checking app.yaml at " + bad[:7] + "\n" +
			`app.yaml:1: unknown runtime "cobol"; known: go, node, php, python, ruby, static` + "\n" +
			"push rejected; acme/web is unchanged"},
		{"branch moved", deployPush(hooks.ZeroID, good), "-----> Checking app.yaml at " + short + "\n" +
			"       runtime python, 1 instance(s): ok\n" +
			"master moved while you pushed (another push landed first); fetch, then push again"},
		{"deploy branch deleted", deployPush(good, hooks.ZeroID),
			"error: deleting the deploy branch master is refused (choose another first: app set NS/APP deploy-branch BRANCH)\n" +
				"push rejected; acme/web is unchanged"},
		{"quarantine outside", hooks.Request{Updates: deployPush(good, good).Updates, ObjectDir: "/etc"},
			"push rejected: GIT_OBJECT_DIRECTORY is outside the repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s said
			held = nil
			err := w.b.PreReceive(ctx, ci, acmeWeb, tc.req, hold, s.out)
			for _, unlock := range held {
				unlock()
			}
			if err == nil {
				t.Fatalf("accepted; said:\n%s", &s)
			}
			s.out(err.Error())
			if s.String() != tc.want {
				t.Errorf("said:\n%s\nwant:\n%s", &s, tc.want)
			}
			if d := w.deploys.Done(); len(d) != 1 {
				t.Errorf("a refused push reached the engine: %q", d)
			}
		})
	}

	t.Run("build fails", func(t *testing.T) {
		w.deploys.Fail = errors.New("step 1 exited 2")
		defer func() { w.deploys.Fail = nil }()
		var s said
		err := w.b.PreReceive(ctx, ci, acmeWeb, deployPush(good, good), func(unlock func()) { unlock() }, s.out)
		lines := strings.Split(s.String(), "\n")
		if err == nil || err.Error() != "push rejected; acme/web is unchanged and its previous release keeps serving" ||
			lines[len(lines)-1] != "error: build failed: step 1 exited 2" {
			t.Fatalf("got %v after:\n%s", err, &s)
		}
	})

	t.Run("another deploy first", func(t *testing.T) {
		unlock := w.deploys.Lock(acmeWeb)
		waiting := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			var once sync.Once
			done <- w.b.PreReceive(ctx, ci, acmeWeb, deployPush(good, good), func(unlock func()) { unlock() }, func(l string) {
				if strings.HasPrefix(l, "-----> Waiting for another deploy of acme/web to finish") {
					once.Do(func() { close(waiting) })
				}
			})
		}()
		<-waiting
		unlock()
		if err := <-done; err != nil {
			t.Fatalf("once the other deploy ended: %v", err)
		}
	})

	t.Run("other refs", func(t *testing.T) {
		var s said
		req := hooks.Request{Updates: []hooks.Update{
			{Old: hooks.ZeroID, New: good, Ref: "refs/heads/feature"},
			{Old: hooks.ZeroID, New: good, Ref: "refs/tags/v1"},
		}}
		before := len(w.deploys.Done())
		if err := w.b.PreReceive(ctx, ci, acmeWeb, req, func(func()) { t.Error("a lock taken for no deploy") }, s.out); err != nil {
			t.Fatal(err)
		}
		if s.String() != "-----> branch feature kept, not deployed (the deploy branch is master)\n-----> tag v1 kept" ||
			len(w.deploys.Done()) != before {
			t.Errorf("said:\n%s", &s)
		}
	})

	t.Run("no server", func(t *testing.T) {
		var s said
		if err := w.local().PreReceive(ctx, ci, acmeWeb, deployPush(good, good), func(func()) { t.Error("a lock taken with no engine") }, s.out); err != nil {
			t.Fatal(err)
		}
		if s.String() != "-----> Checking app.yaml at "+short+"\n       runtime python, 1 instance(s): ok" {
			t.Errorf("said:\n%s", &s)
		}
	})
}

// Post-receive records each ref that moved with who pushed it; where no
// server deploys, it says where the deploy branch now is.
func TestPostReceive(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	id := commit(t, w, acmeWeb, "runtime: python\n")
	setBranch(t, w, acmeWeb, "master", id)
	ci := w.who["deploy"]
	req := hooks.Request{Updates: []hooks.Update{
		{Old: hooks.ZeroID, New: id, Ref: "refs/heads/master"},
		{Old: id, New: hooks.ZeroID, Ref: "refs/heads/gone"},
	}}
	var s said
	if err := w.b.PostReceive(ctx, ci, acmeWeb, req, s.out); err != nil || s.String() != "" {
		t.Fatalf("%v, said %q", err, &s)
	}
	pushes, err := w.st.ListPushes(ctx, "acme", "web", 0)
	if err != nil || len(pushes) != 1 {
		t.Fatalf("pushes %+v, %v", pushes, err)
	}
	if p := pushes[0]; p.NewCommit != id || p.Subject != "Add app.yaml" || p.KeyName != "ci" || p.KeyFP != ci.Fingerprint {
		t.Errorf("recorded %+v", p)
	}
	if err := w.local().PostReceive(ctx, ci, acmeWeb, req, s.out); err != nil {
		t.Fatal(err)
	}
	if want := `=====> master is now at ` + id[:7] + ` "Add app.yaml", pushed by ci (push 2; this server does not deploy)`; s.String() != want {
		t.Errorf("said %q, want %q", &s, want)
	}
}

// app run starts a stopped app's live release again, or builds the deploy
// branch's head through the push's pipeline.
func TestRun(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	alice := w.who["member"]

	var lines []string
	if err := w.b.Run(ctx, alice, acmeAPI, func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatal(err)
	}
	if d := w.deploys.Done(); len(d) != 1 || d[0] != "resume acme/api by alice" {
		t.Fatalf("a stopped app: the engine was asked %q", d)
	}
	// Like every deploy, it ends with a closing line.
	if len(lines) == 0 || !regexp.MustCompile(`^=====> Application running again: http://api\.acme\.upscale\.localhost\S* \(v\d+\)$`).MatchString(lines[len(lines)-1]) {
		t.Fatalf("app run of a stopped app said %q; want a closing =====> line", lines)
	}

	err := w.b.Run(ctx, alice, acmeWeb, func(string) {})
	if err == nil || err.Error() != "nothing to run: no commit on master yet; push first" {
		t.Fatalf("no commit: %v", err)
	}
	setBranch(t, w, acmeWeb, "master", commit(t, w, acmeWeb, "runtime: cobol\n"))
	err = w.b.Run(ctx, alice, acmeWeb, func(string) {})
	if err == nil || err.Error() != `app.yaml:1: unknown runtime "cobol"; known: go, node, php, python, ruby, static` {
		t.Fatalf("bad app.yaml: %v", err)
	}
	if len(w.deploys.Done()) != 1 {
		t.Fatalf("a bad app.yaml reached the engine: %q", w.deploys.Done())
	}

	id := commit(t, w, acmeWeb, "runtime: python\n")
	setBranch(t, w, acmeWeb, "master", id)
	if err := w.st.SetStopped(ctx, "acme", "web", true); err != nil {
		t.Fatal(err)
	}
	var s said
	if err := w.b.Run(ctx, alice, acmeWeb, s.out); err != nil {
		t.Fatal(err)
	}
	// Stopped but never live: built, and running again.
	d := w.deploys.Done()
	if len(d) != 3 || d[1] != "event acme/web run by alice: build of master at "+id[:7] || d[2] != "push acme/web "+id[:7]+" by alice" {
		t.Fatalf("the engine was asked %q", d)
	}
	if s.String() != "-----> Building "+id[:7]+"\n=====> Application deployed: http://web.acme.upscale.localhost (v1)" {
		t.Errorf("said:\n%s", &s)
	}
	if a, _ := w.st.GetApp(ctx, "acme", "web"); a.Stopped {
		t.Error("still stopped after app run")
	}

	if err := w.local().Run(ctx, alice, acmeWeb, func(string) {}); !errors.Is(err, ErrNeedsServer) {
		t.Errorf("with no server: %v", err)
	}
	if err := w.b.Run(ctx, keys.Local, names.App{Namespace: "acme", Name: "nope"}, func(string) {}); err == nil || err.Error() != "app acme/nope not found" {
		t.Errorf("a missing app: %v", err)
	}
}

func TestQuarantineEnvStaysInRepo(t *testing.T) {
	repo := "/data/repos/acme/web.git"
	ok := hooks.Request{
		ObjectDir:      repo + "/objects/tmp_objdir-incoming-x",
		AltObjectDirs:  repo + "/objects",
		QuarantinePath: repo + "/objects/tmp_objdir-incoming-x",
	}
	env, err := quarantineEnv(repo, ok)
	if err != nil || len(env) != 3 {
		t.Fatalf("env %q, %v", env, err)
	}
	for _, bad := range []hooks.Request{
		{ObjectDir: "/data/repos/globex/web.git/objects"},
		{AltObjectDirs: repo + "/objects:/etc"},
		{QuarantinePath: repo + "/../../globex/web.git/objects"},
		{ObjectDir: "../../globex/web.git/objects"},
	} {
		if _, err := quarantineEnv(repo, bad); err == nil {
			t.Errorf("quarantineEnv accepted %+v", bad)
		}
	}
}

var _ Deploys = (*backendtest.Deploys)(nil)

// A push to an app that does not exist creates it when the pusher may
// create apps in its namespace (Dokku does); anyone else reads "not
// found", and an app quota still holds.
func TestPushTargetCreatesAMissingApp(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	fresh := names.App{Namespace: "acme", Name: "fresh"}
	a, created, err := w.b.PushTarget(ctx, w.who["member"], fresh)
	if err != nil || !created || a.URL != "http://fresh.acme.upscale.localhost" {
		t.Fatalf("first push: %+v created=%v err=%v; want it created", a, created, err)
	}
	if _, err := w.st.GetApp(ctx, "acme", "fresh"); err != nil {
		t.Fatalf("no app row: %v", err)
	}
	if p, _ := w.repos.Path(fresh); !isDir(p) {
		t.Fatalf("no repository at %s", p)
	}
	if _, created, err := w.b.PushTarget(ctx, w.who["member"], fresh); err != nil || created {
		t.Fatalf("second push: created=%v err=%v; want the app as it is", created, err)
	}
	if _, created, err := w.b.PushTarget(ctx, w.who["deploy"], acmeWeb); err != nil || created {
		t.Fatalf("deploy key to its app: created=%v err=%v", created, err)
	}
	for _, tc := range []struct {
		who  string
		app  names.App
		want string
	}{
		{"deploy", names.App{Namespace: "acme", Name: "other"}, "app acme/other not found"},
		{"member", names.App{Namespace: "globex", Name: "other"}, "app globex/other not found"},
		{"admin", names.App{Namespace: "nope", Name: "web"}, "namespace nope not found"},
	} {
		if _, _, err := w.b.PushTarget(ctx, w.who[tc.who], tc.app); err == nil || err.Error() != tc.want {
			t.Errorf("%s pushing to %s: %v, want %q", tc.who, tc.app, err, tc.want)
		}
	}
	three := 3
	if _, _, err := w.b.SetQuota(ctx, keys.Local, "acme", store.QuotaChange{Apps: &three}); err != nil {
		t.Fatal(err)
	}
	var q *QuotaError
	if _, _, err := w.b.PushTarget(ctx, w.who["member"], names.App{Namespace: "acme", Name: "more"}); !errors.As(err, &q) {
		t.Fatalf("over the apps quota: %v, want a QuotaError", err)
	}
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
