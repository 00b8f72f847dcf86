package e2e

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// What one tenant's push or build may take is bounded (docs/security.md,
// "Builds and pushes"): a build step allocating 1 GiB, a push over the
// size limit and a build leaving 300,000 files are each refused with one
// line, nothing changes for the app, and the server keeps answering.
func TestBuildAndPushLimitsRegression(t *testing.T) {
	d := newDeployWorld(t, "--max-push-size", "1M")
	const app, old = "acme/web", "old body\n"
	good := "runtime: python\n"
	dir := rig.Repo(t, helloApp(t, "old body", good))
	d.mustPush(t, dir, app)

	// refused commits files on top of the branch, pushes, and checks the
	// push is refused with want while the app stays as it was.
	refused := func(t *testing.T, files map[string]string, want ...string) string {
		t.Helper()
		before := d.snapshot(t, app, old)
		releases := statuses(d.releases(t, app))
		gitOut(t, dir, "reset", "-q", "--hard", before.branch)
		defer gitOut(t, dir, "reset", "-q", "--hard", before.branch)
		rig.Commit(t, dir, "over a limit: "+t.Name(), files)
		errs, code := d.push(dir, app)
		t.Logf("push output:\n%s", errs)
		if code == 0 {
			t.Fatalf("push accepted; want it refused:\n%s", errs)
		}
		mustHave(t, errs, want...)
		d.unchanged(t, app, before)
		// The server answers commands as before.
		if out := d.ssh(t, "app", "list"); !strings.Contains(out, "web") {
			t.Errorf("app list after the refused push:\n%s", out)
		}
		if got := statuses(d.releases(t, app)); !strings.HasSuffix(got, releases) {
			t.Errorf("releases %q, want %q as before (a failed one at most in front)", got, releases)
		}
		return errs
	}

	t.Run("build step allocating 1 GiB", func(t *testing.T) {
		files := helloApp(t, "new body", good+"memory: 128M\nbuild:\n  - python3 -c 'b = b\"x\" * (1 << 30); print(\"allocated\")'\n")
		errs := refused(t, files,
			"remote: error: build failed: a build step ran out of memory (limit 128M); raise memory in app.yaml",
			"remote: error: push rejected; "+app+" is unchanged")
		if strings.Contains(errs, "remote:        allocated") {
			t.Errorf("the step got 1 GiB under a 128M limit:\n%s", errs)
		}
		if rels := d.releases(t, app); rels[0].Status != "failed" || !strings.Contains(rels[0].Failure, "ran out of memory") {
			t.Errorf("newest release %+v, want failed for lack of memory", rels[0])
		}
	})

	t.Run("push over the size limit", func(t *testing.T) {
		noise := make([]byte, 3<<20)
		rand.Read(noise)
		files := helloApp(t, "new body", good)
		files["noise.bin"] = string(noise)
		releases := statuses(d.releases(t, app))
		errs := refused(t, files, "error: push refused: it is over this server's limit of 1M per push; "+app+" is unchanged")
		// Refused before any hook: no build, no release.
		if got := statuses(d.releases(t, app)); got != releases || strings.Contains(errs, "-----> Building") {
			t.Errorf("releases %q, want %q as before; output:\n%s", got, releases, errs)
		}
	})

	t.Run("build leaving 300,000 files", func(t *testing.T) {
		files := helloApp(t, "new body", good+"build:\n  - mkdir many && cd many && seq 300000 | xargs touch\n")
		refused(t, files,
			"remote: error: build failed: the build left more than 200000 files and directories in /app, the limit; remove what the app does not need to run",
			"remote: error: push rejected; "+app+" is unchanged")
	})

	// Under the limits the same app deploys.
	rig.Commit(t, dir, "within the limits", helloApp(t, "new body", good+"memory: 128M\nbuild:\n  - mkdir some && cd some && seq 1000 | xargs touch\n"))
	d.mustPush(t, dir, app)
	d.mustServe(t, app, "new body\n")
}

// An agent killed in the middle of a build: the push fails saying so, the
// agent that comes back removes the build container and the build's files,
// the release shows as failed, the old one keeps serving, and the next
// push deploys.
func TestBuildInterruptedByAgentRestartRegression(t *testing.T) {
	const app = "acme/web"
	d, dir, before, done := slowBuild(t, app)
	pid := agentPID(t, d.srv.Agent)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	var r pushResult
	select {
	case r = <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("the push did not end within 90 s of the agent's death")
	}
	t.Logf("push output:\n%s", r.errs)
	if r.code == 0 {
		t.Fatalf("push accepted:\n%s", r.errs)
	}
	mustHave(t, r.errs, "stopped answering during the build (its agent restarted or the host is down)",
		"remote: error: push rejected; "+app+" is unchanged")
	// The new agent swept the container and the files.
	deadline := time.Now().Add(40 * time.Second)
	for {
		if pids := agentPIDs(d.srv.Agent); len(pids) == 1 && pids[0] != pid && slices.Equal(d.containers(t), before.containers) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("40 s after the agent was killed: containers %v, want %v", d.containers(t), before.containers)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := buildFiles(t, d.srv.Agent.State); len(got) != 0 {
		t.Errorf("build files left in the agent's state: %v", got)
	}
	d.unchanged(t, app, before)
	if rels := d.releases(t, app); rels[0].Version != 2 || rels[0].Status != "failed" || !strings.Contains(rels[0].Failure, "stopped answering") {
		t.Errorf("newest release %+v, want v2 failed", rels[0])
	}
	rig.Commit(t, dir, "after the restart", helloApp(t, "new body", "runtime: python\n"))
	d.mustPush(t, dir, app)
	d.mustServe(t, app, "new body\n")
}

// The server killed in the middle of a build: the push fails; the server
// that starts next marks the release failed, no build container or file is
// left (the agent cut off from the bus gives the build up, or, when it died
// with the server as under systemd, the next one sweeps it), and the old
// release serves on.
func TestBuildInterruptedByServerCrashRegression(t *testing.T) {
	const app = "acme/web"
	d, _, before, done := slowBuild(t, app)
	d.srv.Kill()
	if r := <-done; r.code == 0 {
		t.Fatalf("the push succeeded although its server was killed:\n%s", r.errs)
	}
	d.srv.Run()
	d.srv.WaitHostUp()
	// The instance may have been replaced while no agent answered (the
	// host was down for the server); builds must be gone.
	isBuild := func(n string) bool { return strings.HasPrefix(n, "build-") }
	deadline := time.Now().Add(60 * time.Second)
	for slices.ContainsFunc(d.containers(t), isBuild) || len(buildFiles(t, d.srv.Agent.State)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("60 s after the server was killed: containers %v, build files %v", d.containers(t), buildFiles(t, d.srv.Agent.State))
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.mustServe(t, app, before.body)
	if rels := d.releases(t, app); rels[0].Version != 2 || rels[0].Status != "failed" || !strings.Contains(rels[0].Failure, "the server stopped while it ran") {
		t.Errorf("newest release %+v, want v2 failed as interrupted", rels[0])
	}
	if got := d.branch(t, app); got != before.branch {
		t.Errorf("master moved from %s to %s", before.branch, got)
	}
	if got := d.info(t, app); got != before.info {
		t.Errorf("app info says %+v, want %+v as before", got, before.info)
	}
}

// pushResult is what a push printed and its exit status.
type pushResult struct {
	errs string
	code int
}

// slowBuild deploys app, then pushes a commit whose build step sleeps for
// 10 minutes, and returns once its build container and work files exist,
// with the app's repository, its state before and the push's result to
// come.
func slowBuild(t *testing.T, app string) (*deployWorld, string, snapshot, <-chan pushResult) {
	t.Helper()
	d := newDeployWorld(t)
	good := "runtime: python\n"
	dir := rig.Repo(t, helloApp(t, "old body", good))
	d.mustPush(t, dir, app)
	before := d.snapshot(t, app, "old body\n")
	rig.Commit(t, dir, "slow build", helloApp(t, "new body", good+"build:\n  - echo sleeping; sleep 600\n"))
	done := make(chan pushResult, 1)
	go func() {
		errs, code := d.push(dir, app)
		done <- pushResult{errs, code}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !slices.ContainsFunc(d.containers(t), func(n string) bool { return strings.HasPrefix(n, "build-") }) {
		if time.Now().After(deadline) {
			t.Fatalf("no build container within 60 s: %v", d.containers(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := buildFiles(t, d.srv.Agent.State); len(got) == 0 {
		t.Fatalf("no build work dir in %s while the build runs: the checks after could not fail", d.srv.Agent.State)
	}
	return d, dir, before, done
}

// buildFiles are the agent's build work dirs, fetched artifacts and packed
// results under its state dir.
func buildFiles(t *testing.T, state string) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{"build-*", "artifact-*", "outbox/build-*", "releases/*.tmp"} {
		m, err := filepath.Glob(filepath.Join(state, pattern))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("agent state: %v", err)
	}
	return out
}
