// What HAProxy routes: read back from a worker, written to disk for the next reload.

package router

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// readState asks a worker what it routes.
func (r *Router) readState(ctx context.Context, pid int) (*state, error) {
	st := newState()
	out, err := r.worker(ctx, pid, "show backend")
	if err != nil {
		return nil, err
	}
	ids, err := parseBackends(out)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if app, ok := appFromID(id); ok {
			st.backends[id] = &backendState{app: app, servers: map[string]serverState{}}
		}
	}
	if out, err = r.worker(ctx, pid, "show servers state"); err != nil {
		return nil, err
	}
	servers, err := parseServersState(out)
	if err != nil {
		return nil, err
	}
	for _, s := range servers {
		if b := st.backends[s.backend]; b != nil {
			b.servers[s.name] = s.serverState
		}
	}
	if out, err = r.worker(ctx, pid, "show map "+r.mapPath); err != nil {
		return nil, err
	}
	entries, err := parseMap(out)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if checkHost(e.key) != nil {
			// Not written by us, and unsafe on a command line: left alone
			// until the next reload drops it.
			continue
		}
		if _, dup := st.hosts[e.key]; dup {
			// Which entry HAProxy uses is not ours to guess: mark it for
			// rewriting.
			st.hosts[e.key] = ""
			continue
		}
		st.hosts[e.key] = e.value
	}
	if err := r.readPolicy(ctx, pid, st); err != nil {
		return nil, err
	}
	return st, nil
}

// writeFiles puts st on disk: error pages first (the config refers to
// them), the host map, the config; pages of apps gone are removed.
func (r *Router) writeFiles(st *state) error {
	pg := pages(st)
	for name, data := range pg {
		if err := writeFile(filepath.Join(r.cfg.Dir, "errors", name), data); err != nil {
			return err
		}
	}
	old, _ := filepath.Glob(filepath.Join(r.cfg.Dir, "errors", "*.503.http"))
	for _, f := range old {
		if _, keep := pg[filepath.Base(f)]; !keep {
			os.Remove(f)
		}
	}
	// Only hosts of known backends: that drops the "" of duplicate entries
	// (readState), which would not even parse as a map line.
	routed := &state{backends: st.backends, hosts: map[string]string{}}
	for h, id := range st.hosts {
		if st.backends[id] != nil {
			routed.hosts[h] = id
		}
	}
	if err := writeFile(r.mapPath, renderMap(routed)); err != nil {
		return err
	}
	noRedirect, hsts := renderPolicy(st)
	if err := writeFile(r.path("noredirect.map"), noRedirect); err != nil {
		return err
	}
	if err := writeFile(r.path("hsts.map"), hsts); err != nil {
		return err
	}
	return writeFile(r.cfgPath, r.renderConfig(st))
}

// Routes reports what HAProxy currently routes, read back from the runtime
// API: servers in traffic only (not draining or in maintenance).
func (r *Router) Routes(ctx context.Context) ([]Backend, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := r.showProc(ctx)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if p.worker == 0 {
		return nil, fmt.Errorf("router: haproxy has no worker")
	}
	st, err := r.readState(ctx, p.worker)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	return st.list(), nil
}
