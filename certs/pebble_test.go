package certs

// Integration tests against a real ACME server: Pebble, Let's Encrypt's
// test CA, built from the version go.mod pins (`go tool pebble`), with a
// DNS server of the test's (dnsprooftest) as its resolver and as the zone
// primary that takes the DNS-01 updates.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upscalehq/upscale/dnsproof/dnsprooftest"
	"github.com/upscalehq/upscale/store"
)

type pebble struct {
	Directory string // ACME directory URL
	CARoot    string // file: the root Pebble's own HTTPS listener is signed by
	mgmt      string // management API, https://host:port
	client    *http.Client
	out       *logBuffer
	cmd       *exec.Cmd
}

// stop stops Pebble, as a CA that is down.
func (p *pebble) stop() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// freePort is a loopback port free a moment ago, for programs that take a
// port number rather than a listener.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPebble runs Pebble until the test ends; it validates HTTP-01 on
// httpPort, resolves names with dnsAddr, and refuses the names in blocked.
func startPebble(t *testing.T, httpPort int, dnsAddr string, blocked ...string) *pebble {
	t.Helper()
	if testing.Short() {
		t.Skip("Pebble tests build and run Pebble")
	}
	out, err := exec.Command("go", "tool", "-n", "pebble").Output()
	if err != nil {
		t.Fatalf("go tool -n pebble (go.mod's tool): %v", err)
	}
	bin := strings.TrimSpace(string(out))
	dir := t.TempDir()
	// Pebble's HTTPS listener gets a certificate from a test CA, which
	// the engine trusts through CARootFile as --acme-ca-root would.
	ca, key := testCA(t), newKey(t)
	now := time.Now()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile := write("cert.pem", leafPEM(t, ca, key, []string{"localhost"}, now.Add(-time.Hour), now.Add(24*time.Hour)))
	keyFile := write("key.pem", keyPEM(t, key))
	rootFile := write("root.pem", ca.RootPEM())
	listen, mgmt := freePort(t), freePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", listen),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmt),
		"certificate":             certFile, "privateKey": keyFile,
		"httpPort": httpPort, "tlsPort": freePort(t),
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"domainBlocklist": append([]string{"blocked.invalid"}, blocked...),
		"retryAfter":      map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":    "ecdsa",
		"profiles":        map[string]any{"default": map[string]any{"description": "test", "validityPeriod": 7776000}},
	}}
	data, _ := json.Marshal(cfg)
	cfgFile := write("pebble.json", data)
	p := &pebble{Directory: fmt.Sprintf("https://localhost:%d/dir", listen), CARoot: rootFile,
		mgmt: fmt.Sprintf("https://localhost:%d", mgmt), out: &logBuffer{}}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.RootPEM())
	p.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	cmd := exec.Command(bin, "-config", cfgFile, "-dnsserver", dnsAddr)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("pebble's output:\n%s", p.out.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := p.client.Get(p.Directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not answer at %s: %v\n%s", p.Directory, err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// root is the root of the certificates Pebble issues (new each run).
func (p *pebble) root(t *testing.T) []byte {
	t.Helper()
	resp, err := p.client.Get(p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble root: %d %v", resp.StatusCode, err)
	}
	return data
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
	root := p.root(t)
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
	p.stop()
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
	root := p.root(t)
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
	root := p.root(t)
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
