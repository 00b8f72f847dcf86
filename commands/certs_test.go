package commands

import (
	"strings"
	"testing"
)

// Each bad input is one line on stderr, a non-zero exit, and nothing
// changed; what works shows in certs list, app info and app set.
func TestCertsCommands(t *testing.T) {
	w := newWorld(t)
	const host = "web.acme.upscale.localhost"
	asked := len(w.env.Certs.Done()) // creating the apps asked for their certificates
	for _, tc := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"pem", []string{"certs", "add", "acme/web", "shop.example.com"}, `error: "shop.example.com" is not a hostname of acme/web`},
		{"pem", []string{"certs", "add", "acme/web", "api.acme.upscale.localhost"}, `is not a hostname of acme/web`},
		{"bad", []string{"certs", "add", "acme/web", host}, "error: key: does not match the certificate"},
		{"", []string{"certs", "add", "acme/web", host}, "error: no certificate: give the chain and key on stdin"},
		{"", []string{"certs", "add", "acme/web", host, "--cert", "/etc/hostname"}, "error: give both --cert and --key"},
		{"", []string{"certs", "add", "acme/web", host, "--cert", "/etc/ssl/x.pem", "--key", "/etc/ssl/x.key"}, "error: over ssh, pass the certificate and key on stdin"},
		{"", []string{"certs", "add", "acme/web", "bad_name.example.com"}, "error: invalid domain"},
		{"", []string{"certs", "remove", "acme/web", "shop.example.com"}, "is not a hostname of acme/web"},
		{"", []string{"app", "set", "acme/web", "hsts", "forever"}, `error: invalid hsts "forever": want max-age=SECONDS`},
		{"", []string{"app", "set", "acme/web", "https-redirect", "maybe"}, `error: invalid https-redirect "maybe": want on or off`},
	} {
		before := snapshot(t, w.env)
		r := run(w.env, w.member, tc.stdin, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want one line with %q", tc.args, r.code, r.stderr, tc.want)
		}
		if after := snapshot(t, w.env); after != before {
			t.Errorf("%q changed the store", tc.args)
		}
	}
	if got := w.env.Certs.Done()[asked:]; len(got) != 0 {
		t.Errorf("bad input reached the engine: %q", got)
	}

	r := run(w.env, w.member, "chain and key", "certs", "add", "acme/web", strings.ToUpper(host))
	if r.code != 0 || r.stdout != "Certificate for "+host+" added to acme/web (expires 2030-01-02 03:04:05Z); it is served now.\n" {
		t.Fatalf("certs add: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = run(w.env, w.member, "", "certs", "list", "acme/web")
	if r.code != 0 || !strings.Contains(r.stdout, "acme/web  "+host+"  "+host+"  manual") || !strings.Contains(r.stdout, "live") {
		t.Errorf("certs list:\n%s%s", r.stdout, r.stderr)
	}
	r = run(w.env, w.member, "", "app", "info", "acme/web")
	if !strings.Contains(r.stdout, "HTTPS:") || !strings.Contains(r.stdout, "live (manual, expires 2030-01-02") ||
		!strings.Contains(r.stdout, "redirect HTTP to HTTPS") {
		t.Errorf("app info:\n%s%s", r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"app", "set", "acme/web", "https-redirect", "off"}, {"app", "set", "acme/web", "hsts=max-age=600"}} {
		if r := run(w.env, w.member, "", args...); r.code != 0 {
			t.Errorf("%q: %s", args, r.stderr)
		}
	}
	r = run(w.env, w.member, "", "app", "info", "acme/web")
	if !strings.Contains(r.stdout, "no redirect, HSTS max-age=600") {
		t.Errorf("app info after app set:\n%s", r.stdout)
	}
	if r := run(w.env, w.member, "", "certs", "renew", "acme/web"); r.code != 0 || r.stdout != "Renewing "+host+"; certs list acme/web shows when it is done.\n" {
		t.Errorf("certs renew: %q %q", r.stdout, r.stderr)
	}
	if r := run(w.env, w.member, "", "certs", "remove", "acme/web", host); r.code != 0 {
		t.Errorf("certs remove: %q", r.stderr)
	}
}
