package backend

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// fakeCerts stands in for the certificate engine: it records what it is
// asked in life, and refuses a bundle that says "bad".
type fakeCerts struct{ life *fakeLifecycle }

func (fakeCerts) NameFor(host string) string { return host }
func (f fakeCerts) Manage(_ context.Context, names ...string) error {
	f.life.record("manage " + strings.Join(names, " "))
	return nil
}
func (f fakeCerts) Renew(_ context.Context, name string) error {
	f.life.record("renew " + name)
	return nil
}
func (f fakeCerts) AddCert(_ context.Context, name string, pem []byte) (time.Time, error) {
	if string(pem) == "bad" {
		return time.Time{}, errors.New("key: does not match the certificate")
	}
	f.life.record("add cert " + name)
	return time.Now().Add(time.Hour), nil
}
func (f fakeCerts) RemoveCert(_ context.Context, name string) error {
	f.life.record("remove cert " + name)
	return nil
}

var certGates = map[string][]gate{
	"SetHTTPSRedirect": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.SetHTTPSRedirect(ctx, who, acmeWeb, false)
	}, appRefused}},
	"SetHSTS": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.SetHSTS(ctx, who, acmeWeb, time.Hour)
	}, appRefused}},
	"Certificates": {
		{func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.Certificates(ctx, who, acmeWeb)
			return err
		}, appRefused},
		{func(ctx context.Context, w *world, who keys.Principal) error {
			_, err := w.b.Certificates(ctx, who, names.App{})
			return err
		}, map[string]string{"member": `not allowed: "certs list" needs an admin key`, "outsider": `not allowed: "certs list" needs an admin key`,
			"deploy": `not allowed: "certs list" needs an admin key`, "boot": `not allowed: "certs list" needs an admin key`}},
	},
	"AddCert": {{func(ctx context.Context, w *world, who keys.Principal) error {
		_, err := w.b.AddCert(ctx, who, acmeWeb, "web.acme.upscale.localhost", []byte("pem"))
		return err
	}, appRefused}},
	"RemoveCert": {{func(ctx context.Context, w *world, who keys.Principal) error {
		return w.b.RemoveCert(ctx, who, acmeWeb, "web.acme.upscale.localhost")
	}, appRefused}},
	"RenewCerts": {{func(ctx context.Context, w *world, who keys.Principal) error {
		_, err := w.b.RenewCerts(ctx, who, acmeWeb, "")
		return err
	}, appRefused}},
}

func TestHTTPSPolicy(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	alice := w.who["member"]
	if err := w.b.SetHTTPSRedirect(ctx, alice, acmeWeb, false); err != nil {
		t.Fatal(err)
	}
	if err := w.b.SetHSTS(ctx, alice, acmeWeb, 3600*time.Second); err != nil {
		t.Fatal(err)
	}
	a, err := w.st.GetApp(ctx, "acme", "web")
	if err != nil || !a.NoHTTPSRedirect || a.HSTSMaxAge != 3600 {
		t.Fatalf("stored policy: %+v, %v", a, err)
	}
	if !strings.Contains(strings.Join(w.life.done, "\n"), "reroute") {
		t.Error("the router was not brought to the new policy")
	}
	for _, tc := range []struct{ in, want string }{
		{"max-age=0x10", `invalid hsts "max-age=0x10": want max-age=SECONDS (1 to 63072000) or off`},
		{"max-age=63072001", "invalid hsts"},
		{"-5", "invalid hsts"},
		{"forever", "invalid hsts"},
	} {
		if _, err := ParseHSTS(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseHSTS(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
	for in, want := range map[string]time.Duration{"off": 0, "max-age=31536000": 365 * 24 * time.Hour, "60": time.Minute} {
		if got, err := ParseHSTS(in); err != nil || got != want {
			t.Errorf("ParseHSTS(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseOnOff("https-redirect", "yes"); err == nil || err.Error() != `invalid https-redirect "yes": want on or off` {
		t.Errorf("ParseOnOff(yes) = %v", err)
	}
}

// Bad input is one line and changes nothing; the app's hostnames and
// their statuses are what certs list shows.
func TestCertsUseCases(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	alice := w.who["member"]
	if !strings.Contains(strings.Join(w.life.done, "\n"), "manage web.acme.upscale.localhost") {
		t.Errorf("creating an app asked for no certificate: %q", w.life.done)
	}
	before := w.snapshot(t)
	for _, tc := range []struct {
		host, pem, want string
	}{
		{"shop.example.com", "pem", `"shop.example.com" is not a hostname of acme/web`},
		{"api.acme.upscale.localhost", "pem", `"api.acme.upscale.localhost" is not a hostname of acme/web`},
		{"web.acme.upscale.localhost", "bad", "key: does not match the certificate"},
	} {
		_, err := w.b.AddCert(ctx, alice, acmeWeb, tc.host, []byte(tc.pem))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("AddCert(%s): %v, want one line with %q", tc.host, err, tc.want)
		}
	}
	if after := w.snapshot(t); after != before {
		t.Errorf("bad input changed something:\n%s\n%s", before, after)
	}
	if _, err := w.b.AddCert(ctx, alice, acmeWeb, "web.acme.upscale.localhost", []byte("pem")); err != nil {
		t.Fatal(err)
	}
	if err := w.st.SetCertStatus(ctx, store.CertStatus{Name: "web.acme.upscale.localhost", Issuer: "manual", State: store.CertLive}); err != nil {
		t.Fatal(err)
	}
	list, err := w.b.Certificates(ctx, alice, acmeWeb)
	if err != nil || len(list) != 1 || list[0].Host != "web.acme.upscale.localhost" || list[0].Status == nil || list[0].Status.Issuer != "manual" {
		t.Fatalf("Certificates = %+v, %v", list, err)
	}
	info, err := w.b.AppInfo(ctx, alice, acmeWeb)
	if err != nil || info.HTTPS == nil || info.HTTPS.State != store.CertLive {
		t.Errorf("AppInfo HTTPS = %+v, %v", info.HTTPS, err)
	}
	if got, err := w.b.RenewCerts(ctx, alice, acmeWeb, ""); err != nil || len(got) != 1 {
		t.Errorf("RenewCerts = %q, %v", got, err)
	}
}
