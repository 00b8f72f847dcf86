package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/agentapi/agenttest"
	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/builder"
	"github.com/upscalehq/upscale/deploy/deploytest"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/repos/repostest"
	"github.com/upscalehq/upscale/runtimes"
	"github.com/upscalehq/upscale/store"
	"github.com/upscalehq/upscale/store/sqlstore"
)

type oneHost struct{}

func (h oneHost) Hosts() []fleet.Host { return h.Up() }

func (oneHost) Up() []fleet.Host {
	return []fleet.Host{{Up: true, Beat: agentapi.Beat{Info: agentapi.Info{Name: "h1", MemFree: 8 << 30}}}}
}

type rig struct {
	d      *Deployer
	bus    *deploytest.Artifacts
	agents *agenttest.Agents
	router *deploytest.Router
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
	r := &rig{bus: deploytest.NewArtifacts(), agents: agenttest.New(), router: &deploytest.Router{}, app: names.App{Namespace: "acme", Name: "web"}}
	r.d, err = New(Config{Store: st, Bus: r.bus, Agents: r.agents, Router: r.router, Hosts: oneHost{}, Catalog: cat,
		Repos: &repos.Repos{Root: filepath.Join(dir, "repos")}, Domain: "example.test"})
	if err != nil {
		t.Fatal(err)
	}
	r.src = repostest.Commit(t, dir)
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
	first, _ := r.d.cfg.Store.ListInstances(ctx, "acme", "web")
	rel, out, err := r.push(t, 2)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Version != 2 || rel.Status != store.ReleaseLive || rel.Subject != "first version" || rel.Author != "Ann" || rel.By != "alice" {
		t.Fatalf("release %+v", rel)
	}
	live, err := r.d.cfg.Store.LiveRelease(ctx, "acme", "web")
	if err != nil || live.Version != 2 || live.Artifact != builder.ArtifactName(r.app, 2) {
		t.Fatalf("live release %+v, %v", live, err)
	}
	if string(r.bus.Objects[live.Artifact]) != "packed app" {
		t.Fatalf("artifact holds %q", r.bus.Objects[live.Artifact])
	}
	instances, _ := r.d.cfg.Store.ListInstances(ctx, "acme", "web")
	if len(instances) != 2 || instances[0].Release != 2 {
		t.Fatalf("instances %+v", instances)
	}
	if got := r.router.Servers("acme/web"); len(got) != 2 || got[0] != instances[0].Addr && got[1] != instances[0].Addr {
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
	for name := range r.bus.Objects {
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
	before, _ := r.d.cfg.Store.ListInstances(ctx, "acme", "web")
	routed := r.router.Servers("acme/web")
	applies := len(r.router.Applied)
	r.agents.FailStarts(errors.New("the app exited (status 3) before it answered on port 8080"))
	rel, _, err := r.push(t, 1)
	if err == nil || !strings.Contains(err.Error(), "exited (status 3)") {
		t.Fatalf("push error %v", err)
	}
	failed, _ := r.d.cfg.Store.GetRelease(ctx, "acme", "web", rel.Version)
	if failed.Status != store.ReleaseFailed || !strings.Contains(failed.Failure, "status 3") {
		t.Fatalf("failed release %+v", failed)
	}
	live, _ := r.d.cfg.Store.LiveRelease(ctx, "acme", "web")
	after, _ := r.d.cfg.Store.ListInstances(ctx, "acme", "web")
	if live.Version != 1 || len(after) != 1 || after[0] != before[0] {
		t.Fatalf("live v%d, instances %+v (were %+v)", live.Version, after, before)
	}
	if len(r.router.Applied) != applies || fmt.Sprint(r.router.Servers("acme/web")) != fmt.Sprint(routed) {
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
	got, _ := r.d.cfg.Store.GetRelease(context.Background(), "acme", "web", rel.Version)
	if got.Status != store.ReleaseFailed || len(r.agents.Started()) != 0 || len(r.router.Applied) != 0 {
		t.Fatalf("release %+v, started %v, applies %d", got, r.agents.Started(), len(r.router.Applied))
	}
}

func TestRouterRefusalKeepsOldRelease(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, _, err := r.push(t, 1); err != nil {
		t.Fatal(err)
	}
	r.router.Err = errors.New("haproxy is gone")
	if _, _, err := r.push(t, 1); err == nil || !strings.Contains(err.Error(), "switching the router: haproxy is gone") {
		t.Fatalf("push error %v", err)
	}
	if live, _ := r.d.cfg.Store.LiveRelease(ctx, "acme", "web"); live.Version != 1 {
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
	a, _ := r.d.cfg.Store.GetApp(ctx, "acme", "web")
	instances, _ := r.d.cfg.Store.ListInstances(ctx, "acme", "web")
	if !a.Stopped || len(instances) != 0 || len(r.router.Servers("acme/web")) != 0 || len(r.agents.Destroyed()) != 2 {
		t.Fatalf("after stop: stopped=%v instances=%v routed=%v destroyed=%v", a.Stopped, instances, r.router.Servers("acme/web"), r.agents.Destroyed())
	}
	// app run of a stopped app (backend.Run) resumes it under its lock.
	if err := r.resume(ctx, r.app, say); err != nil {
		t.Fatal(err)
	}
	a, _ = r.d.cfg.Store.GetApp(ctx, "acme", "web")
	instances, _ = r.d.cfg.Store.ListInstances(ctx, "acme", "web")
	if a.Stopped || len(instances) != 2 || instances[0].Release != 1 || len(r.router.Servers("acme/web")) != 2 {
		t.Fatalf("after run: stopped=%v instances=%+v", a.Stopped, instances)
	}
	if err := r.d.Restart(ctx, r.app, say); err != nil {
		t.Fatal(err)
	}
	again, _ := r.d.cfg.Store.ListInstances(ctx, "acme", "web")
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
	rel, err := r.d.cfg.Store.CreateRelease(ctx, store.Release{Namespace: "acme", App: "web", Commit: r.src.Commit, Runtime: "python", By: "alice",
		Config: store.ReleaseConfig{Note: "push " + r.src.Commit[:7]}})
	if err != nil {
		t.Fatal(err)
	}
	r.bus.Objects[builder.SourceName(r.app, r.src.Commit)] = []byte("tar")
	other := builder.SourceName(names.App{Namespace: "acme", Name: "api"}, r.src.Commit)
	r.bus.Objects[other] = []byte("tar")
	if err := r.d.FailInterrupted(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := r.d.cfg.Store.GetRelease(ctx, "acme", "web", rel.Version)
	if got.Status != store.ReleaseFailed || got.Failure != "the build was interrupted: the server stopped while it ran" {
		t.Errorf("interrupted release: %s %q", got.Status, got.Failure)
	}
	if live, err := r.d.cfg.Store.LiveRelease(ctx, "acme", "web"); err != nil || live.Version != 1 {
		t.Errorf("live release v%d, %v; want v1", live.Version, err)
	}
	if _, ok := r.bus.Objects[builder.SourceName(r.app, r.src.Commit)]; ok {
		t.Error("the interrupted build's source is still stored")
	}
	if _, ok := r.bus.Objects[other]; !ok {
		t.Error("another app's source was deleted")
	}
	events, _ := r.d.cfg.Store.ListEvents(ctx, "acme", "web", 1)
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
	r.d.cfg.BuildMemory, r.d.cfg.BuildCPU, r.d.cfg.MaxBuildOutput, r.d.cfg.MaxBuildEntries = 2<<30, 1.5, 3<<20, 42
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

// A deployer without what every deploy needs is refused at start, with
// what is missing named, not at the first push.
func TestNewNamesWhatIsMissing(t *testing.T) {
	_, err := New(Config{Store: newRig(t).d.cfg.Store, Domain: "example.test"})
	if err == nil || err.Error() != "deploy.New: no Bus, Agents, Router, Hosts, Catalog, Repos" {
		t.Fatalf("New with no engines: %v", err)
	}
	d, err := New(Config{Store: newRig(t).d.cfg.Store, Bus: deploytest.NewArtifacts(), Agents: agenttest.New(), Router: &deploytest.Router{}, Hosts: oneHost{},
		Catalog: &runtimes.Catalog{}, Repos: &repos.Repos{}, Domain: "example.test"})
	if err != nil || d.cfg.Log == nil {
		t.Fatalf("New with everything: %v, log %v", err, d.cfg.Log)
	}
}
