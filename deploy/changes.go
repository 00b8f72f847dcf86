package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// SetConfig sets and unsets app's config vars and, when deploy and the app
// runs, makes a new release of the live one's artifact with them and rolls
// it out without downtime. If that release fails the vars go back to what
// they were: what config list shows is what runs. Names and sizes are the
// caller's to check.
func (d *Deployer) SetConfig(ctx context.Context, app names.App, set map[string]string, unset []string, deploy bool, out func(string)) error {
	defer d.Lock(app)()
	by := byOf(ctx)
	a, err := d.cfg.Store.GetApp(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	before, err := d.cfg.Store.GetConfig(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	vars, err := d.cfg.Store.SetConfig(ctx, app.Namespace, app.Name, set, unset)
	if err != nil {
		return err
	}
	what := describeChange(set, unset)
	live, err := d.cfg.Store.LiveRelease(ctx, app.Namespace, app.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.event(ctx, app, "config", by, what+" (applies at the first push)")
		out(fmt.Sprintf("-----> %s; %s has no release yet: the first push runs with it", what, app))
		return nil
	case err != nil:
		return err
	case !deploy || a.Stopped:
		why := "--no-deploy"
		if a.Stopped {
			why = "the app is stopped"
		}
		d.event(ctx, app, "config", by, what+" ("+why+": applies at the next release, app restart or app run)")
		out(fmt.Sprintf("-----> %s; v%d keeps running (%s): the next push, config change, app restart or app run applies it", what, live.Version, why))
		return nil
	}
	cfg := live.Config
	cfg.Vars = vars
	cfg.Note = what
	rel, err := d.derive(ctx, app, live, by, cfg, out)
	if err != nil {
		// Back to what runs.
		var back []string
		for k := range vars {
			if _, ok := before[k]; !ok {
				back = append(back, k)
			}
		}
		if _, rerr := d.cfg.Store.SetConfig(context.WithoutCancel(ctx), app.Namespace, app.Name, before, back); rerr != nil {
			d.cfg.Log.Error("restoring config vars after a failed release", "app", app.String(), "err", rerr)
		}
		return fmt.Errorf("%w; config vars unchanged", err)
	}
	d.event(ctx, app, "config", by, fmt.Sprintf("%s: v%d", what, rel.Version))
	out(fmt.Sprintf("=====> %s: v%d is live", what, rel.Version))
	return nil
}

// describeChange names the keys, never the values: "set A, B; unset C".
func describeChange(set map[string]string, unset []string) string {
	var parts []string
	if len(set) > 0 {
		parts = append(parts, "set "+strings.Join(slices.Sorted(maps.Keys(set)), ", "))
	}
	if len(unset) > 0 {
		u := slices.Clone(unset)
		sort.Strings(u)
		parts = append(parts, "unset "+strings.Join(u, ", "))
	}
	return strings.Join(parts, "; ")
}

// ProcessTypes are the process types of app's live release, sorted; nil
// when it has none.
func (d *Deployer) ProcessTypes(ctx context.Context, app names.App) ([]string, error) {
	live, err := d.cfg.Store.LiveRelease(ctx, app.Namespace, app.Name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(Processes(live.Config))), nil
}

// Scale sets how many instances of each process type in change run. It
// makes no release: it starts or removes instances of the live release
// (new ones healthy before the router sends them anything, removed ones
// drained first) and records the formation, which later releases keep.
func (d *Deployer) Scale(ctx context.Context, app names.App, change map[string]int, out func(string)) error {
	defer d.Lock(app)()
	by := byOf(ctx)
	a, err := d.cfg.Store.GetApp(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	live, err := d.cfg.Store.LiveRelease(ctx, app.Namespace, app.Name)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s has no release yet; push first, then scale", app)
	}
	if err != nil {
		return err
	}
	procs := Processes(live.Config)
	types := slices.Sorted(maps.Keys(procs))
	for typ, n := range change {
		if _, ok := procs[typ]; !ok {
			return fmt.Errorf("%s has no process type %q; its types are: %s", app, typ, strings.Join(types, ", "))
		}
		if n < 0 || n > MaxScale {
			return fmt.Errorf("%s=%d: instances must be from 0 to %d", typ, n, MaxScale)
		}
	}
	stored, err := d.cfg.Store.GetFormation(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	was := Formation(live.Config, stored)
	next := maps.Clone(stored)
	if next == nil {
		next = map[string]int{}
	}
	maps.Copy(next, change)
	want := Formation(live.Config, next)
	if !a.Stopped {
		release, err := d.reserve(ctx, app, want, d.memory(live.Config.Memory))
		if err != nil {
			return err
		}
		err = d.scaleTo(ctx, app, live, want, out)
		release()
		if err != nil {
			return err
		}
	}
	if err := d.cfg.Store.SetFormation(ctx, app.Namespace, app.Name, next); err != nil {
		return err
	}
	msg := fmt.Sprintf("%s (was %s)", FormatFormation(want), FormatFormation(was))
	if a.Stopped {
		msg += "; the app is stopped: app run starts these"
	}
	d.event(ctx, app, "scale", by, msg)
	out(fmt.Sprintf("=====> %s scaled to %s", app, msg))
	return nil
}

// scaleTo starts and removes instances of live until want runs.
func (d *Deployer) scaleTo(ctx context.Context, app names.App, live store.Release, want map[string]int, out func(string)) error {
	cur, err := d.cfg.Store.ListInstances(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	byType := map[string][]store.Instance{}
	for _, in := range cur {
		byType[ProcessOf(in)] = append(byType[ProcessOf(in)], in)
	}
	var keep, fresh, gone []store.Instance
	for _, typ := range slices.Sorted(maps.Keys(byType)) {
		if _, ok := want[typ]; !ok {
			gone = append(gone, byType[typ]...) // a type the release no longer has
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(want)) {
		have := byType[typ]
		sort.Slice(have, func(i, j int) bool { return have[i].CreatedAt.Before(have[j].CreatedAt) })
		n := want[typ]
		if n <= len(have) {
			keep = append(keep, have[:n]...)
			gone = append(gone, have[n:]...)
			continue
		}
		keep = append(keep, have...)
		out(fmt.Sprintf("-----> Starting %d more %s instance(s) of v%d", n-len(have), typ, live.Version))
		started, err := d.startInstances(ctx, app, live, typ, n-len(have), have, out, &Timing{})
		if err != nil {
			d.remove(ctx, fresh, nil)
			return fmt.Errorf("scaling %s to %d: %w", typ, n, err)
		}
		fresh = append(fresh, started...)
	}
	if len(fresh) == 0 && len(gone) == 0 {
		return nil
	}
	if err := d.Reroute(ctx, app, append(keep, fresh...), nil); err != nil {
		d.remove(ctx, fresh, nil)
		return err
	}
	if len(gone) > 0 {
		out(fmt.Sprintf("-----> Removing %d instance(s)", len(gone)))
		d.retire(ctx, gone)
	}
	return nil
}

// Rollback makes a new release of an older one's artifact and config (its
// config vars become the app's again) and makes it live: no build. version
// 0 means the newest release before the live one that did not fail.
func (d *Deployer) Rollback(ctx context.Context, app names.App, version int, out func(string)) (store.Release, error) {
	defer d.Lock(app)()
	by := byOf(ctx)
	a, err := d.cfg.Store.GetApp(ctx, app.Namespace, app.Name)
	if err != nil {
		return store.Release{}, err
	}
	if a.Stopped {
		return store.Release{}, fmt.Errorf("%s is stopped; start it with app run before rolling back", app)
	}
	live, err := d.cfg.Store.LiveRelease(ctx, app.Namespace, app.Name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Release{}, fmt.Errorf("%s has no live release to roll back from", app)
	}
	if err != nil {
		return store.Release{}, err
	}
	var target store.Release
	if version == 0 {
		rels, err := d.cfg.Store.ListReleases(ctx, app.Namespace, app.Name, 0)
		if err != nil {
			return store.Release{}, err
		}
		i := slices.IndexFunc(rels, func(r store.Release) bool {
			return r.Version < live.Version && r.Status != store.ReleaseFailed && r.Status != store.ReleaseBuilding
		})
		if i < 0 {
			return store.Release{}, fmt.Errorf("%s has no release before v%d to roll back to", app, live.Version)
		}
		target = rels[i]
	} else {
		target, err = d.cfg.Store.GetRelease(ctx, app.Namespace, app.Name, version)
		if errors.Is(err, store.ErrNotFound) {
			return store.Release{}, fmt.Errorf("%s has no release v%d; see releases %s", app, version, app)
		}
		if err != nil {
			return store.Release{}, err
		}
	}
	switch {
	case target.Version == live.Version:
		return store.Release{}, fmt.Errorf("v%d is already live", target.Version)
	case target.Status == store.ReleaseFailed:
		return store.Release{}, fmt.Errorf("v%d failed, so there is nothing to roll back to: %s", target.Version, msgtext.Truncate(target.Failure, 200))
	case target.Status == store.ReleaseBuilding:
		return store.Release{}, fmt.Errorf("v%d is still building", target.Version)
	case target.Pruned || target.Artifact == "":
		return store.Release{}, fmt.Errorf("v%d was pruned: only the last %d releases keep their artifact; push again to rebuild", target.Version, KeepArtifacts)
	}
	cfg := target.Config
	cfg.Note = fmt.Sprintf("rollback to v%d", target.Version)
	rel, err := d.derive(ctx, app, target, by, cfg, out)
	if err != nil {
		return rel, err
	}
	// The target's config vars are the app's again.
	cur, err := d.cfg.Store.GetConfig(ctx, app.Namespace, app.Name)
	if err == nil {
		var unset []string
		for k := range cur {
			if _, ok := target.Config.Vars[k]; !ok {
				unset = append(unset, k)
			}
		}
		_, err = d.cfg.Store.SetConfig(ctx, app.Namespace, app.Name, target.Config.Vars, unset)
	}
	if err != nil {
		d.cfg.Log.Error("restoring config vars of a rollback", "app", app.String(), "err", err)
	}
	d.event(ctx, app, "rollback", by, fmt.Sprintf("rollback to v%d (%s) as v%d", target.Version, msgtext.Short(target.Commit), rel.Version))
	return rel, nil
}
