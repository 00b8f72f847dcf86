package healing

import (
	"context"
	"fmt"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/names"
)

// noteCrashes records a crash event for every restart an agent reports
// (its heartbeat lists each container's restart count) since the last
// pass.
func (hl *Healer) noteCrashes(ctx context.Context, hosts map[string]fleet.Host) {
	seen := map[string]bool{}
	for _, h := range hosts {
		if !h.Up {
			continue
		}
		for _, c := range h.List {
			if c.App == "" {
				continue
			}
			seen[c.Name] = true
			if c.DiskOver > 0 {
				hl.noteDiskOver(ctx, h.Name, c)
				continue
			}
			prev, _ := hl.crashes.Load(c.Name)
			n, _ := prev.(int)
			if c.Restarts <= n {
				if c.Restarts < n {
					hl.crashes.Store(c.Name, c.Restarts) // reset after a long healthy run
				}
				continue
			}
			hl.crashes.Store(c.Name, c.Restarts)
			app, err := names.ParseApp(c.App)
			if err != nil {
				continue
			}
			hl.engine.Event(ctx, app, "crash", "upscale", fmt.Sprintf("%s on %s exited with status %d; restarted by its agent (restart %d, with backoff)", c.Name, h.Name, c.LastExit, c.Restarts))
		}
	}
	hl.crashes.Range(func(k, _ any) bool {
		if !seen[k.(string)] {
			hl.crashes.Delete(k)
		}
		return true
	})
}

// noteDiskOver records, once, that an agent stopped c for writing past
// its disk limit; healing replaces it.
func (hl *Healer) noteDiskOver(ctx context.Context, host string, c agentapi.ContainerInfo) {
	if _, noted := hl.crashes.LoadOrStore(c.Name, -1); noted {
		return
	}
	app, err := names.ParseApp(c.App)
	if err != nil {
		return
	}
	hl.engine.Event(ctx, app, "disk", "upscale", agentapi.DiskOver(c.Name+" on "+host, c.Disk)+"; a fresh instance replaces it (files an app keeps belong in a database or object storage)")
}
