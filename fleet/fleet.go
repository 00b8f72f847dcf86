// Package fleet knows which hosts are up, from their agents' heartbeats.
package fleet

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/upscalehq/upscale/hostagent"
)

// DownAfter is how long a host may be silent before it counts as down.
const DownAfter = 5 * time.Second

// Fleet is the live view of the hosts.
type Fleet struct {
	mu    sync.Mutex
	hosts map[string]hostagent.Beat
	up    map[string]bool // as last logged
	now   func() time.Time
	log   *slog.Logger
}

// New makes an empty fleet that logs hosts going up and down to log.
func New(log *slog.Logger) *Fleet {
	return &Fleet{hosts: map[string]hostagent.Beat{}, up: map[string]bool{}, now: time.Now, log: log}
}

// Beat records a heartbeat. The host name comes from the subject the beat
// arrived on (which the bus lets only that host publish to), never from
// the message.
func (f *Fleet) Beat(host string, b hostagent.Beat) {
	b.Name = host
	b.At = f.now()
	f.mu.Lock()
	f.hosts[host] = b
	f.mu.Unlock()
}

// Host is a host with its state.
type Host struct {
	hostagent.Beat
	Up bool
}

// Hosts lists every host heard from, sorted by name.
func (f *Fleet) Hosts() []Host {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Host, 0, len(f.hosts))
	for _, b := range f.hosts {
		up := f.now().Sub(b.At) < DownAfter
		b.State = "down"
		if up {
			b.State = "up"
		}
		out = append(out, Host{Beat: b, Up: up})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Up lists the hosts that are up.
func (f *Fleet) Up() []Host {
	var up []Host
	for _, h := range f.Hosts() {
		if h.Up {
			up = append(up, h)
		}
	}
	return up
}

// Caller asks an agent a question on the bus.
type Caller interface {
	Call(ctx context.Context, subject string, req, resp any, progress func(line string)) error
}

// Watch asks every known host for its status each interval until ctx ends.
// The server pulls heartbeats rather than taking them from a subject:
// only the real agent of a host can answer a call to it.
func (f *Fleet) Watch(ctx context.Context, bus Caller, hosts func() []string, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		var wg sync.WaitGroup
		for _, h := range hosts() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, interval*2)
				defer cancel()
				var b hostagent.Beat
				if err := bus.Call(cctx, hostagent.Subject(h, hostagent.MethodStatus), struct{}{}, &b, nil); err == nil {
					f.Beat(h, b)
				} else {
					f.seen(h)
				}
			}()
		}
		wg.Wait()
		f.logChanges()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (f *Fleet) logChanges() {
	for _, h := range f.Hosts() {
		f.mu.Lock()
		was, known := f.up[h.Name]
		f.up[h.Name] = h.Up
		f.mu.Unlock()
		if was != h.Up || !known {
			f.log.Info("host "+h.State, "host", h.Name)
		}
	}
}

// seen records a host that exists but did not answer, so it is listed
// (as down) from the start.
func (f *Fleet) seen(host string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.hosts[host]; !ok {
		f.hosts[host] = hostagent.Beat{Info: hostagent.Info{Name: host}}
	}
}
