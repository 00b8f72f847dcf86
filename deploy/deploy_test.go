package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/agentapi/agenttest"
	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/builder"
	"github.com/upscalehq/upscale/bus"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/router"
	"github.com/upscalehq/upscale/runtimes"
	"github.com/upscalehq/upscale/store"
	"github.com/upscalehq/upscale/store/sqlstore"
)

// fakeBus is the artifact store; the agents are agenttest's.
type fakeBus struct {
	mu      sync.Mutex
	objects map[string][]byte
}

func (b *fakeBus) PutArtifact(_ context.Context, name string, r io.Reader) (bus.Artifact, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return bus.Artifact{}, err
	}
	b.mu.Lock()
	b.objects[name] = data
	b.mu.Unlock()
	sum := sha256.Sum256(data)
	return bus.Artifact{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

func (b *fakeBus) DeleteArtifact(_ context.Context, name string) error {
	b.mu.Lock()
	delete(b.objects, name)
	b.mu.Unlock()
	return nil
}

type fakeRouter struct {
	applied [][]router.Backend
	err     error
}

func (r *fakeRouter) Apply(_ context.Context, bs []router.Backend) error {
	if r.err != nil {
		return r.err
	}
	r.applied = append(r.applied, bs)
	return nil
}

// servers is what the last Apply routes to app.
func (r *fakeRouter) servers(app string) []string {
	if len(r.applied) == 0 {
		return nil
	}
	var out []string
	for _, b := range r.applied[len(r.applied)-1] {
		if b.Name == app {
			for _, s := range b.Servers {
				out = append(out, s.Addr)
			}
		}
	}
	return out
}

type oneHost struct{}

func (h oneHost) Hosts() []fleet.Host { return h.Up() }

func (oneHost) Up() []fleet.Host {
	return []fleet.Host{{Up: true, Beat: agentapi.Beat{Info: agentapi.Info{Name: "h1", MemFree: 8 << 30}}}}
}

type rig struct {
	d      *Deployer
	bus    *fakeBus
	agents *agenttest.Agents
	router *fakeRouter
	app    names.App
	src    repos.Source
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlstore.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	st.CreateNamespace(ctx, "acme")
	st.CreateApp(ctx, "acme", "web")
	cat, _ := runtimes.Load("")
	r := &rig{bus: &fakeBus{objects: map[string][]byte{}}, agents: agenttest.New(), router: &fakeRouter{}, app: names.App{Namespace: "acme", Name: "web"}}
	r.d = &Deployer{Store: st, Bus: r.bus, Agents: r.agents, Router: r.router, Hosts: oneHost{}, Catalog: cat, Domain: "example.test",
		Log: slog.New(slog.DiscardHandler)}
	// A real repository with one commit, as a push would have it.
	work := filepath.Join(dir, "work")
	os.MkdirAll(work, 0o755)
	os.WriteFile(filepath.Join(work, "app.py"), []byte("print(1)\n"), 0o644)
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"-c", "user.name=Ann", "-c", "user.email=a@b", "commit", "-qm", "first version"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %s", args, out)
		}
	}
	head, _ := exec.Command("git", "-C", work, "rev-parse", "HEAD").Output()
	r.src = repos.Source{Repo: filepath.Join(work, ".git"), Commit: strings.TrimSpace(string(head))}
	return r
}

func (r *rig) push(t *testing.T, instances int) (store.Release, string, error) {
	t.Helper()
	var out bytes.Buffer
	rel, _, err := r.d.Push(context.Background(), r.app, r.src, &appspec.Spec{Runtime: "python", Instances: instances}, "alice",
		func(l string) { out.WriteString(l + "\n") })
	return rel, out.String(), err
}

func TestPushMakesReleaseLive(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, _, err := r.push(t, 1); err != nil {
		t.Fatal(err)
	}
	first, _ := r.d.Store.ListInstances(ctx, "acme", "web")
	rel, out, err := r.push(t, 2)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Version != 2 || rel.Status != store.ReleaseLive || rel.Subject != "first version" || rel.Author != "Ann" || rel.By != "alice" {
		t.Fatalf("release %+v", rel)
	}
	live, err := r.d.Store.LiveRelease(ctx, "acme", "web")
	if err != nil || live.Version != 2 || live.Artifact != builder.ArtifactName(r.app, 2) {
		t.Fatalf("live release %+v, %v", live, err)
	}
	if string(r.bus.objects[live.Artifact]) != "packed app" {
		t.Fatalf("artifact holds %q", r.bus.objects[live.Artifact])
	}
	instances, _ := r.d.Store.ListInstances(ctx, "acme", "web")
	if len(instances) != 2 || instances[0].Release != 2 {
		t.Fatalf("instances %+v", instances)
	}
	if got := r.router.servers("acme/web"); len(got) != 2 || got[0] != instances[0].Addr && got[1] != instances[0].Addr {
		t.Fatalf("router routes %v, instances %+v", got, instances)
	}
	if len(r.agents.Destroyed()) != 1 || r.agents.Destroyed()[0] != first[0].Name {
		t.Fatalf("destroyed %v, want the old instance %s", r.agents.Destroyed(), first[0].Name)
	}
	for _, want := range []string{"-----> Building", "step 1: true", "-----> Starting 2 instance(s) of v2", "v2 is live"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for name := range r.bus.objects {
		if strings.HasPrefix(name, "source/") {
			t.Fatalf("source artifact %s left behind", name)
		}
	}
}

// A release that fails to start changes nothing users see: the old
// instances stay live and routed, the new ones are removed.
func TestFailedStartChangesNothing(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, _, err := r.push(t, 1); err != nil {
		t.Fatal(err)
	}
	before, _ := r.d.Store.ListInstances(ctx, "acme", "web")
	routed := r.router.servers("acme/web")
	applies := len(r.router.applied)
	r.agents.FailStarts(errors.New("the app exited (status 3) before it answered on port 8080"))
	rel, _, err := r.push(t, 1)
	if err == nil || !strings.Contains(err.Error(), "exited (status 3)") {
		t.Fatalf("push error %v", err)
	}
	failed, _ := r.d.Store.GetRelease(ctx, "acme", "web", rel.Version)
	if failed.Status != store.ReleaseFailed || !strings.Contains(failed.Failure, "status 3") {
		t.Fatalf("failed release %+v", failed)
	}
	live, _ := r.d.Store.LiveRelease(ctx, "acme", "web")
	after, _ := r.d.Store.ListInstances(ctx, "acme", "web")
	if live.Version != 1 || len(after) != 1 || after[0] != before[0] {
		t.Fatalf("live v%d, instances %+v (were %+v)", live.Version, after, before)
	}
	if len(r.router.applied) != applies || fmt.Sprint(r.router.servers("acme/web")) != fmt.Sprint(routed) {
		t.Fatal("the router was switched for a release that never started")
	}
	newName := r.agents.Started()[len(r.agents.Started())-1]
	if r.agents.Destroyed()[len(r.agents.Destroyed())-1] != newName {
		t.Fatalf("the failed instance %s was not removed: %v", newName, r.agents.Destroyed())
	}
}

func TestFailedBuildStartsNothing(t *testing.T) {
	r := newRig(t)
	r.agents.FailBuilds(errors.New("a build step failed (exit status 7)"))
	rel, _, err := r.push(t, 1)
	if err == nil || !strings.Contains(err.Error(), "build failed: a build step failed (exit status 7)") {
		t.Fatalf("push error %v", err)
	}
	got, _ := r.d.Store.GetRelease(context.Background(), "acme", "web", rel.Version)
	if got.Status != store.ReleaseFailed || len(r.agents.Started()) != 0 || len(r.router.applied) != 0 {
		t.Fatalf("release %+v, started %v, applies %d", got, r.agents.Started(), len(r.router.applied))
	}
}

func TestRouterRefusalKeepsOldRelease(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, _, err := r.push(t, 1); err != nil {
		t.Fatal(err)
	}
	r.router.err = errors.New("haproxy is gone")
	if _, _, err := r.push(t, 1); err == nil || !strings.Contains(err.Error(), "switching the router: haproxy is gone") {
		t.Fatalf("push error %v", err)
	}
	if live, _ := r.d.Store.LiveRelease(ctx, "acme", "web"); live.Version != 1 {
		t.Fatalf("live release v%d after a refused switch", live.Version)
	}
}

func TestStopThenRun(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, _, err := r.push(t, 2); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	say := func(l string) { out.WriteString(l + "\n") }
	if err := r.d.Stop(ctx, r.app, say); err != nil {
		t.Fatal(err)
	}
	a, _ := r.d.Store.GetApp(ctx, "acme", "web")
	instances, _ := r.d.Store.ListInstances(ctx, "acme", "web")
	if !a.Stopped || len(instances) != 0 || len(r.router.servers("acme/web")) != 0 || len(r.agents.Destroyed()) != 2 {
		t.Fatalf("after stop: stopped=%v instances=%v routed=%v destroyed=%v", a.Stopped, instances, r.router.servers("acme/web"), r.agents.Destroyed())
	}
	// app run of a stopped app (backend.Run) resumes it under its lock.
	if err := r.resume(ctx, r.app, say); err != nil {
		t.Fatal(err)
	}
	a, _ = r.d.Store.GetApp(ctx, "acme", "web")
	instances, _ = r.d.Store.ListInstances(ctx, "acme", "web")
	if a.Stopped || len(instances) != 2 || instances[0].Release != 1 || len(r.router.servers("acme/web")) != 2 {
		t.Fatalf("after run: stopped=%v instances=%+v", a.Stopped, instances)
	}
	if err := r.d.Restart(ctx, r.app, say); err != nil {
		t.Fatal(err)
	}
	again, _ := r.d.Store.ListInstances(ctx, "acme", "web")
	if len(again) != 2 || again[0].Name == instances[0].Name && again[1].Name == instances[1].Name {
		t.Fatalf("restart kept the same instances: %+v", again)
	}
}

// resume is what app run does to a stopped app with a live release.
func (r *rig) resume(ctx context.Context, app names.App, out func(string)) error {
	defer r.d.Lock(app)()
	return r.d.Resume(ctx, app, "alice", out)
}

func TestInstanceNames(t *testing.T) {
	long := names.App{Namespace: strings.Repeat("n", 40), Name: strings.Repeat("a", 40)}
	for _, app := range []names.App{{Namespace: "acme", Name: "web"}, long} {
		n := instanceName(app, "web", 123)
		if len(n) > 63 || !strings.Contains(n, "-v123-") || strings.Contains(n, "--") {
			t.Errorf("instanceName(%v) = %q", app, n)
		}
		w := instanceName(app, "worker", 123)
		if len(w) > 63 || !strings.Contains(w, "-worker-v123-") || strings.Contains(w, "--") {
			t.Errorf("instanceName(%v, worker) = %q", app, w)
		}
	}
}

// A release left building by a server that died mid-build is failed when
// the next one starts, and its source artifact deleted; the live release
// and others' sources stay.
func TestFailInterrupted(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, _, err := r.push(t, 1); err != nil {
		t.Fatal(err)
	}
	// What a crash mid-build leaves: the release row and the source.
	rel, err := r.d.Store.CreateRelease(ctx, store.Release{Namespace: "acme", App: "web", Commit: r.src.Commit, Runtime: "python", By: "alice",
		Config: store.ReleaseConfig{Note: "push " + r.src.Commit[:7]}})
	if err != nil {
		t.Fatal(err)
	}
	r.bus.objects[builder.SourceName(r.app, r.src.Commit)] = []byte("tar")
	other := builder.SourceName(names.App{Namespace: "acme", Name: "api"}, r.src.Commit)
	r.bus.objects[other] = []byte("tar")
	if err := r.d.FailInterrupted(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := r.d.Store.GetRelease(ctx, "acme", "web", rel.Version)
	if got.Status != store.ReleaseFailed || got.Failure != "the build was interrupted: the server stopped while it ran" {
		t.Errorf("interrupted release: %s %q", got.Status, got.Failure)
	}
	if live, err := r.d.Store.LiveRelease(ctx, "acme", "web"); err != nil || live.Version != 1 {
		t.Errorf("live release v%d, %v; want v1", live.Version, err)
	}
	if _, ok := r.bus.objects[builder.SourceName(r.app, r.src.Commit)]; ok {
		t.Error("the interrupted build's source is still stored")
	}
	if _, ok := r.bus.objects[other]; !ok {
		t.Error("another app's source was deleted")
	}
	events, _ := r.d.Store.ListEvents(ctx, "acme", "web", 1)
	if len(events) != 1 || events[0].Kind != "failure" || !strings.Contains(events[0].Message, "interrupted") {
		t.Errorf("last event %+v, want the failure", events)
	}
	// Nothing is left building: a second pass changes nothing.
	if err := r.d.FailInterrupted(ctx); err != nil {
		t.Fatal(err)
	}
}

// The build request carries the app's memory, else the build default, and
// the server's limits on CPU and on the result.
func TestBuildLimitsInRequest(t *testing.T) {
	r := newRig(t)
	r.d.BuildMemory, r.d.BuildCPU, r.d.MaxBuildOutput, r.d.MaxBuildEntries = 2<<30, 1.5, 3<<20, 42
	var got []agentapi.BuildRequest
	r.agents.OnBuild(func(req agentapi.BuildRequest) { got = append(got, req) })
	for _, memory := range []int64{0, 128 << 20} {
		if _, _, err := r.d.Push(context.Background(), r.app, r.src, &appspec.Spec{Runtime: "python", Instances: 1, Memory: memory}, "alice", func(string) {}); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got[0].Memory != 2<<30 || got[1].Memory != 128<<20 {
		t.Fatalf("build requests %+v, want memory 2G then the app's 128M", got)
	}
	for _, req := range got {
		if req.CPU != 1.5 || req.MaxOutput != 3<<20 || req.MaxEntries != 42 {
			t.Errorf("build request %+v, want the server's CPU and result limits", req)
		}
	}
}
