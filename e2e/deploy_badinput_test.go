package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// Each bad push is rejected with its reason, and the app it was aimed at
// stays exactly as it was: branch, body, release, instances, and no
// container left behind on the host. The app has two instances, so that a
// half-done start would show.
func TestDeployBadInput(t *testing.T) {
	d := newDeployWorld(t, "--build-timeout", "5s", "--health-timeout", "5s")
	const app, old = "acme/web", "old body\n"
	// Another app on the same host, which must not notice anything.
	apiDir := rig.Repo(t, helloApp(t, "other app", "runtime: python\n"))
	d.mustPush(t, apiDir, "acme/api")
	good := "runtime: python\ninstances: 2\n"
	dir := rig.Repo(t, helloApp(t, "old body", good))
	d.mustPush(t, dir, app)

	// bad commits app.yaml (with MESSAGE "new body") on top of the branch,
	// pushes it, and checks the push is refused with want and nothing
	// moved.
	bad := func(t *testing.T, appYAML string, want ...string) string {
		t.Helper()
		before := d.snapshot(t, app, old)
		gitOut(t, dir, "reset", "-q", "--hard", before.branch)
		defer gitOut(t, dir, "reset", "-q", "--hard", before.branch)
		rig.Commit(t, dir, "bad: "+t.Name(), helloApp(t, "new body", appYAML))
		errs, code := d.push(dir, app)
		t.Logf("push output:\n%s", errs)
		rejected(t, app, errs, code)
		mustHave(t, errs, append(want, "and its previous release keeps serving")...)
		d.unchanged(t, app, before)
		d.mustServe(t, "acme/api", "other app\n")
		return errs
	}

	t.Run("start exits at once", func(t *testing.T) {
		errs := bad(t, good+"start: echo giving up now; exit 3\n",
			"remote: error: starting v", "the app exited (status 3) before it answered on port 8080")
		// The crash shows the app's last lines.
		mustHave(t, errs, "its last output:", "remote: giving up now")
	})

	t.Run("never listens", func(t *testing.T) {
		bad(t, good+"start: sleep 600\n", "the app was not healthy within 5s: nothing listens on port 8080")
	})

	// These fail as soon as it is clear that waiting cannot help, not at
	// the health timeout: the message says what is wrong.
	t.Run("health check answers an error", func(t *testing.T) {
		bad(t, good+"health: /nothing-here\nstart: exec python3 -m http.server $PORT\n",
			"health check /nothing-here answered 404 File not found for 3s; it must answer with a status below 400")
	})

	t.Run("listens on loopback only", func(t *testing.T) {
		bad(t, good+"start: exec python3 -m http.server --bind 127.0.0.1 $PORT\n",
			"the app listens on port 8080 on 127.0.0.1 (loopback) only, where the router cannot reach it: make it listen on 0.0.0.0")
	})

	t.Run("build step fails", func(t *testing.T) {
		errs := bad(t, good+"build:\n  - echo compiling; exit 7\n", "remote: error: build failed: a build step failed (exit status 7)")
		mustHave(t, errs, "step 2: echo compiling; exit 7", "remote:        compiling")
	})

	t.Run("build runs forever", func(t *testing.T) {
		bad(t, good+"build:\n  - sleep 600\n", "remote: error: build failed: the build ran longer than its time limit of 5s and was stopped")
	})

	t.Run("over its memory limit", func(t *testing.T) {
		// 200 MB before it listens, in a container limited to 64 MiB: the
		// kernel kills it (SIGKILL, status 137).
		errs := bad(t, good+"memory: 64M\nstart: |\n  echo allocating 200 MB\n  exec python3 -c 'b = b\"x\" * (200 << 20); print(\"allocated\"); exec(open(\"app.py\").read())'\n",
			"the app exited (status 137: killed, most likely for using more than its memory limit of 64 MiB) before it answered on port 8080")
		if strings.Contains(errs, "remote: allocated") {
			t.Errorf("the app got its 200 MB under a 64 MiB limit:\n%s", errs)
		}
		// The host is fine: it still deploys, and the same app under a
		// limit it fits in (256M) runs: the limit was what killed it.
		rig.Commit(t, apiDir, "200 MB", helloApp(t, "other app, 200 MB", "runtime: python\nmemory: 256M\nstart: |\n"+
			"  exec python3 -c 'b = b\"x\" * (200 << 20); print(\"allocated\"); exec(open(\"app.py\").read())'\n"))
		d.mustPush(t, apiDir, "acme/api")
		d.mustServe(t, "acme/api", "other app, 200 MB\n")
		if out := d.ssh(t, "app", "logs", "acme/api"); !strings.Contains(out, "| allocated") {
			t.Errorf("acme/api with memory: 256M did not allocate its 200 MB:\n%s", out)
		}
		rig.Commit(t, apiDir, "back", helloApp(t, "other app", "runtime: python\n"))
		d.mustPush(t, apiDir, "acme/api")
	})

	t.Run("10 MB of logs", func(t *testing.T) {
		// Not bad at all: the app floods its output, then serves; it deploys,
		// and its log stays capped on the host.
		rig.Commit(t, dir, "chatty", helloApp(t, "old body", good+"start: |\n"+
			"  python3 -c 'import sys; sys.stdout.write((\"x\" * 99 + \"\\n\") * 104858)'\n"+
			"  echo printed 10 MB\n  exec python3 app.py\n"))
		d.mustPush(t, dir, app)
		d.mustServe(t, app, old)
		ps := d.ps(t, app)
		if len(ps) != 2 {
			t.Fatalf("app ps: %+v", ps)
		}
		// -n is the app's newest lines: enough of them for each instance's
		// last 5.
		out := d.ssh(t, "app", "logs", app, "-n", "10000")
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		for _, p := range ps {
			// Lines read "TIME PROCESS CONTAINER| text", merged over
			// containers in time order: this container's, in its order.
			var mine []string
			for _, l := range lines {
				if _, text, ok := strings.Cut(l, " "+p.Name+"| "); ok {
					mine = append(mine, text)
				}
			}
			mine = mine[max(len(mine)-5, 0):]
			// Capping a log while the app floods it may drop a few bytes
			// (hostagent/lxc/logs.go says so), which can splice the line
			// before "printed 10 MB" into it: only its end is certain.
			// mustServe's requests may follow, as access lines.
			at := slices.Index(mine, "listening on port 8080")
			for _, l := range mine[max(at+1, 0):] {
				if !strings.Contains(l, `"GET / HTTP/1.1" 200`) {
					at = -1
				}
			}
			if len(mine) != 5 || at < 1 || !strings.HasSuffix(mine[at-1], "printed 10 MB") {
				t.Errorf("app logs: want the 5 recent lines of %s to be its flood, then printed 10 MB, listening and access lines: %q", p.Name, mine)
			}
			// The log on the host is capped at 1 MiB (it drops the oldest
			// half when over).
			log := filepath.Join(d.lxcpath(), p.Name, "upper", ".upscale", "app.log")
			var size int64 = -1
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if st, err := os.Stat(log); err == nil {
					if size = st.Size(); size <= 1<<20 {
						break
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
			if size < 0 || size > 1<<20 {
				t.Errorf("%s: %d bytes, want at most 1 MiB", log, size)
			}
		}
		t.Run("app logs -n 10000", func(t *testing.T) {
			// The most lines -n allows: the capped logs hold more (about
			// 512 KiB to 1 MiB, 5000 lines or more, per instance here), so
			// all 10000 come back, nearly all of them the flood.
			out, errs, code := d.srv.SSH(d.key, "", "app", "logs", app, "-n", "10000")
			if code != 0 {
				t.Fatalf("app logs -n 10000: exit %d: %s", code, errs)
			}
			if lines, n := strings.Count(out, "\n"), strings.Count(out, "| xxxxxxxxxx"); lines != 10000 || n < 9900 {
				t.Errorf("app logs -n 10000: %d lines, %d of the flood; want 10000, nearly all the flood", lines, n)
			}
		})
	})

	t.Run("two pushes at once", func(t *testing.T) {
		before := d.snapshot(t, app, old)
		clone := filepath.Join(t.TempDir(), "clone")
		if _, errs, code := d.srv.Git(d.key, t.TempDir(), "clone", "-q", d.srv.Remote(app), clone); code != 0 {
			t.Fatalf("clone: %s", errs)
		}
		gitOut(t, dir, "reset", "-q", "--hard", before.branch)
		heads := map[string]string{
			dir:   rig.Commit(t, dir, "body A", helloApp(t, "body A", good)),
			clone: rig.Commit(t, clone, "body B", helloApp(t, "body B", good)),
		}
		bodies := map[string]string{dir: "body A\n", clone: "body B\n"}
		type result struct {
			errs string
			code int
		}
		results := map[string]result{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, repo := range []string{dir, clone} {
			wg.Go(func() {
				errs, code := d.push(repo, app)
				mu.Lock()
				results[repo] = result{errs, code}
				mu.Unlock()
			})
		}
		wg.Wait()
		var winner string
		for repo, r := range results {
			if r.code == 0 {
				if winner != "" {
					t.Fatalf("both pushes were accepted:\n%s\n---\n%s", results[dir].errs, results[clone].errs)
				}
				winner = repo
				mustHave(t, r.errs, "=====> Application deployed")
			}
		}
		if winner == "" {
			t.Fatalf("neither push was accepted:\n%s\n---\n%s", results[dir].errs, results[clone].errs)
		}
		for repo, r := range results {
			if repo == winner {
				continue
			}
			switch {
			case strings.Contains(r.errs, "remote: error: master moved while you pushed (another push landed first); fetch, then push again"):
				t.Logf("the other push waited, then was refused:\n%s", r.errs)
			case strings.Contains(r.errs, "[rejected]") && strings.Contains(r.errs, "(fetch first)"):
				t.Logf("the other push came after the first landed; git refused it:\n%s", r.errs)
			default:
				t.Errorf("the losing push has no clear reason:\n%s", r.errs)
			}
		}
		// What is served is what the branch says.
		if got := d.branch(t, app); got != heads[winner] {
			t.Errorf("master is %s, want the accepted push's %s", got, heads[winner])
		}
		d.mustServe(t, app, bodies[winner])
		if got := d.running(t, app); len(got) != 2 {
			t.Errorf("app ps: %v, want 2 running instances", got)
		}
		if got := d.containers(t); len(got) != len(before.containers) {
			t.Errorf("containers: %v, want %d (the 2 of %s and the 1 of acme/api)", got, len(before.containers), app)
		}
		// Back to the old body for the cases after this one.
		if _, errs, code := d.srv.Git(d.key, dir, "fetch", "-q", d.srv.Remote(app), "master"); code != 0 {
			t.Fatalf("fetch: %s", errs)
		}
		gitOut(t, dir, "reset", "-q", "--hard", heads[winner])
		rig.Commit(t, dir, "back to the old body", helloApp(t, "old body", good))
		d.mustPush(t, dir, app)
	})

	t.Run("agent down", func(t *testing.T) {
		before := d.snapshot(t, app, old)
		gitOut(t, dir, "reset", "-q", "--hard", before.branch)
		rig.Commit(t, dir, "while the agent is down", helloApp(t, "new body", good))
		// Keep the agent down while the push runs: its supervisor restarts
		// it within seconds, so kill every one that shows up.
		stop := make(chan struct{})
		var mu sync.Mutex
		var killed []int
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				for _, pid := range agentPIDs(d.srv.Agent) {
					if syscall.Kill(pid, syscall.SIGKILL) == nil {
						mu.Lock()
						killed = append(killed, pid)
						mu.Unlock()
					}
				}
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		})
		for {
			mu.Lock()
			n := len(killed)
			mu.Unlock()
			if n > 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		errs, code := d.push(dir, app)
		// The containers outlive their agent: the old body is served.
		status, body := d.get(app)
		close(stop)
		wg.Wait()
		t.Logf("killed agents %v; push output:\n%s", killed, errs)
		rejected(t, app, errs, code)
		if !strings.Contains(errs, "is upscale-agent running?") {
			t.Errorf("push output does not say the agent is down:\n%s", errs)
		}
		if status != 200 || body != old {
			t.Errorf("with the agent down, %s answers %d %q, want the old body", app, status, body)
		}
		// Once the agent is back, nothing was half-deployed.
		agentPID(t, d.srv.Agent)
		deadline := time.Now().Add(40 * time.Second)
		for time.Now().Before(deadline) {
			if ps := d.ps(t, app); len(ps) == 2 && ps[0].State == "running" && ps[1].State == "running" {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		d.unchanged(t, app, before)
		// And the next push deploys.
		rig.Commit(t, dir, "agent is back", helloApp(t, "new body", good))
		d.mustPush(t, dir, app)
		d.mustServe(t, app, "new body\n")
	})
}

// A server with no agent at all refuses a push with a clear reason and
// records nothing as live.
func TestDeployWithNoHost(t *testing.T) {
	srv := rig.Start(t, bin)
	key := rig.NewKey(t, "admin")
	mustLocal(t, srv, "keys", "add", "--admin", "--name", "admin", "--public", key.Public)
	mustSSH(t, srv, key, "", "namespace", "create", "acme")
	mustSSH(t, srv, key, "", "app", "create", "acme/web")
	d := &deployWorld{srv: srv, key: key}
	errs, code := d.push(rig.Repo(t, helloApp(t, "hi", "runtime: python\n")), "acme/web")
	rejected(t, "acme/web", errs, code)
	mustHave(t, errs, "remote: error: no host is up to run containers: is upscale-agent running?")
	if got := d.branch(t, "acme/web"); got != "" {
		t.Errorf("master exists (%s) after a rejected first push", got)
	}
	if info := d.info(t, "acme/web"); info.Release != "" || info.Instances != 0 {
		t.Errorf("app info: %+v, want no release and no instance", info)
	}
	if ps := d.ps(t, "acme/web"); len(ps) != 0 {
		t.Errorf("app ps: %+v", ps)
	}
}
