package healing

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/agentapi/agenttest"
	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/deploy/deploytest"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/repos/repostest"
	"github.com/upscalehq/upscale/runtimes"
	"github.com/upscalehq/upscale/store"
	"github.com/upscalehq/upscale/store/sqlstore"
)

type rig struct {
	d      *deploy.Deployer
	hl     *Healer
	st     store.Store
	agents *agenttest.Agents
	router *deploytest.Router
	hosts  *deploytest.Hosts
	routed []string // hosts Route was called for
	app    names.App
	src    repos.Source
}

// newRig is a release engine and a healer over a store with app acme/web,
// the fake agents, router and hosts (none yet), and a repository to push.
func newRig(t *testing.T, autoRebalance bool) *rig {
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
	r := &rig{st: st, agents: agenttest.New(), router: &deploytest.Router{}, hosts: &deploytest.Hosts{}, app: names.App{Namespace: "acme", Name: "web"}}
	r.d, err = deploy.New(deploy.Config{Store: st, Bus: deploytest.NewArtifacts(), Agents: r.agents, Router: r.router, Hosts: r.hosts, Catalog: cat,
		Repos: &repos.Repos{Root: filepath.Join(dir, "repos")}, Domain: "example.test"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	route := func(h store.Host) error {
		mu.Lock()
		defer mu.Unlock()
		r.routed = append(r.routed, h.Name)
		return nil
	}
	r.hl, err = New(Config{Store: st, Hosts: r.hosts, Engine: r.d, Route: route, AutoRebalance: autoRebalance})
	if err != nil {
		t.Fatal(err)
	}
	r.src = repostest.Commit(t, dir)
	return r
}

func (r *rig) push(t *testing.T, spec *appspec.Spec) {
	t.Helper()
	if _, _, err := r.d.Push(context.Background(), r.app, r.src, spec, "alice", func(string) {}); err != nil {
		t.Fatal(err)
	}
}

func web(n int) *appspec.Spec { return &appspec.Spec{Runtime: "python", Instances: n} }

// threeHosts deploys acme/web with 2 instances over h1..h3 and returns
// the rig, the hosts and where the instances went.
func threeHosts(t *testing.T) (*rig, *deploytest.Hosts, []store.Instance) {
	t.Helper()
	r := newRig(t, false)
	hs := r.hosts
	for _, h := range []string{"h1", "h2", "h3"} {
		hs.Set(h, true, store.HostActive)
	}
	r.push(t, web(2))
	ins, _ := r.st.ListInstances(context.Background(), "acme", "web")
	if len(ins) != 2 || ins[0].Host == ins[1].Host {
		t.Fatalf("2 instances on 2 hosts expected: %+v", ins)
	}
	return r, hs, ins
}

func hostsOf(ins []store.Instance) []string {
	var out []string
	for _, in := range ins {
		out = append(out, in.Host)
	}
	slices.Sort(out)
	return out
}

func TestHealReplacesInstancesOfADownHost(t *testing.T) {
	r, hs, ins := threeHosts(t)
	ctx := context.Background()
	dead := ins[0]
	hs.Set(dead.Host, false, store.HostActive)
	r.agents.Forget()
	if err := r.hl.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	now, _ := r.st.ListInstances(ctx, "acme", "web")
	if len(now) != 2 || slices.Contains(hostsOf(now), dead.Host) || now[0].Host == now[1].Host {
		t.Fatalf("after healing: %+v (dead host %s)", now, dead.Host)
	}
	routed := r.router.Servers("acme/web")
	if len(routed) != 2 || slices.Contains(routed, dead.Addr) {
		t.Fatalf("router routes %v, dead instance was %s", routed, dead.Addr)
	}
	// And cuts the dead one rather than draining what it can never finish.
	last := r.router.Applied[len(r.router.Applied)-1]
	for _, b := range last {
		if b.Name == "acme/web" && !slices.Equal(b.Lost, []string{dead.Name}) {
			t.Fatalf("router told %v lost, want %s", b.Lost, dead.Name)
		}
	}
	if len(r.agents.Destroyed()) != 0 {
		t.Fatalf("asked a down host to destroy %v", r.agents.Destroyed())
	}
	// The host returns still running the old container: it goes.
	hs.Set(dead.Host, true, store.HostActive, agentapi.ContainerInfo{Name: dead.Name, App: "acme/web", State: "running", StartedAt: time.Now().Add(-time.Minute)})
	for _, in := range now {
		hs.Set(in.Host, true, store.HostActive, agentapi.ContainerInfo{Name: in.Name, App: "acme/web", State: "running", StartedAt: time.Now().Add(-time.Minute)})
	}
	if err := r.hl.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.agents.Destroyed(), []string{dead.Name}) {
		t.Fatalf("destroyed %v, want exactly the orphan %s", r.agents.Destroyed(), dead.Name)
	}
	after, _ := r.st.ListInstances(ctx, "acme", "web")
	if len(after) != 2 || after[0].Name != now[0].Name {
		t.Fatalf("a healthy layout changed: %+v", after)
	}
}

func TestHealMovesOffDrainingHostsAndTrimsSurplus(t *testing.T) {
	r, hs, ins := threeHosts(t)
	ctx := context.Background()
	hs.Set(ins[0].Host, true, store.HostDraining)
	if err := r.hl.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	now, _ := r.st.ListInstances(ctx, "acme", "web")
	if len(now) != 2 || slices.Contains(hostsOf(now), ins[0].Host) || !slices.Contains(r.agents.Destroyed(), ins[0].Name) {
		t.Fatalf("after draining %s: %+v, destroyed %v", ins[0].Host, now, r.agents.Destroyed())
	}
	// Surplus: the live release wants 2, the store has 3.
	extra := append(now, store.Instance{Name: "acme-web-extra", Namespace: "acme", App: "web", Release: now[0].Release, Host: "h3", Addr: "10.77.0.99:8080"})
	if err := r.st.SetInstances(ctx, "acme", "web", extra); err != nil {
		t.Fatal(err)
	}
	if err := r.hl.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if left, _ := r.st.ListInstances(ctx, "acme", "web"); len(left) != 2 {
		t.Fatalf("surplus not trimmed: %+v", left)
	}
}

func TestDrainRefusesTheLastHost(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	hs := r.hosts
	hs.Store = r.st
	hs.Set("h1", true, store.HostActive)
	if _, err := r.st.AddHost(ctx, store.Host{Name: "h1", Address: "10.0.0.1", Subnet: "10.77.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	r.push(t, web(1))
	err := r.hl.Drain(ctx, "h1", false, func(string) {})
	if err == nil || !strings.Contains(err.Error(), "is the only host up to run") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("drain of the last host: %v", err)
	}
	if h, _ := r.st.GetHost(ctx, "h1"); h.State != store.HostActive {
		t.Fatalf("a refused drain changed the host: %+v", h)
	}
	if err := r.hl.Drain(ctx, "h1", true, func(string) {}); err != nil {
		t.Fatal(err)
	}
	if left, _ := r.st.ListInstances(ctx, "acme", "web"); len(left) != 0 || len(r.router.Servers("acme/web")) != 0 {
		t.Fatalf("forced drain left %+v", left)
	}
}

func TestRebalanceMovesToANewHost(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	hs := r.hosts
	hs.Set("h1", true, store.HostActive)
	r.push(t, web(2))
	for i := range hs.All {
		hs.All[i].Containers = 2
	}
	hs.Set("h2", true, store.HostActive)
	var out []string
	if err := r.hl.Rebalance(ctx, true, func(l string) { out = append(out, l) }); err != nil {
		t.Fatal(err)
	}
	if ins, _ := r.st.ListInstances(ctx, "acme", "web"); hostsOf(ins)[1] != "h1" || !strings.Contains(strings.Join(out, "\n"), "would move") {
		t.Fatalf("dry run moved something or said nothing: %+v %v", ins, out)
	}
	if err := r.hl.Rebalance(ctx, false, func(l string) { out = append(out, l) }); err != nil {
		t.Fatal(err)
	}
	ins, _ := r.st.ListInstances(ctx, "acme", "web")
	if got := hostsOf(ins); !slices.Equal(got, []string{"h1", "h2"}) {
		t.Fatalf("after rebalance: %v", got)
	}
	if len(r.router.Servers("acme/web")) != 2 {
		t.Fatal("router does not route both instances")
	}
}

// A namespace named build (made before the name was reserved) is cleaned
// up like any other: its containers' names start with build-, as builds'
// did, but builds are told by carrying no app.
func TestHealRemovesOrphansOfANamespaceNamedBuild(t *testing.T) {
	r, hs, ins := threeHosts(t)
	ctx := context.Background()
	r.st.CreateNamespace(ctx, "build")
	r.st.CreateApp(ctx, "build", "web")
	old := time.Now().Add(-time.Minute)
	var list []agentapi.ContainerInfo
	for _, in := range ins {
		if in.Host == "h1" {
			list = append(list, agentapi.ContainerInfo{Name: in.Name, App: "acme/web", State: "running", StartedAt: old})
		}
	}
	list = append(list,
		agentapi.ContainerInfo{Name: "build-web-v1-aaaaaa", App: "build/web", State: "running", StartedAt: old},
		agentapi.ContainerInfo{Name: "build-gone-v1-bbbbbb", App: "build/gone", State: "running", StartedAt: old},
		agentapi.ContainerInfo{Name: "build-3f2a1c-7", State: "running", StartedAt: old},
	)
	hs.Set("h1", true, store.HostActive, list...)
	r.agents.Forget()
	if err := r.hl.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	got := slices.Clone(r.agents.Destroyed())
	slices.Sort(got)
	if want := []string{"build-gone-v1-bbbbbb", "build-web-v1-aaaaaa"}; !slices.Equal(got, want) {
		t.Errorf("destroyed %v, want %v (the orphan and the stray of namespace build, not the build)", got, want)
	}
}

// A container of the app that the store does not list goes even while
// the app cannot be healed (every host draining, no replacement can
// start); before, the failed heal returned before removing orphans and the
// container ran on for good.
func TestHealRemovesOrphansWhenItCannotReplace(t *testing.T) {
	r, hs, ins := threeHosts(t)
	ctx := context.Background()
	old := time.Now().Add(-time.Minute)
	var list []agentapi.ContainerInfo
	for _, in := range ins {
		if in.Host == "h1" {
			list = append(list, agentapi.ContainerInfo{Name: in.Name, App: "acme/web", State: "running", StartedAt: old})
		}
	}
	list = append(list, agentapi.ContainerInfo{Name: "acme-web-v1-0rphan", App: "acme/web", State: "running", StartedAt: old})
	for _, h := range []string{"h1", "h2", "h3"} {
		if h == "h1" {
			hs.Set(h, true, store.HostDraining, list...)
		} else {
			hs.Set(h, true, store.HostDraining)
		}
	}
	r.agents.Forget()
	if err := r.hl.Heal(ctx); err == nil {
		t.Error("Heal with every host draining: no error, want the replacements it could not start")
	}
	if !slices.Contains(r.agents.Destroyed(), "acme-web-v1-0rphan") {
		t.Errorf("destroyed %v, want the orphan among them", r.agents.Destroyed())
	}
}

// An instance its agent stopped for writing past its disk limit is
// replaced by a fresh one (restarting it would keep the full layer), and
// the app's events say why, once.
func TestHealReplacesAnInstanceStoppedForDisk(t *testing.T) {
	r, hs, ins := threeHosts(t)
	ctx := context.Background()
	full := ins[0]
	for _, in := range ins {
		c := agentapi.ContainerInfo{Name: in.Name, App: "acme/web", State: "running", StartedAt: time.Now().Add(-time.Minute), Disk: 64 << 20}
		if in.Name == full.Name {
			c.State, c.DiskOver = "stopped", 70<<20
		}
		hs.Set(in.Host, true, store.HostActive, c)
	}
	for i := range hs.All {
		hs.All[i].At = time.Now().Add(time.Minute) // the status is newer than the instances
	}
	r.agents.Forget()
	for range 2 {
		if err := r.hl.Heal(ctx); err != nil {
			t.Fatal(err)
		}
	}
	now, _ := r.st.ListInstances(ctx, "acme", "web")
	if len(now) != 2 || slices.ContainsFunc(now, func(in store.Instance) bool { return in.Name == full.Name }) {
		t.Fatalf("after healing: %+v, want 2 instances without %s", now, full.Name)
	}
	if !slices.Contains(r.agents.Destroyed(), full.Name) {
		t.Errorf("destroyed %v, want %s among them", r.agents.Destroyed(), full.Name)
	}
	if routed := r.router.Servers("acme/web"); len(routed) != 2 || slices.Contains(routed, full.Addr) {
		t.Errorf("router routes %v, the stopped instance was %s", routed, full.Addr)
	}
	events, err := r.st.ListEvents(ctx, "acme", "web", 0)
	if err != nil {
		t.Fatal(err)
	}
	var disk []string
	for _, e := range events {
		if e.Kind == "disk" {
			disk = append(disk, e.Message)
		}
	}
	want := full.Name + " on " + full.Host + " wrote more than its limit of 64M to its filesystem and was stopped; a fresh instance replaces it"
	if len(disk) != 1 || !strings.HasPrefix(disk[0], want) {
		t.Errorf("disk events %q, want one starting %q", disk, want)
	}
}

// Healing replaces a lost worker with a worker, and keeps each type's
// count.
func TestHealPerProcessType(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	hs := r.hosts
	hs.Set("h1", true, store.HostActive)
	spec := &appspec.Spec{Runtime: "python", Instances: 1, Processes: map[string]string{"web": "", "worker": "python3 worker.py"}}
	if _, _, err := r.d.Push(ctx, r.app, r.src, spec, "alice", func(string) {}); err != nil {
		t.Fatal(err)
	}
	ins, _ := r.st.ListInstances(ctx, "acme", "web")
	var web store.Instance
	for _, in := range ins {
		if deploy.IsWeb(in) {
			web = in
		}
	}
	// The host's status, a minute on, lists the web instance only.
	hs.Set("h1", true, store.HostActive, agentapi.ContainerInfo{Name: web.Name, App: "acme/web", State: "running", StartedAt: time.Now()})
	hs.All[0].At = time.Now().Add(time.Minute)
	if err := r.hl.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	now, _ := r.st.ListInstances(ctx, "acme", "web")
	var types []string
	for _, in := range now {
		types = append(types, deploy.ProcessOf(in))
	}
	slices.Sort(types)
	if strings.Join(types, " ") != "web worker" || !slices.ContainsFunc(now, func(in store.Instance) bool { return in.Name == web.Name }) {
		t.Fatalf("after healing a lost worker: %+v", now)
	}
	last := r.agents.Starts()[len(r.agents.Starts())-1]
	if !last.Worker || last.Command != "python3 worker.py" {
		t.Fatalf("the replacement was started as %+v", last)
	}
	if n := len(r.router.Servers("acme/web")); n != 1 {
		t.Fatalf("router routes %d servers, want the web one", n)
	}
}
