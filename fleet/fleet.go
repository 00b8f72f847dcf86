// Package fleet knows the hosts: their records in the store, and whether
// each is up, from the status the server asks its agent for every second.
package fleet

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/store"
)

// DownAfter is how long a host may be silent before it counts as down.
const DownAfter = 5 * time.Second

// Host is a host with its record and its last status.
type Host struct {
	agentapi.Beat
	Record store.Host
	Up     bool
}

// Active reports whether new containers may land on the host.
func (h Host) Active() bool { return h.Up && h.Record.State != store.HostDraining }

// Fleet is the live view of the hosts.
type Fleet struct {
	mu      sync.Mutex
	records map[string]store.Host
	beats   map[string]agentapi.Beat
	up      map[string]bool // as last reported to OnChange
	// waiting holds when each host not yet heard from was first looked
	// at: it is not called down before DownAfter has passed since.
	waiting map[string]time.Time
	now     func() time.Time
	log     *slog.Logger
	// OnChange is called (from Watch) when a host goes up or down.
	OnChange func(h Host)
	// RouterFrom, when set, is the router's address toward a host, sent
	// with every status call (agentapi.StatusRequest).
	RouterFrom func(h store.Host) string
}

// New makes an empty fleet that logs hosts going up and down to log.
func New(log *slog.Logger) *Fleet {
	return &Fleet{records: map[string]store.Host{}, beats: map[string]agentapi.Beat{}, up: map[string]bool{}, waiting: map[string]time.Time{}, now: time.Now, log: log}
}

// Beat records a status. The host name comes from the subject the call
// went to, never from the message.
func (f *Fleet) Beat(host string, b agentapi.Beat) { f.beat(host, b, f.now()) }

// beat records a status asked for at asked: the host was alive then.
func (f *Fleet) beat(host string, b agentapi.Beat, asked time.Time) {
	b.Name = host
	b.At = asked
	f.mu.Lock()
	if old, ok := f.beats[host]; !ok || !old.At.After(asked) {
		f.beats[host] = b
	}
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

// Agents is what Watch asks of the hosts' agents (agentapi.Client).
type Agents interface {
	Status(ctx context.Context, host string, req agentapi.StatusRequest) (agentapi.Beat, error)
}

// Watch reads the host records and asks every host for its status each
// interval until ctx ends. Heartbeats are pulled rather than taken from a
// subject: only the real agent of a host can answer a call to it.
//
// A host that does not answer never holds up the others, nor its own
// verdict: each question runs on its own (one at a time per host), and a
// host goes down exactly DownAfter after the last question it answered was
// asked, not at the next interval.
func (f *Fleet) Watch(ctx context.Context, agents Agents, records func(context.Context) ([]store.Host, error), interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	asking := map[string]bool{}
	poll := func() *sync.WaitGroup {
		var round sync.WaitGroup
		if rs, err := records(ctx); err == nil {
			f.SetRecords(rs)
		} else if ctx.Err() == nil {
			f.log.Warn("reading hosts", "err", err)
		}
		for _, h := range f.Hosts() {
			mu.Lock()
			busy := asking[h.Name]
			asking[h.Name] = true
			mu.Unlock()
			if busy {
				continue
			}
			wg.Add(1)
			round.Add(1)
			go func() {
				defer wg.Done()
				defer round.Done()
				defer func() {
					mu.Lock()
					delete(asking, h.Name)
					mu.Unlock()
				}()
				asked := f.now()
				cctx, cancel := context.WithTimeout(ctx, interval*2)
				defer cancel()
				var req agentapi.StatusRequest
				if f.RouterFrom != nil {
					req.Router = f.RouterFrom(h.Record)
				}
				if b, err := agents.Status(cctx, h.Name, req); err == nil {
					f.beat(h.Name, b, asked)
				}
			}()
		}
		return &round
	}
	// The first answers before the first verdict: a host is not down
	// just because the server has only now started asking.
	poll().Wait()
	for {
		f.report()
		wake := time.NewTimer(f.untilSilent(interval))
		select {
		case <-ctx.Done():
			wake.Stop()
			return
		case <-tick.C:
			wake.Stop()
			poll()
		case <-wake.C:
		}
	}
}

// untilSilent is how long until the next up host has been silent for
// DownAfter, at most max.
func (f *Fleet) untilSilent(max time.Duration) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	next := max
	for name := range f.records {
		b, ok := f.beats[name]
		if !ok {
			continue
		}
		if d := b.At.Add(DownAfter).Sub(now); d >= 0 && d < next {
			next = d + time.Millisecond
		}
	}
	return next
}

// report logs hosts going up or down and tells OnChange.
func (f *Fleet) report() {
	for _, h := range f.Hosts() {
		f.mu.Lock()
		was, known := f.up[h.Name]
		if !known && !h.Up {
			// A host the server has only started asking (its own agent, as
			// the server starts it) is not down yet: it has DownAfter to
			// answer, as a host that answered once has.
			first, ok := f.waiting[h.Name]
			if !ok {
				f.waiting[h.Name] = f.now()
			}
			if !ok || f.now().Sub(first) < DownAfter {
				f.mu.Unlock()
				continue
			}
		}
		delete(f.waiting, h.Name)
		f.up[h.Name] = h.Up
		f.mu.Unlock()
		if known && was == h.Up || !known && !h.Up {
			if !known {
				f.log.Info("host down", "host", h.Name, "why", "not answering since the server started asking")
			}
			continue
		}
		f.log.Info("host "+map[bool]string{true: "up", false: "down"}[h.Up], "host", h.Name)
		if f.OnChange != nil {
			f.OnChange(h)
		}
	}
}

// Tracked wraps st so that the fleet sees host records change at once:
// a weight set or a drain started takes effect on the very next placement,
// not a heartbeat later.
func (f *Fleet) Tracked(st store.Store) store.Store { return trackedStore{Store: st, f: f} }

type trackedStore struct {
	store.Store
	f *Fleet
}

func (s trackedStore) refresh(ctx context.Context) {
	if rs, err := s.Store.ListHosts(context.WithoutCancel(ctx)); err == nil {
		s.f.SetRecords(rs)
	}
}

func (s trackedStore) AddHost(ctx context.Context, h store.Host) (store.Host, error) {
	got, err := s.Store.AddHost(ctx, h)
	s.refresh(ctx)
	return got, err
}

func (s trackedStore) SetHostWeight(ctx context.Context, name string, weight int) error {
	err := s.Store.SetHostWeight(ctx, name, weight)
	s.refresh(ctx)
	return err
}

func (s trackedStore) SetHostState(ctx context.Context, name string, state store.HostState) error {
	err := s.Store.SetHostState(ctx, name, state)
	s.refresh(ctx)
	return err
}

func (s trackedStore) RemoveHost(ctx context.Context, name string) error {
	err := s.Store.RemoveHost(ctx, name)
	s.refresh(ctx)
	return err
}
