package commands

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/upscalehq/upscale/backend/backendtest"
	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/hostops"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// fakeGit stands in for the git service: these tests are about who gets
// to it, not git itself (that is e2e's job).
type fakeGit struct{}

func (fakeGit) Serve(_ context.Context, service string, app names.App, p keys.Principal, _ io.Reader, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "%s %s for %s\n", service, app, p.Name)
	return 0
}

// fakeApps stands in for the deployer: these tests are about who may ask.
type fakeApps struct{}

func (fakeApps) Stop(_ context.Context, app names.App, out func(string)) error {
	out("stopped " + app.String())
	return nil
}
func (fakeApps) Delete(context.Context, names.App) error { return nil }

func (fakeApps) Restart(_ context.Context, app names.App, out func(string)) error {
	out("restarted " + app.String())
	return nil
}
func (fakeApps) PS(context.Context, names.App) ([]deploy.Process, error) {
	return []deploy.Process{{Name: "acme-web-v1-abc123", Host: "box", Addr: "10.0.0.2:8080", Release: 1, State: "running"}}, nil
}
func (fakeApps) Logs(_ context.Context, app names.App, n int, _ bool, out func(string)) error {
	out(fmt.Sprintf("%d lines of %s", n, app))
	return nil
}
func (fakeApps) AddDomain(_ context.Context, app names.App, host, _ string) (store.Domain, bool, error) {
	return store.Domain{Hostname: host, Namespace: app.Namespace, App: app.Name, Token: "TOKEN"}, true, nil
}
func (fakeApps) VerifyDomain(_ context.Context, app names.App, host, _ string) (store.Domain, error) {
	return store.Domain{Hostname: host, Namespace: app.Namespace, App: app.Name, VerifiedAt: time.Now()}, nil
}
func (fakeApps) RemoveDomain(context.Context, names.App, string, string) error { return nil }
func (fakeApps) Exec(_ context.Context, app names.App, argv []string, _ time.Duration, _ string, out, _ func(string)) (int, error) {
	out(fmt.Sprintf("ran %q in %s", argv, app))
	return 0, nil
}
func (fakeApps) URL(app names.App) string {

	return "http://" + app.Name + "." + app.Namespace + ".test:8080"
}

// fakeHostOps stands in for host management.
type fakeHostOps struct{}

func (fakeHostOps) Add(_ context.Context, r hostops.AddRequest, out func(string)) error {
	out("added " + r.Address)
	return nil
}
func (fakeHostOps) Create(_ context.Context, r hostops.CreateRequest, out func(string)) error {
	out("created " + r.EC2.AMI)
	return nil
}
func (fakeHostOps) SetWeight(context.Context, string, int) error { return nil }
func (fakeHostOps) Drain(_ context.Context, name string, _ bool, out func(string)) error {
	out("drained " + name)
	return nil
}
func (fakeHostOps) Remove(_ context.Context, name string, out func(string)) error {
	out("removed " + name)
	return nil
}
func (fakeHostOps) Destroy(_ context.Context, name string, out func(string)) error {
	out("destroyed " + name)
	return nil
}
func (fakeHostOps) Rebalance(_ context.Context, _ bool, out func(string)) error {
	out("nothing to move")
	return nil
}
func (fakeHostOps) Bootstrap(_ context.Context, name, _ string, w io.Writer) error {
	_, err := io.WriteString(w, "tar of "+name)
	return err
}

// probes is one invocation per command, with the personas that may run it.
// TestEveryCommandIsGated fails when a command has no probe here.
var probes = []struct {
	args    string
	allowed string
}{
	{"help", "admin member outsider deploy"},
	{"namespace", "admin member outsider deploy"},
	{"namespace create newns", "admin"},
	{"namespace list", "admin member outsider"},
	{"namespace delete empty", "admin"},
	{"namespace info acme", "admin member"},
	{"namespace quota", "admin member outsider deploy"},
	{"namespace quota set acme apps=5", "admin"},
	{"app", "admin member outsider deploy"},
	{"app create acme/new", "admin member"},
	{"app list --namespace acme", "admin member"},
	{"app info acme/web", "admin member deploy"},
	{"app set acme/web deploy-branch main", "admin member"},
	{"app run acme/web", "admin member"},
	{"app stop acme/web", "admin member"},
	{"app restart acme/web", "admin member"},
	{"app ps acme/web", "admin member"},
	{"app logs acme/web -n 5", "admin member"},
	{"app delete acme/api", "admin member"},
	{"keys", "admin member outsider deploy"},
	{"keys add --namespace acme --name bob --public KEY", "admin member"},
	{"keys add --app acme/web --name ci2 --public KEY", "admin member"},
	{"keys add --admin --name op2 --public KEY", "admin"},
	{"keys list --namespace acme", "admin member"},
	{"runtimes", "admin member outsider deploy"},
	{"runtimes list", "admin member outsider"},
	{"hosts", "admin member outsider deploy"},
	{"hosts list", "admin"},
	{"hosts add --host 10.0.0.9 -u root -i /dev/null", "admin"},
	{"hosts create --provider ec2 --ami ami-1", "admin"},
	{"hosts set h1 weight=2", "admin"},
	{"hosts drain h1", "admin"},
	{"hosts rebalance --dry-run", "admin"},
	{"hosts remove h1", "admin"},
	{"hosts destroy h1", "admin"},
	{"hosts bootstrap h1", "admin boot"},
	{"git-upload-pack acme/web.git", "admin member deploy"},
	{"git-receive-pack /acme/web.git", "admin member deploy"},
	{"keys remove alice --namespace acme", "admin member"},
	{"config", "admin member outsider deploy"},
	{"config set acme/web FOO=bar --no-deploy", "admin member"},
	{"config get acme/web FOO", "admin member"},
	{"config list acme/web", "admin member"},
	{"config unset acme/web FOO --no-deploy", "admin member"},
	{"app scale acme/web 2", "admin member"},
	{"app events acme/web", "admin member"},
	{"releases acme/web", "admin member"},
	{"rollback acme/web v1", "admin member"},
	{"domains", "admin member outsider deploy"},
	{"domains add acme/web www.example.com", "admin member"},
	{"domains list acme/web", "admin member"},
	{"domains verify acme/web www.example.com", "admin member"},
	{"domains remove acme/web www.example.com", "admin member"},
	{"certs", "admin member outsider deploy"},
	{"certs list", "admin"},
	{"certs list acme/web", "admin member"},
	{"certs add acme/web web.acme.upscale.localhost", "admin member"},
	{"certs remove acme/web web.acme.upscale.localhost", "admin member"},
	{"certs renew acme/web", "admin member"},
	{"app exec acme/web -- echo hi", "admin member"},
}

func TestEveryCommandIsGated(t *testing.T) {
	tree := New(&Env{}, Invocation{Prog: "ssh upscale@host"}, nil)
	probed := map[string]bool{}
	for _, p := range probes {
		c, _, err := tree.Root.Find(strings.Fields(p.args))
		if err != nil {
			t.Fatalf("probe %q: %v", p.args, err)
		}
		probed[c.CommandPath()] = true
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !tree.Gated(c) {
			t.Errorf("%q has no gate", c.CommandPath())
		}
		if c != tree.Root && (c.PersistentPreRun != nil || c.PersistentPreRunE != nil) {
			t.Errorf("%q has its own PersistentPreRun, which would skip the root's gate", c.CommandPath())
		}
		if c.Runnable() && c != tree.Root && !probed[c.CommandPath()] {
			t.Errorf("%q is not in probes: add it with the personas allowed to run it", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(tree.Root)
}

// TestAuthorizationMatrix runs every probe as every persona, in probe
// order on one world per persona (probes are ordered so that what one
// changes does not matter to the next).
func TestAuthorizationMatrix(t *testing.T) {
	for _, persona := range []string{"admin", "member", "outsider", "deploy", "boot"} {
		w := newWorld(t)
		mustRun(t, w.env, w.admin, "", "namespace", "create", "empty")
		w.env.Git = fakeGit{}
		w.env.HostOps = fakeHostOps{}
		rewire(w.env, fakeApps{}, fakeLifecycle{st: w.env.Store}, store.Quota{}, true)
		// Stopped with a live release: app run starts it again.
		if err := backendtest.Stopped(context.Background(), w.env.Store, names.App{Namespace: "acme", Name: "web"}); err != nil {
			t.Fatal(err)
		}
		boot := keys.Principal{Name: "bootstrap-h1", Fingerprint: "SHA256:boot", Role: keys.RoleBootstrap, App: "h1"}
		who := map[string]keys.Principal{"admin": w.admin, "member": w.member, "outsider": w.outsider, "deploy": w.deploy, "boot": boot}[persona]
		for _, p := range probes {
			t.Run(persona+"/"+p.args, func(t *testing.T) {
				args := strings.Fields(strings.Replace(p.args, "KEY", "'"+newKeyLine(t, "x")+"'", 1))
				args, _ = Split(strings.Join(args, " "))
				before := snapshot(t, w.env)
				stdin := ""
				if strings.HasPrefix(p.args, "certs add") {
					stdin = "a certificate and key"
				}
				r := run(w.env, who, stdin, args...)
				if strings.Contains(" "+p.allowed+" ", " "+persona+" ") {
					if r.code != 0 {
						t.Fatalf("allowed, but exit %d: %s", r.code, r.stderr)
					}
					return
				}
				if r.code == 0 || r.stdout != "" {
					t.Fatalf("denied command ran: exit %d, stdout %q", r.code, r.stdout)
				}
				if !strings.HasPrefix(r.stderr, "error: ") || strings.Count(r.stderr, "\n") != 1 ||
					!(strings.Contains(r.stderr, "not found") || strings.Contains(r.stderr, "not allowed")) {
					t.Fatalf("denial is not one clear line: %q", r.stderr)
				}
				if after := snapshot(t, w.env); after != before {
					t.Fatalf("denied command changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
				}
			})
		}
	}
}

// To someone without access, an app (or key, or repository) that exists
// and one that doesn't must look exactly the same.
func TestDeniedReadsLikeNotFound(t *testing.T) {
	w := newWorld(t)
	w.env.Git = fakeGit{}
	rewire(w.env, nil, nil, store.Quota{}, true)
	gus := addKey(t, w.env, "other-key", "--namespace", "acme")
	for _, pair := range [][2]string{
		{"app info acme/web", "app info acme/nope"},
		{"app delete acme/web", "app delete acme/nope"},
		{"app set acme/web deploy-branch x", "app set acme/nope deploy-branch x"},
		{"app list --namespace acme", "app list --namespace nope"},
		{"app create acme/x", "app create nope/x"},
		{"keys list --namespace acme", "keys list --namespace nope"},
		{"keys add --namespace acme --name z --public KEY", "keys add --namespace nope --name z --public KEY"},
		{"keys add --app acme/web --name z --public KEY", "keys add --app acme/nope --name z --public KEY"},
		{"keys remove " + gus.Fingerprint, "keys remove SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{"git-upload-pack acme/web.git", "git-upload-pack acme/nope.git"},
		{"git-receive-pack acme/web.git", "git-receive-pack acme/nope.git"},
		{"domains list acme/web", "domains list acme/nope"},
		{"domains add acme/web www.example.com", "domains add acme/nope www.example.com"},
		{"domains remove acme/web www.example.com", "domains remove acme/nope www.example.com"},
		{"domains verify acme/web www.example.com", "domains verify acme/nope www.example.com"},
		{"certs list acme/web", "certs list acme/nope"},
		{"certs renew acme/web", "certs renew acme/nope"},
		{"app exec acme/web -- ls", "app exec acme/nope -- ls"},
		{"namespace info acme", "namespace info nope"},
		{"namespace quota set acme apps=1", "namespace quota set nope apps=1"},
		{"config list acme/web", "config list acme/nope"},
		{"config get acme/web A", "config get acme/nope A"},
		{"config set acme/web A=1", "config set acme/nope A=1"},
		{"config unset acme/web A", "config unset acme/nope A"},
		{"releases acme/web", "releases acme/nope"},
		{"rollback acme/web", "rollback acme/nope"},
		{"app scale acme/web 2", "app scale acme/nope 2"},
		{"app events acme/web", "app events acme/nope"},
	} {
		key := "'" + newKeyLine(t, "z") + "'"
		exists, _ := Split(strings.Replace(pair[0], "KEY", key, 1))
		missing, _ := Split(strings.Replace(pair[1], "KEY", key, 1))
		a := run(w.env, w.outsider, "", exists...)
		b := run(w.env, w.outsider, "", missing...)
		norm := func(s string) string {
			for _, n := range []string{"acme/web", "acme/nope", "acme", "nope", gus.Fingerprint, "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"} {
				s = strings.ReplaceAll(s, n, "X")
			}
			return s
		}
		if a.code == 0 || a.code != b.code || norm(a.stderr) != norm(b.stderr) {
			t.Errorf("%q vs %q read differently to an outsider:\n  %d %q\n  %d %q", pair[0], pair[1], a.code, a.stderr, b.code, b.stderr)
		}
	}
}
