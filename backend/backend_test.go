package backend

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/backend/backendtest"
	"github.com/upscalehq/upscale/hooks"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/runtimes"
	"github.com/upscalehq/upscale/store"
	"github.com/upscalehq/upscale/store/sqlstore"
)

// world is a backend over a fresh store with two namespaces, their apps
// and one principal of each kind.
type world struct {
	b     *Backend
	st    store.Store
	repos *repos.Repos
	who   map[string]keys.Principal
	// keys holds the fingerprints of keys a test may try to remove.
	keys map[string]string
	// spare is a key no one has added yet.
	spare   string
	life    *fakeLifecycle
	deploys *backendtest.Deploys
	catalog *runtimes.Catalog
}

// fakeLifecycle stands in for the release engine: it stores config
// changes as the deployer does and records the rest.
type fakeLifecycle struct {
	st   store.Store
	mu   sync.Mutex
	done []string
}

func (f *fakeLifecycle) record(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done = append(f.done, what)
}

func (f *fakeLifecycle) SetConfig(ctx context.Context, app names.App, set map[string]string, unset []string, _ bool, out func(string)) error {
	_, err := f.st.SetConfig(ctx, app.Namespace, app.Name, set, unset)
	f.record("config " + app.String())
	return err
}

func (f *fakeLifecycle) Scale(ctx context.Context, app names.App, change map[string]int, out func(string)) error {
	f.record(fmt.Sprintf("scale %s %v", app, change))
	return nil
}

func (f *fakeLifecycle) Rollback(ctx context.Context, app names.App, version int, out func(string)) (store.Release, error) {
	f.record(fmt.Sprintf("rollback %s v%d", app, version))
	return store.Release{Version: version + 1}, nil
}

func newKeyLine(t testing.TB, comment string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := gossh.NewPublicKey(pub)
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k))) + " " + comment
}

func newWorld(t testing.TB) *world {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlstore.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rs := &repos.Repos{Root: dir + "/repos", Binary: "/usr/local/bin/upscale"}
	life := &fakeLifecycle{st: st}
	cat, err := runtimes.Load("")
	if err != nil {
		t.Fatal(err)
	}
	deploys := &backendtest.Deploys{Store: st}
	w := &world{
		b:       New(serverParts(t, Config{Store: st, Repos: rs, Domain: "upscale.localhost", Usage: usage(st), Lifecycle: life, Catalog: cat, Deploys: deploys}, life)),
		life:    life,
		deploys: deploys,
		catalog: cat,
		st:      st,
		repos:   rs,
		who:     map[string]keys.Principal{"admin": keys.Local},
		keys:    map[string]string{},
		spare:   newKeyLine(t, "spare"),
	}
	ctx := context.Background()
	for _, ns := range []string{"acme", "globex", "empty"} {
		if _, err := w.b.CreateNamespace(ctx, keys.Local, ns); err != nil {
			t.Fatal(err)
		}
	}
	for _, app := range []string{"acme/web", "acme/api", "globex/web"} {
		a, _ := names.ParseApp(app)
		if _, err := w.b.CreateApp(ctx, keys.Local, a); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []NewKey{
		{Name: "alice", Role: keys.RoleNamespace, Namespace: "acme"},
		{Name: "bob", Role: keys.RoleNamespace, Namespace: "acme"},
		{Name: "gus", Role: keys.RoleNamespace, Namespace: "globex"},
		{Name: "ci", Role: keys.RoleDeploy, Namespace: "acme", App: "web"},
		{Name: "op", Role: keys.RoleAdmin},
	} {
		k.Text = newKeyLine(t, k.Name)
		added, err := w.b.AddKey(ctx, keys.Local, k)
		if err != nil {
			t.Fatal(err)
		}
		w.keys[k.Name] = added.Fingerprint
		w.who[k.Name] = added.Principal()
	}
	if _, err := st.SetConfig(ctx, "acme", "web", map[string]string{"SET": "1"}, nil); err != nil {
		t.Fatal(err)
	}
	w.who["member"], w.who["outsider"], w.who["deploy"] = w.who["alice"], w.who["gus"], w.who["ci"]
	w.who["boot"] = keys.Principal{Name: "bootstrap-h1", Fingerprint: "SHA256:boot", Role: keys.RoleBootstrap, App: "h1"}
	// Stopped with a live release: app run starts it again.
	if err := backendtest.Stopped(ctx, st, acmeAPI); err != nil {
		t.Fatal(err)
	}
	return w
}

// local is w's backend as the local CLI has it: no server runs apps.
func (w *world) local() *Backend {
	return New(Config{Store: w.st, Repos: w.repos, Domain: "upscale.localhost", Catalog: w.catalog})
}

// usage stands in for the deployer's: the store's quotas, nothing running.
func usage(st store.Store) UsageFunc {
	return func(ctx context.Context, ns string) (own, inForce, use store.Quota, err error) {
		n, err := st.GetNamespace(ctx, ns)
		return n.Quota, n.Quota, store.Quota{Apps: n.Apps}, err
	}
}

// snapshot is everything a use case could change.
func (w *world) snapshot(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	var lines []string
	nss, _ := w.st.ListNamespaces(ctx)
	for _, n := range nss {
		lines = append(lines, fmt.Sprintf("ns %s quota %+v", n.Name, n.Quota))
	}
	apps, _ := w.st.ListApps(ctx, "")
	for _, a := range apps {
		p, _ := w.repos.Path(names.App{Namespace: a.Namespace, Name: a.Name})
		lines = append(lines, fmt.Sprintf("app %s/%s %s repo %s no-redirect %v hsts %d", a.Namespace, a.Name, a.DeployBranch, p, a.NoHTTPSRedirect, a.HSTSMaxAge))
		vars, _ := w.st.GetConfig(ctx, a.Namespace, a.Name)
		lines = append(lines, fmt.Sprintf("config %s/%s %v", a.Namespace, a.Name, vars))
	}
	ks, _ := w.st.ListKeys(ctx, store.KeyFilter{})
	for _, k := range ks {
		lines = append(lines, fmt.Sprintf("key %s %s %s %s", k.Name, k.Role, k.Namespace, k.App))
	}
	w.life.mu.Lock()
	lines = append(lines, w.life.done...)
	w.life.mu.Unlock()
	lines = append(lines, w.deploys.Done()...)
	pushes, _ := w.st.ListPushes(ctx, "acme", "web", 0)
	for _, p := range pushes {
		lines = append(lines, fmt.Sprintf("push %s %s %s by %s", p.Ref, p.OldCommit, p.NewCommit, p.KeyName))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

var (
	acmeWeb = names.App{Namespace: "acme", Name: "web"}
	acmeAPI = names.App{Namespace: "acme", Name: "api"}
)

// gate is one way of calling a use case on things that exist, and the
// actors it must refuse, with what each is told.
type gate struct {
	call    func(ctx context.Context, w *world, who keys.Principal) error
	refused map[string]string
}

// gates holds, for every use case, a call per path through its
// authorization. Each call succeeds for an admin: a path that skipped
// authorization would let the refused actors through, and the test fail.
var gates = map[string][]gate{
	"CreateNamespace": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.CreateNamespace(ctx, who, "newns")
			return err
		},
		map[string]string{"member": `not allowed: "namespace create" needs an admin key`, "deploy": `not allowed: "namespace create" needs an admin key`, "boot": `not allowed: "namespace create" needs an admin key`},
	}},
	"ListNamespaces": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.ListNamespaces(ctx, who)
			return err
		},
		map[string]string{"deploy": `not allowed: "namespace list" needs an admin key`, "boot": `not allowed: "namespace list" needs an admin key`},
	}},
	"DeleteNamespace": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			return w.b.DeleteNamespace(ctx, who, "empty")
		},
		map[string]string{"member": `not allowed: "namespace delete" needs an admin key`, "deploy": `not allowed: "namespace delete" needs an admin key`},
	}},
	"NamespaceInfo": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.NamespaceInfo(ctx, who, "acme")
			return err
		},
		map[string]string{"outsider": "namespace acme not found", "deploy": "namespace acme not found", "boot": "namespace acme not found"},
	}},
	"SetQuota": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			n := 5
			_, _, err := w.b.SetQuota(ctx, who, "acme", store.QuotaChange{Apps: &n})
			return err
		},
		map[string]string{"member": "namespace acme not found", "outsider": "namespace acme not found", "deploy": "namespace acme not found"},
	}},
	"CreateApp": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.CreateApp(ctx, who, names.App{Namespace: "acme", Name: "new"})
			return err
		},
		map[string]string{"outsider": "namespace acme not found", "deploy": "namespace acme not found", "boot": "namespace acme not found"},
	}},
	"ListApps": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.ListApps(ctx, who, "acme")
			return err
		},
		map[string]string{"outsider": "namespace acme not found", "deploy": "namespace acme not found"},
	}, {
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.ListApps(ctx, who, "")
			return err
		},
		map[string]string{"member": `not allowed: "app list" needs an admin key`, "deploy": `not allowed: "app list" needs an admin key`},
	}},
	"AppInfo": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.AppInfo(ctx, who, acmeAPI)
			return err
		},
		map[string]string{"outsider": "app acme/api not found", "deploy": "app acme/api not found", "boot": "app acme/api not found"},
	}},
	"SetDeployBranch": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			return w.b.SetDeployBranch(ctx, who, acmeWeb, "main")
		},
		map[string]string{"outsider": "app acme/web not found", "deploy": "app acme/web not found"},
	}},
	"DeleteApp": {{
		func(ctx context.Context, w *world, who keys.Principal) error { return w.b.DeleteApp(ctx, who, acmeAPI) },
		map[string]string{"outsider": "app acme/api not found", "deploy": "app acme/api not found"},
	}},
	"AddKey": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.AddKey(ctx, who, NewKey{Name: "z", Role: keys.RoleDeploy, Namespace: "acme", App: "web", Text: w.spare})
			return err
		},
		map[string]string{"outsider": "app acme/web not found", "deploy": "app acme/web not found", "boot": "app acme/web not found"},
	}, {
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.AddKey(ctx, who, NewKey{Name: "z", Role: keys.RoleNamespace, Namespace: "acme", Text: w.spare})
			return err
		},
		map[string]string{"outsider": "namespace acme not found", "deploy": "namespace acme not found"},
	}, {
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.AddKey(ctx, who, NewKey{Name: "z", Role: keys.RoleAdmin, Text: w.spare})
			return err
		},
		map[string]string{"member": `not allowed: "keys add" needs an admin key`, "deploy": `not allowed: "keys add" needs an admin key`},
	}},
	"ListKeys": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.ListKeys(ctx, who, "acme")
			return err
		},
		map[string]string{"outsider": "namespace acme not found", "deploy": "namespace acme not found"},
	}, {
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.ListKeys(ctx, who, "")
			return err
		},
		map[string]string{"member": `not allowed: "keys list" needs an admin key`, "deploy": `not allowed: "keys list" needs an admin key`},
	}},
	"RemoveKey": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.RemoveKey(ctx, who, "bob", "acme")
			return err
		},
		map[string]string{"outsider": `key "bob" not found`, "deploy": `key "bob" not found`},
	}, {
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.RemoveKey(ctx, who, "op", "")
			return err
		},
		map[string]string{"member": `key "op" not found`},
	}},
	"ConfigVars": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.ConfigVars(ctx, who, acmeWeb)
			return err
		},
		appRefused,
	}},
	"ConfigVar": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.ConfigVar(ctx, who, acmeWeb, "SET")
			return err
		},
		appRefused,
	}},
	"SetConfig": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			return w.b.SetConfig(ctx, who, acmeWeb, map[string]string{"NEW": "1"}, true, func(string) {})
		},
		appRefused,
	}, {
		// Where no server runs, the store is changed directly.
		func(ctx context.Context, w *world, who keys.Principal) error {
			return w.local().SetConfig(ctx, who, acmeWeb, map[string]string{"NEW": "1"}, false, func(string) {})
		},
		appRefused,
	}},
	"UnsetConfig": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			return w.b.UnsetConfig(ctx, who, acmeWeb, []string{"SET"}, true, func(string) {})
		},
		appRefused,
	}, {
		func(ctx context.Context, w *world, who keys.Principal) error {
			return w.local().UnsetConfig(ctx, who, acmeWeb, []string{"SET"}, false, func(string) {})
		},
		appRefused,
	}},
	"Releases": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.Releases(ctx, who, acmeWeb, 0)
			return err
		},
		appRefused,
	}},
	"Rollback": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.Rollback(ctx, who, acmeWeb, 1, func(string) {})
			return err
		},
		appRefused,
	}},
	"Scale": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			return w.b.Scale(ctx, who, acmeWeb, map[string]int{"web": 2}, func(string) {})
		},
		appRefused,
	}},
	"Events": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.Events(ctx, who, acmeWeb, 0)
			return err
		},
		appRefused,
	}},
	"PreReceive": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			return w.b.PreReceive(ctx, who, acmeWeb, featurePush, func(unlock func()) { unlock() }, func(string) {})
		},
		pushRefused,
	}, {
		func(ctx context.Context, w *world, who keys.Principal) error {
			return w.b.PreReceive(ctx, who, acmeAPI, featurePush, func(unlock func()) { unlock() }, func(string) {})
		},
		map[string]string{"deploy": "app acme/api is gone; the push is refused"},
	}},
	"PostReceive": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			return w.b.PostReceive(ctx, who, acmeWeb, featurePush, func(string) {})
		},
		pushRefused,
	}, {
		func(ctx context.Context, w *world, who keys.Principal) error {
			return w.b.PostReceive(ctx, who, acmeAPI, featurePush, func(string) {})
		},
		map[string]string{"deploy": "app acme/api is gone; the push is refused"},
	}},
	"Run": {{
		func(ctx context.Context, w *world, who keys.Principal) error {
			return w.b.Run(ctx, who, acmeAPI, func(string) {})
		},
		map[string]string{"outsider": "app acme/api not found", "deploy": "app acme/api not found", "boot": "app acme/api not found"},
	}},
}

// pushRefused are the actors refused a push to acme/web (a deploy key may
// push its own app), and what they read.
var pushRefused = map[string]string{"outsider": "app acme/web is gone; the push is refused", "boot": "app acme/web is gone; the push is refused"}

// featurePush creates a branch other than the deploy branch: judged and
// noted, nothing built.
var featurePush = hooks.Request{Updates: []hooks.Update{{Old: hooks.ZeroID, New: "0123456789abcdef0123456789abcdef01234567", Ref: "refs/heads/feature"}}}

// appRefused are the actors refused what only namespace members may do to
// an app (config, releases, scale, events), and what they read.
var appRefused = map[string]string{"outsider": "app acme/web not found", "deploy": "app acme/web not found", "boot": "app acme/web not found"}

// TestEveryUseCaseIsGated walks every exported method of Backend: each
// takes the actor right after the context, and refuses the actors
// without the right, in the words transports print and changing nothing.
func TestEveryUseCaseIsGated(t *testing.T) {
	ctxType := reflect.TypeFor[context.Context]()
	actorType := reflect.TypeFor[keys.Principal]()
	bt := reflect.TypeFor[*Backend]()
	seen := map[string]bool{}
	gates := maps.Clone(gates)
	maps.Copy(gates, runGates)
	maps.Copy(gates, certGates)
	for i := range bt.NumMethod() {
		m := bt.Method(i)
		seen[m.Name] = true
		// In(0) is the receiver.
		if m.Type.NumIn() < 3 || m.Type.In(1) != ctxType || m.Type.In(2) != actorType {
			t.Errorf("%s does not take (ctx, actor keys.Principal, ...): %s", m.Name, m.Type)
		}
		if len(gates[m.Name]) == 0 {
			t.Errorf("%s is not in gates: add a call per authorization path and the actors it refuses", m.Name)
			continue
		}
		for i, g := range gates[m.Name] {
			for persona, want := range g.refused {
				t.Run(fmt.Sprintf("%s/%d/%s", m.Name, i, persona), func(t *testing.T) {
					w := newWorld(t)
					before := w.snapshot(t)
					err := g.call(context.Background(), w, w.who[persona])
					if err == nil || err.Error() != want || !errors.Is(err, keys.ErrDenied) {
						t.Fatalf("got %v, want the refusal %q", err, want)
					}
					if after := w.snapshot(t); after != before {
						t.Fatalf("a refused call changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
					}
					// The same call as an admin goes through: the refusal
					// was the policy's, not the data's.
					if err := g.call(context.Background(), w, keys.Local); err != nil {
						t.Fatalf("an admin is refused too: %v", err)
					}
				})
			}
		}
	}
	for name := range gates {
		if !seen[name] {
			t.Errorf("gates has %s, which Backend does not have", name)
		}
	}
}

// To an actor without access, what exists and what does not read exactly
// the same.
func TestRefusalReadsLikeNotFound(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	gus := w.who["outsider"]
	missingKey := "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	for _, tc := range []struct {
		what string
		call func(ns, app, key string) error
	}{
		{"AppInfo", func(ns, app, _ string) error {
			_, err := w.b.AppInfo(ctx, gus, names.App{Namespace: ns, Name: app})
			return err
		}},
		{"SetDeployBranch", func(ns, app, _ string) error {
			return w.b.SetDeployBranch(ctx, gus, names.App{Namespace: ns, Name: app}, "main")
		}},
		{"DeleteApp", func(ns, app, _ string) error { return w.b.DeleteApp(ctx, gus, names.App{Namespace: ns, Name: app}) }},
		{"CreateApp", func(ns, _, _ string) error {
			_, err := w.b.CreateApp(ctx, gus, names.App{Namespace: ns, Name: "x"})
			return err
		}},
		{"ListApps", func(ns, _, _ string) error {
			_, err := w.b.ListApps(ctx, gus, ns)
			return err
		}},
		{"NamespaceInfo", func(ns, _, _ string) error {
			_, err := w.b.NamespaceInfo(ctx, gus, ns)
			return err
		}},
		{"SetQuota", func(ns, _, _ string) error {
			n := 1
			_, _, err := w.b.SetQuota(ctx, gus, ns, store.QuotaChange{Apps: &n})
			return err
		}},
		{"ListKeys", func(ns, _, _ string) error {
			_, err := w.b.ListKeys(ctx, gus, ns)
			return err
		}},
		{"AddKey namespace", func(ns, _, _ string) error {
			_, err := w.b.AddKey(ctx, gus, NewKey{Name: "z", Role: keys.RoleNamespace, Namespace: ns, Text: w.spare})
			return err
		}},
		{"AddKey deploy", func(ns, app, _ string) error {
			_, err := w.b.AddKey(ctx, gus, NewKey{Name: "z", Role: keys.RoleDeploy, Namespace: ns, App: app, Text: w.spare})
			return err
		}},
		{"RemoveKey", func(_, _, key string) error {
			_, err := w.b.RemoveKey(ctx, gus, key, "")
			return err
		}},
		{"ConfigVars", func(ns, app, _ string) error {
			_, err := w.b.ConfigVars(ctx, gus, names.App{Namespace: ns, Name: app})
			return err
		}},
		{"ConfigVar", func(ns, app, _ string) error {
			_, err := w.b.ConfigVar(ctx, gus, names.App{Namespace: ns, Name: app}, "SET")
			return err
		}},
		{"SetConfig", func(ns, app, _ string) error {
			return w.b.SetConfig(ctx, gus, names.App{Namespace: ns, Name: app}, map[string]string{"A": "1"}, true, func(string) {})
		}},
		{"UnsetConfig", func(ns, app, _ string) error {
			return w.b.UnsetConfig(ctx, gus, names.App{Namespace: ns, Name: app}, []string{"SET"}, true, func(string) {})
		}},
		{"Releases", func(ns, app, _ string) error {
			_, err := w.b.Releases(ctx, gus, names.App{Namespace: ns, Name: app}, 0)
			return err
		}},
		{"Rollback", func(ns, app, _ string) error {
			_, err := w.b.Rollback(ctx, gus, names.App{Namespace: ns, Name: app}, 0, func(string) {})
			return err
		}},
		{"Scale", func(ns, app, _ string) error {
			return w.b.Scale(ctx, gus, names.App{Namespace: ns, Name: app}, map[string]int{"web": 1}, func(string) {})
		}},
		{"Events", func(ns, app, _ string) error {
			_, err := w.b.Events(ctx, gus, names.App{Namespace: ns, Name: app}, 0)
			return err
		}},
		{"PreReceive", func(ns, app, _ string) error {
			return w.b.PreReceive(ctx, gus, names.App{Namespace: ns, Name: app}, featurePush, func(unlock func()) { unlock() }, func(string) {})
		}},
		{"PostReceive", func(ns, app, _ string) error {
			return w.b.PostReceive(ctx, gus, names.App{Namespace: ns, Name: app}, featurePush, func(string) {})
		}},
		{"Run", func(ns, app, _ string) error {
			return w.b.Run(ctx, gus, names.App{Namespace: ns, Name: app}, func(string) {})
		}},
	} {
		exists := tc.call("acme", "web", w.keys["bob"])
		missing := tc.call("nope", "nope", missingKey)
		norm := func(err error) string {
			if err == nil {
				return "<nil>"
			}
			s := err.Error()
			for _, n := range []string{"acme/web", "nope/nope", "acme", "nope", w.keys["bob"], missingKey} {
				s = strings.ReplaceAll(s, n, "X")
			}
			return s
		}
		if exists == nil || norm(exists) != norm(missing) {
			t.Errorf("%s reads differently to an outsider: %v vs %v", tc.what, exists, missing)
		}
	}
}

// Creating an app is one intent: when its repository cannot be made, the
// store forgets the app too, and the name is free again.
func TestCreateAppUndoneWhenTheRepositoryFails(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	app := names.App{Namespace: "acme", Name: "shop"}
	p, err := w.repos.Path(app)
	if err != nil {
		t.Fatal(err)
	}
	// A file where the repository's directory goes makes git init fail.
	if err := os.WriteFile(p, []byte("in the way"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := w.snapshot(t)
	_, err = w.b.CreateApp(ctx, keys.Local, app)
	if err == nil || !strings.HasPrefix(err.Error(), "creating the repository of acme/shop: ") {
		t.Fatalf("CreateApp over a blocked path: %v", err)
	}
	if after := w.snapshot(t); after != before {
		t.Fatalf("a failed create left the store changed:\n%s", after)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	a, err := w.b.CreateApp(ctx, keys.Local, app)
	if err != nil || a.URL != "http://shop.acme.upscale.localhost" {
		t.Fatalf("CreateApp once the path is free: %+v, %v", a, err)
	}
	if _, err := os.Stat(filepath.Join(p, "hooks", "pre-receive")); err != nil {
		t.Fatalf("the new app has no pre-receive hook: %v", err)
	}
}

// Config changes check what they are given, whoever asks, and where no
// server runs they are stored only; a roll-out, scale or rollback there
// is refused with ErrNeedsServer.
func TestConfigChanges(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	alice := w.who["member"]
	for _, tc := range []struct {
		what string
		err  error
		want string
	}{
		{"reserved", w.b.SetConfig(ctx, alice, acmeWeb, map[string]string{"port": "1"}, true, func(string) {}),
			"config var port is reserved: the platform sets it in every container"},
		{"NUL", w.b.SetConfig(ctx, alice, acmeWeb, map[string]string{"A": "x\x00"}, true, func(string) {}),
			"config var A: the value must be UTF-8 text without NUL bytes"},
		{"too many in all", w.b.SetConfig(ctx, alice, acmeWeb, manyVars(MaxConfigVars), true, func(string) {}),
			"acme/web would have 501 config vars; the limit is 500"},
		{"unset what is not set", w.b.UnsetConfig(ctx, alice, acmeWeb, []string{"NOPE"}, true, func(string) {}),
			`config var "NOPE" is not set on acme/web`},
		{"get what is not set", func() error { _, err := w.b.ConfigVar(ctx, alice, acmeWeb, "NOPE"); return err }(),
			`config var "NOPE" is not set on acme/web`},
	} {
		if tc.err == nil || tc.err.Error() != tc.want {
			t.Errorf("%s: got %v, want %q", tc.what, tc.err, tc.want)
		}
	}
	local := w.local()
	var said []string
	if err := local.SetConfig(ctx, alice, acmeWeb, map[string]string{"B": "2"}, false, func(l string) { said = append(said, l) }); err != nil {
		t.Fatal(err)
	}
	if v, err := local.ConfigVar(ctx, alice, acmeWeb, "B"); v != "2" || err != nil || len(said) != 1 || said[0] != "-----> stored; the next release applies it" {
		t.Errorf("stored locally: %q, %v, said %q", v, err, said)
	}
	for what, err := range map[string]error{
		"set":      local.SetConfig(ctx, alice, acmeWeb, map[string]string{"C": "3"}, true, func(string) {}),
		"unset":    local.UnsetConfig(ctx, alice, acmeWeb, []string{"B"}, true, func(string) {}),
		"scale":    local.Scale(ctx, alice, acmeWeb, map[string]int{"web": 1}, func(string) {}),
		"rollback": func() error { _, err := local.Rollback(ctx, alice, acmeWeb, 0, func(string) {}); return err }(),
	} {
		if !errors.Is(err, ErrNeedsServer) {
			t.Errorf("%s with no server: %v", what, err)
		}
	}
	if vars, _ := w.b.ConfigVars(ctx, alice, acmeWeb); len(vars) != 2 || vars["SET"] != "1" || vars["B"] != "2" {
		t.Errorf("refused changes changed the vars: %v", vars)
	}
}

func manyVars(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("V%d", i)] = "x"
	}
	return m
}
