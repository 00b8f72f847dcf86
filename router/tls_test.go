package router

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/certbundle"
)

// tlsRig is a rig whose HAProxy also listens for HTTPS, with an ACME
// HTTP-01 handler of its own, and a CA its clients trust.
type tlsRig struct {
	*rig
	ca       *testCA
	acmeHits atomic.Int64
	logs     lockedBuffer // what the router logged
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTLSRig(t *testing.T) *tlsRig {
	t.Helper()
	needHAProxy(t)
	g := &tlsRig{ca: newTestCA(t)}
	acme := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.acmeHits.Add(1)
		fmt.Fprintf(w, "acme answer for %s %s", r.Host, r.URL.Path)
	}))
	t.Cleanup(acme.Close)
	cfg := Config{
		Dir:          testDir(t),
		HTTPAddr:     freeAddr(t),
		HTTPSAddr:    freeAddr(t),
		ACMEAddr:     strings.TrimPrefix(acme.URL, "http://"),
		DrainTimeout: time.Second,
		Log:          slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &g.logs), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	t.Cleanup(func() { stopDir(t, cfg) })
	r, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Redirects are what the tests look at, not follow.
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	g.rig = &rig{t: t, r: r, cfg: cfg, client: client}
	return g
}

func (g *tlsRig) install(names ...string) []byte {
	g.t.Helper()
	p := g.ca.issue(time.Now().Add(24*time.Hour), names...)
	if err := g.r.InstallCert(g.t.Context(), names, p); err != nil {
		g.t.Fatal(err)
	}
	return p
}

// handshake connects with sni (none if "") and returns the certificate
// HAProxy presents, without judging it.
func (g *tlsRig) handshake(sni string) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", g.cfg.HTTPSAddr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func (g *tlsRig) served(sni string) string {
	g.t.Helper()
	leaf, err := g.handshake(sni)
	if err != nil {
		g.t.Fatalf("handshake for %q: %v", sni, err)
	}
	return leaf.Subject.CommonName
}

// httpsClient verifies the chain against the test CA and the name, like a
// browser; a new connection (a new handshake) for every request.
func (g *tlsRig) httpsClient() *http.Client {
	tr := &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: g.ca.pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, g.cfg.HTTPSAddr)
		},
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// fetch does one request; over HTTPS through c, to host as the URL's host
// so that SNI and Host are both host.
func fetch(c *http.Client, url string, hdr ...string) (*http.Response, string, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, "", err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// plain does one HTTP request to host.
func (g *tlsRig) plain(host, path string, hdr ...string) (*http.Response, string) {
	g.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+g.cfg.HTTPAddr+path, nil)
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatalf("GET http://%s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (g *tlsRig) secure(host, path string, hdr ...string) (*http.Response, string) {
	g.t.Helper()
	resp, body, err := fetch(g.httpsClient(), "https://"+host+path, hdr...)
	if err != nil {
		g.t.Fatalf("GET https://%s%s: %v", host, path, err)
	}
	return resp, body
}

func TestHTTPSServesEachAppItsCertificate(t *testing.T) {
	g := newTLSRig(t)
	web, api := newApp(t, "web-1"), newApp(t, "api-1")
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(web)},
		Backend{Name: "blog/api", Hosts: []string{"api.blog.test"}, Servers: servers(api)})
	before := g.procs()
	g.install("web.acme.test")
	g.install("*.blog.test", "blog.test")

	for host, want := range map[string]string{"web.acme.test": "web-1", "api.blog.test": "api-1"} {
		if resp, body := g.secure(host, "/"); resp.StatusCode != 200 || body != want {
			t.Errorf("https://%s/: %d %q, want 200 %q", host, resp.StatusCode, body, want)
		}
	}
	for sni, want := range map[string]string{
		"web.acme.test":   "web.acme.test",
		"WEB.acme.test":   "web.acme.test",
		"api.blog.test":   "*.blog.test",
		"blog.test":       "*.blog.test",
		"x.y.blog.test":   PendingSubject, // a wildcard covers one label
		"other.acme.test": PendingSubject,
		"":                PendingSubject,
	} {
		if got := g.served(sni); got != want {
			t.Errorf("SNI %q: served %q, want %q", sni, got, want)
		}
	}
	if after := g.procs(); after.reloads != before.reloads || after.worker != before.worker {
		t.Errorf("installing certificates reloaded HAProxy: %+v -> %+v", before, after)
	}
	// Browsers speak HTTP/2 when offered.
	h2 := g.httpsClient()
	h2.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	if resp, body, err := fetch(h2, "https://web.acme.test/"); err != nil || resp.ProtoMajor != 2 || body != "web-1" {
		t.Errorf("HTTP/2: %v %q %v", resp, body, err)
	}

	certs, err := g.r.Certs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !slices.Equal(certs[0].Names, []string{"web.acme.test"}) || !certs[0].Serving ||
		!slices.Equal(certs[1].Names, []string{"*.blog.test", "blog.test"}) || !certs[1].Serving || certs[1].Issuer != "CN=Upscale test CA" {
		t.Errorf("Certs = %+v", certs)
	}
	// On disk for the next start, readable by root only.
	for _, f := range []string{"tls/pending.pem", "tls/certs/web.acme.test.pem", "tls/certs/_.blog.test.pem", "tls/certs.list", "tls/certs.map"} {
		fi, err := os.Stat(filepath.Join(g.cfg.Dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi, err)
		}
	}
	for _, d := range []string{"tls", "tls/certs"} {
		if fi, err := os.Stat(filepath.Join(g.cfg.Dir, d)); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want mode 0700", d, fi, err)
		}
	}
	list, _ := os.ReadFile(filepath.Join(g.cfg.Dir, "tls/certs.list"))
	if want := g.cfg.Dir + "/tls/certs/web.acme.test.pem web.acme.test\n" + g.cfg.Dir + "/tls/certs/_.blog.test.pem *.blog.test blog.test\n"; string(list) != want {
		t.Errorf("certs.list:\n%s\nwant:\n%s", list, want)
	}

	// A renewal with one more name, and the wildcard removed.
	g.install("web.acme.test", "www.acme.test")
	if got := g.served("www.acme.test"); got != "web.acme.test" {
		t.Errorf("renewed with a new name: served %q", got)
	}
	if err := g.r.RemoveCert(t.Context(), "*.blog.test"); err != nil {
		t.Fatal(err)
	}
	if got := g.served("api.blog.test"); got != PendingSubject {
		t.Errorf("after RemoveCert: served %q", got)
	}
	if _, err := os.Stat(filepath.Join(g.cfg.Dir, "tls/certs/_.blog.test.pem")); !os.IsNotExist(err) {
		t.Errorf("removed certificate's file: %v", err)
	}
	if certs, _ := g.r.Certs(t.Context()); len(certs) != 1 || len(certs[0].Names) != 2 {
		t.Errorf("Certs after the changes = %+v", certs)
	}
	if after := g.procs(); after.reloads != before.reloads || after.worker != before.worker {
		t.Errorf("replacing and removing certificates reloaded HAProxy: %+v -> %+v", before, after)
	}
}

// Bad certificates are refused with one line and change nothing: the one
// serving keeps serving.
func TestInstallCertRefusesAndKeeps(t *testing.T) {
	g := newTLSRig(t)
	g.install("web.acme.test")
	certs, _ := g.r.Certs(t.Context())
	listBefore, _ := os.ReadFile(filepath.Join(g.cfg.Dir, "tls/certs.list"))
	other := g.ca.issue(time.Now().Add(time.Hour), "blog.example.org")
	for name, c := range map[string]struct {
		names []string
		pem   []byte
		want  string
	}{
		"wrong name":        {[]string{"web.acme.test"}, other, "certificate: made for blog.example.org, not web.acme.test"},
		"expired":           {[]string{"web.acme.test"}, g.ca.issue(time.Now().Add(-time.Minute), "web.acme.test"), "expired"},
		"not a certificate": {[]string{"web.acme.test"}, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "key: not a valid private key"},
		"name taken":        {[]string{"api.acme.test", "web.acme.test"}, g.ca.issue(time.Now().Add(time.Hour), "api.acme.test", "web.acme.test"), "web.acme.test is served by the certificate of web.acme.test"},
		"bad name":          {[]string{"web.acme.test\nshow"}, other, "invalid certificate name"},
		"remove unknown":    {[]string{"nope.acme.test"}, nil, "no certificate is installed under nope.acme.test"},
	} {
		var err error
		if c.pem == nil {
			err = g.r.RemoveCert(t.Context(), c.names[0])
		} else {
			err = g.r.InstallCert(t.Context(), c.names, c.pem)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "-----BEGIN") {
			t.Errorf("%s: %v, want one line with %q", name, err, c.want)
		}
	}
	if strings.Contains(g.logs.String(), "-----BEGIN") || strings.Contains(g.logs.String(), "PRIVATE") {
		t.Error("the router logged PEM")
	}
	after, _ := g.r.Certs(t.Context())
	listAfter, _ := os.ReadFile(filepath.Join(g.cfg.Dir, "tls/certs.list"))
	if fmt.Sprint(after) != fmt.Sprint(certs) || string(listAfter) != string(listBefore) || g.served("web.acme.test") != "web.acme.test" {
		t.Errorf("refused installs changed something: %+v -> %+v", certs, after)
	}
	if files, _ := filepath.Glob(filepath.Join(g.cfg.Dir, "tls/certs/*")); len(files) != 1 {
		t.Errorf("files left by refused installs: %v", files)
	}

	plain := &Router{cfg: g.cfg}
	if err := plain.InstallCert(t.Context(), []string{"web.acme.test"}, other); err == nil || !strings.Contains(err.Error(), "no HTTPS listener") {
		t.Errorf("InstallCert without HTTPS: %v", err)
	}
}

// A name with no certificate of its own must never be handed another
// tenant's: the default certificate is the pending one, whatever the SNI.
func TestPendingCertNeverAnotherTenantsRegression(t *testing.T) {
	g := newTLSRig(t)
	a, b := newApp(t, "a"), newApp(t, "b")
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(a)},
		Backend{Name: "evil/web", Hosts: []string{"web.evil.test"}, Servers: servers(b)})
	g.install("web.acme.test")
	check := func(when string) {
		t.Helper()
		for _, sni := range []string{"web.evil.test", "evil.test", "*.acme.test", "acme.test", "xweb.acme.test", "web.acme.test.evil.test", ""} {
			if got := g.served(sni); got != PendingSubject {
				t.Errorf("%s, SNI %q: served %q, want the pending certificate", when, sni, got)
			}
		}
	}
	check("installed at runtime")
	// A HAProxy that reads the certificates from disk (here a reload, for
	// a new app) must keep the pending one as its default too.
	before := g.procs()
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(a)},
		Backend{Name: "evil/web", Hosts: []string{"web.evil.test"}, Servers: servers(b)},
		Backend{Name: "evil/api", Hosts: []string{"api.evil.test"}})
	if after := g.procs(); after.reloads == before.reloads {
		t.Fatal("adding an app did not reload HAProxy")
	}
	check("after a reload")
	// A browser refuses the pending certificate: no trust, no name.
	if _, _, err := fetch(g.httpsClient(), "https://web.evil.test/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("HTTPS to a name without a certificate: %v, want a certificate error", err)
	}
	// Not even when the other tenant's name is asked for in Host over a
	// connection made for one's own name: the certificate is the SNI's.
	leaf, err := g.handshake("web.evil.test")
	if err != nil || leaf.VerifyHostname("web.acme.test") == nil {
		t.Errorf("the pending certificate claims a name: %v", err)
	}
}

func TestRedirectHSTSAndACME(t *testing.T) {
	g := newTLSRig(t)
	web, docs, api := newApp(t, "web"), newApp(t, "docs"), newApp(t, "api")
	webB := Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(web), HSTSMaxAge: 600 * time.Second}
	docsB := Backend{Name: "acme/docs", Hosts: []string{"docs.acme.test"}, Servers: servers(docs), NoHTTPSRedirect: true, HSTSMaxAge: 300 * time.Second}
	apiB := Backend{Name: "acme/api", Hosts: []string{"api.acme.test"}, Servers: servers(api)}
	g.apply(webB, docsB, apiB)

	// No certificate yet: HTTP answers, as before.
	if resp, body := g.plain("web.acme.test", "/"); resp.StatusCode != 200 || body != "web" {
		t.Errorf("before any certificate: %d %q", resp.StatusCode, body)
	}
	g.install("web.acme.test")
	g.install("*.acme.test")
	before := g.procs()

	port := g.cfg.HTTPSAddr[strings.LastIndexByte(g.cfg.HTTPSAddr, ':'):]
	resp, _ := g.plain("Web.Acme.Test:80", "/a/b?x=1&y=%20")
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://web.acme.test"+port+"/a/b?x=1&y=%20" {
		t.Errorf("HTTP with a live certificate: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Covered by the wildcard only: redirected too.
	if resp, _ := g.plain("api.acme.test", "/"); resp.StatusCode != 301 {
		t.Errorf("HTTP to a name under the wildcard: %d", resp.StatusCode)
	}
	// The app that opted out keeps plain HTTP.
	if resp, body := g.plain("docs.acme.test", "/"); resp.StatusCode != 200 || body != "docs" {
		t.Errorf("app with redirect off: %d %q", resp.StatusCode, body)
	}
	// HSTS over HTTPS only, for the apps that asked, with their max-age.
	for host, want := range map[string]string{"web.acme.test": "max-age=600", "docs.acme.test": "max-age=300", "api.acme.test": ""} {
		resp, _ := g.secure(host, "/")
		if got := resp.Header.Get("Strict-Transport-Security"); got != want {
			t.Errorf("https://%s: Strict-Transport-Security %q, want %q", host, got, want)
		}
	}
	if resp, _ := g.plain("docs.acme.test", "/"); resp.Header.Get("Strict-Transport-Security") != "" {
		t.Error("HSTS sent over plain HTTP")
	}

	// HTTP-01 challenges reach the ACME handler, for any name, never
	// redirected and never the app.
	for _, host := range []string{"web.acme.test", "unrouted.example.com", "docs.acme.test"} {
		resp, body := g.plain(host, "/.well-known/acme-challenge/tok3n")
		if resp.StatusCode != 200 || body != "acme answer for "+host+" /.well-known/acme-challenge/tok3n" {
			t.Errorf("ACME challenge for %s: %d %q", host, resp.StatusCode, body)
		}
	}
	if g.acmeHits.Load() != 3 {
		t.Errorf("ACME handler got %d requests, want 3", g.acmeHits.Load())
	}
	if resp, body := g.secure("web.acme.test", "/.well-known/acme-challenge/tok3n"); resp.StatusCode != 200 || body != "web" {
		t.Errorf("the challenge path over HTTPS is the app's: %d %q", resp.StatusCode, body)
	}

	// Policy changes on a running app, without a reload.
	webB.NoHTTPSRedirect, webB.HSTSMaxAge = true, 0
	docsB.NoHTTPSRedirect = false
	g.apply(webB, docsB, apiB)
	if resp, body := g.plain("web.acme.test", "/"); resp.StatusCode != 200 || body != "web" {
		t.Errorf("after switching the redirect off: %d %q", resp.StatusCode, body)
	}
	if resp, _ := g.secure("web.acme.test", "/"); resp.Header.Get("Strict-Transport-Security") != "" {
		t.Error("HSTS still sent after it was switched off")
	}
	if resp, _ := g.plain("docs.acme.test", "/"); resp.StatusCode != 301 {
		t.Errorf("after switching the redirect on: %d", resp.StatusCode)
	}
	if after := g.procs(); after.reloads != before.reloads {
		t.Errorf("policy changes reloaded HAProxy: %+v -> %+v", before, after)
	}
	routes, err := g.r.Routes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []Backend{apiB, docsB, webB}; fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Errorf("Routes = %v, want %v", routes, want)
	}

	// Without its certificate a name goes back to plain HTTP.
	if err := g.r.RemoveCert(t.Context(), "*.acme.test"); err != nil {
		t.Fatal(err)
	}
	if resp, body := g.plain("api.acme.test", "/"); resp.StatusCode != 200 || body != "api" {
		t.Errorf("after its certificate was removed: %d %q", resp.StatusCode, body)
	}
}

// The app sees how the client came, and where from, as HAProxy saw it:
// what a client writes in those headers itself is dropped.
func TestForwardedHeadersNotTrustedRegression(t *testing.T) {
	g := newTLSRig(t)
	web := newApp(t, "web")
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(web), NoHTTPSRedirect: true})
	g.install("web.acme.test")
	lies := []string{"X-Forwarded-For", "6.6.6.6", "X-Forwarded-Proto", "gopher"}
	_, overTLS := g.secure("web.acme.test", "/headers", lies...)
	_, overHTTP := g.plain("web.acme.test", "/headers", lies...)
	for name, c := range map[string]struct{ body, proto string }{"https": {overTLS, "https"}, "http": {overHTTP, "http"}} {
		for _, want := range []string{"X-Forwarded-For: 127.0.0.1\n", "X-Forwarded-Proto: " + c.proto + "\n"} {
			if !strings.Contains(c.body, want) {
				t.Errorf("over %s the app got %q, want %q", name, c.body, want)
			}
		}
		if strings.Contains(c.body, "6.6.6.6") || strings.Contains(c.body, "gopher") {
			t.Errorf("over %s the client's own headers reached the app: %q", name, c.body)
		}
	}
}

// Renewals replace a certificate under a steady stream of new HTTPS
// connections: not one handshake fails, HAProxy is not reloaded, and the
// new certificate is served at the end.
func TestCertReplacedUnderLoad(t *testing.T) {
	g := newTLSRig(t)
	web := newApp(t, "web")
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(web)})
	g.install("web.acme.test")
	before := g.procs()

	var ok, failed atomic.Int64
	var mu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c := g.httpsClient()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, body, err := fetch(c, "https://web.acme.test/")
				if err == nil && (resp.StatusCode != 200 || body != "web") {
					err = fmt.Errorf("%d %q", resp.StatusCode, body)
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	var last []byte
	for range 10 {
		last = g.install("web.acme.test")
		run(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() > 0 || ok.Load() == 0 {
		t.Errorf("%d requests, %d failed: %.5q", ok.Load(), failed.Load(), errs)
	}
	t.Logf("%d HTTPS requests (each a handshake) across 10 replacements, none failed", ok.Load())
	if after := g.procs(); after.masterPID != before.masterPID || after.worker != before.worker || after.reloads != before.reloads {
		t.Errorf("replacing the certificate restarted or reloaded HAProxy: %+v -> %+v", before, after)
	}
	leaf, err := g.handshake("web.acme.test")
	want, _ := certbundle.FirstCert(last)
	if err != nil || leaf.SerialNumber.Cmp(want.SerialNumber) != 0 {
		t.Errorf("served serial %v, want the last one installed %v (%v)", leaf.SerialNumber, want.SerialNumber, err)
	}
}

// HAProxy killed, master and worker: Watch starts it again, and it comes
// back with every certificate and its redirects; a new Router adopting it
// changes nothing.
func TestWatchRestoresCertificates(t *testing.T) {
	g := newTLSRig(t)
	web, api := newApp(t, "web"), newApp(t, "api")
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(web)},
		Backend{Name: "blog/api", Hosts: []string{"api.blog.test"}, Servers: servers(api), HSTSMaxAge: time.Hour})
	g.install("web.acme.test")
	g.install("*.blog.test")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { g.r.Watch(ctx, 100*time.Millisecond); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	p := g.procs()
	syscall.Kill(p.masterPID, syscall.SIGKILL)
	syscall.Kill(p.worker, syscall.SIGKILL)
	waitFor(t, "HTTPS answering again", func() bool {
		_, body, err := fetch(g.httpsClient(), "https://web.acme.test/")
		return err == nil && body == "web"
	})
	// The listener answers a moment before the master's socket does.
	waitFor(t, "the status to show the restart", func() bool {
		st := g.r.Status(t.Context())
		return st.Running && st.Restarts == 1 && st.Master != p.masterPID
	})
	for sni, want := range map[string]string{"web.acme.test": "web.acme.test", "api.blog.test": "*.blog.test", "nope.test": PendingSubject} {
		if got := g.served(sni); got != want {
			t.Errorf("after the restart, SNI %s: served %q, want %q", sni, got, want)
		}
	}
	if resp, _ := g.plain("api.blog.test", "/"); resp.StatusCode != 301 {
		t.Errorf("after the restart, HTTP: %d, want the redirect", resp.StatusCode)
	}
	if resp, _ := g.secure("api.blog.test", "/"); resp.Header.Get("Strict-Transport-Security") != "max-age=3600" {
		t.Errorf("after the restart, HSTS %q", resp.Header.Get("Strict-Transport-Security"))
	}

	before := g.procs()
	r2, err := Start(t.Context(), g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if after := g.procs(); after.reloads != before.reloads || after.worker != before.worker {
		t.Errorf("adopting a HAProxy with certificates reloaded it: %+v -> %+v", before, after)
	}
	if certs, err := r2.Certs(t.Context()); err != nil || len(certs) != 2 || !certs[0].Serving || !certs[1].Serving {
		t.Errorf("adopted certificates: %+v %v", certs, err)
	}
}

// A process that dies after writing a certificate and before installing
// it leaves the files ahead of HAProxy: the next process to start adopts
// HAProxy and installs what the files say, without a reload.
func TestAdoptInstallsWhatTheFilesSay(t *testing.T) {
	g := newTLSRig(t)
	web := newApp(t, "web")
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(web)})
	g.install("web.acme.test")
	g.install("old.acme.test")
	before := g.procs()

	// What InstallCert writes before it touches HAProxy, for a renewal of
	// web.acme.test and a new api.acme.test, and RemoveCert for old.
	renewed := g.ca.issue(time.Now().Add(time.Hour), "web.acme.test")
	apiPEM := g.ca.issue(time.Now().Add(time.Hour), "api.acme.test")
	dir := filepath.Join(g.cfg.Dir, "tls")
	for name, p := range map[string][]byte{"web.acme.test": renewed, "api.acme.test": apiPEM} {
		_, data, err := parseCertPEM([]string{name}, p, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "certs", name+".pem"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	list := dir + "/certs/web.acme.test.pem web.acme.test\n" + dir + "/certs/api.acme.test.pem api.acme.test\n"
	if err := os.WriteFile(filepath.Join(dir, "certs.list"), []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := g.served("api.acme.test"); got != PendingSubject {
		t.Fatalf("HAProxy serves %q for api.acme.test before adoption", got)
	}

	r2, err := Start(t.Context(), g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := g.handshake("web.acme.test")
	want, _ := certbundle.FirstCert(renewed)
	if err != nil || leaf.SerialNumber.Cmp(want.SerialNumber) != 0 {
		t.Errorf("web.acme.test after adoption: serial %v, want the renewed %v (%v)", leaf.SerialNumber, want.SerialNumber, err)
	}
	for sni, want := range map[string]string{"api.acme.test": "api.acme.test", "old.acme.test": PendingSubject} {
		if got := g.served(sni); got != want {
			t.Errorf("SNI %s after adoption: served %q, want %q", sni, got, want)
		}
	}
	if certs, err := r2.Certs(t.Context()); err != nil || len(certs) != 2 || !certs[0].Serving || !certs[1].Serving {
		t.Errorf("Certs after adoption: %+v %v", certs, err)
	}
	if after := g.procs(); after.reloads != before.reloads || after.worker != before.worker {
		t.Errorf("adoption reloaded HAProxy: %+v -> %+v", before, after)
	}
}
