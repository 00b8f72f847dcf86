// Package router drives the HAProxy in front of the apps: it routes
// http://APP.NAMESPACE.DOMAIN (and custom domains) to an app's containers.
//
// HAProxy runs in master-worker mode, daemonized, with its state in one
// directory, so that it keeps serving while the Upscale server restarts and
// a new server process adopts it. Server changes go through the runtime API
// (no reload); only a change in the set of apps reloads, seamlessly.
// haproxy.cfg and the host map are rewritten after every change, so that
// whatever runs can always be reloaded from disk.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config says where HAProxy keeps its state and how it listens.
type Config struct {
	Dir          string        // state directory (created 0700): haproxy.cfg, hosts map, pid file, sockets, error pages
	HTTPAddr     string        // listen address for HTTP, e.g. ":80" or "127.0.0.1:18080"
	Binary       string        // haproxy binary, default "haproxy" from PATH
	DrainTimeout time.Duration // how long a removed server may keep in-flight requests (default 10s)
	Log          *slog.Logger
}

// Server is one container serving an app.
type Server struct {
	Name string // unique within its backend, e.g. a container name "acme-web-v3-1"; [a-zA-Z0-9_.-]
	Addr string // "10.77.0.5:8080"
}

// Backend is one app: the hosts routed to it and its live containers.
type Backend struct {
	Name    string   // the app, "acme/web"
	Hosts   []string // lowercase hostnames routed to it
	Servers []Server // the live containers; empty = the app exists but nothing serves: Upscale 503 page
	// Lost names servers to take away at once, their sessions cut, instead
	// of draining them: their containers are gone with their host, so what
	// they have in flight never finishes, and waiting for it only holds up
	// the change. A name among Servers, or that the router lacks, is
	// ignored.
	Lost []string
}

// Router controls the HAProxy of one state directory.
type Router struct {
	cfg        Config
	bin        string
	bind       string
	cfgPath    string
	mapPath    string
	masterSock string

	mu sync.Mutex // serializes changes within this process; router.lock across processes
	// last is what the latest Apply made HAProxy route (or what Start
	// adopted): a HAProxy found dead is started again with it. Under mu.
	last *state

	statusMu    sync.Mutex
	restarts    int
	lastRestart time.Time
}

// Start adopts the HAProxy already running for cfg.Dir (its master socket
// answers) or launches one. An adopted HAProxy is reloaded only when the
// configuration this process would write differs from the one on disk (a
// new HTTPAddr, DrainTimeout or Upscale version); its routes are kept.
func Start(ctx context.Context, cfg Config) (*Router, error) {
	r, err := newRouter(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(r.cfg.Dir, "errors"), 0o700); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if err := os.Chmod(r.cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	unlock, err := r.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	p, launched, err := r.ensure(ctx)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if !launched {
		if err := r.adopt(ctx, p); err != nil {
			return nil, fmt.Errorf("router: adopt haproxy: %w", err)
		}
	}
	return r, nil
}

// Watch starts HAProxy again, with the routes of the latest Apply, when it
// is found dead (its worker crashed or was killed, taking the master with
// it) on a check every interval, until ctx ends.
func (r *Router) Watch(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p, err := r.showProc(ctx); err == nil && p.worker != 0 {
			continue
		}
		// It may be re-executing for a reload: ensure, under the lock that
		// reloads take, tells that from dead.
		unlock, err := r.lock(ctx)
		if err != nil {
			continue
		}
		_, launched, err := r.ensure(ctx)
		unlock()
		switch {
		case err != nil && ctx.Err() == nil:
			r.cfg.Log.Error("haproxy is down and did not start again", "dir", r.cfg.Dir, "err", err)
		case launched:
			r.statusMu.Lock()
			r.restarts++
			r.lastRestart = time.Now()
			r.statusMu.Unlock()
			r.cfg.Log.Warn("haproxy was down; started again with the last routes", "dir", r.cfg.Dir)
		}
	}
}

// Status is the router's health as an operator reads it.
type Status struct {
	Running     bool
	Master      int // pids
	Worker      int
	Restarts    int       // times Watch found HAProxy dead and started it
	LastRestart time.Time // zero if never
}

// Status asks HAProxy's master how it is.
func (r *Router) Status(ctx context.Context) Status {
	r.statusMu.Lock()
	st := Status{Restarts: r.restarts, LastRestart: r.lastRestart}
	r.statusMu.Unlock()
	if p, err := r.showProc(ctx); err == nil {
		st.Running, st.Master, st.Worker = p.worker != 0, p.masterPID, p.worker
	}
	return st
}

// restore is the state to start a fresh HAProxy with; the caller holds mu.
func (r *Router) restore() *state {
	if r.last == nil {
		return newState()
	}
	return r.last
}

func newRouter(cfg Config) (*Router, error) {
	if cfg.Dir == "" {
		return nil, errors.New("router: Config.Dir is empty")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if !dirPattern.MatchString(dir) {
		return nil, fmt.Errorf("router: Config.Dir %q: only letters, digits and /._+- are allowed", dir)
	}
	cfg.Dir = dir
	if cfg.Binary == "" {
		cfg.Binary = "haproxy"
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	bind, err := bindAddr(cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	r := &Router{
		cfg:        cfg,
		bin:        bin,
		bind:       bind,
		cfgPath:    filepath.Join(dir, "haproxy.cfg"),
		mapPath:    filepath.Join(dir, "hosts.map"),
		masterSock: filepath.Join(dir, "master.sock"),
	}
	if len(r.path("admin.sock")) > maxSocketPath {
		return nil, fmt.Errorf("router: Config.Dir %q is too long for a unix socket path", dir)
	}
	return r, nil
}

func (r *Router) path(name string) string { return filepath.Join(r.cfg.Dir, name) }

// lock takes the directory's lock, so that two processes (an exiting and a
// starting Upscale server) never interleave reloads and drains.
func (r *Router) lock(ctx context.Context) (unlock func(), err error) {
	r.mu.Lock()
	f, err := os.OpenFile(r.path("router.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("router: %w", err)
	}
	flock := func() error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) }
	for err = flock(); errors.Is(err, syscall.EWOULDBLOCK); err = flock() {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	if err != nil {
		f.Close()
		r.mu.Unlock()
		return nil, fmt.Errorf("router: lock %s: %w", r.cfg.Dir, err)
	}
	return func() { f.Close(); r.mu.Unlock() }, nil
}

// ensure returns the running HAProxy, launching one with no routes when
// none runs (first start, reboot, crash).
func (r *Router) ensure(ctx context.Context) (p procs, launched bool, err error) {
	p, err = r.showProc(ctx)
	if errors.Is(err, errNotRunning) {
		if pid := r.pidFromFile(); r.ourPID(pid) {
			// Alive but silent: most likely re-executing for a reload.
			p, err = r.waitProc(ctx, func(procs) bool { return true })
			if err != nil {
				return procs{}, false, fmt.Errorf("haproxy (pid %d) runs for %s but its master socket does not answer: %w", pid, r.cfg.Dir, err)
			}
		}
	}
	switch {
	case errors.Is(err, errNotRunning):
		p, err = r.launch(ctx, r.restore())
		return p, true, err
	case err != nil:
		return procs{}, false, err
	case p.worker == 0:
		// The master survived a worker that did not: start a fresh one.
		p, err = r.reload(ctx, r.restore())
		return p, true, err
	}
	return p, false, nil
}

// adopt keeps what the running HAProxy routes and reloads only when the
// configuration rendered by this process differs from the one on disk.
func (r *Router) adopt(ctx context.Context, p procs) error {
	cur, err := r.readState(ctx, p.worker)
	if err != nil {
		return err
	}
	r.last = cur
	old, _ := os.ReadFile(r.cfgPath)
	if string(old) == string(r.renderConfig(cur)) {
		r.cfg.Log.Info("haproxy adopted", "dir", r.cfg.Dir, "master", p.masterPID, "worker", p.worker)
		return r.writeFiles(cur)
	}
	r.cfg.Log.Info("haproxy adopted; configuration changed, reloading", "dir", r.cfg.Dir, "master", p.masterPID)
	_, err = r.reload(ctx, cur)
	return err
}

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
		u.backends[id] = &backendState{app: b.app, servers: maps.Clone(b.servers)}
	}
	for id, b := range want.backends {
		ub := u.backends[id]
		if ub == nil {
			ub = &backendState{app: b.app, servers: map[string]serverState{}}
			u.backends[id] = ub
		}
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
	for _, h := range slices.Sorted(maps.Keys(want.hosts)) {
		id := want.hosts[h]
		old, exists := cur.hosts[h]
		switch {
		case exists && old == id:
			continue
		case exists && old == "":
			// Duplicate entries (see readState): start over.
			if err := r.do(ctx, pid, "del map "+r.mapPath+" "+h, ""); err != nil {
				return err
			}
			fallthrough
		case !exists:
			// add map on an existing key would add a second entry.
			if err := r.do(ctx, pid, "add map "+r.mapPath+" "+h+" "+id, ""); err != nil {
				return err
			}
		default:
			if err := r.do(ctx, pid, "set map "+r.mapPath+" "+h+" "+id, ""); err != nil {
				return err
			}
		}
		cur.hosts[h] = id
		r.cfg.Log.Info("host routed", "host", h, "backend", id)
	}
	for _, h := range slices.Sorted(maps.Keys(cur.hosts)) {
		if _, ok := want.hosts[h]; !ok {
			if err := r.do(ctx, pid, "del map "+r.mapPath+" "+h, ""); err != nil {
				return err
			}
			delete(cur.hosts, h)
			r.cfg.Log.Info("host unrouted", "host", h)
		}
	}
	return nil
}

// removeServers drains, then deletes, every server of cur that want does
// not have. Draining waits until neither the current worker nor an old one
// (still finishing requests after a reload) has a session on them, bounded
// by DrainTimeout; what is left then is cut. cur is updated.
func (r *Router) removeServers(ctx context.Context, pid int, cur, want *state) error {
	var gone []string
	for _, id := range slices.Sorted(maps.Keys(cur.backends)) {
		for _, name := range slices.Sorted(maps.Keys(cur.backends[id].servers)) {
			if wb := want.backends[id]; wb == nil || !hasServer(wb, name) {
				gone = append(gone, id+"/"+name)
			}
		}
	}
	if len(gone) == 0 {
		return nil
	}
	var drain []string
	for _, key := range gone {
		if !want.lost[key] {
			drain = append(drain, key)
		}
	}
	for _, key := range gone {
		if err := r.do(ctx, pid, "set server "+key+" state drain", ""); err != nil {
			return err
		}
		id, name, _ := strings.Cut(key, "/")
		s := cur.backends[id].servers[name]
		s.admin = 8 // SRV_ADMF_FDRAIN: out of the written config from now on
		cur.backends[id].servers[name] = s
	}
	if err := r.writeFiles(cur); err != nil {
		return err
	}
	r.cfg.Log.Info("draining servers", "servers", gone)

	left := map[string]int{}
	if len(drain) > 0 {
		var err error
		if left, err = r.waitDrained(ctx, pid, drain); err != nil {
			return err
		}
	}
	for _, key := range gone {
		if err := r.do(ctx, pid, "set server "+key+" state maint", ""); err != nil {
			return err
		}
		if want.lost[key] {
			r.cfg.Log.Warn("lost server: cutting its sessions", "server", key)
			if err := r.do(ctx, pid, "shutdown sessions server "+key, ""); err != nil {
				return err
			}
		} else if left[key] > 0 {
			r.cfg.Log.Warn("drain timeout: cutting sessions", "server", key, "sessions", left[key])
			if err := r.do(ctx, pid, "shutdown sessions server "+key, ""); err != nil {
				return err
			}
		}
	}
	for _, key := range gone {
		if err := r.delServer(ctx, pid, key); err != nil {
			return err
		}
		id, name, _ := strings.Cut(key, "/")
		delete(cur.backends[id].servers, name)
		r.cfg.Log.Info("server removed", "server", key)
	}
	return nil
}

func hasServer(b *backendState, name string) bool {
	_, ok := b.servers[name]
	return ok
}

// waitDrained polls until the servers have no session and no old worker is
// left, or DrainTimeout passes; it returns the sessions still open.
func (r *Router) waitDrained(ctx context.Context, pid int, keys []string) (map[string]int, error) {
	deadline := time.Now().Add(r.cfg.DrainTimeout)
	for {
		out, err := r.worker(ctx, pid, "show stat -1 4 -1")
		if err != nil {
			return nil, err
		}
		sess, err := parseSessions(out)
		if err != nil {
			return nil, err
		}
		left := map[string]int{}
		for _, k := range keys {
			if sess[k] > 0 {
				left[k] = sess[k]
			}
		}
		p, err := r.showProc(ctx)
		if err != nil {
			return nil, err
		}
		if len(left) == 0 && len(p.old) == 0 {
			return nil, nil
		}
		if time.Now().After(deadline) {
			return left, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// delServer retries for a moment: a server just put in maintenance may
// still hold a closing connection, and HAProxy refuses to delete it then.
func (r *Router) delServer(ctx context.Context, pid int, key string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := r.do(ctx, pid, "del server "+key, "Server deleted.")
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

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

// Stop stops HAProxy, master and workers, and waits until they are gone.
// The Upscale server does not call it on exit: HAProxy outlives it.
func (r *Router) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var pids []int
	if p, err := r.showProc(ctx); err == nil {
		pids = append(append(pids, p.masterPID, p.worker), p.old...)
	}
	pids = append(pids, r.pidFromFile())
	// SIGTERM is the hard stop: the master ends its workers, then itself.
	alive := r.kill(pids, syscall.SIGTERM, 10*time.Second)
	if len(alive) > 0 {
		alive = r.kill(alive, syscall.SIGKILL, 5*time.Second)
	}
	if len(alive) > 0 {
		return fmt.Errorf("router: haproxy processes %v survive SIGKILL", alive)
	}
	for _, f := range []string{"haproxy.pid", "master.sock", "admin.sock"} {
		os.Remove(r.path(f))
	}
	r.cfg.Log.Info("haproxy stopped", "dir", r.cfg.Dir)
	return nil
}

// Halt stops the HAProxy of dir, if one runs, without adopting it first
// (tests, make clean-test, uninstall).
func Halt(dir string) error {
	r, err := newRouter(Config{Dir: dir, HTTPAddr: "127.0.0.1:1"}) // any valid address: nothing binds
	if err != nil {
		return err
	}
	return r.Stop()
}
