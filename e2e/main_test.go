// Package e2e drives a real `upscale server` with the real OpenSSH client
// and git. `make test` sets UPSCALE_E2E=1, which turns a missing
// prerequisite into a failure instead of a skip.
package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

var bin string

func TestMain(m *testing.M) {
	required := os.Getenv("UPSCALE_E2E") == "1"
	if missing := rig.Missing(); len(missing) > 0 {
		if required {
			fmt.Fprintf(os.Stderr, "e2e: missing %s (make test installs them)\n", strings.Join(missing, ", "))
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "e2e: skipped, missing %s; run make test\n", strings.Join(missing, ", "))
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "upscale-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err = rig.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// persona is a key and who it is.
type persona struct {
	name string
	key  rig.Key
}

// world is a server with two namespaces (acme, globex), apps acme/web,
// acme/api and globex/web, and one persona of each kind.
type world struct {
	srv                                       *rig.Server
	admin, member, deploy, outsider, stranger persona
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{srv: rig.StartWithAgent(t, bin)}
	w.admin = persona{"admin", rig.NewKey(t, "admin")}
	mustLocal(t, w.srv, "keys", "add", "--admin", "--name", "admin", "--public", w.admin.key.Public)
	for _, args := range [][]string{
		{"namespace", "create", "acme"}, {"namespace", "create", "globex"},
		{"app", "create", "acme/web"}, {"app", "create", "acme/api"}, {"app", "create", "globex/web"},
	} {
		mustSSH(t, w.srv, w.admin.key, "", args...)
	}
	w.member = persona{"member", rig.NewKey(t, "alice")}
	mustSSH(t, w.srv, w.admin.key, "", "keys", "add", "--namespace", "acme", "--name", "alice", "--public", w.member.key.Public)
	w.deploy = persona{"deploy", rig.NewKey(t, "ci")}
	mustSSH(t, w.srv, w.admin.key, "", "keys", "add", "--app", "acme/web", "--name", "ci", "--public", w.deploy.key.Public)
	w.outsider = persona{"outsider", rig.NewKey(t, "gus")}
	mustSSH(t, w.srv, w.admin.key, "", "keys", "add", "--namespace", "globex", "--name", "gus", "--public", w.outsider.key.Public)
	w.stranger = persona{"stranger", rig.NewKey(t, "mallory")}
	return w
}

func mustSSH(t *testing.T, srv *rig.Server, key rig.Key, stdin string, args ...string) string {
	t.Helper()
	out, errs, code := srv.SSH(key, stdin, args...)
	if code != 0 {
		t.Fatalf("ssh %v: exit %d: %s\nserver log:\n%s", args, code, errs, srv.Log())
	}
	return out
}

func mustLocal(t *testing.T, srv *rig.Server, args ...string) string {
	t.Helper()
	out, errs, code := srv.Local(args...)
	if code != 0 {
		t.Fatalf("upscale %v: exit %d: %s", args, code, errs)
	}
	return out
}

// oneErrorLine checks the shape every failure must have.
func oneErrorLine(t *testing.T, what, stderr string, code int, want string) {
	t.Helper()
	if code == 0 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
		t.Errorf("%s: exit %d, stderr %q; want a non-zero exit and one line containing %q", what, code, stderr, want)
	}
}
