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
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Config says where HAProxy keeps its state and how it listens.
type Config struct {
	Dir          string        // state directory (created 0700): haproxy.cfg, hosts map, pid file, sockets, error pages
	HTTPAddr     string        // listen address for HTTP, e.g. ":80" or "127.0.0.1:18080"
	HTTPSAddr    string        // listen address for HTTPS, e.g. ":443"; empty: no HTTPS listener (see tls.go)
	ACMEAddr     string        // IP:PORT that /.well-known/acme-challenge/ on HTTP goes to, for every host; empty: none
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
	// NoHTTPSRedirect keeps plain HTTP answering for the app's hosts: by
	// default a host with a live certificate answers HTTP with a 301 to
	// HTTPS.
	NoHTTPSRedirect bool
	// HSTSMaxAge, in whole seconds, sends Strict-Transport-Security over
	// HTTPS for the app's hosts with a live certificate; 0: none (opt-in,
	// since a browser then refuses plain HTTP for that long).
	HSTSMaxAge time.Duration
}

// Router controls the HAProxy of one state directory.
type Router struct {
	cfg        Config
	bin        string
	bind       string
	httpsBind  string // "" without HTTPS
	acmeAddr   string // "" without an ACME handler
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
	// Before any HAProxy starts: its configuration names these files.
	if err := r.prepareTLS(time.Now()); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	p, launched, err := r.ensure(ctx)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if !launched {
		if err := r.adopt(ctx, p); err != nil {
			return nil, fmt.Errorf("router: adopt haproxy: %w", err)
		}
		// A process that died between writing a certificate and installing
		// it, or an older pending certificate: the files on disk win.
		if err := r.syncCerts(ctx); err != nil {
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
	bind, err := bindAddr("HTTPAddr", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	var httpsBind, acmeAddr string
	if cfg.HTTPSAddr != "" {
		if httpsBind, err = bindAddr("HTTPSAddr", cfg.HTTPSAddr); err != nil {
			return nil, fmt.Errorf("router: %w", err)
		}
	}
	if cfg.ACMEAddr != "" {
		if acmeAddr, err = normalAddr(cfg.ACMEAddr); err != nil {
			return nil, fmt.Errorf("router: ACMEAddr: %w", err)
		}
	}
	r := &Router{
		cfg:        cfg,
		bin:        bin,
		bind:       bind,
		httpsBind:  httpsBind,
		acmeAddr:   acmeAddr,
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
	r.quicken(p)
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
