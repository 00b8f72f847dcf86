package deploy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/builder"
	"github.com/upscalehq/upscale/store"
)

func discard(string) {}

func TestFormation(t *testing.T) {
	procs := map[string]string{"web": "serve", "worker": "work"}
	for _, c := range []struct {
		cfg    store.ReleaseConfig
		stored map[string]int
		want   string
	}{
		{store.ReleaseConfig{Instances: 0}, nil, "web=1"}, // a release from before formations
		{store.ReleaseConfig{Instances: 3}, nil, "web=3"},
		{store.ReleaseConfig{Processes: procs, Formation: map[string]int{"web": 2, "worker": 1}}, nil, "web=2 worker=1"},
		{store.ReleaseConfig{Processes: procs, Formation: map[string]int{"web": 2, "worker": 1}}, map[string]int{"worker": 0, "clock": 4}, "web=2 worker=0"},
		{store.ReleaseConfig{Processes: procs, Instances: 2}, nil, "web=2 worker=1"},
	} {
		if got := FormatFormation(Formation(c.cfg, c.stored)); got != c.want {
			t.Errorf("Formation(%+v, %v) = %s, want %s", c.cfg, c.stored, got, c.want)
		}
	}
}

func TestEnvVarsWinOverAppYAML(t *testing.T) {
	got := Env(store.ReleaseConfig{Env: map[string]string{"A": "yaml", "B": "yaml"}, Vars: map[string]string{"B": "var", "C": "var"}})
	if fmt.Sprint(got) != "map[A:yaml B:var C:var]" {
		t.Fatalf("Env = %v", got)
	}
}

// A push of an app with a worker starts both types; only web is routed,
// the worker is started as one, with its own command and the config vars.
func TestProcessesAndConfigVars(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.d.cfg.Store.SetConfig(ctx, "acme", "web", map[string]string{"MESSAGE": "var"}, nil)
	spec := &appspec.Spec{Runtime: "python", Instances: 2, Processes: map[string]string{"web": "", "worker": "python3 worker.py"},
		Env: map[string]string{"MESSAGE": "yaml", "OTHER": "yaml"}}
	rel, _, err := r.d.Push(ctx, r.app, r.src, spec, "alice", discard)
	if err != nil {
		t.Fatal(err)
	}
	if FormatFormation(rel.Config.Formation) != "web=2 worker=1" || rel.Config.Vars["MESSAGE"] != "var" || rel.Config.Note != "push "+r.src.Commit[:7] {
		t.Fatalf("release config %+v", rel.Config)
	}
	ins, _ := r.d.cfg.Store.ListInstances(ctx, "acme", "web")
	var types []string
	for _, in := range ins {
		types = append(types, in.Process)
	}
	slices.Sort(types)
	if strings.Join(types, " ") != "web web worker" {
		t.Fatalf("instances %+v", ins)
	}
	if n := len(r.router.Servers("acme/web")); n != 2 {
		t.Fatalf("router routes %d servers, want the 2 web ones", n)
	}
	for _, s := range r.agents.Starts() {
		worker := strings.Contains(s.Name, "-worker-")
		if s.Worker != worker || worker && (s.Command != "python3 worker.py" || s.Health != "") || s.Env["MESSAGE"] != "var" || s.Env["OTHER"] != "yaml" {
			t.Errorf("start request %+v", s)
		}
	}

	// Scaling changes instances, not releases, and the next release keeps it.
	if err := r.d.Scale(ctx, r.app, map[string]int{"worker": 0, "web": 3}, discard); err != nil {
		t.Fatal(err)
	}
	if err := r.d.SetConfig(ctx, r.app, map[string]string{"X": "1"}, nil, true, discard); err != nil {
		t.Fatal(err)
	}
	ins, _ = r.d.cfg.Store.ListInstances(ctx, "acme", "web")
	if len(ins) != 3 || ins[0].Release != 2 || slices.ContainsFunc(ins, func(in store.Instance) bool { return !IsWeb(in) }) {
		t.Fatalf("after scale and config set: %+v", ins)
	}
	err = r.d.Scale(ctx, r.app, map[string]int{"clock": 1}, discard)
	if err == nil || err.Error() != `acme/web has no process type "clock"; its types are: web, worker` {
		t.Fatalf("scale of an unknown type: %v", err)
	}
}

// Old instances are stopped with the grace, then destroyed.
func TestRetireStopsWithGrace(t *testing.T) {
	r := newRig(t)
	r.d.cfg.StopGrace = 7 * time.Second
	if _, _, err := r.push(t, 1); err != nil {
		t.Fatal(err)
	}
	old, _ := r.d.cfg.Store.ListInstances(context.Background(), "acme", "web")
	if _, _, err := r.push(t, 1); err != nil {
		t.Fatal(err)
	}
	if len(r.agents.Stopped()) != 1 || r.agents.Stopped()[0] != (agentapi.StopRequest{Name: old[0].Name, Grace: 7 * time.Second}) || !slices.Contains(r.agents.Destroyed(), old[0].Name) {
		t.Fatalf("stopped %+v, destroyed %v; want %s stopped with 7s grace, then destroyed", r.agents.Stopped(), r.agents.Destroyed(), old[0].Name)
	}
}

// The last KeepArtifacts releases keep their artifact; older ones are
// pruned (an artifact shared with a kept release stays), and rolling back
// to one says so.
func TestPruneAndRollback(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, _, err := r.push(t, 1); err != nil { // v1: artifact A1
		t.Fatal(err)
	}
	if _, _, err := r.push(t, 1); err != nil { // v2: A2
		t.Fatal(err)
	}
	rel, err := r.d.Rollback(ctx, r.app, 0, discard) // v3 = v1's A1
	if err != nil || rel.Version != 3 || rel.Artifact != builder.ArtifactName(r.app, 1) {
		t.Fatalf("rollback: %+v %v", rel, err)
	}
	live, _ := r.d.cfg.Store.LiveRelease(ctx, "acme", "web")
	if live.Version != 3 || live.Commit != r.src.Commit || live.Config.Note != "rollback to v1" {
		t.Fatalf("live after rollback: %+v", live)
	}
	a1 := live.Artifact
	for i := 0; i < KeepArtifacts-1; i++ { // v4..v12 on A1
		if err := r.d.SetConfig(ctx, r.app, map[string]string{"N": fmt.Sprint(i)}, nil, true, discard); err != nil {
			t.Fatal(err)
		}
	}
	rels, _ := r.d.cfg.Store.ListReleases(ctx, "acme", "web", 0)
	var pruned []int
	for _, rel := range rels {
		if rel.Pruned {
			pruned = append(pruned, rel.Version)
		}
	}
	// v3..v12 are the last 10: v1 and v2 are pruned; A2 is deleted, A1
	// stays for the kept releases that share it.
	if fmt.Sprint(pruned) != "[2 1]" {
		t.Fatalf("pruned %v, want [2 1]", pruned)
	}
	v2, _ := r.d.cfg.Store.GetRelease(ctx, "acme", "web", 2)
	if _, ok := r.bus.Objects[v2.Artifact]; ok {
		t.Fatal("v2's artifact is still stored")
	}
	if _, ok := r.bus.Objects[a1]; !ok {
		t.Fatal("the shared artifact was deleted")
	}
	for _, c := range []struct {
		version int
		want    string
	}{
		{2, "v2 was pruned: only the last 10 releases keep their artifact; push again to rebuild"},
		{99, "acme/web has no release v99; see releases acme/web"},
		{12, "v12 is already live"},
	} {
		if _, err := r.d.Rollback(ctx, r.app, c.version, discard); err == nil || err.Error() != c.want {
			t.Errorf("rollback to v%d: %v, want %q", c.version, err, c.want)
		}
	}
	// Rolling back to v3 restores its (empty) config vars.
	if _, err := r.d.Rollback(ctx, r.app, 3, discard); err != nil {
		t.Fatal(err)
	}
	if vars, _ := r.d.cfg.Store.GetConfig(ctx, "acme", "web"); len(vars) != 0 {
		t.Fatalf("config vars after rolling back to v1: %v", vars)
	}
}

// A failed release is never the default rollback target, and a rollback
// to it says why.
func TestRollbackSkipsFailed(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.push(t, 1) // v1
	r.push(t, 1) // v2
	r.agents.FailStarts(fmt.Errorf("the app exited"))
	if _, _, err := r.push(t, 1); err == nil { // v3 fails
		t.Fatal("push with failing start succeeded")
	}
	r.agents.FailStarts(nil)
	r.push(t, 1) // v4
	rel, err := r.d.Rollback(ctx, r.app, 0, discard)
	if err != nil || rel.Config.Note != "rollback to v2" {
		t.Fatalf("default rollback from v4: %+v %v", rel.Config, err)
	}
	if _, err := r.d.Rollback(ctx, r.app, 3, discard); err == nil || !strings.HasPrefix(err.Error(), "v3 failed, so there is nothing to roll back to: ") {
		t.Fatalf("rollback to a failed release: %v", err)
	}
	evs, _ := r.d.cfg.Store.ListEvents(ctx, "acme", "web", 0)
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if strings.Join(kinds, " ") != "rollback deploy failure deploy deploy" {
		t.Fatalf("events %v", kinds)
	}
}
