// Apply: bringing HAProxy from what it routes to what is wanted, adding before taking away.

package router

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// Apply makes HAProxy route exactly backends. New servers are added and
// enabled before anything is taken away; removed servers are drained
// (bounded by DrainTimeout) and deleted before Apply returns, so their
// containers can be stopped then. Only new or removed apps reload HAProxy.
func (r *Router) Apply(ctx context.Context, backends []Backend) error {
	want, err := desired(backends)
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	unlock, err := r.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := r.apply(ctx, want); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	return nil
}

func (r *Router) apply(ctx context.Context, want *state) error {
	p, _, err := r.ensure(ctx)
	if err != nil {
		return err
	}
	cur, err := r.readState(ctx, p.worker)
	if err != nil {
		return err
	}

	// New apps only appear through a reload. Its configuration carries
	// every server, old and new, and the desired host map, so that each new
	// worker starts with all of them taking traffic.
	if added := newBackends(cur, want); len(added) > 0 {
		r.cfg.Log.Info("adding backends", "apps", added)
		if p, err = r.reload(ctx, union(cur, want)); err != nil {
			return err
		}
		if cur, err = r.readState(ctx, p.worker); err != nil {
			return err
		}
	}

	if err := r.addServers(ctx, p.worker, cur, want); err != nil {
		return err
	}
	if err := r.updateHosts(ctx, p.worker, cur, want); err != nil {
		return err
	}
	if err := r.updatePolicy(ctx, p.worker, cur, want); err != nil {
		return err
	}
	if err := r.writeFiles(cur); err != nil {
		return err
	}
	if err := r.removeServers(ctx, p.worker, cur, want); err != nil {
		return err
	}

	if removed := newBackends(want, cur); len(removed) > 0 {
		r.cfg.Log.Info("removing backends", "apps", removed)
		if p, err = r.reload(ctx, want); err != nil {
			return err
		}
	} else if err := r.writeFiles(want); err != nil {
		return err
	}

	// Read back what runs: Apply promises exactly backends, so a mismatch
	// (someone else changing HAProxy meanwhile) is an error, not a shrug.
	got, err := r.readState(ctx, p.worker)
	if err != nil {
		return err
	}
	if g, w := fmt.Sprint(got.list()), fmt.Sprint(want.list()); g != w {
		return fmt.Errorf("haproxy routes %s after the change, want %s", truncate(g), truncate(w))
	}
	r.last = want
	return nil
}

// newBackends lists the backends of want that cur lacks.
func newBackends(cur, want *state) []string {
	var out []string
	for id := range want.backends {
		if cur.backends[id] == nil {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// union is cur with want's backends, servers and hosts added: the state
// during a change, when nothing is taken away yet.
func union(cur, want *state) *state {
	u := newState()
	for id, b := range cur.backends {
		u.backends[id] = &backendState{app: b.app, servers: maps.Clone(b.servers), policy: b.policy}
	}
	for id, b := range want.backends {
		ub := u.backends[id]
		if ub == nil {
			ub = &backendState{app: b.app, servers: map[string]serverState{}}
			u.backends[id] = ub
		}
		ub.policy = b.policy
		maps.Copy(ub.servers, b.servers)
	}
	maps.Copy(u.hosts, want.hosts)
	return u
}

// addServers brings every wanted server into traffic: added and enabled
// when new, readdressed or re-enabled when it exists. cur is updated.
func (r *Router) addServers(ctx context.Context, pid int, cur, want *state) error {
	for _, id := range slices.Sorted(maps.Keys(want.backends)) {
		cb := cur.backends[id]
		for _, name := range slices.Sorted(maps.Keys(want.backends[id].servers)) {
			ws := want.backends[id].servers[name]
			key := id + "/" + name
			cs, exists := cb.servers[name]
			if !exists {
				if err := r.do(ctx, pid, "add server "+key+" "+ws.addr, "New server registered."); err != nil {
					return err
				}
				cs = serverState{addr: ws.addr, admin: 1}
				r.cfg.Log.Info("server added", "app", cb.app.String(), "server", name, "addr", ws.addr)
			}
			if cs.addr != ws.addr {
				// The container behind a name moved: switch, nothing to drain to.
				if err := r.setAddr(ctx, pid, key, ws.addr); err != nil {
					return err
				}
				r.cfg.Log.Info("server readdressed", "app", cb.app.String(), "server", name, "from", cs.addr, "to", ws.addr)
			}
			if cs.admin != 0 {
				// "add server" leaves a server in maintenance; so may an
				// interrupted removal.
				if err := r.do(ctx, pid, "set server "+key+" state ready", ""); err != nil {
					return err
				}
			}
			cb.servers[name] = ws
		}
	}
	return nil
}

func (r *Router) setAddr(ctx context.Context, pid int, key, addr string) error {
	ap := netip.MustParseAddrPort(addr) // normalized by desired
	out, err := r.worker(ctx, pid, fmt.Sprintf("set server %s addr %s port %d", key, ap.Addr(), ap.Port()))
	if err != nil {
		return err
	}
	if !strings.HasPrefix(out, "IP changed from") && !strings.HasPrefix(out, "no need to change") {
		return fmt.Errorf("haproxy set server %s addr: %s", key, truncate(strings.TrimSpace(out)))
	}
	return nil
}

// updateHosts brings the runtime host map to want's. New hosts come after
// the servers (they route to something ready); hosts going away stop
// routing before the servers drain. cur is updated.
func (r *Router) updateHosts(ctx context.Context, pid int, cur, want *state) error {
	return r.syncMap(ctx, pid, r.mapPath, cur.hosts, want.hosts, func(h, id string) {
		if id == "" {
			r.cfg.Log.Info("host unrouted", "host", h)
		} else {
			r.cfg.Log.Info("host routed", "host", h, "backend", id)
		}
	})
}

// syncMap brings the runtime map at path from cur to want, entries added
// or changed first, then removed; cur is updated. A "" in cur marks a key
// entered twice (see readState). changed hears of every change, with ""
// for a removal.
func (r *Router) syncMap(ctx context.Context, pid int, path string, cur, want map[string]string, changed func(key, value string)) error {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		v := want[k]
		old, exists := cur[k]
		switch {
		case exists && old == v:
			continue
		case exists && old == "":
			// Duplicate entries: start over.
			if err := r.do(ctx, pid, "del map "+path+" "+k, ""); err != nil {
				return err
			}
			fallthrough
		case !exists:
			// add map on an existing key would add a second entry.
			if err := r.do(ctx, pid, "add map "+path+" "+k+" "+v, ""); err != nil {
				return err
			}
		default:
			if err := r.do(ctx, pid, "set map "+path+" "+k+" "+v, ""); err != nil {
				return err
			}
		}
		cur[k] = v
		changed(k, v)
	}
	for _, k := range slices.Sorted(maps.Keys(cur)) {
		if _, ok := want[k]; !ok {
			if err := r.do(ctx, pid, "del map "+path+" "+k, ""); err != nil {
				return err
			}
			delete(cur, k)
			changed(k, "")
		}
	}
	return nil
}
