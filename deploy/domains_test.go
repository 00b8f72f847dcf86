package deploy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/dnsproof"
	"github.com/upscalehq/upscale/dnsproof/dnsprooftest"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

func TestNormalizeHostname(t *testing.T) {
	const platform = "upscale.example.net"
	for _, tc := range []struct{ in, want string }{
		{"www.example.com", "www.example.com"},
		{"WWW.Example.COM", "www.example.com"},
		{"www.example.com.", "www.example.com"},
		{"example.com", "example.com"},
		{"a-b.c-d.example", "a-b.c-d.example"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"123.example.com", "123.example.com"},
		{strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com"},
		{"upscale.example.net.evil.com", "upscale.example.net.evil.com"},
		{"notupscale.example.net", "notupscale.example.net"},
	} {
		got, err := NormalizeHostname(tc.in, platform)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeHostname(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	long := strings.Repeat(strings.Repeat("a", 60)+".", 4) + "com" // 247
	if _, err := NormalizeHostname(long, platform); err != nil {
		t.Errorf("247 characters: %v", err)
	}
	for _, tc := range []struct{ in, why string }{
		{"", "empty"},
		{".", "empty"},
		{"localhost", "two labels"},
		{"www..example.com", "empty label"},
		{"www.example.com..", "empty label"},
		{".example.com", "empty label"},
		{"*.example.com", "wildcards"},
		{"-www.example.com", "inner dashes"},
		{"www-.example.com", "inner dashes"},
		{"www_x.example.com", "inner dashes"},
		{"www.exa mple.com", "without scheme"},
		{"http://www.example.com", "without scheme"},
		{"www.example.com:8080", "without scheme"},
		{"www.example.com/path", "without scheme"},
		{"bücher.example", "non-ASCII"},
		{"www.example.com\n", "inner dashes"},
		{"10.0.0.1", "IP address"},
		{strings.Repeat("a", 64) + ".com", "longer than 63"},
		{strings.Repeat(strings.Repeat("a", 60)+".", 4) + "comcomcomc", "at most 253"},
		{"upscale.example.net", "platform's own"},
		{"web.acme.upscale.example.net", "platform's own"},
		{"WEB.acme.Upscale.Example.Net.", "platform's own"},
	} {
		got, err := NormalizeHostname(tc.in, platform)
		if err == nil || !strings.Contains(err.Error(), tc.why) || !strings.HasPrefix(err.Error(), "invalid domain ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("NormalizeHostname(%q) = %q, %v; want one line saying %q", tc.in, got, err, tc.why)
		}
	}
}

// FuzzNormalizeHostname covers hostnames from ssh command lines: what it
// accepts is a lowercase DNS name the router takes, and normalizing it
// again changes nothing.
func FuzzNormalizeHostname(f *testing.F) {
	for _, s := range []string{"www.example.com", "WWW.Example.COM.", "*.example.com", "a..b", "web.acme.upscale.localhost",
		"xn--bcher-kva.example", "10.0.0.1", "bücher.example", "a-.b", strings.Repeat("a.", 130) + "com"} {
		f.Add(s)
	}
	label := regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeHostname(in, "upscale.localhost")
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") || len(msg) > 400 {
				t.Fatalf("error for %q is not one short line: %q", in, msg)
			}
			return
		}
		if len(out) > 253 || strings.Count(out, ".") < 1 || strings.HasSuffix(out, ".upscale.localhost") {
			t.Fatalf("accepted %q as %q", in, out)
		}
		for _, l := range strings.Split(out, ".") {
			if !label.MatchString(l) {
				t.Fatalf("accepted %q as %q, label %q", in, out, l)
			}
		}
		if again, err := NormalizeHostname(out, "upscale.localhost"); err != nil || again != out {
			t.Fatalf("%q normalized to %q, then to %q, %v", in, out, again, err)
		}
	})
}

// domainRig is a deploy rig whose domain checks ask a DNS server of the
// test's, with a clock the test moves.
type domainRig struct {
	*rig
	dns *dnsprooftest.Server
	now time.Time
}

func newDomainRig(t *testing.T) *domainRig {
	t.Helper()
	r := &domainRig{rig: newRig(t), dns: dnsprooftest.Start(t), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	c, err := dnsproof.New(r.dns.Addr)
	if err != nil {
		t.Fatal(err)
	}
	r.d.cfg.Proofs = c
	r.d.cfg.Now = func() time.Time { return r.now }
	if _, err := r.d.cfg.Store.CreateApp(t.Context(), "acme", "api"); err != nil {
		t.Fatal(err)
	}
	return r
}

// routed is which app the router's last configuration sends host to.
func (r *domainRig) routed(host string) string {
	if len(r.router.Applied) == 0 {
		return ""
	}
	for _, b := range r.router.Applied[len(r.router.Applied)-1] {
		if slices.Contains(b.Hosts, host) {
			return b.Name
		}
	}
	return ""
}

func (r *domainRig) events(t *testing.T, app string) string {
	t.Helper()
	ns, name, _ := strings.Cut(app, "/")
	list, err := r.d.cfg.Store.ListEvents(t.Context(), ns, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range list {
		fmt.Fprintf(&b, "%s by %s\n", e.Message, e.By)
	}
	return b.String()
}

func TestDomainRoutedOnlyOnceProven(t *testing.T) {
	r := newDomainRig(t)
	ctx := t.Context()
	const host = "shop.example.com"
	dom, added, err := r.d.AddDomain(ctx, r.app, host, "alice")
	if err != nil || !added || dom.Verified() || len(dom.Token) < 20 {
		t.Fatalf("AddDomain = %+v, %v, %v; want a new pending claim with a token", dom, added, err)
	}
	const why = "no TXT record at _upscale-challenge.shop.example.com; shop.example.com has no CNAME to web.acme.example.test"
	if dom.Failure != why || !dom.CheckedAt.Equal(r.now) {
		t.Errorf("checked at add: %q at %v, want %q at %v", dom.Failure, dom.CheckedAt, why, r.now)
	}
	// Not by a full sync either (deploys and restarts do one).
	if err := r.d.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.routed(host); got != "" {
		t.Fatalf("pending %s routed to %s", host, got)
	}
	// Another app's token does not prove this claim.
	other, _, err := r.d.AddDomain(ctx, names.App{Namespace: "acme", Name: "api"}, host, "alice")
	if err != nil || other.Token == dom.Token {
		t.Fatalf("second claim: %+v, %v; want its own token", other, err)
	}
	r.dns.SetTXT("_upscale-challenge."+host, other.Token)
	r.now = r.now.Add(time.Minute)
	if got, err := r.d.VerifyDomain(ctx, r.app, host, "alice"); err != nil || got.Verified() || !strings.Contains(got.Failure, "does not hold this domain's token") {
		t.Fatalf("VerifyDomain with another claim's token: %+v, %v", got, err)
	}
	// Its own token does.
	r.dns.SetTXT("_upscale-challenge."+host, other.Token, dom.Token)
	got, err := r.d.VerifyDomain(ctx, r.app, host, "alice")
	if err != nil || !got.Verified() || got.Failure != "" || !got.VerifiedAt.Equal(r.now) {
		t.Fatalf("VerifyDomain with the token published: %+v, %v", got, err)
	}
	if app := r.routed(host); app != "acme/web" {
		t.Fatalf("verified %s routed to %q, want acme/web", host, app)
	}
	if ev := r.events(t, "acme/web"); !strings.Contains(ev, "verified domain shop.example.com (TXT record) by alice") ||
		!strings.Contains(ev, "added domain shop.example.com (pending proof of ownership) by alice") {
		t.Errorf("events:\n%s", ev)
	}
	// Verified is for good: taking the record away changes nothing.
	r.dns.SetTXT("_upscale-challenge." + host)
	r.now = r.now.Add(24 * time.Hour)
	if n, err := r.d.CheckDomains(ctx); err != nil || n != 1 { // only acme/api's claim
		t.Errorf("CheckDomains = %d, %v; want the other app's claim checked only", n, err)
	}
	if again, err := r.d.VerifyDomain(ctx, r.app, host, "alice"); err != nil || !again.Verified() {
		t.Errorf("VerifyDomain of a verified domain: %+v, %v", again, err)
	}
	if app := r.routed(host); app != "acme/web" {
		t.Errorf("after the record went, %s routes to %q", host, app)
	}
	// Adding it again is no error, and no new claim.
	if again, added, err := r.d.AddDomain(ctx, r.app, host, "alice"); err != nil || added || !again.Verified() || again.Token != dom.Token {
		t.Errorf("AddDomain again: %+v, %v, %v", again, added, err)
	}
	if _, err := r.d.VerifyDomain(ctx, r.app, "nope.example.com", "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("VerifyDomain of a domain the app lacks: %v", err)
	}
}

func TestDomainFirstToVerifyWins(t *testing.T) {
	r := newDomainRig(t)
	ctx := t.Context()
	const host = "www.example.org"
	web, api := r.app, names.App{Namespace: "acme", Name: "api"}
	// A squatter's pending claim does not keep the owner out.
	squat, _, err := r.d.AddDomain(ctx, web, host, "mallory")
	if err != nil {
		t.Fatal(err)
	}
	r.dns.SetCNAME(host, "api.acme.example.test")
	dom, added, err := r.d.AddDomain(ctx, api, host, "owner")
	if err != nil || !added || !dom.Verified() {
		t.Fatalf("the owner's claim with the CNAME in place: %+v, %v, %v; want verified at once", dom, added, err)
	}
	if app := r.routed(host); app != "acme/api" {
		t.Fatalf("%s routes to %q, want acme/api", host, app)
	}
	if ev := r.events(t, "acme/api"); !strings.Contains(ev, "verified domain www.example.org (CNAME) by owner") {
		t.Errorf("events:\n%s", ev)
	}
	// The squatter, now with a proof of its own, still loses: first wins.
	r.dns.SetCNAME(host, "")
	r.dns.SetTXT("_upscale-challenge."+host, squat.Token)
	_, err = r.d.VerifyDomain(ctx, web, host, "mallory")
	var taken *DomainTakenError
	if !errors.As(err, &taken) || taken.Owner != api {
		t.Fatalf("the later proof: %v, want taken by acme/api", err)
	}
	list, _ := r.d.cfg.Store.ListDomains(ctx, "acme", "web")
	if len(list) != 1 || list[0].Verified() || list[0].Failure != "another app proved ownership of this name first" {
		t.Errorf("the losing claim: %+v", list)
	}
	if _, _, err := r.d.AddDomain(ctx, names.App{Namespace: "acme", Name: "web"}, "other.example.org", "x"); err != nil {
		t.Fatal(err)
	}
	// New claims on a verified name are refused outright.
	if _, err := r.d.cfg.Store.CreateApp(ctx, "acme", "late"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.d.AddDomain(ctx, names.App{Namespace: "acme", Name: "late"}, host, "x"); !errors.As(err, &taken) || taken.Owner != api {
		t.Errorf("claiming a verified name: %v", err)
	}
	// Once the owner lets it go, the pending claim can win it.
	if err := r.d.RemoveDomain(ctx, api, host, "owner"); err != nil {
		t.Fatal(err)
	}
	if app := r.routed(host); app != "" {
		t.Fatalf("removed %s still routes to %s", host, app)
	}
	if got, err := r.d.VerifyDomain(ctx, web, host, "mallory"); err != nil || !got.Verified() {
		t.Fatalf("verify after the owner left: %+v, %v", got, err)
	}
	if app := r.routed(host); app != "acme/web" {
		t.Errorf("%s routes to %q, want acme/web", host, app)
	}
}

func TestDomainDue(t *testing.T) {
	added := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return added.Add(d) }
	for _, tc := range []struct {
		name string
		dom  store.Domain
		now  time.Time
		due  bool
	}{
		{"never checked", store.Domain{CreatedAt: added}, added, true},
		{"just checked", store.Domain{CreatedAt: added, CheckedAt: added}, at(29 * time.Second), false},
		{"30 s later", store.Domain{CreatedAt: added, CheckedAt: added}, at(30 * time.Second), true},
		{"9 minutes in, 30 s later", store.Domain{CreatedAt: added, CheckedAt: at(9 * time.Minute)}, at(9*time.Minute + 30*time.Second), true},
		{"10 minutes in, 30 s later", store.Domain{CreatedAt: added, CheckedAt: at(10 * time.Minute)}, at(10*time.Minute + 30*time.Second), false},
		{"10 minutes in, 10 minutes later", store.Domain{CreatedAt: added, CheckedAt: at(10 * time.Minute)}, at(20 * time.Minute), true},
		{"a week in", store.Domain{CreatedAt: added, CheckedAt: at(168 * time.Hour)}, at(168*time.Hour + 9*time.Minute), false},
		{"verified", store.Domain{CreatedAt: added, CheckedAt: added, VerifiedAt: added}, at(1000 * time.Hour), false},
	} {
		if got := DomainDue(tc.dom, tc.now); got != tc.due {
			t.Errorf("%s: due %v, want %v", tc.name, got, tc.due)
		}
	}
}

// The background checks find a proof published after the add, on their
// schedule, and route the domain.
func TestCheckDomainsInBackground(t *testing.T) {
	r := newDomainRig(t)
	ctx := t.Context()
	const host = "later.example.com"
	if _, _, err := r.d.AddDomain(ctx, r.app, host, "alice"); err != nil {
		t.Fatal(err)
	}
	r.dns.SetCNAME(host, "web.acme.example.test")
	r.now = r.now.Add(10 * time.Second)
	if n, err := r.d.CheckDomains(ctx); err != nil || n != 0 {
		t.Fatalf("10 s after the add: %d checked, %v; want none due", n, err)
	}
	if app := r.routed(host); app != "" {
		t.Fatalf("routed before any check found the proof: %s", app)
	}
	r.now = r.now.Add(20 * time.Second)
	if n, err := r.d.CheckDomains(ctx); err != nil || n != 1 {
		t.Fatalf("30 s after the add: %d checked, %v", n, err)
	}
	if app := r.routed(host); app != "acme/web" {
		t.Fatalf("after the background check, %s routes to %q", host, app)
	}
	if ev := r.events(t, "acme/web"); !strings.Contains(ev, "verified domain later.example.com (CNAME) by upscale") {
		t.Errorf("events:\n%s", ev)
	}
}
