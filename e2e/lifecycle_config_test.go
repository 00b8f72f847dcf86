package e2e

import (
	"strings"
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

// Config vars reach the app's environment through a new release of the
// same artifact, rolled out without a failed request; they win over
// app.yaml's env; --no-deploy waits for the next release; bad input is one
// clear line and changes nothing.
func TestLifecycleConfig(t *testing.T) {
	d := newDeployWorld(t)
	const app = "acme/web"
	d.mustPush(t, rig.Repo(t, lifecycleFiles("runtime: python\nhealth: /\nenv:\n  MESSAGE: from app.yaml\n  KEPT: yes\n")), app)
	d.mustServe(t, app, "from app.yaml\n")

	t.Run("set", func(t *testing.T) {
		l := startLoop(t, d.srv, app, "from app.yaml\n", "from config\n")
		out := d.ssh(t, "config", "set", app, "'MESSAGE=from config'", "DATABASE_URL=postgres://db/x?a=1&b=2")
		mustHave(t, out, "-----> v2: set DATABASE_URL, MESSAGE (", "of v1)", "=====> set DATABASE_URL, MESSAGE: v2 is live")
		d.mustServe(t, app, "from config\n")
		l.check(t, "requests during config set")
		if code, body, _ := d.srv.Get(app, "/env/DATABASE_URL"); code != 200 || body != "postgres://db/x?a=1&b=2" {
			t.Errorf("the app sees DATABASE_URL as %d %q", code, body)
		}
		if code, body, _ := d.srv.Get(app, "/env/KEPT"); code != 200 || body != "yes" {
			t.Errorf("app.yaml's KEPT is %d %q in the app after config set", code, body)
		}
		rels := d.releases(t, app)
		if statuses(rels) != "v2:live v1:superseded" || rels[0].Commit != rels[1].Commit || rels[0].Change != "set DATABASE_URL, MESSAGE" || rels[0].By != "admin" {
			t.Errorf("releases: %+v", rels)
		}
	})

	t.Run("get and list", func(t *testing.T) {
		if got := d.ssh(t, "config", "get", app, "MESSAGE"); got != "from config\n" {
			t.Errorf("config get MESSAGE: %q", got)
		}
		d.fails(t, `error: config var "NOPE" is not set on acme/web`, "config", "get", app, "NOPE")
		if got := d.ssh(t, "config", "list", app); got != "DATABASE_URL=postgres://db/x?a=1&b=2\nMESSAGE=from config\n" {
			t.Errorf("config list: %q", got)
		}
		if got := d.ssh(t, "config", "list", app, "--format", "json"); got != "{\n  \"DATABASE_URL\": \"postgres://db/x?a=1\\u0026b=2\",\n  \"MESSAGE\": \"from config\"\n}\n" {
			t.Errorf("config list --format json: %q", got)
		}
	})

	t.Run("no-deploy", func(t *testing.T) {
		out := d.ssh(t, "config", "set", app, "MESSAGE=later", "--no-deploy")
		mustHave(t, out, "-----> set MESSAGE; v2 keeps running (--no-deploy)")
		if code, body := d.get(app); code != 200 || body != "from config\n" {
			t.Errorf("after --no-deploy the app answers %d %q, want the old value", code, body)
		}
		if n := len(d.releases(t, app)); n != 2 {
			t.Errorf("--no-deploy made a release: %d releases", n)
		}
		d.ssh(t, "app", "restart", app)
		d.mustServe(t, app, "later\n")
		if rels := d.releases(t, app); statuses(rels) != "v3:live v2:superseded v1:superseded" {
			t.Errorf("after restart: %s", statuses(rels))
		}
	})

	t.Run("unset", func(t *testing.T) {
		d.ssh(t, "config", "unset", app, "MESSAGE")
		d.mustServe(t, app, "from app.yaml\n")
		if got := d.ssh(t, "config", "list", app); got != "DATABASE_URL=postgres://db/x?a=1&b=2\n" {
			t.Errorf("config list after unset: %q", got)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		before := d.snapshot(t, app, "from app.yaml\n")
		rels := len(d.releases(t, app))
		d.fails(t, `error: invalid config var name "1BAD": use letters, digits and _, not starting with a digit (like DATABASE_URL)`, "config", "set", app, "1BAD=x")
		d.fails(t, `error: invalid config var name "MY-VAR": use letters, digits and _, not starting with a digit (like DATABASE_URL)`, "config", "set", app, "MY-VAR=x")
		d.fails(t, "error: config var PORT is reserved: the platform sets it in every container", "config", "set", app, "PORT=9000")
		// A command line of the wrong shape is a usage error: exit status 2.
		for _, args := range [][]string{{"config", "set", app, "MESSAGE"}, {"config", "set", app}} {
			if out, errs, code := d.srv.SSH(d.key, "", args...); code != 2 || out != "" || strings.Count(errs, "\n") != 1 {
				t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2 and one line", strings.Join(args, " "), code, out, errs)
			}
		}
		// 40 KB fits an ssh command line; 1 MB only fits standard input.
		d.fails(t, "error: config var BIG is too large: 40000 bytes, the limit is 32768 bytes (32 KiB) per value", "config", "set", app, "BIG="+strings.Repeat("x", 40000))
		d.failsIn(t, strings.Repeat("x", 1<<20), "error: config var BIG is too large: over 32768 bytes, the limit is 32768 bytes (32 KiB) per value", "config", "set", app, "--stdin", "BIG")
		d.fails(t, `error: config var "NOPE" is not set on acme/web`, "config", "unset", app, "NOPE")
		d.fails(t, "error: app acme/nope not found", "config", "set", "acme/nope", "A=1")
		d.unchanged(t, app, before)
		if got := d.ssh(t, "config", "list", app); got != "DATABASE_URL=postgres://db/x?a=1&b=2\n" {
			t.Errorf("config list after bad input: %q", got)
		}
		if n := len(d.releases(t, app)); n != rels {
			t.Errorf("bad input made releases: %d, want %d", n, rels)
		}
	})

	t.Run("a multi-line value from stdin", func(t *testing.T) {
		pem := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
		d.ssh2(t, pem+"\n", "config", "set", app, "--stdin", "CERT")
		if code, body, _ := d.srv.Get(app, "/env/CERT"); code != 200 || body != pem {
			t.Errorf("the app sees CERT as %d %q", code, body)
		}
	})

	t.Run("a release that fails keeps the old config", func(t *testing.T) {
		// The app cannot listen on a port that is not a number.
		before := d.ssh(t, "config", "list", app)
		_, errs, code := d.srv.SSH(d.key, "", "config", "set", app, "PYTHONPATH=/nonexistent", "PYTHONHOME=/nonexistent")
		if code != 1 || !strings.Contains(errs, "still serves") || !strings.HasSuffix(errs, "; config vars unchanged\n") {
			t.Errorf("config set of a breaking var: exit %d, %q", code, errs)
		}
		d.mustServe(t, app, "from app.yaml\n")
		if after := d.ssh(t, "config", "list", app); after != before {
			t.Errorf("config list after a failed release: %q, want %q", after, before)
		}
		rels := d.releases(t, app)
		if rels[0].Status != "failed" || rels[1].Status != "live" {
			t.Errorf("releases: %s", statuses(rels))
		}
	})

	t.Run("events name keys, never values", func(t *testing.T) {
		var config []string
		for _, e := range d.events(t, app) {
			if strings.Contains(e.Message, "from config") || strings.Contains(e.Message, "postgres") || strings.Contains(e.Message, "BEGIN") {
				t.Errorf("event shows a value: %+v", e)
			}
			if e.Kind == "config" {
				if e.By != "admin" {
					t.Errorf("config event by %q", e.By)
				}
				config = append(config, e.Message)
			}
		}
		want := []string{"set CERT: v5", "unset MESSAGE: v4", "set MESSAGE (--no-deploy: applies at the next release, app restart or app run)", "set DATABASE_URL, MESSAGE: v2"}
		if strings.Join(config, "|") != strings.Join(want, "|") {
			t.Errorf("config events:\n%s\nwant:\n%s", strings.Join(config, "\n"), strings.Join(want, "\n"))
		}
	})
}

// ssh2 is ssh with standard input, which must succeed.
func (d *deployWorld) ssh2(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	return mustSSH(t, d.srv, d.key, stdin, args...)
}
