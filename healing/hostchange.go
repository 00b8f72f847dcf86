package healing

import (
	"context"
	"strings"
	"time"

	"github.com/upscalehq/upscale/fleet"
)

// Watch makes the healer react to f's hosts going up and down, and heal
// every interval, until ctx ends. Call it before f.Watch: it sets
// f.OnChange.
//
// The first pass waits fleet.DownAfter: right after a (re)start no host
// has had the time to answer yet, and healing then would take every
// instance on a host not heard from for lost, and replace instances that
// are fine. A host is down only once silent for fleet.DownAfter.
func (hl *Healer) Watch(ctx context.Context, f *fleet.Fleet, interval time.Duration) {
	f.OnChange = func(h fleet.Host) { hl.hostChanged(ctx, h) }
	go func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(fleet.DownAfter):
		}
		hl.run(ctx, interval)
	}()
}

// hostChanged is the policy when a host goes down or comes up. It runs on
// the fleet's watch: what takes long runs on its own.
func (hl *Healer) hostChanged(ctx context.Context, h fleet.Host) {
	if !h.Up {
		// Its instances leave the router and are replaced now, not at
		// the next healing pass.
		hl.bg.Go(func() {
			if err := hl.Heal(ctx); err != nil && ctx.Err() == nil {
				hl.log.Warn("healing", "err", err)
			}
		})
		return
	}
	if hl.route != nil {
		if err := hl.route(h.Record); err != nil {
			hl.log.Warn("routing a host's containers", "host", h.Name, "err", err)
		}
	}
	if hl.autoRebalance && h.Record.Provider != "local" {
		hl.bg.Go(func() { hl.Rebalance(ctx, false, func(l string) { hl.log.Info(strings.TrimSpace(l)) }) })
	}
}

// run heals every interval until ctx ends.
func (hl *Healer) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := hl.Heal(ctx); err != nil && ctx.Err() == nil {
			hl.log.Warn("healing", "err", err)
		}
	}
}
