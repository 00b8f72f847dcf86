package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/agentapi/agenttest"
	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/deploy/deploytest"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/hostops"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/runtimes"
	"github.com/upscalehq/upscale/store"
)

// fakeEngine stands in for the release engine in the gate tests, which
// are about who gets to it: it records what it is asked in life.
type fakeEngine struct{ life *fakeLifecycle }

func (f fakeEngine) Delete(ctx context.Context, app names.App) error {
	return f.life.st.DeleteApp(ctx, app.Namespace, app.Name)
}
func (fakeEngine) URL(app names.App) string {
	return fmt.Sprintf("http://%s.%s.upscale.localhost", app.Name, app.Namespace)
}
func (f fakeEngine) Stop(_ context.Context, app names.App, _ func(string)) error {
	f.life.record("stop " + app.String())
	return nil
}
func (f fakeEngine) Restart(_ context.Context, app names.App, _ func(string)) error {
	f.life.record("restart " + app.String())
	return nil
}
func (fakeEngine) PS(context.Context, names.App) ([]deploy.Process, error) { return nil, nil }
func (fakeEngine) Logs(context.Context, names.App, int, bool, func(string)) error {
	return nil
}
func (f fakeEngine) Exec(_ context.Context, app names.App, argv []string, _ time.Duration, _ string, _, _ func(string)) (int, error) {
	f.life.record(fmt.Sprintf("exec %s %q", app, argv))
	return 0, nil
}
func (f fakeEngine) AddDomain(_ context.Context, app names.App, host, _ string) (store.Domain, bool, error) {
	f.life.record("add domain " + host)
	return store.Domain{Hostname: host, Namespace: app.Namespace, App: app.Name}, true, nil
}
func (f fakeEngine) VerifyDomain(_ context.Context, app names.App, host, _ string) (store.Domain, error) {
	f.life.record("verify domain " + host)
	return store.Domain{Hostname: host, Namespace: app.Namespace, App: app.Name}, nil
}
func (f fakeEngine) RemoveDomain(_ context.Context, _ names.App, host, _ string) error {
	f.life.record("remove domain " + host)
	return nil
}

// fakeHostOps records what it is asked to do to hosts.
type fakeHostOps struct{ life *fakeLifecycle }

func (f fakeHostOps) Add(_ context.Context, r hostops.AddRequest, _ func(string)) error {
	f.life.record("add host " + r.Address)
	return nil
}
func (f fakeHostOps) Create(_ context.Context, r hostops.CreateRequest, _ func(string)) error {
	f.life.record("create host " + r.EC2.AMI)
	return nil
}
func (f fakeHostOps) SetWeight(_ context.Context, name string, w int) error {
	f.life.record(fmt.Sprintf("weight %s %d", name, w))
	return nil
}
func (f fakeHostOps) Drain(_ context.Context, name string, _ bool, _ func(string)) error {
	f.life.record("drain " + name)
	return nil
}
func (f fakeHostOps) Remove(_ context.Context, name string, _ func(string)) error {
	f.life.record("remove host " + name)
	return nil
}
func (f fakeHostOps) Destroy(_ context.Context, name string, _ func(string)) error {
	f.life.record("destroy host " + name)
	return nil
}
func (f fakeHostOps) Rebalance(_ context.Context, dryRun bool, _ func(string)) error {
	f.life.record(fmt.Sprintf("rebalance %v", dryRun))
	return nil
}
func (f fakeHostOps) Bootstrap(_ context.Context, name, keyFP string, w io.Writer) error {
	_, err := io.WriteString(w, "tar of "+name+" for "+keyFP)
	return err
}

func oneBox() []fleet.Host {
	return []fleet.Host{{Up: true, Beat: agentapi.Beat{Info: agentapi.Info{Name: "box", Address: "10.0.0.1", State: "up", CPUs: 2, MemTotal: 8 << 30, MemFree: 8 << 30},
		Images: []agentapi.ImageInfo{{Runtime: "python"}}}}}
}

// server is a Config's parts a running server adds, over the fakes.
func serverParts(t testing.TB, c Config, life *fakeLifecycle) Config {
	c.Apps, c.HostOps, c.Hosts = fakeEngine{life}, fakeHostOps{life}, oneBox
	c.Certs = fakeCerts{life}
	c.Reroute = func(context.Context) error { life.record("reroute"); return nil }
	c.Router = func(context.Context) string { return "up" }
	return c
}

var hostsRefused = func(what string) map[string]string {
	m := map[string]string{}
	for _, p := range []string{"member", "outsider", "deploy", "boot"} {
		m[p] = fmt.Sprintf("not allowed: %q needs an admin key", what)
	}
	return m
}

// runGates are the gates (see gates) of running apps, their domains,
// runtimes and hosts.
var runGates = map[string][]gate{
	"FindApp": {{func(ctx context.Context, w *world, who keys.Principal) error {
		_, err := w.b.FindApp(ctx, who, acmeAPI)
		return err
	}, map[string]string{"outsider": "app acme/api not found", "deploy": "app acme/api not found", "boot": "app acme/api not found"}}},
	"PushTarget": {{func(ctx context.Context, w *world, who keys.Principal) error {
		_, _, err := w.b.PushTarget(ctx, who, acmeAPI)
		return err
	}, map[string]string{"outsider": "app acme/api not found", "deploy": "app acme/api not found", "boot": "app acme/api not found"}}, {func(ctx context.Context, w *world, who keys.Principal) error {
		_, _, err := w.b.PushTarget(ctx, who, names.App{Namespace: "acme", Name: "new"})
		return err
	}, map[string]string{"outsider": "app acme/new not found", "deploy": "app acme/new not found", "boot": "app acme/new not found"}}},
	"Stop": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.Stop(ctx, who, acmeWeb, func(string) {})
	}, appRefused}},
	"Restart": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.Restart(ctx, who, acmeWeb, func(string) {})
	}, appRefused}},
	"Processes": {{func(ctx context.Context, w *world, who keys.Principal) error {
		_, err := w.b.Processes(ctx, who, acmeWeb)
		return err
	}, appRefused}},
	"Logs": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.Logs(ctx, who, acmeWeb, 10, false, func(string) {})
	}, appRefused}},
	"Exec": {{func(ctx context.Context, w *world, who keys.Principal) error {
		_, err := w.b.Exec(ctx, who, acmeWeb, []string{"ls"}, 0, func(string) {}, func(string) {})
		return err
	}, appRefused}},
	"AddDomain": {{func(ctx context.Context, w *world, who keys.Principal) error {
		_, _, err := w.b.AddDomain(ctx, who, acmeWeb, "www.example.com")
		return err
	}, appRefused}},
	"VerifyDomain": {{func(ctx context.Context, w *world, who keys.Principal) error {
		_, err := w.b.VerifyDomain(ctx, who, acmeWeb, "www.example.com")
		return err
	}, appRefused}},
	"RemoveDomain": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.RemoveDomain(ctx, who, acmeWeb, "www.example.com")
	}, appRefused}},
	"Domains": {{func(ctx context.Context, w *world, who keys.Principal) error {
		_, err := w.b.Domains(ctx, who, acmeWeb)
		return err
	}, appRefused}},
	"Runtimes": {{func(ctx context.Context, w *world, who keys.Principal) error {
		_, err := w.b.Runtimes(ctx, who)
		return err
	}, map[string]string{"deploy": `not allowed: "runtimes list" needs an admin key`, "boot": `not allowed: "runtimes list" needs an admin key`}}},
	"Hosts": {{func(ctx context.Context, w *world, who keys.Principal) error {
		_, err := w.b.Hosts(ctx, who)
		return err
	}, hostsRefused("hosts list")}},
	"RouterStatus": {{func(ctx context.Context, w *world, who keys.Principal) error {
		_, err := w.b.RouterStatus(ctx, who)
		return err
	}, hostsRefused("hosts list")}},
	"AddHost": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.AddHost(ctx, who, NewHost{Address: "10.0.0.9", TrustHostKey: true, Identity: func() ([]byte, error) { return []byte("KEY"), nil }}, func(string) {})
	}, hostsRefused("hosts add")}},
	"CreateHost": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.CreateHost(ctx, who, NewEC2Host{AMI: "ami-1"}, func(string) {})
	}, hostsRefused("hosts create")}},
	"SetHostWeight": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.SetHostWeight(ctx, who, "h1", 2)
	}, hostsRefused("hosts set")}},
	"DrainHost": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.DrainHost(ctx, who, "h1", false, func(string) {})
	}, hostsRefused("hosts drain")}},
	"RemoveHost": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.RemoveHost(ctx, who, "h1", func(string) {})
	}, hostsRefused("hosts remove")}},
	"DestroyHost": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.DestroyHost(ctx, who, "h1", func(string) {})
	}, hostsRefused("hosts destroy")}},
	"Rebalance": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.Rebalance(ctx, who, true, func(string) {})
	}, hostsRefused("hosts rebalance")}},
	"BootstrapHost": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.BootstrapHost(ctx, who, "h1", io.Discard)
	}, map[string]string{"member": "not allowed", "outsider": "not allowed", "deploy": "not allowed"}}},
}

// engineWorld is w's backend over a real release engine whose agents are
// agenttest's fake, with acme/web's release 1 live on two instances.
type engineWorld struct {
	*world
	agents *agenttest.Agents
	d      *deploy.Deployer
}

func newEngineWorld(t *testing.T) *engineWorld {
	t.Helper()
	w := newWorld(t)
	ctx := context.Background()
	cat, err := runtimes.Load("")
	if err != nil {
		t.Fatal(err)
	}
	agents := agenttest.New()
	hosts := &deploytest.Hosts{}
	hosts.Set("box", true, store.HostActive)
	d, err := deploy.New(deploy.Config{Store: w.st, Bus: deploytest.NewArtifacts(), Agents: agents, Router: &deploytest.Router{}, Hosts: hosts,
		Catalog: cat, Repos: w.repos, Domain: "upscale.localhost", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := w.st.CreateRelease(ctx, store.Release{Namespace: "acme", App: "web", Runtime: "python"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.st.FinishBuild(ctx, "acme", "web", rel.Version, "artifact", strings.Repeat("d", 64), 1); err != nil {
		t.Fatal(err)
	}
	instances := []store.Instance{
		{Name: "acme-web-v1-aaa", Host: "box", Addr: "10.77.0.2:8080", Release: rel.Version},
		{Name: "acme-web-v1-bbb", Host: "box", Addr: "10.77.0.3:8080", Release: rel.Version},
	}
	if err := w.st.Activate(ctx, "acme", "web", rel.Version, instances); err != nil {
		t.Fatal(err)
	}
	var cs []agentapi.ContainerInfo
	for _, in := range instances {
		cs = append(cs, agentapi.ContainerInfo{Name: in.Name, App: "acme/web", Release: in.Release, Addr: in.Addr, State: "running"})
	}
	agents.SetContainers("box", cs...)
	agents.SetLogs("acme-web-v1-aaa", []agenttest.LogLine{{At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Text: "hello from aaa"}}, nil)
	w.b = New(Config{Store: w.st, Repos: w.repos, Domain: "upscale.localhost", Apps: d, Catalog: cat})
	return &engineWorld{world: w, agents: agents, d: d}
}

// App ps, logs, exec and stop reach the app's agents through the release
// engine for those who may run the app, and for no one else: a refused
// actor makes no agent call.
func TestRunningAppsThroughTheEngine(t *testing.T) {
	w := newEngineWorld(t)
	ctx := context.Background()
	alice, gus := w.who["member"], w.who["outsider"]

	w.agents.Forget()
	if _, err := w.b.Processes(ctx, gus, acmeWeb); err == nil || err.Error() != "app acme/web not found" {
		t.Errorf("ps as an outsider: %v", err)
	}
	if err := w.b.Logs(ctx, gus, acmeWeb, 10, false, func(string) {}); err == nil || err.Error() != "app acme/web not found" {
		t.Errorf("logs as an outsider: %v", err)
	}
	if _, err := w.b.Exec(ctx, gus, acmeWeb, []string{"ls"}, 0, func(string) {}, func(string) {}); err == nil || err.Error() != "app acme/web not found" {
		t.Errorf("exec as an outsider: %v", err)
	}
	if err := w.b.Stop(ctx, gus, acmeWeb, func(string) {}); err == nil || err.Error() != "app acme/web not found" {
		t.Errorf("stop as an outsider: %v", err)
	}
	if calls := w.agents.Calls(); len(calls) != 0 {
		t.Fatalf("refused actors reached the agents: %+v", calls)
	}

	procs, err := w.b.Processes(ctx, alice, acmeWeb)
	if err != nil || len(procs) != 2 || procs[0].Name != "acme-web-v1-aaa" || procs[0].State != "running" || procs[1].Host != "box" {
		t.Fatalf("ps: %+v, %v", procs, err)
	}

	var lines []string
	if err := w.b.Logs(ctx, alice, acmeWeb, 10, false, func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || !strings.HasSuffix(lines[0], "acme-web-v1-aaa| hello from aaa") {
		t.Errorf("logs: %q", lines)
	}
	if asked := w.agents.LogsAsked(); len(asked) != 2 || asked[0].Lines != 10 {
		t.Errorf("logs asked of the agents: %+v", asked)
	}

	code, err := w.b.Exec(ctx, alice, acmeWeb, []string{"echo", "it's"}, 0, func(string) {}, func(string) {})
	if err != nil || code != 0 {
		t.Fatalf("exec: %d, %v", code, err)
	}
	execs := w.agents.Execs()
	if len(execs) != 1 || execs[0].Command != `'echo' 'it'\''s'` || execs[0].Timeout != DefaultExecTimeout {
		t.Fatalf("exec requests: %+v", execs)
	}
	evs, _ := w.st.ListEvents(ctx, "acme", "web", 1)
	if len(evs) != 1 || evs[0].Kind != "exec" || evs[0].By != "alice" {
		t.Errorf("exec event: %+v", evs)
	}

	var said []string
	if err := w.b.Stop(ctx, alice, acmeWeb, func(l string) { said = append(said, l) }); err != nil {
		t.Fatal(err)
	}
	if got := w.agents.Containers("box"); len(got) != 0 {
		t.Errorf("after stop the host still has %+v", got)
	}
	if a, _ := w.st.GetApp(ctx, "acme", "web"); !a.Stopped || !slices.ContainsFunc(said, func(l string) bool { return strings.Contains(l, "acme/web stopped") }) {
		t.Errorf("after stop: stopped %v, said %q", a.Stopped, said)
	}
	if evs, _ := w.st.ListEvents(ctx, "acme", "web", 1); len(evs) != 1 || evs[0].Kind != "stop" || evs[0].By != "alice" {
		t.Errorf("stop event: %+v", evs)
	}
	if err := w.b.Restart(ctx, alice, acmeWeb, func(string) {}); err == nil || err.Error() != "app acme/web is stopped; start it with app run" {
		t.Errorf("restart of a stopped app: %v", err)
	}
}

// Where no server runs apps, what needs one says so (after the app is
// found), and an app's domains still list.
func TestRunningNeedsServer(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	local := w.local()
	alice := w.who["member"]
	for what, err := range map[string]error{
		"stop":    local.Stop(ctx, alice, acmeWeb, func(string) {}),
		"restart": local.Restart(ctx, alice, acmeWeb, func(string) {}),
		"logs":    local.Logs(ctx, alice, acmeWeb, 1, false, func(string) {}),
		"exec":    func() error { _, err := local.Exec(ctx, alice, acmeWeb, []string{"ls"}, 0, nil, nil); return err }(),
		"ps":      func() error { _, err := local.Processes(ctx, alice, acmeWeb); return err }(),
		"add":     func() error { _, _, err := local.AddDomain(ctx, alice, acmeWeb, "www.example.com"); return err }(),
		"remove":  local.RemoveDomain(ctx, alice, acmeWeb, "www.example.com"),
	} {
		if !errors.Is(err, ErrNeedsServer) {
			t.Errorf("%s with no server: %v", what, err)
		}
	}
	if err := local.Stop(ctx, alice, names.App{Namespace: "acme", Name: "nope"}, func(string) {}); err == nil || err.Error() != "app acme/nope not found" {
		t.Errorf("stop of a missing app: %v", err)
	}
	if l, err := local.Domains(ctx, alice, acmeWeb); err != nil || len(l.Domains) != 0 || l.AppURL != "http://web.acme.upscale.localhost" {
		t.Errorf("domains with no server: %+v, %v", l, err)
	}
	if err := local.DrainHost(ctx, keys.Local, "h1", false, func(string) {}); !errors.Is(err, ErrHostsNeedServer) {
		t.Errorf("drain with no server: %v", err)
	}
}

// A malformed hostname is refused before anything else; a bad host key
// before the identity is read.
func TestDomainAndHostInput(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	if _, _, err := w.b.AddDomain(ctx, w.who["outsider"], acmeWeb, "*.example.com"); err == nil || !strings.HasPrefix(err.Error(), `invalid domain "*.example.com": wildcards`) {
		t.Errorf("a wildcard: %v", err)
	}
	c, added, err := w.b.AddDomain(ctx, w.who["member"], acmeWeb, "WWW.Example.com.")
	if err != nil || !added || c.Hostname != "www.example.com" || c.Target != "web.acme.upscale.localhost" || c.URL != "http://www.example.com" {
		t.Errorf("add: %+v %v %v", c, added, err)
	}
	read := false
	err = w.b.AddHost(ctx, keys.Local, NewHost{Address: "10.0.0.9", HostKeys: []string{"ssh-ed25519"}, Identity: func() ([]byte, error) { read = true; return nil, nil }}, func(string) {})
	var hk *HostKeyError
	if !errors.As(err, &hk) || read {
		t.Errorf("a bad host key: %v, identity read: %v", err, read)
	}
}
