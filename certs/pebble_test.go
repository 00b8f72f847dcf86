package certs

// Integration tests against a real ACME server: Pebble, Let's Encrypt's
// test CA, built from the version go.mod pins (`go tool pebble`), with a
// DNS server of the test's (dnsprooftest) as its resolver and as the zone
// primary that takes the DNS-01 updates.

import (
	"bytes"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upscalehq/upscale/certs/pebbletest"
	"github.com/upscalehq/upscale/dnsproof/dnsprooftest"
	"github.com/upscalehq/upscale/store"
)

// startPebble runs Pebble until the test ends; it validates HTTP-01 on
// httpPort, resolves names with dnsAddr, and refuses the names in blocked.
func startPebble(t *testing.T, httpPort int, dnsAddr string, blocked ...string) *pebbletest.Pebble {
	t.Helper()
	if testing.Short() {
		t.Skip("Pebble tests build and run Pebble")
	}
	p := pebbletest.Start(t, pebbletest.Options{HTTPPort: httpPort, DNS: dnsAddr, Blocked: blocked})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble's output:\n%s", p.Log())
		}
	})
	return p
}

// serveChallenges serves h on a free loopback port, what Pebble's
// httpPort names, as the router's forward of /.well-known/acme-challenge/
// to the server would.
func serveChallenges(t *testing.T, h http.Handler) (addr string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), ln.Addr().(*net.TCPAddr).Port
}

// challengeMux lets a handler be set after the listener exists: Pebble
// needs the port first, the engine needs Pebble's URL.
type challengeMux struct {
	mu sync.Mutex
	hs []http.Handler
}

func (m *challengeMux) add(h http.Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hs = append(m.hs, h)
}

// ServeHTTP tries each engine's handler: with a shared store any of them
// answers any challenge, which is what a second server behind the same
// router relies on. The first is enough; the others are there to show it.
func (m *challengeMux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	h := m.hs[0]
	m.mu.Unlock()
	h.ServeHTTP(w, r)
}

func TestPebbleHTTP01(t *testing.T) {
	dns := dnsprooftest.Start(t)
	mux := &challengeMux{}
	addr, port := serveChallenges(t, mux)
	p := startPebble(t, port, dns.Addr, "refused.example.net")
	for _, n := range []string{"web.acme.example.net", "shop.example.org", "refused.example.net"} {
		dns.SetA(n, "127.0.0.1")
	}
	// elsewhere.example.org has no address: its DNS does not point here.
	h := startEngine(t, openStore(t), Options{Mode: ModeACME, Directory: p.Directory, CARootFile: p.CARoot,
		Email: "ops@example.net", HTTPChallengeAddr: addr})
	mux.add(h.e.Handler())
	ctx := t.Context()
	if err := h.e.Manage(ctx, "web.acme.example.net", "shop.example.org", "refused.example.net", "elsewhere.example.org"); err != nil {
		t.Fatal(err)
	}
	root := p.RootPEM(t)
	for _, n := range []string{"web.acme.example.net", "shop.example.org"} {
		c := h.certFor(t, n, nil)
		verify(t, c, n, root)
		st := h.waitStatus(t, n, func(st store.CertStatus) bool { return st.State == store.CertLive })
		if st.Issuer != IssuerACME || st.NotAfter.Before(time.Now().Add(80*24*time.Hour)) {
			t.Errorf("status %+v", st)
		}
	}

	// A CA that refuses: the status says why in the CA's words, and backs off.
	refused := h.waitStatus(t, "refused.example.net", func(st store.CertStatus) bool { return st.State == store.CertFailed })
	if !strings.Contains(refused.LastError, "the CA refused") || !strings.Contains(refused.LastError, "rejectedIdentifier") ||
		time.Until(refused.NextTry) < 50*time.Minute {
		t.Errorf("refused name: %+v", refused)
	}
	// A custom domain whose DNS does not point here: failed, retried later.
	lost := h.waitStatus(t, "elsewhere.example.org", func(st store.CertStatus) bool { return st.State == store.CertFailed })
	if !strings.Contains(lost.LastError, "elsewhere.example.org") || time.Until(lost.NextTry) < 50*time.Minute {
		t.Errorf("name not pointing here: %+v", lost)
	}
	t.Logf("refused: %s\nnot pointing here: %s", refused.LastError, lost.LastError)
	if n, _ := h.st.CountCertIssues(ctx, "example.org", time.Now().Add(-time.Hour)); n != 1 {
		t.Errorf("%d orders counted for example.org, want 1: a failed order gives its place back", n)
	}

	// certs renew on a live name: a new certificate from the CA, the
	// old one serving until then.
	old := h.certFor(t, "web.acme.example.net", nil)
	if err := h.e.Renew(ctx, "web.acme.example.net"); err != nil {
		t.Fatal(err)
	}
	renewed := h.certFor(t, "web.acme.example.net", func(c Cert) bool { return c.Renewal })
	if bytes.Equal(renewed.ChainPEM, old.ChainPEM) {
		t.Error("renewal delivered the old certificate")
	}
	leaf := verify(t, renewed, "web.acme.example.net", root)

	// The CA goes down: a renewal fails, the status says so and when it
	// tries again, and the certificate in place stays live (no other is
	// sent).
	p.Stop()
	delivered := h.count("web.acme.example.net")
	if err := h.e.Renew(ctx, "web.acme.example.net"); err != nil {
		t.Fatal(err)
	}
	down := h.waitStatus(t, "web.acme.example.net", func(st store.CertStatus) bool { return st.LastError != "" })
	t.Logf("CA down: %s", down.LastError)
	if down.State != store.CertLive || !down.NotAfter.Equal(leaf.NotAfter) || !strings.HasPrefix(down.LastError, "the CA did not answer: creating new order") || !strings.Contains(down.LastError, "connection refused") ||
		down.Failures != 1 || time.Until(down.NextTry) < 50*time.Minute {
		t.Errorf("renewal with the CA down: %+v", down)
	}
	if h.count("web.acme.example.net") != delivered {
		t.Error("a certificate was delivered while the CA was down")
	}
}

func TestPebbleDNS01Wildcard(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString([]byte("a test TSIG secret, 32 bytes....."))
	dns := dnsprooftest.StartZone(t, "example.net", map[string]string{"upscale-key": secret})
	_, port := serveChallenges(t, http.NotFoundHandler())
	p := startPebble(t, port, dns.Addr)
	h := startEngine(t, openStore(t), Options{Mode: ModeACME, Directory: p.Directory, CARootFile: p.CARoot,
		DNS: &RFC2136{Server: dns.Addr, Zone: "example.net", TSIGName: "upscale-key", TSIGSecret: secret}})
	if err := h.e.Manage(t.Context(), "*.acme.example.net"); err != nil {
		t.Fatal(err)
	}
	c := h.certFor(t, "*.acme.example.net", nil)
	root := p.RootPEM(t)
	for _, n := range []string{"web.acme.example.net", "api.acme.example.net"} {
		verify(t, c, n, root)
	}
	if dns.Updates() < 2 {
		t.Errorf("%d DNS updates, want the record added and removed", dns.Updates())
	}
	if left := dns.TXT("_acme-challenge.acme.example.net"); len(left) != 0 {
		t.Errorf("challenge records left in the zone: %q", left)
	}
}

func TestPebbleSharedStorageIssuesOnce(t *testing.T) {
	dns := dnsprooftest.Start(t)
	for _, n := range []string{"web.acme.example.net", "api.acme.example.net"} {
		dns.SetA(n, "127.0.0.1")
	}
	mux := &challengeMux{}
	addr, port := serveChallenges(t, mux)
	p := startPebble(t, port, dns.Addr)
	root := p.RootPEM(t)
	st := openStore(t)
	opts := Options{Mode: ModeACME, Directory: p.Directory, CARootFile: p.CARoot, HTTPChallengeAddr: addr}
	// Two servers on one store; the router forwards challenges to a only.
	a, b := startEngine(t, st, opts), startEngine(t, st, opts)
	mux.add(a.e.Handler())
	ctx := t.Context()

	// b orders, and a answers b's challenge from the shared store; a then
	// installs b's certificate without ordering.
	if err := b.e.Manage(ctx, "web.acme.example.net"); err != nil {
		t.Fatal(err)
	}
	cb := b.certFor(t, "web.acme.example.net", nil)
	verify(t, cb, "web.acme.example.net", root)
	if err := a.e.Manage(ctx, "web.acme.example.net"); err != nil {
		t.Fatal(err)
	}
	if ca := a.certFor(t, "web.acme.example.net", nil); !bytes.Equal(ca.ChainPEM, cb.ChainPEM) {
		t.Error("a installed another certificate than the one b obtained")
	}

	// Both asked at once: the lock lets one order, the other finds it.
	var wg sync.WaitGroup
	for _, h := range []*harness{a, b} {
		wg.Go(func() {
			if err := h.e.Manage(ctx, "api.acme.example.net"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ca, cb := a.certFor(t, "api.acme.example.net", nil), b.certFor(t, "api.acme.example.net", nil)
	if !bytes.Equal(ca.ChainPEM, cb.ChainPEM) {
		t.Error("the two servers installed different certificates")
	}
	verify(t, ca, "api.acme.example.net", root)
	if n, err := st.CountCertIssues(ctx, "example.net", time.Now().Add(-time.Hour)); err != nil || n != 2 {
		t.Errorf("%d orders placed for two names by two servers (%v), want 2", n, err)
	}
}
