package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// getHost fetches path through the router with the Host header host, as a
// browser sent to a custom domain would.
func getHost(srv *rig.Server, host, path string) (int, string) {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", srv.HTTPPort, path), nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Host = host
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// Custom domains: a hostname added to an app answers with the app at once
// (no deploy), keeps doing so across a server restart, stops when removed,
// and belongs to one app only.
func TestDomains(t *testing.T) {
	d := newDeployWorld(t)
	const app, body, host = "acme/web", "domains\n", "www.example.test"
	repo := rig.Repo(t, helloApp(t, "domains", "runtime: python\nhealth: /\n"))
	d.mustPush(t, repo, app)
	d.mustServe(t, app, body)
	if code, got := getHost(d.srv, host, "/"); code != 404 {
		t.Fatalf("before domains add, %s answers %d %q, want 404", host, code, got)
	}

	t.Run("add routes at once", func(t *testing.T) {
		out := d.ssh(t, "domains", "add", app, "WWW.Example.Test.")
		if !strings.Contains(out, "Domain "+host+" now routes to acme/web") {
			t.Errorf("domains add said %q", out)
		}
		// No deploy, no wait: the router is synced before the command returns.
		if code, got := getHost(d.srv, host, "/"); code != 200 || got != body {
			t.Fatalf("Host %s: %d %q, want 200 %q", host, code, got, body)
		}
		if code, got := getHost(d.srv, "WWW.EXAMPLE.TEST:80", "/"); code != 200 || got != body {
			t.Errorf("Host in capitals with a port: %d %q", code, got)
		}
		// The app's own hostname still answers.
		d.mustServe(t, app, body)
		out = d.ssh(t, "domains", "list", app)
		if !strings.Contains(out, "DOMAIN") || !strings.Contains(out, host) {
			t.Errorf("domains list:\n%s", out)
		}
		out = d.ssh(t, "domains", "add", app, host)
		if !strings.Contains(out, "already routes to acme/web") {
			t.Errorf("adding it again said %q", out)
		}
	})

	t.Run("taken", func(t *testing.T) {
		_, errs, code := d.srv.SSH(d.key, "", "domains", "add", "acme/api", host)
		oneErrorLine(t, "admin adding a taken domain", errs, code, "domain www.example.test is already in use by acme/web")

		// A member of the namespace that has it may know which app.
		alice := rig.NewKey(t, "alice")
		mustSSH(t, d.srv, d.key, "", "keys", "add", "--namespace", "acme", "--name", "alice", "--public", alice.Public)
		_, errs, code = d.srv.SSH(alice, "", "domains", "add", "acme/api", host)
		oneErrorLine(t, "a member adding the namespace's taken domain", errs, code, "domain www.example.test is already in use by acme/web")

		// A member of another namespace learns it is taken, not by whom.
		mustSSH(t, d.srv, d.key, "", "namespace", "create", "beta")
		mustSSH(t, d.srv, d.key, "", "app", "create", "beta/site")
		bob := rig.NewKey(t, "bob")
		mustSSH(t, d.srv, d.key, "", "keys", "add", "--namespace", "beta", "--name", "bob", "--public", bob.Public)
		_, errs, code = d.srv.SSH(bob, "", "domains", "add", "beta/site", host)
		oneErrorLine(t, "another tenant adding a taken domain", errs, code, "domain www.example.test is already in use")
		if strings.Contains(errs, "acme") {
			t.Errorf("another tenant was told who has the domain: %q", errs)
		}
		// Nor may they take it away, or see the app's domains.
		_, errs, code = d.srv.SSH(bob, "", "domains", "remove", app, host)
		oneErrorLine(t, "another tenant removing the domain", errs, code, "app acme/web not found")
		_, errs, code = d.srv.SSH(bob, "", "domains", "remove", "beta/site", host)
		oneErrorLine(t, "removing another app's domain", errs, code, "app beta/site has no domain www.example.test")
		if code, got := getHost(d.srv, host, "/"); code != 200 || got != body {
			t.Errorf("after refused calls, Host %s: %d %q", host, code, got)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		for _, tc := range []struct{ hostname, want string }{
			{"bad_host.example", `invalid domain "bad_host.example": label "bad_host"`},
			{"*.example.test", "wildcards are not supported"},
			{"localhost", "want at least two labels"},
			{"http://www.example.test/", "give a hostname only"},
			{"www..example.test", "empty label"},
			{"10.0.0.1", "an IP address is not a domain"},
			{strings.Repeat("a", 64) + ".example", "longer than 63 characters"},
			{"web.acme.upscale.localhost", "names under upscale.localhost are the platform's own"},
		} {
			_, errs, code := d.srv.SSH(d.key, "", "domains", "add", "acme/api", tc.hostname)
			oneErrorLine(t, "domains add "+tc.hostname, errs, code, tc.want)
		}
		if out := d.ssh(t, "domains", "list", "acme/api"); !strings.Contains(out, "acme/api has no custom domains") {
			t.Errorf("acme/api after malformed adds:\n%s", out)
		}
	})

	t.Run("survives a server restart", func(t *testing.T) {
		if err := d.srv.Stop(); err != nil {
			t.Fatal(err)
		}
		d.srv.Run()
		if code, got := getHost(d.srv, host, "/"); code != 200 || got != body {
			t.Fatalf("after a restart, Host %s: %d %q", host, code, got)
		}
	})

	t.Run("survives a deploy", func(t *testing.T) {
		rig.Commit(t, repo, "two", helloApp(t, "domains two", "runtime: python\nhealth: /\n"))
		d.mustPush(t, repo, app)
		if code, got := getHost(d.srv, host, "/"); code != 200 || got != "domains two\n" {
			t.Fatalf("after a deploy, Host %s: %d %q, want the new release", host, code, got)
		}
	})

	t.Run("remove", func(t *testing.T) {
		out := d.ssh(t, "domains", "remove", app, host)
		if !strings.Contains(out, "Domain "+host+" removed from acme/web") {
			t.Errorf("domains remove said %q", out)
		}
		code, got := getHost(d.srv, host, "/")
		if code != 404 || !strings.Contains(got, "No app at "+host) {
			t.Errorf("after remove, Host %s: %d %q, want Upscale's 404 page", host, code, truncate(got, 200))
		}
		d.mustServe(t, app, "domains two\n")
		_, errs, code2 := d.srv.SSH(d.key, "", "domains", "remove", app, host)
		oneErrorLine(t, "removing it again", errs, code2, "app acme/web has no domain www.example.test")
		// Free again: another app takes it.
		d.ssh(t, "domains", "add", "beta/site", host)
		if code, got := getHost(d.srv, host, "/"); code != 503 || !strings.Contains(got, "beta/site is not running") {
			t.Errorf("Host %s on an app without instances: %d %q", host, code, truncate(got, 200))
		}
	})
}
