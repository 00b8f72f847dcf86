// Package deploy makes releases live: it builds a pushed commit, starts
// the release's instances, waits until every one is healthy, switches the
// router to them in one step and only then removes the old ones. Any
// failure before the switch leaves the old release serving.
package deploy

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/builder"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/router"
	"github.com/upscalehq/upscale/runtimes"
	"github.com/upscalehq/upscale/scheduler"
	"github.com/upscalehq/upscale/store"
)

// Router is the part of the router deploys drive.
type Router interface {
	Apply(ctx context.Context, backends []router.Backend) error
}

// Certs is the certificate engine as routing changes reach it: Want gets
// every hostname routed (apps' own and verified custom domains), after
// each change, and has certificates obtained for the new ones and
// forgotten for those gone. It reports its own failures: a certificate
// never holds up a route.
type Certs interface {
	Want(ctx context.Context, hosts []string)
}

// Hosts says which hosts there are and which are up.
type Hosts interface {
	Hosts() []fleet.Host
	Up() []fleet.Host
}

// DefaultMemory is a container's memory limit when app.yaml sets none and
// the server's --default-memory says nothing else.
const DefaultMemory = 512 << 20

// Deployer does deploys, restarts and stops.
type Deployer struct {
	cfg Config

	quotaMu sync.Mutex
	pending map[string]claim   // NS/APP -> what a change under way will run
	execs   map[string]execRun // one-off container -> its namespace and host

	locks sync.Map   // app -> *sync.Mutex
	sync  sync.Mutex // one router Apply at a time, from a fresh read of the store
}

// Lock serializes everything that changes what an app runs; the returned
// func unlocks. A push holds it from its pre-receive check until git has
// moved the branch.
func (d *Deployer) Lock(app names.App) func() {
	l, _ := d.locks.LoadOrStore(app.String(), &sync.Mutex{})
	mu := l.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// TryLock is Lock without waiting.
func (d *Deployer) TryLock(app names.App) (func(), bool) {
	l, _ := d.locks.LoadOrStore(app.String(), &sync.Mutex{})
	mu := l.(*sync.Mutex)
	if !mu.TryLock() {
		return nil, false
	}
	return mu.Unlock, true
}

// Timing is where a deploy's time went, as the push output reports it.
type Timing struct {
	Build, Start, Health, Switch time.Duration
}

func (t Timing) String() string {
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return fmt.Sprintf("build %s, start %s, health %s, switch %s", ms(t.Build), ms(t.Start), ms(t.Health), ms(t.Switch))
}

// Push builds the pushed commit and makes it live. The caller holds the
// app's lock. The returned release is live when err is nil; otherwise it is
// recorded as failed (if it got that far) and nothing changed for users.
func (d *Deployer) Push(ctx context.Context, app names.App, src repos.Source, spec *appspec.Spec, by string, out func(string)) (store.Release, Timing, error) {
	var timing Timing
	rel, err := d.push(ctx, app, src, spec, by, out, &timing)
	return rel, timing, err
}

func (d *Deployer) push(ctx context.Context, app names.App, src repos.Source, spec *appspec.Spec, by string, out func(string), timing *Timing) (store.Release, error) {
	rt, ok := d.cfg.Catalog.Get(spec.Runtime)
	if !ok {
		return store.Release{}, fmt.Errorf("runtime %s is not in this server's catalog", spec.Runtime)
	}
	info, err := src.Info(ctx)
	if err != nil {
		return store.Release{}, err
	}
	start := spec.Start
	if start == "" {
		start = rt.Start
	}
	cfg, err := d.releaseConfig(ctx, app, spec, start)
	if err != nil {
		return store.Release{}, err
	}
	cfg.Note = "push " + msgtext.Short(src.Commit)
	// Over a quota, refuse before building anything.
	release, err := d.reserveRelease(ctx, app, cfg)
	if err != nil {
		return store.Release{}, err
	}
	defer release()
	rel, err := d.cfg.Store.CreateRelease(ctx, store.Release{
		Namespace: app.Namespace, App: app.Name, Commit: src.Commit, Subject: info.Subject, Author: info.Author,
		Runtime: rt.Name, By: by, Config: cfg,
	})
	if err != nil {
		return rel, err
	}
	fail := func(err error) (store.Release, error) {
		d.failed(ctx, app, rel, by, err)
		return rel, err
	}
	// The build container gets the app's memory, like an instance, or the
	// build default: builds often need more than the app that runs.
	buildMemory := spec.Memory
	if buildMemory == 0 {
		buildMemory = cmp.Or(d.cfg.BuildMemory, agentapi.DefaultBuildMemory)
	}
	hosts, err := d.place(ctx, 1, buildMemory, nil)
	if err != nil {
		return fail(err)
	}
	out(fmt.Sprintf("-----> Building %s (v%d) on %s", msgtext.Short(src.Commit), rel.Version, hosts[0]))
	buildStart := time.Now()
	built, err := builder.Build(ctx, d.cfg.Bus, d.cfg.Agents, builder.Job{
		App: app, Release: rel.Version, Source: src, Runtime: rt, Steps: spec.Build,
		Env: spec.Env, Host: hosts[0], Timeout: d.cfg.BuildTimeout,
		Memory: buildMemory, CPU: d.cfg.BuildCPU, MaxOutput: d.cfg.MaxBuildOutput, MaxEntries: d.cfg.MaxBuildEntries, Disk: d.cfg.BuildDisk,
	}, out)
	if err != nil {
		return fail(fmt.Errorf("build failed: %w", err))
	}
	timing.Build = time.Since(buildStart)
	if err := d.cfg.Store.FinishBuild(ctx, app.Namespace, app.Name, rel.Version, built.Name, built.SHA256, built.Size); err != nil {
		return fail(err)
	}
	rel.Artifact, rel.Digest, rel.Size, rel.Status = built.Name, built.SHA256, built.Size, store.ReleaseBuilt
	if err := d.rollout(ctx, app, rel, out, timing); err != nil {
		return fail(err)
	}
	rel.Status = store.ReleaseLive
	d.event(ctx, app, "deploy", by, fmt.Sprintf("v%d deployed: push of %s %q", rel.Version, msgtext.Short(src.Commit), info.Subject))
	d.prune(ctx, app, out)
	return rel, nil
}

// failed records rel as failed, and the failure as an event.
func (d *Deployer) failed(ctx context.Context, app names.App, rel store.Release, by string, err error) {
	ctx = context.WithoutCancel(ctx)
	if ferr := d.cfg.Store.FailRelease(ctx, app.Namespace, app.Name, rel.Version, msgtext.OneLine(err.Error())); ferr != nil {
		d.cfg.Log.Error("recording a failed release", "app", app.String(), "release", rel.Version, "err", ferr)
	}
	d.event(ctx, app, "failure", by, fmt.Sprintf("v%d failed (%s): %s", rel.Version, rel.Config.Note, msgtext.Truncate(msgtext.OneLine(err.Error()), 300)))
}

// start runs the live release again, on fresh instances.
func (d *Deployer) start(ctx context.Context, app names.App, by string, out func(string)) error {
	rel, err := d.cfg.Store.LiveRelease(ctx, app.Namespace, app.Name)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("app %s has no release yet: push to deploy it", app)
	}
	if err != nil {
		return err
	}
	if err := d.cfg.Store.SetStopped(ctx, app.Namespace, app.Name, false); err != nil {
		return err
	}
	// Config vars set with --no-deploy since: a new release carries them.
	vars, err := d.cfg.Store.GetConfig(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	if !maps.Equal(vars, rel.Config.Vars) {
		cfg := rel.Config
		cfg.Vars = vars
		cfg.Note = "config vars set with --no-deploy"
		_, err := d.derive(ctx, app, rel, by, cfg, out)
		return err
	}
	release, err := d.reserveRelease(ctx, app, rel.Config)
	if err != nil {
		return err
	}
	defer release()
	return d.rollout(ctx, app, rel, out, &Timing{})
}

// stop removes every instance of the app; the router answers 503 until it
// runs again.
func (d *Deployer) stop(ctx context.Context, app names.App, out func(string)) error {
	if err := d.cfg.Store.SetStopped(ctx, app.Namespace, app.Name, true); err != nil {
		return err
	}
	old, err := d.cfg.Store.ListInstances(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	if err := d.cfg.Store.SetInstances(ctx, app.Namespace, app.Name, nil); err != nil {
		return err
	}
	if err := d.Sync(ctx); err != nil {
		return err
	}
	d.retire(ctx, old)
	return nil
}

// rollout starts the release's instances, as many of each process type as
// the formation says, all healthy or none, switches the router to them,
// records them, and retires the instances they replace.
func (d *Deployer) rollout(ctx context.Context, app names.App, rel store.Release, out func(string), timing *Timing) error {
	stored, err := d.cfg.Store.GetFormation(ctx, app.Namespace, app.Name)
	if err != nil {
		return err
	}
	want := Formation(rel.Config, stored)
	types := slices.Sorted(maps.Keys(want))
	total := 0
	for _, typ := range types {
		total += want[typ]
	}
	if len(types) == 1 && types[0] == Web {
		out(fmt.Sprintf("-----> Starting %d instance(s) of v%d", total, rel.Version))
	} else {
		out(fmt.Sprintf("-----> Starting %s of v%d", FormatFormation(want), rel.Version))
	}
	var fresh []store.Instance
	for _, typ := range types {
		if want[typ] == 0 {
			continue
		}
		started, err := d.startInstances(ctx, app, rel, typ, want[typ], nil, out, timing)
		if err != nil {
			d.remove(ctx, fresh, nil)
			return fmt.Errorf("starting v%d failed: %w", rel.Version, err)
		}
		fresh = append(fresh, started...)
	}
	if total > 0 {
		check := "TCP connect"
		if rel.Config.Health != "" {
			check = "GET " + rel.Config.Health
		}
		if want[Web] == 0 {
			check = "running after 1s"
		}
		out(fmt.Sprintf("       all %d healthy (%s)", total, check))
	}
	old, err := d.cfg.Store.ListInstances(ctx, app.Namespace, app.Name)
	if err != nil {
		d.remove(ctx, fresh, nil)
		return err
	}
	switchStart := time.Now()
	if err := d.switchTo(ctx, app, rel.Version, fresh); err != nil {
		d.remove(ctx, fresh, nil)
		return err
	}
	timing.Switch = time.Since(switchStart)
	out(fmt.Sprintf("-----> v%d is live; removing %d old instance(s)", rel.Version, len(old)))
	d.retire(ctx, old)
	return nil
}

// startInstances starts n healthy instances of process type typ of rel,
// away from the hosts of keep; all or none: on any failure the started
// ones are removed.
func (d *Deployer) startInstances(ctx context.Context, app names.App, rel store.Release, typ string, n int, keep []store.Instance, out func(string), timing *Timing) ([]store.Instance, error) {
	hosts, err := d.place(ctx, n, d.memory(rel.Config.Memory), keep)
	if err != nil {
		return nil, err
	}
	return d.startOn(ctx, app, rel, typ, hosts, out, timing)
}

// startOn starts one healthy instance of process type typ of rel on each
// of hosts, all or none.
func (d *Deployer) startOn(ctx context.Context, app names.App, rel store.Release, typ string, hosts []string, out func(string), timing *Timing) ([]store.Instance, error) {
	rt, ok := d.cfg.Catalog.Get(rel.Runtime)
	if !ok {
		return nil, fmt.Errorf("runtime %s is not in this server's catalog", rel.Runtime)
	}
	command, ok := Processes(rel.Config)[typ]
	if !ok {
		return nil, fmt.Errorf("v%d has no process type %q", rel.Version, typ)
	}
	health := rel.Config.Health
	if typ != Web {
		health = ""
	}
	env := Env(rel.Config)
	memory := d.memory(rel.Config.Memory)
	n := len(hosts)
	fresh := make([]store.Instance, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	// Hosts start their instances in parallel, each host one after the
	// other: an app starting (Python importing, say) takes a core, and
	// two at once on one host starve the instances still serving there.
	turn := map[string]chan struct{}{}
	for i, host := range hosts {
		fresh[i] = store.Instance{Name: instanceName(app, typ, rel.Version), Process: typ, Namespace: app.Namespace, App: app.Name, Release: rel.Version, Host: host}
		if turn[host] == nil {
			turn[host] = make(chan struct{}, 1)
		}
		wg.Add(1)
		go func(in *store.Instance, turn chan struct{}) {
			defer wg.Done()
			turn <- struct{}{}
			defer func() { <-turn }()
			reply, err := d.cfg.Agents.Start(ctx, in.Host, agentapi.StartRequest{
				ReleaseContainer: d.container(in.Name, app, rel, rt, command, env, memory),
				Health:           health, HealthTimeout: d.cfg.HealthTimeout, Worker: typ != Web,
			}, out)
			if err != nil {
				errs[i] = fmt.Errorf("instance %d of %d (%s on %s): %w", i+1, n, in.Name, in.Host, err)
				return
			}
			in.Addr = reply.Addr
			mu.Lock()
			timing.Start, timing.Health = max(timing.Start, reply.Start), max(timing.Health, reply.Health)
			mu.Unlock()
		}(&fresh[i], turn[host])
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		d.remove(ctx, fresh, nil)
		return nil, err
	}
	return fresh, nil
}

// switchTo routes the app to instances and records them as live, as one
// step from the users' side: if the router refuses, the store still says
// (and the router still does) what was live before.
func (d *Deployer) switchTo(ctx context.Context, app names.App, version int, instances []store.Instance) error {
	d.sync.Lock()
	defer d.sync.Unlock()
	backends, err := d.backends(ctx, app, instances)
	if err != nil {
		return err
	}
	if err := d.route(ctx, backends); err != nil {
		return fmt.Errorf("switching the router: %w", err)
	}
	return d.cfg.Store.Activate(ctx, app.Namespace, app.Name, version, instances)
}

// Sync makes the router route what the store says is live (after a server
// start, or a stop).
func (d *Deployer) Sync(ctx context.Context) error {
	d.sync.Lock()
	defer d.sync.Unlock()
	backends, err := d.backends(ctx, names.App{}, nil)
	if err != nil {
		return err
	}
	return d.route(ctx, backends)
}

// route makes the router route backends, then tells the certificate
// engine which hostnames are routed.
func (d *Deployer) route(ctx context.Context, backends []router.Backend) error {
	if err := d.cfg.Router.Apply(ctx, backends); err != nil {
		return err
	}
	if d.cfg.Certs != nil {
		var hosts []string
		for _, b := range backends {
			hosts = append(hosts, b.Hosts...)
		}
		d.cfg.Certs.Want(context.WithoutCancel(ctx), hosts)
	}
	return nil
}

// backends is the router's desired state: every app, with its instances
// from the store, or with override for app.
func (d *Deployer) backends(ctx context.Context, app names.App, override []store.Instance) ([]router.Backend, error) {
	apps, err := d.cfg.Store.ListApps(ctx, "")
	if err != nil {
		return nil, err
	}
	all, err := d.cfg.Store.ListInstances(ctx, "", "")
	if err != nil {
		return nil, err
	}
	byApp := map[string][]router.Server{}
	for _, in := range all {
		if !IsWeb(in) {
			continue // only web is routed
		}
		key := in.Namespace + "/" + in.App
		byApp[key] = append(byApp[key], router.Server{Name: in.Name, Addr: in.Addr})
	}
	if app.Name != "" {
		byApp[app.String()] = nil
		for _, in := range override {
			if IsWeb(in) {
				byApp[app.String()] = append(byApp[app.String()], router.Server{Name: in.Name, Addr: in.Addr})
			}
		}
	}
	hosts, err := d.customDomains(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]router.Backend, 0, len(apps))
	for _, a := range apps {
		key := a.Namespace + "/" + a.Name
		out = append(out, router.Backend{Name: key, Hosts: append([]string{Hostname(a.Namespace, a.Name, d.cfg.Domain)}, hosts[key]...), Servers: byApp[key],
			NoHTTPSRedirect: a.NoHTTPSRedirect, HSTSMaxAge: time.Duration(a.HSTSMaxAge) * time.Second})
	}
	return out, nil
}

func (d *Deployer) memory(m int64) int64 {
	switch {
	case m != 0:
		return m
	case d.cfg.DefaultMemory != 0:
		return d.cfg.DefaultMemory
	}
	return DefaultMemory
}

// URL is where users reach app: over HTTPS once its hostname has a live
// certificate (its own or its namespace's wildcard).
func (d *Deployer) URL(app names.App) string {
	host := Hostname(app.Namespace, app.Name, d.cfg.Domain)
	if d.cfg.HTTPSPort != "" && d.certLive(host) {
		if d.cfg.HTTPSPort != "443" {
			host += ":" + d.cfg.HTTPSPort
		}
		return "https://" + host
	}
	if d.cfg.HTTPPort != "" && d.cfg.HTTPPort != "80" {
		host += ":" + d.cfg.HTTPPort
	}
	return "http://" + host
}

// Hostname is where an app answers.
func Hostname(namespace, app, domain string) string {
	return app + "." + namespace + "." + domain
}

// remove destroys instances, best effort: a leftover container is logged,
// and never worth failing a deploy that already switched.
func (d *Deployer) remove(ctx context.Context, instances []store.Instance, out func(string)) {
	ctx = context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for _, in := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := d.cfg.Agents.Destroy(ctx, in.Host, agentapi.DestroyRequest{Name: in.Name})
			if err != nil {
				d.cfg.Log.Warn("removing an instance", "name", in.Name, "host", in.Host, "err", err)
				if out != nil {
					out(fmt.Sprintf("       could not remove %s on %s: %v", in.Name, in.Host, err))
				}
			}
		}()
	}
	wg.Wait()
}

// hostWait is how long a deploy waits for a host when none is up: a host
// is seen up within a heartbeat of its agent starting.
const hostWait = 3 * time.Second

// place picks hosts for n new instances of app, each with memory bytes,
// away from the app's hosts in existing.
func (d *Deployer) place(ctx context.Context, n int, memory int64, existing []store.Instance) ([]string, error) {
	req := scheduler.Request{N: n, Memory: uint64(memory), Existing: map[string]int{}}
	for _, in := range existing {
		req.Existing[in.Host]++
	}
	deadline := time.Now().Add(hostWait)
	for {
		placed, err := scheduler.Place(req, d.schedulerHosts())
		if !errors.Is(err, scheduler.ErrNoHosts) || time.Now().After(deadline) {
			return placed, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// schedulerHosts is the up, active hosts as placement sees them. A host's
// running app exec containers hold their whole memory limit there, on top
// of what its heartbeat says is in use (a one-off command may grow to its
// limit at any moment, and may have started since the last heartbeat),
// and count as containers until its heartbeat lists them.
func (d *Deployer) schedulerHosts() []scheduler.Host {
	execs := d.execsOn()
	var hosts []scheduler.Host
	for _, h := range d.cfg.Hosts.Up() {
		if !h.Active() {
			continue
		}
		sh := scheduler.Host{Name: h.Name, Weight: h.Record.Weight, MemFree: h.MemFree, Containers: h.Containers}
		listed := map[string]bool{}
		for _, c := range h.List {
			listed[c.Name] = true
		}
		for name, memory := range execs[h.Name] {
			sh.MemFree -= min(sh.MemFree, uint64(memory))
			if !listed[name] {
				sh.Containers++
			}
		}
		hosts = append(hosts, sh)
	}
	return hosts
}

// instanceName is unique and readable: ns-app-vN-xxxxxx for web,
// ns-app-TYPE-vN-xxxxxx for other process types, cut to what container
// names allow.
func instanceName(app names.App, typ string, version int) string {
	b := make([]byte, 3)
	rand.Read(b)
	suffix := fmt.Sprintf("-v%d-%s", version, hex.EncodeToString(b))
	if typ != Web && typ != "" {
		suffix = "-" + typ + suffix
	}
	prefix := app.Namespace + "-" + app.Name
	if len(prefix)+len(suffix) > 63 {
		prefix = prefix[:63-len(suffix)]
	}
	return strings.TrimRight(prefix, "-") + suffix
}

// container is what the agent makes a container of rel from: app.yaml's
// cpu, else the operator's default.
func (d *Deployer) container(name string, app names.App, rel store.Release, rt runtimes.Runtime, command string, env map[string]string, memory int64) agentapi.ReleaseContainer {
	cpu := rel.Config.CPU
	if cpu == 0 {
		cpu = d.cfg.DefaultCPU
	}
	return agentapi.ReleaseContainer{Name: name, App: app.String(), Release: rel.Version, Runtime: rt,
		Artifact: rel.Artifact, Digest: rel.Digest, Command: command, Env: env, Memory: memory, CPU: cpu, Disk: d.cfg.ContainerDisk}
}

// certLive says whether the store has a live certificate for host, or for
// the wildcard one label up.
func (d *Deployer) certLive(host string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	list, err := d.cfg.Store.ListCertStatus(ctx)
	if err != nil {
		return false
	}
	_, parent, _ := strings.Cut(host, ".")
	for _, st := range list {
		if st.State == store.CertLive && (st.Name == host || st.Name == "*."+parent) {
			return true
		}
	}
	return false
}
