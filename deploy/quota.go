package deploy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/upscalehq/upscale/appspec"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// DefaultQuota is the operator's default quota of every namespace unless
// the server's flags say otherwise.
var DefaultQuota = store.Quota{Apps: 20, Instances: 40, Memory: 8 << 30, Exec: 4}

// DefaultCPU is an instance's CPU limit, in cores, when app.yaml sets none
// and the server's --default-cpu says nothing else.
const DefaultCPU = 1.0

// claim is what an app will run once the change it is making is done.
type claim struct {
	instances int
	memory    int64
}

// execRun is a one-off container, from its quota check until it is gone.
type execRun struct {
	namespace string
	host      string // "" until placed
	memory    int64
}

// Raise is the command that lifts a namespace's quota, for refusals.
func Raise(namespace, key string) string {
	value := "N"
	if key == "memory" {
		value = "SIZE"
	}
	return fmt.Sprintf("an admin raises it with: namespace quota set %s %s=%s", namespace, key, value)
}

// quota is the quota in force in namespace.
func (d *Deployer) quota(ctx context.Context, namespace string) (store.Quota, error) {
	ns, err := d.cfg.Store.GetNamespace(ctx, namespace)
	if err != nil {
		return store.Quota{}, err
	}
	return ns.Quota.Or(d.cfg.Quota), nil
}

// Usage is a namespace's quotas (its own, 0 where the default applies, and
// those in force) and what it holds now: apps, instances with their memory
// limits (an app's deploy under way counts with what it will run), and
// running app exec containers.
func (d *Deployer) Usage(ctx context.Context, namespace string) (own, inForce, use store.Quota, err error) {
	ns, err := d.cfg.Store.GetNamespace(ctx, namespace)
	if err != nil {
		return own, inForce, use, err
	}
	d.quotaMu.Lock()
	defer d.quotaMu.Unlock()
	all, err := d.claims(ctx, namespace)
	if err != nil {
		return own, inForce, use, err
	}
	use.Apps = ns.Apps
	for _, c := range all {
		use.Instances += c.instances
		use.Memory += c.memory
	}
	for _, e := range d.execs {
		if e.namespace == namespace {
			use.Exec++
		}
	}
	return ns.Quota, ns.Quota.Or(d.cfg.Quota), use, nil
}

// claims is what each app of namespace runs, from the store, or what it
// will run when a change of it is under way. The caller holds quotaMu.
func (d *Deployer) claims(ctx context.Context, namespace string) (map[string]claim, error) {
	instances, err := d.cfg.Store.ListInstances(ctx, namespace, "")
	if err != nil {
		return nil, err
	}
	out := map[string]claim{}
	memory := map[string]int64{} // by app/vN
	for _, in := range instances {
		key := in.App + "/v" + strconv.Itoa(in.Release)
		m, ok := memory[key]
		if !ok {
			rel, err := d.cfg.Store.GetRelease(ctx, namespace, in.App, in.Release)
			if err != nil {
				return nil, err
			}
			m = d.memory(rel.Config.Memory)
			memory[key] = m
		}
		c := out[in.App]
		c.instances++
		c.memory += m
		out[in.App] = c
	}
	for key, c := range d.pending {
		if app, err := names.ParseApp(key); err == nil && app.Namespace == namespace {
			out[app.Name] = c
		}
	}
	return out, nil
}

// reserve checks that app running want (instances of each process type,
// each with memory bytes) keeps its namespace within its instances and
// memory quotas, counting its other apps, or takes no more than the app
// has now; and holds that claim against
// other apps' changes until the returned func is called. The caller holds
// app's lock, so an app has one claim at a time.
func (d *Deployer) reserve(ctx context.Context, app names.App, want map[string]int, memory int64) (func(), error) {
	q, err := d.quota(ctx, app.Namespace)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, k := range want {
		n += k
	}
	mine := claim{instances: n, memory: int64(n) * memory}
	d.quotaMu.Lock()
	defer d.quotaMu.Unlock()
	all, err := d.claims(ctx, app.Namespace)
	if err != nil {
		return nil, err
	}
	var others claim
	for name, c := range all {
		if name != app.Name {
			others.instances += c.instances
			others.memory += c.memory
		}
	}
	// What runs already stays allowed after the operator lowers a quota:
	// restarts and changes that take no more pass.
	now := all[app.Name]
	what := FormatFormation(want)
	if q.Instances > 0 && others.instances+mine.instances > q.Instances && mine.instances > now.instances {
		return nil, fmt.Errorf("%w: %s would run %d instance(s) (%s) and the other apps of namespace %s run %d, over its instances quota of %d; %s",
			store.ErrOverQuota, app, mine.instances, what, app.Namespace, others.instances, q.Instances, Raise(app.Namespace, "instances"))
	}
	if q.Memory > 0 && others.memory+mine.memory > q.Memory && mine.memory > now.memory {
		return nil, fmt.Errorf("%w: %s would run %d instance(s) of %s (%s) and the other apps of namespace %s %s, over its memory quota of %s; %s",
			store.ErrOverQuota, app, mine.instances, appspec.FormatSize(memory), appspec.FormatSize(mine.memory), app.Namespace, appspec.FormatSize(others.memory),
			appspec.FormatSize(q.Memory), Raise(app.Namespace, "memory"))
	}
	if d.pending == nil {
		d.pending = map[string]claim{}
	}
	d.pending[app.String()] = mine
	return func() {
		d.quotaMu.Lock()
		delete(d.pending, app.String())
		d.quotaMu.Unlock()
	}, nil
}

// reserveRelease is reserve for running cfg with the app's recorded
// formation, as rollout will.
func (d *Deployer) reserveRelease(ctx context.Context, app names.App, cfg store.ReleaseConfig) (func(), error) {
	stored, err := d.cfg.Store.GetFormation(ctx, app.Namespace, app.Name)
	if err != nil {
		return nil, err
	}
	return d.reserve(ctx, app, Formation(cfg, stored), d.memory(cfg.Memory))
}

// startExec counts a new one-off container of app against its
// namespace's exec quota; the returned func forgets it.
func (d *Deployer) startExec(ctx context.Context, app names.App, name string, memory int64) (func(), error) {
	q, err := d.quota(ctx, app.Namespace)
	if err != nil {
		return nil, err
	}
	d.quotaMu.Lock()
	defer d.quotaMu.Unlock()
	running := 0
	for _, e := range d.execs {
		if e.namespace == app.Namespace {
			running++
		}
	}
	if q.Exec > 0 && running >= q.Exec {
		return nil, fmt.Errorf("%w: namespace %s already runs %d app exec command(s), its exec quota; wait for one to end, or %s",
			store.ErrOverQuota, app.Namespace, running, Raise(app.Namespace, "exec"))
	}
	if d.execs == nil {
		d.execs = map[string]execRun{}
	}
	d.execs[name] = execRun{namespace: app.Namespace, memory: memory}
	return func() {
		d.quotaMu.Lock()
		delete(d.execs, name)
		d.quotaMu.Unlock()
	}, nil
}

// placedExec records the host a one-off container went to.
func (d *Deployer) placedExec(name, host string) {
	d.quotaMu.Lock()
	defer d.quotaMu.Unlock()
	if e, ok := d.execs[name]; ok {
		e.host = host
		d.execs[name] = e
	}
}

// execsOn is the placed one-off containers of each host: name to memory.
func (d *Deployer) execsOn() map[string]map[string]int64 {
	d.quotaMu.Lock()
	defer d.quotaMu.Unlock()
	out := map[string]map[string]int64{}
	for _, name := range slices.Sorted(maps.Keys(d.execs)) {
		e := d.execs[name]
		if e.host == "" {
			continue
		}
		if out[e.host] == nil {
			out[e.host] = map[string]int64{}
		}
		out[e.host][name] = e.memory
	}
	return out
}
