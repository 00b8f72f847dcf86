package commands

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/backend"
	"github.com/upscalehq/upscale/backend/backendtest"
	"github.com/upscalehq/upscale/fleet"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/repos"
	"github.com/upscalehq/upscale/runtimes"
	"github.com/upscalehq/upscale/store"
	"github.com/upscalehq/upscale/store/sqlstore"
)

// testEnv is an Env with what its backend is built over, for tests to
// set up and inspect.
type testEnv struct {
	*Env
	Store   store.Store
	Repos   *repos.Repos
	Catalog *runtimes.Catalog
	Hosts   func() []fleet.Host
	// HostOps manages hosts in the backend rewire builds.
	HostOps backend.HostOps
	// Certs is the certificate engine of the backend rewire builds.
	Certs *backendtest.Certs
}

// world is a store with two namespaces and one principal of each kind.
type world struct {
	env                             *testEnv
	admin, member, outsider, deploy keys.Principal
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlstore.Open(context.Background(), "", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cat, err := runtimes.Load("")
	if err != nil {
		t.Fatal(err)
	}
	rs := &repos.Repos{Root: dir + "/repos", Binary: "/usr/local/bin/upscale"}
	env := &testEnv{
		Env:     &Env{Domain: "upscale.localhost"},
		Store:   st,
		Repos:   rs,
		Catalog: cat,
		Hosts: func() []fleet.Host {
			return []fleet.Host{{Up: true, Beat: agentapi.Beat{Info: agentapi.Info{Name: "box", Address: "10.0.0.1", State: "up", CPUs: 2}}}}
		},
	}
	env.Certs = &backendtest.Certs{Store: st, Refuse: "bad", RefuseErr: errors.New("key: does not match the certificate (the certificate was made for another key)")}
	rewire(env, nil, nil, store.Quota{}, false)
	return env
}

// rewire rebuilds env's backend as a server would have it: apps run by
// apps and changed by life (nil: none), built and rolled out by a fake
// release engine when apps is set, quota the operator's default, and
// what namespaces use from fakeUsage when usage is set.
func rewire(env *testEnv, apps backend.Apps, life backend.Lifecycle, quota store.Quota, usage bool) {
	c := backend.Config{Store: env.Store, Repos: env.Repos, Domain: env.Domain, Apps: apps, Lifecycle: life, Quota: quota,
		Catalog: env.Catalog, Hosts: env.Hosts, HostOps: env.HostOps, Certs: env.Certs}
	if apps != nil {
		c.Deploys = &backendtest.Deploys{Store: env.Store}
	}
	if usage {
		c.Usage = fakeUsage(env.Store, quota)
	}
	env.Backend = backend.New(c)
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{env: newEnv(t), admin: keys.Local}
	mustRun(t, w.env, w.admin, "", "namespace", "create", "acme")
	mustRun(t, w.env, w.admin, "", "namespace", "create", "globex")
	mustRun(t, w.env, w.admin, "", "app", "create", "acme/web")
	mustRun(t, w.env, w.admin, "", "app", "create", "acme/api")
	mustRun(t, w.env, w.admin, "", "app", "create", "globex/web")
	w.member = addKey(t, w.env, "alice", "--namespace", "acme")
	w.outsider = addKey(t, w.env, "gus", "--namespace", "globex")
	w.deploy = addKey(t, w.env, "ci", "--app", "acme/web")
	return w
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

func addKey(t testing.TB, env *testEnv, name string, scope ...string) keys.Principal {
	t.Helper()
	line := newKeyLine(t, name+"@test")
	args := append([]string{"keys", "add", "--name", name, "--public", line}, scope...)
	mustRun(t, env, keys.Local, "", args...)
	p, _ := keys.Parse(line)
	k, err := env.Store.KeyByFingerprint(context.Background(), p.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return k.Principal()
}

type result struct {
	stdout, stderr string
	code           int
}

func run(env *testEnv, p keys.Principal, stdin string, args ...string) result {
	var out, errb bytes.Buffer
	inv := Invocation{Principal: p, Prog: "ssh upscale@host", Remote: "ssh://upscale@host:2222",
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb}
	code := New(env.Env, inv, nil).Execute(context.Background(), args)
	return result{out.String(), errb.String(), code}
}

func mustRun(t testing.TB, env *testEnv, p keys.Principal, stdin string, args ...string) string {
	t.Helper()
	r := run(env, p, stdin, args...)
	if r.code != 0 {
		t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

// snapshot is everything a command could change, to prove a refused one
// changed nothing.
func snapshot(t testing.TB, env *testEnv) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	nss, _ := env.Store.ListNamespaces(ctx)
	for _, n := range nss {
		fmt.Fprintf(&b, "ns %s quota %+v\n", n.Name, n.Quota)
	}
	apps, _ := env.Store.ListApps(ctx, "")
	for _, a := range apps {
		fmt.Fprintf(&b, "app %s/%s %s\n", a.Namespace, a.Name, a.DeployBranch)
	}
	ks, _ := env.Store.ListKeys(ctx, store.KeyFilter{})
	var lines []string
	for _, k := range ks {
		lines = append(lines, fmt.Sprintf("key %s %s %s %s", k.Name, k.Role, k.Namespace, k.App))
	}
	sort.Strings(lines)
	b.WriteString(strings.Join(lines, "\n"))
	return b.String()
}
