package deploy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
)

// Resume runs a stopped app's live release again on fresh instances and
// records it. The caller holds the app's lock (app run: see backend.Run).
func (d *Deployer) Resume(ctx context.Context, app names.App, by string, out func(string)) error {
	if err := d.start(ctx, app, by, out); err != nil {
		return err
	}
	d.event(ctx, app, "run", by, "started again")
	return nil
}

// Restart replaces a running app's instances with fresh ones of its live
// release, switching only once they are healthy.
func (d *Deployer) Restart(ctx context.Context, app names.App, out func(string)) error {
	defer d.Lock(app)()
	a, err := d.cfg.Store.GetApp(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	if a.Stopped {
		return fmt.Errorf("app %s is stopped; start it with app run", app)
	}
	if err := d.start(ctx, app, byOf(ctx), out); err != nil {
		d.event(ctx, app, "failure", byOf(ctx), "restart failed: "+msgtext.Truncate(msgtext.OneLine(err.Error()), 300))
		return err
	}
	d.event(ctx, app, "restart", byOf(ctx), "instances replaced")
	return nil
}

// Stop stops every instance of the app until Run.
func (d *Deployer) Stop(ctx context.Context, app names.App, out func(string)) error {
	defer d.Lock(app)()
	if err := d.stop(ctx, app, out); err != nil {
		return err
	}
	d.event(ctx, app, "stop", byOf(ctx), "every instance stopped")
	out(fmt.Sprintf("-----> %s stopped; %s answers 503 until app run", app, d.URL(app)))
	return nil
}

// Process is one instance as `app ps` shows it.
type Process struct {
	Name      string    `json:"name"`
	Process   string    `json:"process"` // web, worker, ...
	Host      string    `json:"host"`
	Addr      string    `json:"addr"`
	Release   int       `json:"release"`
	State     string    `json:"state"`
	StartedAt time.Time `json:"started_at,omitzero"`
	Restarts  int       `json:"restarts"`
	LastExit  int       `json:"last_exit"` // status of the last crash, when Restarts > 0
}

// PS lists the app's instances with what their hosts say of them.
func (d *Deployer) PS(ctx context.Context, app names.App) ([]Process, error) {
	instances, err := d.cfg.Store.ListInstances(ctx, app.Namespace, app.Name)
	if err != nil {
		return nil, err
	}
	hosts := map[string]map[string]agentapi.ContainerInfo{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	// Each host is asked once; the answers are written under mu (a map
	// read while a goroutine writes it is a race).
	asked := map[string]bool{}
	for _, in := range instances {
		if asked[in.Host] {
			continue
		}
		asked[in.Host] = true
		wg.Add(1)
		go func(host string) {
			defer wg.Done()
			reply, err := d.cfg.Agents.List(ctx, host)
			if err != nil {
				return
			}
			byName := map[string]agentapi.ContainerInfo{}
			for _, c := range reply.Containers {
				byName[c.Name] = c
			}
			mu.Lock()
			hosts[host] = byName
			mu.Unlock()
		}(in.Host)
	}
	wg.Wait()
	out := make([]Process, 0, len(instances))
	for _, in := range instances {
		p := Process{Name: in.Name, Process: ProcessOf(in), Host: in.Host, Addr: in.Addr, Release: in.Release, State: "unknown (host not answering)"}
		if cs := hosts[in.Host]; cs != nil {
			p.State = "missing"
			if c, ok := cs[in.Name]; ok {
				p.State, p.StartedAt, p.Restarts, p.LastExit = c.State, c.StartedAt, c.Restarts, c.LastExit
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// Delete forgets the app and takes down what it ran: once the store no
// longer has it, the router stops answering for its hostnames (the Upscale
// 404 page), its containers go, and so do its release artifacts, which
// nothing can roll back to any more.
func (d *Deployer) Delete(ctx context.Context, app names.App) error {
	defer d.Lock(app)()
	instances, err := d.cfg.Store.ListInstances(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	releases, err := d.cfg.Store.ListReleases(ctx, app.Namespace, app.Name, 0)
	if err != nil {
		return err
	}
	if err := d.cfg.Store.DeleteApp(ctx, app.Namespace, app.Name); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	if err := d.Sync(ctx); err != nil {
		d.cfg.Log.Error("router sync after deleting an app", "app", app.String(), "err", err)
	}
	d.remove(ctx, instances, nil)
	seen := map[string]bool{}
	for _, r := range releases {
		if r.Artifact == "" || r.Pruned || seen[r.Artifact] {
			continue
		}
		seen[r.Artifact] = true
		if err := d.cfg.Bus.DeleteArtifact(ctx, r.Artifact); err != nil {
			d.cfg.Log.Warn("deleting a deleted app's artifact", "app", app.String(), "artifact", r.Artifact, "err", err)
		}
	}
	return nil
}
