package deploy

import (
	"context"
	"fmt"

	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// What package healing builds on: it decides which instances to replace,
// move or remove; the release engine starts, routes and removes them, so
// that a heal and a deploy change the router the same way, one at a time.

// StartInstances starts n healthy instances of process type typ of rel,
// placed away from the hosts of away; all or none.
func (d *Deployer) StartInstances(ctx context.Context, app names.App, rel store.Release, typ string, n int, away []store.Instance) ([]store.Instance, error) {
	return d.startInstances(ctx, app, rel, typ, n, away, func(string) {}, &Timing{})
}

// StartOn starts one healthy instance of process type typ of rel on each
// of hosts; all or none.
func (d *Deployer) StartOn(ctx context.Context, app names.App, rel store.Release, typ string, hosts []string) ([]store.Instance, error) {
	return d.startOn(ctx, app, rel, typ, hosts, func(string) {}, &Timing{})
}

// Remove destroys instances, best effort (see remove); out, when not nil,
// hears of each one left behind.
func (d *Deployer) Remove(ctx context.Context, instances []store.Instance, out func(string)) {
	d.remove(ctx, instances, out)
}

// Event records what happened to app; losing one is logged.
func (d *Deployer) Event(ctx context.Context, app names.App, kind, by, msg string) {
	d.event(ctx, app, kind, by, msg)
}

// Reroute makes instances the app's instances, in the router and the
// store; the router cuts the servers of lost instances rather than
// draining them. The caller holds the app's lock.
func (d *Deployer) Reroute(ctx context.Context, app names.App, instances, lost []store.Instance) error {
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
	if err := d.route(ctx, backends); err != nil {
		return fmt.Errorf("switching the router: %w", err)
	}
	return d.cfg.Store.SetInstances(ctx, app.Namespace, app.Name, instances)
}
