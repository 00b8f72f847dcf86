package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// Web is the process type the router sends requests to.
const Web = "web"

// KeepArtifacts is how many of an app's newest releases keep their
// artifact (and so can be rolled back to); older ones are pruned.
const KeepArtifacts = 10

// MaxScale is the most instances of one process type.
const MaxScale = 100

type byKey struct{}

// WithBy says who (a key name) asks for what ctx is used for: releases and
// events record it.
func WithBy(ctx context.Context, by string) context.Context {
	return context.WithValue(ctx, byKey{}, by)
}

func byOf(ctx context.Context) string {
	by, _ := ctx.Value(byKey{}).(string)
	return by
}

// IsWeb reports whether in is routed.
func IsWeb(in store.Instance) bool { return in.Process == "" || in.Process == Web }

// ProcessOf is in's process type: web for an instance recorded before
// apps had process types.
func ProcessOf(in store.Instance) string {
	if in.Process == "" {
		return Web
	}
	return in.Process
}

// Processes is the command of each process type a release runs.
func Processes(c store.ReleaseConfig) map[string]string {
	if len(c.Processes) == 0 {
		return map[string]string{Web: c.Start}
	}
	out := maps.Clone(c.Processes)
	if cmd, ok := out[Web]; ok && cmd == "" {
		out[Web] = c.Start
	}
	return out
}

// Formation is how many instances of each of the release's process types
// should run: the app's recorded formation (app scale) where it names the
// type, else what the release was made with.
func Formation(c store.ReleaseConfig, stored map[string]int) map[string]int {
	out := map[string]int{}
	for typ := range Processes(c) {
		n, ok := c.Formation[typ]
		switch {
		case ok:
		case c.Formation == nil && typ == Web:
			n = max(c.Instances, 1) // a release from before formations
		case typ == Web:
			n = c.Instances
		default:
			n = 1
		}
		if s, ok := stored[typ]; ok {
			n = s
		}
		out[typ] = n
	}
	return out
}

// FormatFormation writes f as "web=2 worker=1", sorted by type.
func FormatFormation(f map[string]int) string {
	var parts []string
	for _, typ := range slices.Sorted(maps.Keys(f)) {
		parts = append(parts, typ+"="+strconv.Itoa(f[typ]))
	}
	return strings.Join(parts, " ")
}

// Env is a release's environment: app.yaml's env, then its config vars
// over it.
func Env(c store.ReleaseConfig) map[string]string {
	if len(c.Vars) == 0 {
		return c.Env
	}
	env := maps.Clone(c.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, c.Vars)
	return env
}

// releaseConfig is what a push of spec makes: app.yaml, the app's config
// vars, and its formation (app scale's counts win over app.yaml's).
func (d *Deployer) releaseConfig(ctx context.Context, app names.App, spec *appspec.Spec, start string) (store.ReleaseConfig, error) {
	cfg := store.ReleaseConfig{Start: start, Instances: spec.Instances, Memory: spec.Memory, CPU: spec.CPU, Health: spec.Health, Env: spec.Env}
	if spec.Processes != nil {
		cfg.Processes = maps.Clone(spec.Processes)
		if cmd, ok := cfg.Processes[Web]; ok && cmd == "" {
			cfg.Processes[Web] = start
		}
	}
	vars, err := d.cfg.Store.GetConfig(ctx, app.Namespace, app.Name)
	if err != nil {
		return cfg, err
	}
	cfg.Vars = vars
	stored, err := d.cfg.Store.GetFormation(ctx, app.Namespace, app.Name)
	if err != nil {
		return cfg, err
	}
	cfg.Formation = map[string]int{}
	for typ := range Processes(cfg) {
		cfg.Formation[typ] = 1
	}
	if _, ok := cfg.Formation[Web]; ok {
		cfg.Formation[Web] = spec.Instances
	}
	cfg.Formation = Formation(cfg, stored)
	return cfg, nil
}

// derive makes a new release of base's artifact with cfg (a config change,
// a rollback) and makes it live: no build, and base's artifact is what
// every host already has. The caller holds the app's lock.
func (d *Deployer) derive(ctx context.Context, app names.App, base store.Release, by string, cfg store.ReleaseConfig, out func(string)) (store.Release, error) {
	if base.Pruned || base.Artifact == "" {
		return store.Release{}, fmt.Errorf("v%d has no artifact to run; push again to rebuild", base.Version)
	}
	release, err := d.reserveRelease(ctx, app, cfg)
	if err != nil {
		return store.Release{}, err
	}
	defer release()
	rel, err := d.cfg.Store.CreateRelease(ctx, store.Release{
		Namespace: app.Namespace, App: app.Name, Commit: base.Commit, Subject: base.Subject, Author: base.Author,
		Runtime: base.Runtime, By: by, Config: cfg,
	})
	if err != nil {
		return rel, err
	}
	if err := d.cfg.Store.FinishBuild(ctx, app.Namespace, app.Name, rel.Version, base.Artifact, base.Digest, base.Size); err != nil {
		d.failed(ctx, app, rel, by, err)
		return rel, err
	}
	rel.Artifact, rel.Digest, rel.Size, rel.Status = base.Artifact, base.Digest, base.Size, store.ReleaseBuilt
	out(fmt.Sprintf("-----> v%d: %s (%s of v%d)", rel.Version, cfg.Note, msgtext.Short(base.Commit), base.Version))
	if err := d.rollout(ctx, app, rel, out, &Timing{}); err != nil {
		d.failed(ctx, app, rel, by, err)
		return rel, fmt.Errorf("v%d failed, v%d still serves: %w", rel.Version, base.Version, err)
	}
	rel.Status = store.ReleaseLive
	d.prune(ctx, app, out)
	return rel, nil
}

// retire takes instances the router no longer sends anything to (it
// drained them before Apply returned) out of service: SIGTERM, StopGrace
// for the app to finish, SIGKILL, then the container is destroyed.
//
// Hosts work in parallel, each on one instance at a time: tearing a
// container down (its processes, network namespace and files) takes CPU
// from the instances serving next to it.
func (d *Deployer) retire(ctx context.Context, instances []store.Instance) {
	ctx = context.WithoutCancel(ctx)
	byHost := map[string][]store.Instance{}
	for _, in := range instances {
		byHost[in.Host] = append(byHost[in.Host], in)
	}
	var wg sync.WaitGroup
	for _, mine := range byHost {
		wg.Go(func() {
			for _, in := range mine {
				err := d.cfg.Agents.Stop(ctx, in.Host, agentapi.StopRequest{Name: in.Name, Grace: d.cfg.StopGrace})
				if err != nil {
					d.cfg.Log.Warn("stopping an instance", "name", in.Name, "host", in.Host, "err", err)
				}
				err = d.cfg.Agents.Destroy(ctx, in.Host, agentapi.DestroyRequest{Name: in.Name})
				if err != nil {
					d.cfg.Log.Warn("removing an instance", "name", in.Name, "host", in.Host, "err", err)
				}
			}
		})
	}
	wg.Wait()
}

// event records what happened to app; losing one is logged, never worth
// failing what happened.
func (d *Deployer) event(ctx context.Context, app names.App, kind, by, msg string) {
	if by == "" {
		by = "upscale"
	}
	_, err := d.cfg.Store.RecordEvent(context.WithoutCancel(ctx), store.Event{Namespace: app.Namespace, App: app.Name, Kind: kind, Message: msg, By: by})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		d.cfg.Log.Warn("recording an event", "app", app.String(), "kind", kind, "err", err)
	}
}

// prune deletes the artifacts of all but the newest KeepArtifacts
// releases that ran or could run: never the live release's, one instances
// still run, or one a kept release shares (config changes and rollbacks
// reuse their base's artifact). The caller holds the app's lock.
func (d *Deployer) prune(ctx context.Context, app names.App, out func(string)) {
	ctx = context.WithoutCancel(ctx)
	rels, err := d.cfg.Store.ListReleases(ctx, app.Namespace, app.Name, 0)
	if err != nil {
		d.cfg.Log.Warn("pruning releases", "app", app.String(), "err", err)
		return
	}
	instances, err := d.cfg.Store.ListInstances(ctx, app.Namespace, app.Name)
	if err != nil {
		d.cfg.Log.Warn("pruning releases", "app", app.String(), "err", err)
		return
	}
	kept := map[string]bool{} // artifacts still wanted
	running := map[int]bool{} // releases instances run
	for _, in := range instances {
		running[in.Release] = true
	}
	var candidates []store.Release
	n := 0
	for _, r := range rels { // newest first
		if r.Artifact == "" || r.Pruned {
			continue
		}
		protected := r.Status == store.ReleaseLive || r.Status == store.ReleaseBuilding || running[r.Version]
		inWindow := r.Status != store.ReleaseFailed && n < KeepArtifacts
		if r.Status != store.ReleaseFailed {
			n++
		}
		if protected || inWindow {
			kept[r.Artifact] = true
		} else {
			candidates = append(candidates, r)
		}
	}
	var pruned []string
	for _, r := range candidates {
		if !kept[r.Artifact] {
			if err := d.cfg.Bus.DeleteArtifact(ctx, r.Artifact); err != nil {
				d.cfg.Log.Warn("deleting an artifact", "app", app.String(), "release", r.Version, "err", err)
				continue
			}
		}
		if err := d.cfg.Store.PruneRelease(ctx, app.Namespace, app.Name, r.Version); err != nil {
			d.cfg.Log.Warn("pruning a release", "app", app.String(), "release", r.Version, "err", err)
			continue
		}
		pruned = append(pruned, "v"+strconv.Itoa(r.Version))
	}
	if len(pruned) > 0 {
		out(fmt.Sprintf("       pruned the artifacts of %s (the last %d releases keep theirs)", strings.Join(pruned, ", "), KeepArtifacts))
	}
}
