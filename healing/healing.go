// Package healing keeps what runs where true to the store as hosts come
// and go: it replaces instances lost with a host (or stopped for their
// disk), moves them off draining hosts, removes surplus and orphaned
// containers, records crashes, drains and rebalances hosts, and reacts to
// a host going down (heal now) or coming up (route its containers, and
// rebalance when the operator asked for it). It decides; the release
// engine (deploy) starts, routes and removes, under each app's lock.
package healing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// Engine is what healing asks of the release engine (deploy.Deployer).
type Engine interface {
	Lock(app names.App) func()
	TryLock(app names.App) (func(), bool)
	StartInstances(ctx context.Context, app names.App, rel store.Release, typ string, n int, away []store.Instance) ([]store.Instance, error)
	StartOn(ctx context.Context, app names.App, rel store.Release, typ string, hosts []string) ([]store.Instance, error)
	Reroute(ctx context.Context, app names.App, instances, lost []store.Instance) error
	Remove(ctx context.Context, instances []store.Instance, out func(string))
	Event(ctx context.Context, app names.App, kind, by, msg string)
}

var _ Engine = (*deploy.Deployer)(nil)

// Config is what a Healer acts on.
type Config struct {
	// Store, Hosts and Engine are required: the same store and hosts the
	// engine was built with.
	Store  store.Store
	Hosts  deploy.Hosts
	Engine Engine
	// Route routes a host's container subnet when it comes up
	// (hostops.Route); nil routes nothing.
	Route func(store.Host) error
	// AutoRebalance evens out instances whenever a host joins.
	AutoRebalance bool
	// Log is nil for no logging.
	Log *slog.Logger
}

// Healer heals, drains and rebalances. It is safe for concurrent use.
type Healer struct {
	store         store.Store
	hosts         deploy.Hosts
	engine        Engine
	route         func(store.Host) error
	autoRebalance bool
	log           *slog.Logger

	crashes sync.Map       // container -> restarts last seen (noteCrashes)
	bg      sync.WaitGroup // what a host change set off
}

// New returns a Healer over cfg, refusing one without its store, hosts or
// engine.
func New(cfg Config) (*Healer, error) {
	if cfg.Store == nil || cfg.Hosts == nil || cfg.Engine == nil {
		return nil, errors.New("healing.New: the store, the hosts and the release engine are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Healer{store: cfg.Store, hosts: cfg.Hosts, engine: cfg.Engine, route: cfg.Route, autoRebalance: cfg.AutoRebalance, log: cfg.Log}, nil
}

// settle is how long a new instance counts as alive before its host's
// status lists it, and how old an unknown container must be before it is
// removed as an orphan: status is at most a heartbeat behind.
const settle = 5 * time.Second

// Heal converges every app to what the store wants: instances on down
// hosts leave the router at once and are replaced elsewhere, instances on
// draining hosts are replaced and then removed, surplus instances and
// containers nobody wants are removed. Apps in the middle of a deploy are
// left alone until the next pass. It returns the first error of the pass.
func (hl *Healer) Heal(ctx context.Context) error {
	apps, err := hl.store.ListApps(ctx, "")
	if err != nil {
		return err
	}
	all, err := hl.store.ListInstances(ctx, "", "")
	if err != nil {
		return err
	}
	hosts := map[string]fleet.Host{}
	for _, h := range hl.hosts.Hosts() {
		hosts[h.Name] = h
	}
	byApp := map[string][]store.Instance{}
	for _, in := range all {
		byApp[in.Namespace+"/"+in.App] = append(byApp[in.Namespace+"/"+in.App], in)
	}
	var errs []error
	for _, a := range apps {
		app := names.App{Namespace: a.Namespace, Name: a.Name}
		unlock, ok := hl.engine.TryLock(app)
		if !ok {
			continue
		}
		// Orphans go even when no replacement can start (every host
		// draining, none with room): they serve nobody and hold a host.
		err := errors.Join(hl.healApp(ctx, a, byApp[app.String()], hosts), hl.removeOrphans(ctx, app, byApp[app.String()], hosts))
		unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", app, err))
		}
	}
	errs = append(errs, hl.removeStrays(ctx, apps, hosts))
	hl.noteCrashes(ctx, hosts)
	return errors.Join(errs...)
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

func (hl *Healer) healApp(ctx context.Context, a store.App, mine []store.Instance, hosts map[string]fleet.Host) error {
	app := names.App{Namespace: a.Namespace, Name: a.Name}
	want := map[string]int{} // per process type
	rel, err := hl.store.LiveRelease(ctx, a.Namespace, a.Name)
	switch {
	case err == nil && !a.Stopped:
		stored, err := hl.store.GetFormation(ctx, a.Namespace, a.Name)
		if err != nil {
			return err
		}
		want = deploy.Formation(rel.Config, stored)
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
		hl.log.Warn("instances lost", "app", app.String(), "instances", names2(lost))
	}
	// If no replacement can start, the lost ones still leave the router.
	dropLost := func(err error) error {
		if len(lost) > 0 {
			if rerr := hl.engine.Reroute(ctx, app, append(slices.Clone(keep), leaving...), lost); rerr != nil {
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
			if deploy.ProcessOf(in) == typ {
				have = append(have, in)
			}
		}
		need := want[typ] - len(have)
		switch {
		case need > 0:
			fresh, err := hl.engine.StartInstances(ctx, app, rel, typ, need, have)
			if err != nil {
				return dropLost(fmt.Errorf("replacing %d %s instance(s): %w", need, typ, err))
			}
			hl.log.Info("instances started", "app", app.String(), "process", typ, "instances", names2(fresh))
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
	if err := hl.engine.Reroute(ctx, app, keep, lost); err != nil {
		return err
	}
	hl.engine.Remove(ctx, gone, nil)
	return nil
}

// removeOrphans removes containers of app that up hosts run but the store
// does not want: what a host that was down still runs when it returns.
func (hl *Healer) removeOrphans(ctx context.Context, app names.App, mine []store.Instance, hosts map[string]fleet.Host) error {
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
		hl.log.Info("removing containers nobody wants", "app", app.String(), "containers", names2(orphans))
		hl.engine.Remove(ctx, orphans, nil)
	}
	return nil
}

// removeStrays removes containers of apps that no longer exist.
func (hl *Healer) removeStrays(ctx context.Context, apps []store.App, hosts map[string]fleet.Host) error {
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
	hl.engine.Remove(ctx, strays, nil)
	return nil
}

// processTypes are the types in want and those instances run, sorted.
func processTypes(want map[string]int, instances []store.Instance) []string {
	types := slices.Collect(maps.Keys(want))
	for _, in := range instances {
		if !slices.Contains(types, deploy.ProcessOf(in)) {
			types = append(types, deploy.ProcessOf(in))
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
