package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/dnsproof/dnsprooftest"
	"github.com/upscalehq/upscale/e2e/rig"
	"github.com/upscalehq/upscale/msgtext"
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

// newDomainWorld is a deploy world whose server looks domain proofs up in
// a DNS server of the test's, where the test publishes records.
func newDomainWorld(t *testing.T) (*deployWorld, *dnsprooftest.Server) {
	dns := dnsprooftest.Start(t)
	return newDeployWorld(t, "--dns-resolver", dns.Addr), dns
}

var tokenLine = regexp.MustCompile(`_upscale-challenge\.(\S+)\s+TXT\s+"([A-Z2-7]+)"`)

// addPending runs domains add for a hostname without a proof yet and
// returns the token it printed.
func (d *deployWorld) addPending(t *testing.T, app, host string) string {
	t.Helper()
	out := d.ssh(t, "domains", "add", app, host)
	m := tokenLine.FindStringSubmatch(out)
	if !strings.Contains(out, "Domain "+host+" added to "+app+", pending proof") || m == nil || m[1] != host {
		t.Fatalf("domains add %s %s said:\n%s", app, host, out)
	}
	return m[2]
}

// notRouted fails unless host gets the router's answer for an unknown host.
func notRouted(t *testing.T, srv *rig.Server, host, when string) {
	t.Helper()
	if code, got := getHost(srv, host, "/"); code != 404 || !strings.Contains(got, "No app at "+host) {
		t.Errorf("%s, Host %s: %d %q; want Upscale's 404 page", when, host, code, msgtext.Truncate(got, 200))
	}
}

// Custom domains: a hostname added to an app answers with the app once its
// owner proved control of it (no deploy), keeps doing so across a server
// restart, stops when removed, and belongs to one app only.
func TestDomains(t *testing.T) {
	d, dns := newDomainWorld(t)
	const app, body, host = "acme/web", "domains\n", "www.example.test"
	repo := rig.Repo(t, helloApp(t, "domains", "runtime: python\nhealth: /\n"))
	d.mustPush(t, repo, app)
	d.mustServe(t, app, body)
	notRouted(t, d.srv, host, "before domains add")

	t.Run("add routes once proven", func(t *testing.T) {
		token := d.addPending(t, app, host)
		notRouted(t, d.srv, host, "pending")
		out := d.ssh(t, "domains", "list", app)
		if !strings.Contains(out, "DOMAIN") || !strings.Contains(out, host+"  pending") ||
			!strings.Contains(out, "no TXT record at _upscale-challenge.www.example.test") {
			t.Errorf("domains list of a pending domain:\n%s", out)
		}
		dns.SetTXT("_upscale-challenge."+host, token)
		out = d.ssh(t, "domains", "verify", app, "WWW.Example.Test.")
		if !strings.Contains(out, "Domain "+host+" is verified and routes to acme/web") {
			t.Errorf("domains verify said %q", out)
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
		if !strings.Contains(out, host+"  verified") {
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
			t.Errorf("after remove, Host %s: %d %q, want Upscale's 404 page", host, code, msgtext.Truncate(got, 200))
		}
		d.mustServe(t, app, "domains two\n")
		_, errs, code2 := d.srv.SSH(d.key, "", "domains", "remove", app, host)
		oneErrorLine(t, "removing it again", errs, code2, "app acme/web has no domain www.example.test")
		// Free again: another app takes it, with a proof of its own.
		dns.SetCNAME(host, "site.beta.upscale.localhost")
		if out := d.ssh(t, "domains", "add", "beta/site", host); !strings.Contains(out, "Domain "+host+" verified and routed to beta/site") {
			t.Errorf("domains add with the CNAME in place said %q", out)
		}
		if code, got := getHost(d.srv, host, "/"); code != 503 || !strings.Contains(got, "beta/site is not running") {
			t.Errorf("Host %s on an app without instances: %d %q", host, code, msgtext.Truncate(got, 200))
		}
	})
}

// A hostname claimed without proof is not routed, whoever claims it: a
// tenant cannot serve content at a name whose DNS it does not control, nor
// keep its owner out by claiming it first. Proof is a TXT record holding
// the claim's token, or a CNAME to the app's own hostname; the first app to
// prove a name wins it.
func TestDomainWithoutProofIsNotRoutedRegression(t *testing.T) {
	d, dns := newDomainWorld(t)
	const app, body = "acme/web", "the owner\n"
	d.mustPush(t, rig.Repo(t, helloApp(t, "the owner", "runtime: python\nhealth: /\n")), app)
	d.mustServe(t, app, body)

	t.Run("TXT", func(t *testing.T) {
		const host = "shop.example.test"
		token := d.addPending(t, app, host)
		notRouted(t, d.srv, host, "without proof")
		_, errs, code := d.srv.SSH(d.key, "", "domains", "verify", app, host)
		oneErrorLine(t, "domains verify without proof", errs, code, "domain shop.example.test is not verified yet: "+
			"no TXT record at _upscale-challenge.shop.example.test; shop.example.test has no CNAME to web.acme.upscale.localhost")
		// A record that holds something else proves nothing.
		dns.SetTXT("_upscale-challenge."+host, "NOTTHETOKEN")
		_, errs, code = d.srv.SSH(d.key, "", "domains", "verify", app, host)
		oneErrorLine(t, "domains verify with another token", errs, code, "does not hold this domain's token")
		notRouted(t, d.srv, host, "with another token")

		dns.SetTXT("_upscale-challenge."+host, token)
		d.ssh(t, "domains", "verify", app, host)
		if code, got := getHost(d.srv, host, "/"); code != 200 || got != body {
			t.Errorf("after the TXT proof, Host %s: %d %q, want 200 %q", host, code, got, body)
		}
	})

	t.Run("CNAME", func(t *testing.T) {
		const host = "alias.example.test"
		d.addPending(t, app, host)
		// A CNAME to another app's hostname proves nothing for this one.
		dns.SetCNAME(host, "api.acme.upscale.localhost")
		_, errs, code := d.srv.SSH(d.key, "", "domains", "verify", app, host)
		oneErrorLine(t, "domains verify with a CNAME elsewhere", errs, code,
			"alias.example.test is a CNAME to api.acme.upscale.localhost, not web.acme.upscale.localhost")
		notRouted(t, d.srv, host, "with a CNAME to another app")

		dns.SetCNAME(host, "web.acme.upscale.localhost")
		d.ssh(t, "domains", "verify", app, host)
		if code, got := getHost(d.srv, host, "/"); code != 200 || got != body {
			t.Errorf("after the CNAME proof, Host %s: %d %q, want 200 %q", host, code, got, body)
		}
	})

	t.Run("a squatter's claim does not keep the owner out", func(t *testing.T) {
		const host = "brand.example.test"
		mustSSH(t, d.srv, d.key, "", "namespace", "create", "beta")
		mustSSH(t, d.srv, d.key, "", "app", "create", "beta/site")
		mallory := rig.NewKey(t, "mallory")
		mustSSH(t, d.srv, d.key, "", "keys", "add", "--namespace", "beta", "--name", "mallory", "--public", mallory.Public)
		out := mustSSH(t, d.srv, mallory, "", "domains", "add", "beta/site", host)
		if !strings.Contains(out, "pending proof") {
			t.Fatalf("the squatter's domains add said:\n%s", out)
		}
		notRouted(t, d.srv, host, "claimed by a squatter")

		// The owner claims it too, its DNS already pointing at its app.
		dns.SetCNAME(host, "web.acme.upscale.localhost")
		out = d.ssh(t, "domains", "add", app, host)
		if !strings.Contains(out, "Domain "+host+" verified and routed to acme/web") {
			t.Errorf("the owner's domains add said:\n%s", out)
		}
		if code, got := getHost(d.srv, host, "/"); code != 200 || got != body {
			t.Errorf("Host %s: %d %q, want the owner's app", host, code, got)
		}
		// The squatter cannot prove it; a new claim is refused, without
		// naming the owner.
		_, errs, code := d.srv.SSH(mallory, "", "domains", "verify", "beta/site", host)
		oneErrorLine(t, "the squatter's domains verify", errs, code, "domain brand.example.test is not verified yet: ")
		mustSSH(t, d.srv, d.key, "", "app", "create", "beta/shop")
		_, errs, code = d.srv.SSH(mallory, "", "domains", "add", "beta/shop", host)
		oneErrorLine(t, "a new claim on the owner's domain", errs, code, "domain brand.example.test is already in use")
		if strings.Contains(errs, "acme") {
			t.Errorf("the squatter was told who has the domain: %q", errs)
		}
		if code, got := getHost(d.srv, host, "/"); code != 200 || got != body {
			t.Errorf("Host %s after the squatter's tries: %d %q, want the owner's app", host, code, got)
		}
	})

	t.Run("checked in the background", func(t *testing.T) {
		const host = "later.example.test"
		d.addPending(t, app, host)
		dns.SetCNAME(host, "web.acme.upscale.localhost")
		// No domains verify: the server's own retries find the proof
		// (every 30 s in the first 10 minutes).
		var code int
		var got string
		for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
			if code, got = getHost(d.srv, host, "/"); code == 200 {
				break
			}
		}
		if code != 200 || got != body {
			t.Errorf("Host %s after its proof was published: %d %q, want 200 %q", host, code, got, body)
		}
		if out := d.ssh(t, "app", "events", app); !strings.Contains(out, "verified domain later.example.test (CNAME)") {
			t.Errorf("app events:\n%s", out)
		}
	})
}
