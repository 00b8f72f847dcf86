package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

// The authorization matrix with the real clients: admin, namespace key
// (acme), deploy key (acme/web), a key of another namespace (globex), and
// a stranger whose key is not registered.
func TestAuthorizationMatrix(t *testing.T) {
	w := newWorld(t)
	app := rig.Repo(t, helloApp(t, "hi", "runtime: python\n"))
	for _, tc := range []struct {
		args    string
		allowed string // personas that may; the others get "not found"/"not allowed"
	}{
		{"namespace list", "admin member outsider"},
		{"namespace create newns", "admin"},
		{"app list --namespace acme", "admin member"},
		{"app info acme/web", "admin member deploy"},
		{"app info acme/api", "admin member"},
		{"app create acme/made-by-PERSONA", "admin member"},
		{"app set acme/api deploy-branch master", "admin member"},
		{"keys list --namespace acme", "admin member"},
		{"keys add --namespace acme --name k-PERSONA --public KEY", "admin member"},
		{"keys add --admin --name a-PERSONA --public KEY", "admin"},
		{"runtimes list", "admin member outsider"},
		{"hosts list", "admin"},
	} {
		for _, p := range []persona{w.admin, w.member, w.deploy, w.outsider, w.stranger} {
			cmd := strings.ReplaceAll(tc.args, "PERSONA", p.name)
			cmd = strings.Replace(cmd, "KEY", "'"+rig.NewKey(t, "x").Public+"'", 1)
			out, errs, code := w.srv.SSH(p.key, "", cmd)
			switch {
			case p.name == "stranger":
				if code != 255 || out != "" || !strings.Contains(errs, "Permission denied (publickey)") {
					t.Errorf("stranger %q: exit %d out %q err %q; want the connection refused", cmd, code, out, errs)
				}
			case strings.Contains(" "+tc.allowed+" ", " "+p.name+" "):
				if code != 0 {
					t.Errorf("%s %q: exit %d: %s", p.name, cmd, code, errs)
				}
			default:
				if code != 1 || out != "" || !(strings.Contains(errs, "not found") || strings.Contains(errs, "not allowed")) {
					t.Errorf("%s %q: exit %d out %q err %q; want it refused", p.name, cmd, code, out, errs)
				}
			}
		}
	}

	// Git: push to and clone from acme/web and globex/web.
	for _, tc := range []struct {
		app     string
		allowed string
	}{
		{"acme/web", "admin member deploy"},
		{"globex/web", "admin outsider"},
	} {
		for _, p := range []persona{w.admin, w.member, w.deploy, w.outsider, w.stranger} {
			may := strings.Contains(" "+tc.allowed+" ", " "+p.name+" ")
			_, errs, code := w.srv.Git(p.key, app, "push", "--quiet", w.srv.Remote(tc.app), "master")
			if may != (code == 0) {
				t.Errorf("%s push %s: exit %d: %s", p.name, tc.app, code, errs)
			}
			if !may && p.name != "stranger" && !strings.Contains(errs, "not found") {
				t.Errorf("%s push %s: refusal does not read as not found: %s", p.name, tc.app, errs)
			}
			clone := filepath.Join(t.TempDir(), "c")
			_, errs, code = w.srv.Git(p.key, t.TempDir(), "clone", "--quiet", w.srv.Remote(tc.app), clone)
			if may != (code == 0) {
				t.Errorf("%s clone %s: exit %d: %s", p.name, tc.app, code, errs)
			}
		}
	}
}

// What an outsider sees for an app that exists and for one that doesn't
// must be the same, over the real clients too.
func TestExistingAndMissingLookTheSame(t *testing.T) {
	w := newWorld(t)
	for _, pair := range [][2]string{
		{"app info acme/web", "app info acme/nope"},
		{"app delete acme/web", "app delete acme/nope"},
		{"keys list --namespace acme", "keys list --namespace nope"},
	} {
		_, e1, c1 := w.srv.SSH(w.outsider.key, "", pair[0])
		_, e2, c2 := w.srv.SSH(w.outsider.key, "", pair[1])
		n1 := strings.NewReplacer("acme/web", "X", "acme", "X").Replace(e1)
		n2 := strings.NewReplacer("acme/nope", "X", "nope", "X").Replace(e2)
		if c1 != c2 || n1 != n2 || c1 == 0 {
			t.Errorf("%q vs %q: %d %q / %d %q", pair[0], pair[1], c1, e1, c2, e2)
		}
	}
	dir := t.TempDir()
	_, e1, c1 := w.srv.Git(w.outsider.key, dir, "ls-remote", w.srv.Remote("acme/web"))
	_, e2, c2 := w.srv.Git(w.outsider.key, dir, "ls-remote", w.srv.Remote("acme/nope"))
	if c1 != c2 || strings.ReplaceAll(e1, "web", "X") != strings.ReplaceAll(e2, "nope", "X") {
		t.Errorf("ls-remote: %d %q / %d %q", c1, e1, c2, e2)
	}
}
