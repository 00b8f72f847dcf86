package deploy

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/upscalehq/upscale/store"
)

type wantedHosts struct{ calls [][]string }

func (w *wantedHosts) Want(_ context.Context, hosts []string) {
	w.calls = append(w.calls, slices.Clone(hosts))
}

// The certificate engine hears of every routed hostname (a verified custom
// domain included, a pending one not), the router gets each app's HTTPS
// policy, and an app's URL turns https once its certificate is live.
func TestHTTPSWiring(t *testing.T) {
	r := newDomainRig(t)
	ctx := t.Context()
	w := &wantedHosts{}
	r.d.cfg.Certs, r.d.cfg.HTTPSPort = w, "8443"
	st := r.d.cfg.Store
	if err := st.SetHTTPSRedirect(ctx, "acme", "web", false); err != nil {
		t.Fatal(err)
	}
	if err := st.SetHSTS(ctx, "acme", "web", 600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.d.AddDomain(ctx, r.app, "pending.example.com", "alice"); err != nil {
		t.Fatal(err)
	}
	dom, _, err := r.d.AddDomain(ctx, r.app, "shop.example.com", "alice")
	if err != nil {
		t.Fatal(err)
	}
	r.dns.SetTXT("_upscale-challenge.shop.example.com", dom.Token)
	if _, err := r.d.VerifyDomain(ctx, r.app, "shop.example.com", "alice"); err != nil {
		t.Fatal(err)
	}
	if len(w.calls) == 0 {
		t.Fatal("the certificate engine heard of no route")
	}
	got := w.calls[len(w.calls)-1]
	slices.Sort(got)
	want := []string{"api.acme.example.test", "shop.example.com", "web.acme.example.test"}
	if !slices.Equal(got, want) {
		t.Errorf("hosts wanted: %q, want %q", got, want)
	}
	for _, b := range r.router.Applied[len(r.router.Applied)-1] {
		if b.Name == "acme/web" && (!b.NoHTTPSRedirect || b.HSTSMaxAge != 600*time.Second) {
			t.Errorf("acme/web routed with no redirect %v, HSTS %v", b.NoHTTPSRedirect, b.HSTSMaxAge)
		}
		if b.Name == "acme/api" && (b.NoHTTPSRedirect || b.HSTSMaxAge != 0) {
			t.Errorf("acme/api routed with no redirect %v, HSTS %v", b.NoHTTPSRedirect, b.HSTSMaxAge)
		}
	}
	if u := r.d.URL(r.app); u != "http://web.acme.example.test" {
		t.Errorf("URL before a certificate: %s", u)
	}
	if err := st.SetCertStatus(ctx, store.CertStatus{Name: "*.acme.example.test", State: store.CertLive}); err != nil {
		t.Fatal(err)
	}
	if u := r.d.URL(r.app); u != "https://web.acme.example.test:8443" {
		t.Errorf("URL with the namespace's wildcard live: %s", u)
	}
}
