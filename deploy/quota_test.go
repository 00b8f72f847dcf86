package deploy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/deploy/deploytest"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

func ptr[T any](v T) *T { return &v }

// Containers get app.yaml's cpu, else the operator's default; 0 is none.
func TestDefaultCPU(t *testing.T) {
	for _, tc := range []struct {
		name            string
		appYAML, server float64
		want            float64
	}{
		{"the default", 0, DefaultCPU, 1},
		{"an operator's default", 0, 2.5, 2.5},
		{"app.yaml wins", 0.5, 2, 0.5},
		{"no default", 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.d.cfg.DefaultCPU = tc.server
			ctx := context.Background()
			spec := &appspec.Spec{Runtime: "python", Instances: 2, CPU: tc.appYAML}
			if _, _, err := r.d.Push(ctx, r.app, r.src, spec, "alice", discard); err != nil {
				t.Fatal(err)
			}
			if _, err := r.d.Exec(ctx, r.app, []string{"true"}, time.Minute, "alice", discard, discard); err != nil {
				t.Fatal(err)
			}
			var got []float64
			for _, s := range r.agents.Starts() {
				got = append(got, s.CPU)
			}
			for _, e := range r.agents.Execs() {
				got = append(got, e.CPU)
			}
			if len(got) != 3 || got[0] != tc.want || got[1] != tc.want || got[2] != tc.want {
				t.Errorf("cpu of 2 instances and an exec container: %v, want %v each", got, tc.want)
			}
		})
	}
}

// twoApps is a rig whose namespace acme has web (live, n instances of
// 512M) and api (created, nothing pushed).
func twoApps(t *testing.T, quota store.Quota, n int) *rig {
	t.Helper()
	r := newRig(t)
	r.d.cfg.Quota = quota
	if _, err := r.d.cfg.Store.CreateApp(context.Background(), "acme", "api"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.push(t, n); err != nil {
		t.Fatal(err)
	}
	return r
}

func overQuota(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if !errors.Is(err, store.ErrOverQuota) {
		t.Fatalf("%s: %v, want a quota refusal", what, err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("%s: %q is more than one line", what, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: %q does not say %q", what, err, w)
		}
	}
}

// Instances count over every app of the namespace, and a change over the
// quota is refused before anything starts or any release is made.
func TestInstancesQuota(t *testing.T) {
	r := twoApps(t, store.Quota{Instances: 3}, 2)
	ctx := context.Background()
	api := names.App{Namespace: "acme", Name: "api"}
	builds := len(r.bus.Objects)
	starts := len(r.agents.Started())

	_, _, err := r.d.Push(ctx, api, r.src, &appspec.Spec{Runtime: "python", Instances: 2}, "alice", discard)
	overQuota(t, "a push of 2 more", err, "acme/api would run 2 instance(s) (web=2) and the other apps of namespace acme run 2, over its instances quota of 3",
		"namespace quota set acme instances=N")
	if rels, _ := r.d.cfg.Store.ListReleases(ctx, "acme", "api", 0); len(rels) != 0 || len(r.bus.Objects) != builds {
		t.Errorf("a refused push made releases %+v or built something", rels)
	}
	err = r.d.Scale(ctx, r.app, map[string]int{"web": 4}, discard)
	overQuota(t, "scale web=4", err, "acme/web would run 4 instance(s) (web=4) and the other apps of namespace acme run 0, over its instances quota of 3")
	if len(r.agents.Started()) != starts {
		t.Errorf("refused changes started %v", r.agents.Started()[starts:])
	}
	if ins, _ := r.d.cfg.Store.ListInstances(ctx, "acme", ""); len(ins) != 2 {
		t.Errorf("after refusals the namespace runs %d instances, want the 2 of before", len(ins))
	}
	if f, _ := r.d.cfg.Store.GetFormation(ctx, "acme", "web"); f != nil {
		t.Errorf("a refused scale recorded formation %v", f)
	}

	// Within the quota, and the namespace's own quota over the default.
	if _, _, err := r.d.Push(ctx, api, r.src, &appspec.Spec{Runtime: "python", Instances: 1}, "alice", discard); err != nil {
		t.Fatalf("a push that fills the quota: %v", err)
	}
	r.d.cfg.Store.SetQuota(ctx, "acme", store.QuotaChange{Instances: ptr(4)})
	if err := r.d.Scale(ctx, r.app, map[string]int{"web": 3}, discard); err != nil {
		t.Fatalf("scale within the namespace's own quota: %v", err)
	}

	// A quota lowered below what runs blocks growth, not what runs.
	r.d.cfg.Store.SetQuota(ctx, "acme", store.QuotaChange{Instances: ptr(1)})
	if err := r.d.Restart(ctx, r.app, discard); err != nil {
		t.Errorf("restart with the same instances under a lowered quota: %v", err)
	}
	if err := r.d.Scale(ctx, r.app, map[string]int{"web": 2}, discard); err != nil {
		t.Errorf("scale down under a lowered quota: %v", err)
	}
	if err := r.d.Stop(ctx, api, discard); err != nil {
		t.Fatal(err)
	}
	overQuota(t, "app run of a stopped app", r.resume(ctx, api, discard), "acme/api would run 1 instance(s)")
}

// Memory counts each instance at its limit; a config change or rollback
// that would pass the quota makes no release and changes nothing.
func TestMemoryQuota(t *testing.T) {
	r := twoApps(t, store.Quota{Memory: 1 << 30}, 1) // web: 1 × 512M
	ctx := context.Background()
	api := names.App{Namespace: "acme", Name: "api"}
	spec := &appspec.Spec{Runtime: "python", Instances: 1, Memory: 256 << 20}
	if _, _, err := r.d.Push(ctx, api, r.src, spec, "alice", discard); err != nil {
		t.Fatal(err)
	}
	spec.Memory = 1 << 30
	_, _, err := r.d.Push(ctx, api, r.src, spec, "alice", discard)
	overQuota(t, "a push of 1G", err, "acme/api would run 1 instance(s) of 1G (1G) and the other apps of namespace acme 512M, over its memory quota of 1G",
		"namespace quota set acme memory=SIZE")
	err = r.d.Scale(ctx, api, map[string]int{"web": 3}, discard)
	overQuota(t, "scale to 3 × 256M", err, "acme/api would run 3 instance(s) of 256M (768M)")

	// Room for v2 at 512M, then the rollback to v1 is smaller and passes;
	// web's config change with its memory as it is passes too, until
	// another app has taken the room a rollback back up needs.
	spec.Memory = 512 << 20
	if _, _, err := r.d.Push(ctx, api, r.src, spec, "alice", discard); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.Rollback(ctx, api, 1, discard); err != nil {
		t.Fatalf("rollback to the smaller v1: %v", err)
	}
	if err := r.d.SetConfig(ctx, r.app, map[string]string{"A": "1"}, nil, true, discard); err != nil {
		t.Fatalf("config set: %v", err)
	}
	r.d.cfg.Store.SetQuota(ctx, "acme", store.QuotaChange{Memory: ptr(int64(768 << 20))})
	before, _ := r.d.cfg.Store.ListReleases(ctx, "acme", "api", 0)
	_, err = r.d.Rollback(ctx, api, 2, discard)
	overQuota(t, "rollback to the larger v2", err, "acme/api would run 1 instance(s) of 512M")
	if after, _ := r.d.cfg.Store.ListReleases(ctx, "acme", "api", 0); len(after) != len(before) {
		t.Errorf("a refused rollback made a release: %d releases, were %d", len(after), len(before))
	}
	if live, _ := r.d.cfg.Store.LiveRelease(ctx, "acme", "api"); live.Config.Memory != 256<<20 {
		t.Errorf("live after a refused rollback: %+v", live.Config)
	}
}

// At most Exec one-off commands run at once in a namespace; the next is
// refused until one ends.
func TestExecQuota(t *testing.T) {
	r := twoApps(t, store.Quota{Exec: 1}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gate := make(chan struct{})
	r.agents.GateExecs(gate)
	first := make(chan error, 1)
	go func() {
		_, err := r.d.Exec(ctx, r.app, []string{"sleep", "1000"}, time.Minute, "alice", discard, discard)
		first <- err
	}()
	for {
		n := len(r.agents.Execs())
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	_, err := r.d.Exec(ctx, r.app, []string{"true"}, time.Minute, "alice", discard, discard)
	overQuota(t, "a second exec", err, "namespace acme already runs 1 app exec command(s), its exec quota", "namespace quota set acme exec=N")
	if _, _, use, _ := r.d.Usage(ctx, "acme"); use.Exec != 1 {
		t.Errorf("Usage while one runs: %+v", use)
	}
	close(gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.Exec(ctx, r.app, []string{"true"}, time.Minute, "alice", discard, discard); err != nil {
		t.Errorf("an exec once the first ended: %v", err)
	}
	if _, _, use, _ := r.d.Usage(ctx, "acme"); use.Exec != 0 {
		t.Errorf("Usage after: %+v", use)
	}
}

func TestUsage(t *testing.T) {
	r := twoApps(t, store.Quota{Apps: 5, Instances: 10, Memory: 8 << 30}, 3)
	ctx := context.Background()
	r.d.cfg.Store.SetQuota(ctx, "acme", store.QuotaChange{Apps: ptr(2)})
	own, inForce, use, err := r.d.Usage(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if own != (store.Quota{Apps: 2}) || inForce != (store.Quota{Apps: 2, Instances: 10, Memory: 8 << 30}) ||
		use != (store.Quota{Apps: 2, Instances: 3, Memory: 3 * DefaultMemory}) {
		t.Errorf("Usage = %+v, %+v, %+v", own, inForce, use)
	}
	if _, _, _, err := r.d.Usage(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Usage of a namespace that does not exist: %v", err)
	}
}

// Exec containers are placed by the scheduler with their memory, and
// count on their host for later placements until they end.
func TestExecPlacement(t *testing.T) {
	r := newRig(t)
	hs := &deploytest.Hosts{}
	hs.Set("h1", true, store.HostActive)
	hs.Set("h2", true, store.HostActive)
	hs.All[0].MemFree = 768 << 20
	hs.All[1].MemFree = 600 << 20
	r.d.cfg.Hosts = hs
	r.d.cfg.BuildMemory = 256 << 20 // builds go to a host with that much free
	// A test that fails must not wait for ever on the gate.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, _, err := r.push(t, 1); err != nil { // on h1, the one with more free memory
		t.Fatal(err)
	}
	gate := make(chan struct{})
	r.agents.GateExecs(gate)
	done := make(chan error, 1)
	go func() {
		_, err := r.d.Exec(ctx, r.app, []string{"sleep", "1000"}, time.Minute, "alice", discard, discard)
		done <- err
	}()
	for len(r.d.execsOn()) == 0 {
		time.Sleep(time.Millisecond)
	}
	placed := r.d.execsOn()
	if len(placed["h1"]) != 1 {
		t.Fatalf("the exec container went to %v, want h1 (no heartbeat counts it yet: the most free memory)", placed)
	}
	// h1's heartbeat still says 768M free and nothing runs there, but its
	// exec container holds 512M of it: h1 has no room for a second one.
	hs.All[1].MemFree = 256 << 20
	_, err := r.d.Exec(ctx, r.app, []string{"true"}, time.Minute, "alice", discard, discard)
	if err == nil || !strings.Contains(err.Error(), "no host has room: 1 more container(s) of 512 MiB would not fit") {
		t.Errorf("an exec with no room left: %v", err)
	}
	hosts := r.d.schedulerHosts()
	if hosts[0].MemFree != 256<<20 || hosts[0].Containers != 1 {
		t.Errorf("h1 as placement sees it: %+v, want 256M free and 1 container", hosts[0])
	}
	// Once h1's heartbeat lists the container it is counted there, once.
	for name := range placed["h1"] {
		hs.All[0].List = []agentapi.ContainerInfo{{Name: name}}
		hs.All[0].Containers = 1
	}
	if hosts := r.d.schedulerHosts(); hosts[0].Containers != 1 {
		t.Errorf("h1 with the exec container in its heartbeat: %+v, want 1 container", hosts[0])
	}
	hs.All[0].List, hs.All[0].Containers = nil, 0
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if hosts := r.d.schedulerHosts(); hosts[0].MemFree != 768<<20 || hosts[0].Containers != 0 {
		t.Errorf("h1 once the command ended: %+v", hosts[0])
	}
}

// Containers get app.yaml's memory, else the operator's default, else
// DefaultMemory.
func TestDefaultMemory(t *testing.T) {
	for _, tc := range []struct {
		appYAML, server, want int64
	}{{0, 0, DefaultMemory}, {0, 256 << 20, 256 << 20}, {1 << 30, 256 << 20, 1 << 30}} {
		r := newRig(t)
		r.d.cfg.DefaultMemory = tc.server
		spec := &appspec.Spec{Runtime: "python", Instances: 1, Memory: tc.appYAML}
		if _, _, err := r.d.Push(context.Background(), r.app, r.src, spec, "alice", discard); err != nil {
			t.Fatal(err)
		}
		if got := r.agents.Starts()[0].Memory; got != tc.want {
			t.Errorf("app.yaml %d, --default-memory %d: the instance's memory is %d, want %d", tc.appYAML, tc.server, got, tc.want)
		}
	}
}
