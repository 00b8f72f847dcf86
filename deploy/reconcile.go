package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/scheduler"
	"github.com/upscalehq/upscale/store"
)

// settle is how long a new instance counts as alive before its host's
// status lists it, and how old an unknown container must be before it is
// removed as an orphan: status is at most a heartbeat behind.
const settle = 5 * time.Second

// Heal converges every app to what the store wants: instances on down
// hosts leave the router at once and are replaced elsewhere, instances on
// draining hosts are replaced and then removed, surplus instances and
// containers nobody wants are removed. Apps in the middle of a deploy are
// left alone until the next pass. It returns the first error of the pass.
func (d *Deployer) Heal(ctx context.Context) error {
	apps, err := d.cfg.Store.ListApps(ctx, "")
	if err != nil {
		return err
	}
	all, err := d.cfg.Store.ListInstances(ctx, "", "")
	if err != nil {
		return err
	}
	hosts := map[string]fleet.Host{}
	for _, h := range d.cfg.Hosts.Hosts() {
		hosts[h.Name] = h
	}
	byApp := map[string][]store.Instance{}
	for _, in := range all {
		byApp[in.Namespace+"/"+in.App] = append(byApp[in.Namespace+"/"+in.App], in)
	}
	var errs []error
	for _, a := range apps {
		app := names.App{Namespace: a.Namespace, Name: a.Name}
		unlock, ok := d.TryLock(app)
		if !ok {
			continue
		}
		// Orphans go even when no replacement can start (every host
		// draining, none with room): they serve nobody and hold a host.
		err := errors.Join(d.healApp(ctx, a, byApp[app.String()], hosts), d.removeOrphans(ctx, app, byApp[app.String()], hosts))
		unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", app, err))
		}
	}
	errs = append(errs, d.removeStrays(ctx, apps, hosts))
	d.noteCrashes(ctx, hosts)
	return errors.Join(errs...)
}

// RunHealer heals every interval until ctx ends.
func (d *Deployer) RunHealer(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := d.Heal(ctx); err != nil && ctx.Err() == nil {
			d.cfg.Log.Warn("healing", "err", err)
		}
	}
}

// alive reports whether in exists as far as its host's last status says.
// A container that exited still counts: its agent restarts it (with
// backoff), and starting it elsewhere would not cure a crashing app. One
// its agent stopped for writing past its disk limit does not: only a
// fresh container has an empty writable layer.
func alive(in store.Instance, h fleet.Host, ok bool) bool {
	if !ok || !h.Up {
		return false
	}
	if h.At.Before(in.CreatedAt.Add(settle)) {
		return true // too new for the status to tell
	}
	return slices.ContainsFunc(h.List, func(c agentapi.ContainerInfo) bool { return c.Name == in.Name && c.DiskOver == 0 })
}

func (d *Deployer) healApp(ctx context.Context, a store.App, mine []store.Instance, hosts map[string]fleet.Host) error {
	app := names.App{Namespace: a.Namespace, Name: a.Name}
	want := map[string]int{} // per process type
	rel, err := d.cfg.Store.LiveRelease(ctx, a.Namespace, a.Name)
	switch {
	case err == nil && !a.Stopped:
		stored, err := d.cfg.Store.GetFormation(ctx, a.Namespace, a.Name)
		if err != nil {
			return err
		}
		want = Formation(rel.Config, stored)
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return err
	}
	var keep, leaving, lost []store.Instance
	for _, in := range mine {
		h, ok := hosts[in.Host]
		switch {
		case !alive(in, h, ok):
			lost = append(lost, in)
		case h.Record.State == store.HostDraining:
			leaving = append(leaving, in)
		default:
			keep = append(keep, in)
		}
	}
	if len(lost) > 0 {
		// Their replacements start first and take over in the same
		// router change that drops the lost ones, which the router cuts
		// rather than drains: what they had in flight never finishes.
		d.cfg.Log.Warn("instances lost", "app", app.String(), "instances", names2(lost))
	}
	// If no replacement can start, the lost ones still leave the router.
	dropLost := func(err error) error {
		if len(lost) > 0 {
			if rerr := d.reroute(ctx, app, append(slices.Clone(keep), leaving...), lost); rerr != nil {
				return errors.Join(err, rerr)
			}
		}
		return err
	}
	sort.Slice(keep, func(i, j int) bool { return keep[i].CreatedAt.Before(keep[j].CreatedAt) })
	// Lost instances on an up host (crashed) are removed now; those on a
	// down host when it returns (removeOrphans).
	var gone []store.Instance
	for _, in := range lost {
		if h, ok := hosts[in.Host]; ok && h.Up {
			gone = append(gone, in)
		}
	}
	// Each process type on its own: start what is missing, drop the
	// surplus (the newest), and every instance of a type the release
	// does not have.
	changed := false
	var kept []store.Instance
	for _, typ := range processTypes(want, keep) {
		var have []store.Instance
		for _, in := range keep {
			if processOf(in) == typ {
				have = append(have, in)
			}
		}
		need := want[typ] - len(have)
		switch {
		case need > 0:
			fresh, err := d.startInstances(ctx, app, rel, typ, need, have, func(string) {}, &Timing{})
			if err != nil {
				return dropLost(fmt.Errorf("replacing %d %s instance(s): %w", need, typ, err))
			}
			d.cfg.Log.Info("instances started", "app", app.String(), "process", typ, "instances", names2(fresh))
			have = append(have, fresh...)
		case need < 0:
			gone = append(gone, have[want[typ]:]...)
			have = have[:want[typ]]
		}
		changed = changed || need != 0
		kept = append(kept, have...)
	}
	keep = kept
	gone = append(gone, leaving...)
	if !changed && len(leaving) == 0 && len(lost) == 0 {
		return nil
	}
	if err := d.reroute(ctx, app, keep, lost); err != nil {
		return err
	}
	d.remove(ctx, gone, nil)
	return nil
}

// reroute makes instances the app's instances, in the router and the
// store; the router cuts the servers of lost instances rather than
// draining them.
func (d *Deployer) reroute(ctx context.Context, app names.App, instances, lost []store.Instance) error {
	d.sync.Lock()
	defer d.sync.Unlock()
	backends, err := d.backends(ctx, app, instances)
	if err != nil {
		return err
	}
	for i := range backends {
		if backends[i].Name == app.String() {
			for _, in := range lost {
				backends[i].Lost = append(backends[i].Lost, in.Name)
			}
		}
	}
	if err := d.cfg.Router.Apply(ctx, backends); err != nil {
		return fmt.Errorf("switching the router: %w", err)
	}
	return d.cfg.Store.SetInstances(ctx, app.Namespace, app.Name, instances)
}

// removeOrphans removes containers of app that up hosts run but the store
// does not want: what a host that was down still runs when it returns.
func (d *Deployer) removeOrphans(ctx context.Context, app names.App, mine []store.Instance, hosts map[string]fleet.Host) error {
	wanted := map[string]bool{}
	for _, in := range mine {
		wanted[in.Name] = true
	}
	var orphans []store.Instance
	for _, h := range hosts {
		if !h.Up {
			continue
		}
		for _, c := range h.List {
			// Builds run with no app (c.App ""): an app's container is told
			// by what its agent recorded, never by its name, which a
			// namespace may share (a namespace "build" has "build-...").
			if c.App == app.String() && !wanted[c.Name] && h.At.Sub(c.StartedAt) > settle {
				orphans = append(orphans, store.Instance{Name: c.Name, Host: h.Name})
			}
		}
	}
	if len(orphans) > 0 {
		d.cfg.Log.Info("removing containers nobody wants", "app", app.String(), "containers", names2(orphans))
		d.remove(ctx, orphans, nil)
	}
	return nil
}

// removeStrays removes containers of apps that no longer exist.
func (d *Deployer) removeStrays(ctx context.Context, apps []store.App, hosts map[string]fleet.Host) error {
	exists := map[string]bool{}
	for _, a := range apps {
		exists[a.Namespace+"/"+a.Name] = true
	}
	var strays []store.Instance
	for _, h := range hosts {
		if !h.Up {
			continue
		}
		for _, c := range h.List {
			if c.App != "" && !exists[c.App] && h.At.Sub(c.StartedAt) > settle {
				strays = append(strays, store.Instance{Name: c.Name, Host: h.Name})
			}
		}
	}
	d.remove(ctx, strays, nil)
	return nil
}

// processTypes are the types in want and those instances run, sorted.
func processTypes(want map[string]int, instances []store.Instance) []string {
	types := slices.Collect(maps.Keys(want))
	for _, in := range instances {
		if !slices.Contains(types, processOf(in)) {
			types = append(types, processOf(in))
		}
	}
	slices.Sort(types)
	return types
}

func names2(ins []store.Instance) string {
	var out []string
	for _, in := range ins {
		out = append(out, in.Name+"@"+in.Host)
	}
	return strings.Join(out, ",")
}

// Drain moves every instance off host: new ones start elsewhere and take
// over before the old ones go, so no request is dropped. It refuses when
// some app on host has nowhere else to run, unless force, which removes
// such instances.
func (d *Deployer) Drain(ctx context.Context, host string, force bool, out func(string)) error {
	h, err := d.cfg.Store.GetHost(ctx, host)
	if err != nil {
		return err
	}
	others := 0
	for _, fh := range d.cfg.Hosts.Up() {
		if fh.Name != host && fh.Active() {
			others++
		}
	}
	all, err := d.cfg.Store.ListInstances(ctx, "", "")
	if err != nil {
		return err
	}
	var here []store.Instance
	for _, in := range all {
		if in.Host == host {
			here = append(here, in)
		}
	}
	if len(here) > 0 && others == 0 && !force {
		return fmt.Errorf("host %s is the only host up to run %s; drain with --force to stop them", host, names2(here))
	}
	if err := d.cfg.Store.SetHostState(ctx, h.Name, store.HostDraining); err != nil {
		return err
	}
	out(fmt.Sprintf("-----> Draining %s: %d instance(s) to move", host, len(here)))
	if others == 0 {
		for _, in := range here {
			app := names.App{Namespace: in.Namespace, Name: in.App}
			unlock := d.Lock(app)
			rest, _ := d.cfg.Store.ListInstances(ctx, in.Namespace, in.App)
			rest = slices.DeleteFunc(rest, func(x store.Instance) bool { return x.Host == host })
			err := d.reroute(ctx, app, rest, nil)
			unlock()
			if err != nil {
				return err
			}
			d.remove(ctx, []store.Instance{in}, out)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := d.Heal(ctx); err != nil {
			out("       " + err.Error())
		}
		left, err := d.instancesOn(ctx, host)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			out(fmt.Sprintf("=====> %s is drained: nothing runs there", host))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still runs %s after 2 minutes", host, names2(left))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (d *Deployer) instancesOn(ctx context.Context, host string) ([]store.Instance, error) {
	all, err := d.cfg.Store.ListInstances(ctx, "", "")
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(in store.Instance) bool { return in.Host != host }), nil
}

// Rebalance evens out instances across the active hosts (see
// scheduler.Rebalance), one move at a time: the new instance starts and
// takes over before the old one goes. With dryRun it only says what it
// would move.
func (d *Deployer) Rebalance(ctx context.Context, dryRun bool, out func(string)) error {
	var hosts []scheduler.Host
	for _, h := range d.cfg.Hosts.Up() {
		if h.Active() {
			hosts = append(hosts, scheduler.Host{Name: h.Name, Weight: h.Record.Weight, MemFree: h.MemFree, Containers: h.Containers})
		}
	}
	all, err := d.cfg.Store.ListInstances(ctx, "", "")
	if err != nil {
		return err
	}
	var ins []scheduler.Instance
	for _, in := range all {
		ins = append(ins, scheduler.Instance{App: in.Namespace + "/" + in.App, Name: in.Name, Host: in.Host})
	}
	moves := scheduler.Rebalance(hosts, ins)
	if len(moves) == 0 {
		out("=====> Nothing to move: the hosts are even")
		return nil
	}
	for _, m := range moves {
		if dryRun {
			out(fmt.Sprintf("       would move %s (%s) from %s to %s", m.Name, m.App, m.Host, m.To))
			continue
		}
		if err := d.move(ctx, m, out); err != nil {
			return err
		}
	}
	if dryRun {
		out(fmt.Sprintf("=====> %d move(s) planned; run without --dry-run to make them", len(moves)))
	} else {
		out(fmt.Sprintf("=====> %d instance(s) moved", len(moves)))
	}
	return nil
}

func (d *Deployer) move(ctx context.Context, m scheduler.Move, out func(string)) error {
	app, err := names.ParseApp(m.App)
	if err != nil {
		return err
	}
	defer d.Lock(app)()
	rel, err := d.cfg.Store.LiveRelease(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	cur, err := d.cfg.Store.ListInstances(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(cur, func(in store.Instance) bool { return in.Name == m.Name })
	if i < 0 {
		return nil // gone meanwhile
	}
	fresh, err := d.startOn(ctx, app, rel, processOf(cur[i]), []string{m.To}, func(string) {}, &Timing{})
	if err != nil {
		return fmt.Errorf("moving %s to %s: %w", m.Name, m.To, err)
	}
	old := cur[i]
	cur = append(append(cur[:i:i], cur[i+1:]...), fresh...)
	if err := d.reroute(ctx, app, cur, nil); err != nil {
		d.remove(ctx, fresh, nil)
		return err
	}
	d.remove(ctx, []store.Instance{old}, nil)
	out(fmt.Sprintf("-----> Moved %s (%s) from %s to %s as %s", m.Name, m.App, m.Host, m.To, fresh[0].Name))
	return nil
}
