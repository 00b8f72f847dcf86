package deploy

import (
	"context"
	"errors"
	"fmt"

	"github.com/upscalehq/upscale/builder"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// errInterrupted is why a release found building at a server's start
// failed.
var errInterrupted = errors.New("the build was interrupted: the server stopped while it ran")

// FailInterrupted records as failed every release still building and
// deletes its source from the object store. Call it when the server
// starts, before it takes pushes: a build runs inside its push, and no
// push outlives the server process, so a release still building then lost
// its build with the process before (crashed or killed). The build
// container is the agent's to remove (it sweeps its leftovers when it
// starts, and the server's local agent restarts with it). It assumes one
// server per store.
func (d *Deployer) FailInterrupted(ctx context.Context) error {
	apps, err := d.cfg.Store.ListApps(ctx, "")
	if err != nil {
		return fmt.Errorf("listing apps for interrupted builds: %w", err)
	}
	var errs []error
	for _, a := range apps {
		app := names.App{Namespace: a.Namespace, Name: a.Name}
		rels, err := d.cfg.Store.ListReleases(ctx, a.Namespace, a.Name, 0)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range rels {
			if r.Status != store.ReleaseBuilding {
				continue
			}
			d.cfg.Log.Info("failing a release whose build was interrupted", "app", app.String(), "release", r.Version)
			d.failed(ctx, app, r, "upscale", errInterrupted)
			if err := d.cfg.Bus.DeleteArtifact(ctx, builder.SourceName(app, r.Commit)); err != nil {
				errs = append(errs, fmt.Errorf("deleting the source of %s v%d: %w", app, r.Version, err))
			}
		}
	}
	return errors.Join(errs...)
}
