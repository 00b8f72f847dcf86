package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/certs/pebbletest"
	"github.com/upscalehq/upscale/dnsproof/dnsprooftest"
	"github.com/upscalehq/upscale/e2e/rig"
	"github.com/upscalehq/upscale/msgtext"
)

// httpsWorld is a server with HTTPS on, an admin key, and what the test
// reaches it with.
type httpsWorld struct {
	*deployWorld
	domain    string
	httpsPort int
}

// newHTTPSWorld starts a server with its agent, HTTP on httpPort (0: a
// free one) and HTTPS on a free port; extra are more server flags.
func newHTTPSWorld(t *testing.T, domain string, httpPort int, extra ...string) *httpsWorld {
	t.Helper()
	if httpPort == 0 {
		httpPort = rig.FreePort(t)
	}
	w := &httpsWorld{domain: domain, httpsPort: rig.FreePort(t)}
	args := append([]string{"--domain", domain, "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--https", fmt.Sprintf("127.0.0.1:%d", w.httpsPort)}, extra...)
	srv := rig.StartWithAgent(t, bin, args...)
	srv.HTTPPort = httpPort
	w.deployWorld = &deployWorld{srv: srv, key: rig.NewKey(t, "admin")}
	mustLocal(t, srv, "keys", "add", "--admin", "--name", "admin", "--public", w.key.Public)
	return w
}

// host is app's hostname.
func (w *httpsWorld) host(app string) string {
	ns, name, _ := strings.Cut(app, "/")
	return name + "." + ns + "." + w.domain
}

// pushHTTPS pushes dir to app and returns the push's last line.
func (w *httpsWorld) pushHTTPS(t *testing.T, dir, app string) string {
	t.Helper()
	errs, code := w.push(dir, app)
	if code != 0 || !strings.Contains(errs, "=====> Application deployed: ") {
		t.Fatalf("push to %s: exit %d\n%s\nserver log:\n%s", app, code, errs, tail(w.srv.Log(), 40))
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "=====> Application deployed: ") {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[i]), "remote:"))
		}
	}
	return ""
}

// curl fetches https://host:port/ with curl, trusting only root: the
// chain is checked as any client would. It returns curl's exit status,
// the body and curl's error.
func (w *httpsWorld) curl(root, host string, extra ...string) (int, string, string) {
	args := append([]string{"-sS", "--max-time", "10", "--cacert", root,
		"--resolve", fmt.Sprintf("%s:%d:127.0.0.1", host, w.httpsPort)}, extra...)
	args = append(args, fmt.Sprintf("https://%s:%d/", host, w.httpsPort))
	cmd := exec.Command("curl", args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		code = 1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return code, out.String(), errb.String()
}

// waitCurl waits until curl gets body from host over HTTPS, trusting root.
func (w *httpsWorld) waitCurl(t *testing.T, root, host, body string) {
	t.Helper()
	var code int
	var got, errs string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if code, got, errs = w.curl(root, host); code == 0 && got == body {
			return
		}
	}
	t.Fatalf("curl https://%s: exit %d, %q, %s\ncerts list:\n%s\nserver log:\n%s", host, code, got, errs,
		w.ssh(t, "certs", "list"), tail(w.srv.Log(), 30))
}

// leaf is the certificate the router serves for host (SNI), unverified.
func (w *httpsWorld) leaf(t *testing.T, host string) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", w.httpsPort),
		&tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake for %s: %v", host, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// get fetches path from host over plain HTTP, without following redirects.
func (w *httpsWorld) get(t *testing.T, host string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/path?q=1", w.srv.HTTPPort), nil)
	req.Host = host
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET http://%s: %v", host, err)
	}
	resp.Body.Close()
	return resp
}

// certStatus is one row of certs list --format json.
type certStatus struct {
	Host      string `json:"host"`
	Name      string `json:"name"`
	Issuer    string `json:"issuer"`
	Status    string `json:"status"`
	LastError string `json:"last_error"`
	NextTry   string `json:"next_try"`
}

func (w *httpsWorld) certs(t *testing.T, app string) map[string]certStatus {
	t.Helper()
	var list []certStatus
	if err := json.Unmarshal([]byte(w.ssh(t, "certs", "list", app, "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]certStatus{}
	for _, c := range list {
		out[c.Host] = c
	}
	return out
}

// tlsLoop makes HTTPS requests to host on new connections (a handshake
// each) every few milliseconds until stopped, trusting roots, and counts
// the failures.
type tlsLoop struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	ok       int
	failures []string
}

func startTLSLoop(w *httpsWorld, host, body string, roots *x509.CertPool) *tlsLoop {
	l := &tlsLoop{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host}}}
	url := fmt.Sprintf("https://127.0.0.1:%d/", w.httpsPort)
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			req, _ := http.NewRequest("GET", url, nil)
			req.Host = host
			failure := ""
			resp, err := client.Do(req)
			if err != nil {
				failure = err.Error()
			} else {
				b := make([]byte, 256)
				n, _ := resp.Body.Read(b)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b[:n]) != body {
					failure = fmt.Sprintf("%s %q", resp.Status, b[:n])
				}
			}
			l.mu.Lock()
			if failure == "" {
				l.ok++
			} else {
				l.failures = append(l.failures, failure)
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// check stops the loop: every request answered right, at least min.
func (l *tlsLoop) check(t *testing.T, what string, atLeast int) {
	t.Helper()
	close(l.stop)
	<-l.done
	if len(l.failures) > 0 || l.ok < atLeast {
		t.Errorf("%s: %d requests answered, %d failed (handshakes included); first ones: %q", what, l.ok, len(l.failures), l.failures[:min(10, len(l.failures))])
	} else {
		t.Logf("%s: %d requests, none failed", what, l.ok)
	}
}

func poolOf(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(data) {
		t.Fatalf("%s: no certificate", file)
	}
	return p
}

// HTTPS against a real ACME CA (Pebble), through HAProxy: certificates for
// two apps and a custom domain, each served by SNI with a chain curl
// checks against Pebble's root; the 301 and HSTS; a renewal under a steady
// stream of new TLS connections without one failed handshake; a HAProxy
// killed and restarted serves the same certificates; a CA that is down
// and a domain whose DNS points elsewhere leave a clear status and the
// other names served.
func TestHTTPSPebble(t *testing.T) {
	dns := dnsprooftest.Start(t)
	httpPort := rig.FreePort(t)
	peb := pebbletest.Start(t, pebbletest.Options{HTTPPort: httpPort, DNS: dns.Addr, Validity: 24 * time.Hour})
	const domain = "upscale.example.net"
	for _, h := range []string{"web.acme." + domain, "api.acme." + domain, "shop.example.com"} {
		dns.SetA(h, "127.0.0.1")
	}
	// Verified, but its address is not the router's: the CA cannot reach it.
	dns.SetA("elsewhere.example.com", "127.0.0.2")
	w := newHTTPSWorld(t, domain, httpPort, "--acme-directory", peb.Directory, "--acme-ca-root", peb.CARoot,
		"--acme-email", "ops@example.net", "--dns-resolver", dns.Addr)
	for _, args := range [][]string{{"namespace", "create", "acme"}, {"app", "create", "acme/web"}, {"app", "create", "acme/api"}} {
		w.ssh(t, args...)
	}
	web, api := w.host("acme/web"), w.host("acme/api")
	w.pushHTTPS(t, rig.Repo(t, helloApp(t, "web", "runtime: python\nhealth: /\n")), "acme/web")
	apiRepo := rig.Repo(t, helloApp(t, "api", "runtime: python\nhealth: /\n"))
	w.pushHTTPS(t, apiRepo, "acme/api")
	root := peb.RootFile(t)
	w.waitCurl(t, root, web, "web\n")
	w.waitCurl(t, root, api, "api\n")
	// Once the certificate is live, a push's last line says https.
	rig.Commit(t, apiRepo, "two", helloApp(t, "api", "runtime: python\nhealth: /\n# two\n"))
	if last, want := w.pushHTTPS(t, apiRepo, "acme/api"), fmt.Sprintf("=====> Application deployed: https://%s:%d (v2)", api, w.httpsPort); last != want {
		t.Errorf("push's last line: %q, want %q", last, want)
	}

	// A custom domain: its certificate once verified.
	for _, h := range []string{"shop.example.com", "elsewhere.example.com"} {
		dns.SetTXT("_upscale-challenge."+h, w.addPending(t, "acme/web", h))
		w.ssh(t, "domains", "verify", "acme/web", h)
	}
	w.waitCurl(t, root, "shop.example.com", "web\n")
	// SNI: each name its own certificate.
	for _, h := range []string{web, api, "shop.example.com"} {
		if l := w.leaf(t, h); len(l.DNSNames) != 1 || l.DNSNames[0] != h {
			t.Errorf("SNI %s: served a certificate for %q", h, l.DNSNames)
		}
	}
	var st map[string]certStatus
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st = w.certs(t, "acme/web")
		if e := st["elsewhere.example.com"]; e.Status == "failed" || time.Now().After(deadline) {
			break
		}
	}
	if e := st["elsewhere.example.com"]; e.Status != "failed" || e.LastError == "" || e.NextTry == "-" || strings.Contains(e.LastError, "\n") {
		t.Errorf("a domain the CA cannot reach: %+v, want failed with why and when next", e)
	}
	if s := st[web]; s.Status != "live" || s.Issuer != "acme" {
		t.Errorf("certs list for %s: %+v", web, s)
	}
	if out := w.ssh(t, "domains", "list", "acme/web"); !regexp.MustCompile(`shop\.example\.com .*live \(acme, expires 20`).MatchString(out) {
		t.Errorf("domains list shows no HTTPS status:\n%s", out)
	}

	// HTTP → HTTPS, unless the app opts out; HSTS when it opts in.
	if r := w.get(t, web); r.StatusCode != 301 || !strings.HasPrefix(r.Header.Get("Location"), "https://"+web) || !strings.HasSuffix(r.Header.Get("Location"), "/path?q=1") {
		t.Errorf("HTTP %s: %d Location %q, want a 301 to https", web, r.StatusCode, r.Header.Get("Location"))
	}
	w.ssh(t, "app", "set", "acme/api", "https-redirect", "off")
	if r := w.get(t, api); r.StatusCode != 200 {
		t.Errorf("HTTP %s with the redirect off: %d", api, r.StatusCode)
	}
	w.ssh(t, "app", "set", "acme/web", "hsts", "max-age=600")
	if _, _, errs := w.curl(root, web, "-o", "/dev/null", "-D", "/dev/stderr"); !strings.Contains(strings.ToLower(errs), "strict-transport-security: max-age=600") {
		t.Errorf("HTTPS %s after hsts max-age=600: headers\n%s", web, errs)
	}
	if r := w.get(t, api); r.Header.Get("Strict-Transport-Security") != "" {
		t.Error("HSTS sent over plain HTTP")
	}

	// A renewal under a steady stream of new TLS connections.
	roots := poolOf(t, root)
	before := w.leaf(t, web)
	loop := startTLSLoop(w, web, "web\n", roots)
	time.Sleep(300 * time.Millisecond)
	w.ssh(t, "certs", "renew", "acme/web", web)
	for deadline := time.Now().Add(30 * time.Second); w.leaf(t, web).SerialNumber.Cmp(before.SerialNumber) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("certs renew: still the old certificate after 30 s\n%s", w.ssh(t, "certs", "list", "acme/web"))
		}
	}
	time.Sleep(300 * time.Millisecond)
	loop.check(t, "renewal under load", 50)
	renewed := w.leaf(t, web)

	// HAProxy killed: brought back, it serves the same certificates.
	for _, pid := range haproxyPIDs(w.srv.Data) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	w.waitCurl(t, root, web, "web\n")
	w.waitCurl(t, root, "shop.example.com", "web\n")
	if got := w.leaf(t, web); got.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("after HAProxy's restart: serial %s, want the renewed %s", got.SerialNumber, renewed.SerialNumber)
	}

	// The CA down: the renewal fails, says why, the certificate in place
	// keeps serving.
	peb.Stop()
	w.ssh(t, "certs", "renew", "acme/web", web)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		s := w.certs(t, "acme/web")[web]
		if s.LastError != "" {
			if s.Status != "live" || s.NextTry == "-" {
				t.Errorf("renewal with the CA down: %+v, want live with the error and the next try", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewal with the CA down: no error after 20 s: %+v", s)
		}
	}
	if code, got, errs := w.curl(root, web); code != 0 || got != "web\n" {
		t.Errorf("with the CA down: curl exit %d %q %s", code, got, errs)
	}
	if out := w.ssh(t, "app", "info", "acme/web"); !strings.Contains(out, "renewal failed: ") {
		t.Errorf("app info with the renewal failing:\n%s", out)
	}
}

// selfSigned is a certificate for names and its key, as PEM.
func selfSigned(t *testing.T, notAfter time.Time, names ...string) (cert, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: notAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}

// The default set-up, as `make run` has it: no DNS, no CA; certificates
// come from Upscale's own CA, whose root the server prints, and curl
// trusting that root gets the app. Bringing a certificate: what does not
// fit is one line and changes nothing; what fits is served at once.
func TestHTTPSInternalCA(t *testing.T) {
	w := newHTTPSWorld(t, "upscale.localhost", 0)
	for _, args := range [][]string{{"namespace", "create", "test"}, {"app", "create", "test/hello"}} {
		w.ssh(t, args...)
	}
	root := filepath.Join(w.srv.Data, "tls", "root.crt")
	if !strings.Contains(w.srv.Log(), "curl --cacert "+root+" https://APP.NS.upscale.localhost:") {
		t.Errorf("the server does not say where its root is:\n%s", tail(w.srv.Log(), 20))
	}
	last := w.pushHTTPS(t, rig.Repo(t, helloApp(t, "hello", "runtime: python\nhealth: /\n")), "test/hello")
	host := w.host("test/hello")
	w.waitCurl(t, root, host, "hello\n")
	if want := fmt.Sprintf("=====> Application deployed: https://%s:%d (v1)", host, w.httpsPort); last != want {
		t.Errorf("push's last line: %q, want %q", last, want)
	}
	if r := w.get(t, host); r.StatusCode != 301 {
		t.Errorf("HTTP %s: %d, want 301", host, r.StatusCode)
	}
	if s := w.certs(t, "test/hello")[host]; s.Status != "live" || s.Issuer != "internal" {
		t.Errorf("certs list: %+v", s)
	}
	if out := w.ssh(t, "app", "info", "test/hello"); !strings.Contains(out, "live (internal, expires ") {
		t.Errorf("app info:\n%s", out)
	}

	served := w.leaf(t, host)
	good, goodKey := selfSigned(t, time.Now().Add(30*24*time.Hour), host)
	_, otherKey := selfSigned(t, time.Now().Add(30*24*time.Hour), host)
	expired, expiredKey := selfSigned(t, time.Now().Add(-24*time.Hour), host)
	wrong, wrongKey := selfSigned(t, time.Now().Add(30*24*time.Hour), "shop.example.org")
	for _, tc := range []struct {
		what, stdin string
		args        []string
		want        string
	}{
		{"pair that does not match", string(good) + string(otherKey), nil, "error: key: does not match the certificate"},
		{"expired", string(expired) + string(expiredKey), nil, "error: certificate: expired on "},
		{"wrong name", string(wrong) + string(wrongKey), nil, "error: certificate: made for shop.example.org, not " + host},
		{"a key file that is not a key", string(good) + "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE me@host\n", nil, "error: key: no PEM private key found"},
		{"another app's name", string(good) + string(goodKey), []string{"certs", "add", "test/hello", "other.test.upscale.localhost"}, `is not a hostname of test/hello`},
		{"nothing on stdin", "", nil, "error: no certificate"},
	} {
		args := tc.args
		if args == nil {
			args = []string{"certs", "add", "test/hello", host}
		}
		_, errs, code := w.srv.SSH(w.key, tc.stdin, args...)
		oneErrorLine(t, tc.what, errs, code, tc.want)
		if msgtext.Truncate(errs, 10000) != errs || strings.Contains(errs, "PRIVATE KEY") {
			t.Errorf("%s: the error shows the key: %q", tc.what, errs)
		}
	}
	if got := w.leaf(t, host); !got.Equal(served) {
		t.Error("a refused certs add changed the certificate served")
	}
	out := mustSSH(t, w.srv, w.key, string(good)+string(goodKey), "certs", "add", "test/hello", host)
	if !strings.HasPrefix(out, "Certificate for "+host+" added to test/hello") {
		t.Errorf("certs add: %q", out)
	}
	if got := w.leaf(t, host); got.Subject.CommonName != host || got.Issuer.CommonName != host {
		t.Errorf("after certs add: served %s issued by %s", got.Subject, got.Issuer)
	}
	w.ssh(t, "certs", "remove", "test/hello", host)
	for deadline := time.Now().Add(20 * time.Second); w.leaf(t, host).Issuer.CommonName == host; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("certs remove: the added certificate still served after 20 s")
		}
	}
	w.waitCurl(t, root, host, "hello\n")
}

// An ACME directory that is not a URL stops the server at start with one
// line saying so.
func TestHTTPSBadDirectory(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(bin, "server", "--data", filepath.Join(dir, "data"), "--agent", "none", "--domain", "upscale.example.net",
		"--listen", fmt.Sprintf("127.0.0.1:%d", rig.FreePort(t)), "--http", fmt.Sprintf("127.0.0.1:%d", rig.FreePort(t)),
		"--https", fmt.Sprintf("127.0.0.1:%d", rig.FreePort(t)), "--bus-listen", "127.0.0.1:0", "--acme-directory", "letsencrypt")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `--acme-directory "letsencrypt": not an http(s) URL`) {
		t.Errorf("server with --acme-directory letsencrypt: %v\n%s", err, out)
	}
}
