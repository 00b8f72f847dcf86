package commands

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/store"
)

// domains list tells a pending domain from a verified one, when it was
// last checked and why that check failed, and how to prove it.
func TestDomainsListShowsProofState(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, d := range []store.Domain{
		{Hostname: "shop.example.com", Namespace: "acme", App: "web", Token: "PENDINGTOKEN"},
		{Hostname: "www.example.com", Namespace: "acme", App: "web", Token: "DONETOKEN"},
	} {
		d.CreatedAt = at
		if _, err := w.env.Store.AddDomain(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	const why = "no TXT record at _upscale-challenge.shop.example.com; shop.example.com has no CNAME to web.acme.upscale.localhost"
	if _, err := w.env.Store.FailDomainCheck(ctx, "acme", "web", "shop.example.com", at.Add(time.Minute), why); err != nil {
		t.Fatal(err)
	}
	if _, err := w.env.Store.VerifyDomain(ctx, "acme", "web", "www.example.com", at.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}

	out := mustRun(t, w.env, w.member, "", "domains", "list", "acme/web")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("domains list:\n%s", out)
	}
	for i, want := range [][]string{
		{"DOMAIN", "STATUS", "URL", "ADDED", "CHECKED", "LAST FAILURE"},
		{"shop.example.com", "pending", "2026-03-01 12:01:00Z", why},
		{"www.example.com", "verified", "http://www.example.com", "2026-03-01 12:02:00Z"},
		{`Prove shop.example.com: TXT _upscale-challenge.shop.example.com "PENDINGTOKEN", or CNAME to web.acme.upscale.localhost`},
	} {
		for _, s := range want {
			if !strings.Contains(lines[i], s) {
				t.Errorf("line %d %q lacks %q", i, lines[i], s)
			}
		}
	}
	if strings.Contains(out, "DONETOKEN") {
		t.Errorf("a verified domain's token is still shown:\n%s", out)
	}

	var views []map[string]string
	if err := json.Unmarshal([]byte(mustRun(t, w.env, w.member, "", "domains", "list", "acme/web", "--format", "json")), &views); err != nil {
		t.Fatal(err)
	}
	if len(views) != 2 {
		t.Fatalf("json: %v", views)
	}
	pending, verified := views[0], views[1]
	for k, v := range map[string]string{"hostname": "shop.example.com", "status": "pending", "checked_at": "2026-03-01 12:01:00Z",
		"verified_at": "-", "failure": why, "txt_name": "_upscale-challenge.shop.example.com", "txt_value": "PENDINGTOKEN",
		"cname": "web.acme.upscale.localhost"} {
		if pending[k] != v {
			t.Errorf("pending %s = %q, want %q", k, pending[k], v)
		}
	}
	for k, v := range map[string]string{"hostname": "www.example.com", "status": "verified", "verified_at": "2026-03-01 12:02:00Z",
		"failure": "", "txt_value": ""} {
		if verified[k] != v {
			t.Errorf("verified %s = %q, want %q", k, verified[k], v)
		}
	}
}
