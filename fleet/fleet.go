// Package fleet knows the hosts: their records in the store, and whether
// each is up, from the status the server asks its agent for every second.
package fleet

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/upscalehq/upscale/hostagent"
	"github.com/upscalehq/upscale/store"
)

// DownAfter is how long a host may be silent before it counts as down.
const DownAfter = 5 * time.Second

// Host is a host with its record and its last status.
type Host struct {
	hostagent.Beat
	Record store.Host
	Up     bool
}

// Active reports whether new containers may land on the host.
func (h Host) Active() bool { return h.Up && h.Record.State != store.HostDraining }

// Fleet is the live view of the hosts.
type Fleet struct {
	mu      sync.Mutex
	records map[string]store.Host
	beats   map[string]hostagent.Beat
	up      map[string]bool // as last reported to OnChange
	now     func() time.Time
	log     *slog.Logger
	// OnChange is called (from Watch) when a host goes up or down.
	OnChange func(h Host)
}

// New makes an empty fleet that logs hosts going up and down to log.
func New(log *slog.Logger) *Fleet {
	return &Fleet{records: map[string]store.Host{}, beats: map[string]hostagent.Beat{}, up: map[string]bool{}, now: time.Now, log: log}
}

// Beat records a status. The host name comes from the subject the call
// went to, never from the message.
func (f *Fleet) Beat(host string, b hostagent.Beat) {
	b.Name = host
	b.At = f.now()
	f.mu.Lock()
	f.beats[host] = b
	f.mu.Unlock()
}

// SetRecords replaces the known host records.
func (f *Fleet) SetRecords(records []store.Host) {
	m := make(map[string]store.Host, len(records))
	for _, r := range records {
		m[r.Name] = r
	}
	f.mu.Lock()
	f.records = m
	f.mu.Unlock()
}

// Hosts lists every known host, sorted by name.
func (f *Fleet) Hosts() []Host {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Host, 0, len(f.records))
	for name, r := range f.records {
		b := f.beats[name]
		b.Name = name
		up := !b.At.IsZero() && f.now().Sub(b.At) < DownAfter
		switch {
		case !up:
			b.State = "down"
		case r.State == store.HostDraining:
			b.State = "draining"
		default:
			b.State = "up"
		}
		if b.Address == "" {
			b.Address = r.Address
		}
		out = append(out, Host{Beat: b, Record: r, Up: up})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Up lists the hosts that are up (draining ones included).
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

// Watch reads the host records and asks every host for its status each
// interval until ctx ends. Heartbeats are pulled rather than taken from a
// subject: only the real agent of a host can answer a call to it.
func (f *Fleet) Watch(ctx context.Context, bus Caller, records func(context.Context) ([]store.Host, error), interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if rs, err := records(ctx); err == nil {
			f.SetRecords(rs)
		} else if ctx.Err() == nil {
			f.log.Warn("reading hosts", "err", err)
		}
		var wg sync.WaitGroup
		for _, h := range f.Hosts() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, interval*2)
				defer cancel()
				var b hostagent.Beat
				if err := bus.Call(cctx, hostagent.Subject(h.Name, hostagent.MethodStatus), struct{}{}, &b, nil); err == nil {
					f.Beat(h.Name, b)
				}
			}()
		}
		wg.Wait()
		f.report()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// report logs hosts going up or down and tells OnChange.
func (f *Fleet) report() {
	for _, h := range f.Hosts() {
		f.mu.Lock()
		was, known := f.up[h.Name]
		f.up[h.Name] = h.Up
		f.mu.Unlock()
		if known && was == h.Up || !known && !h.Up {
			if !known {
				f.log.Info("host down", "host", h.Name)
			}
			continue
		}
		f.log.Info("host "+map[bool]string{true: "up", false: "down"}[h.Up], "host", h.Name)
		if f.OnChange != nil {
			f.OnChange(h)
		}
	}
}
