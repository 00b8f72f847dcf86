package hostagent

import (
	"context"
	"time"
)

// Crash restarts: an app container that exits is started again at once,
// then after 1 s, 2 s, 4 s, ... up to 5 minutes, so that a crash loop costs
// the host almost nothing; after 10 minutes of running the count starts
// over. Containers the server stopped on purpose, builds and one-off runs
// are left alone.
const (
	maxBackoff    = 5 * time.Minute
	healthyReset  = 10 * time.Minute
	superviseTick = 500 * time.Millisecond
)

// backoff is the wait before restart number n (0-based).
func backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := time.Second << min(n-1, 20)
	return min(d, maxBackoff)
}

func (a *Agent) superviseLoop(ctx context.Context) {
	t := time.NewTicker(superviseTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.superviseOnce(ctx, time.Now())
	}
}

func (a *Agent) superviseOnce(ctx context.Context, now time.Time) {
	cs, err := a.rt.List()
	if err != nil {
		return
	}
	for _, c := range cs {
		if c.State != "stopped" {
			continue
		}
		a.mu.Lock()
		m := a.loadMeta(c.Name)
		due := m.App != "" && !m.Held
		if due && m.NextAt.IsZero() {
			// Just found stopped: count the crash, schedule the restart.
			if !c.StartedAt.IsZero() && now.Sub(c.StartedAt) > healthyReset {
				m.Restarts = 0
			}
			m.LastExit = c.ExitCode
			m.NextAt = now.Add(backoff(m.Restarts))
			a.saveMeta(c.Name, m)
			a.cfg.Log.Warn("container exited", "name", c.Name, "app", m.App, "exit", c.ExitCode, "restart in", backoff(m.Restarts).String())
		}
		due = due && !now.Before(m.NextAt)
		if due {
			m.Restarts++
			m.NextAt = time.Time{}
			a.saveMeta(c.Name, m)
		}
		a.mu.Unlock()
		if due {
			if err := a.rt.Start(ctx, c.Name); err != nil {
				a.cfg.Log.Warn("restarting a container", "name", c.Name, "err", err)
			}
		}
	}
}
