package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upscalehq/upscale/certbundle"
	"github.com/upscalehq/upscale/store"
)

// logBuffer is a log that tests read: every level, certmagic's included.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// harness runs an engine until the test ends and collects what OnCert gets.
type harness struct {
	e    *Engine
	st   store.Store
	logs *logBuffer
	mu   sync.Mutex
	got  []Cert
	cond chan struct{}
}

func startEngine(t *testing.T, st store.Store, opts Options) *harness {
	t.Helper()
	h := &harness{st: st, logs: &logBuffer{}, cond: make(chan struct{}, 100)}
	opts.Store = st
	opts.Log = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.OnCert = func(c Cert) {
		h.mu.Lock()
		h.got = append(h.got, c)
		h.mu.Unlock()
		h.cond <- struct{}{}
	}
	if opts.RetryBase == 0 {
		opts.RetryBase = time.Hour // a failure is looked at, not retried, within a test
	}
	e, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if logs := h.logs.String(); strings.Contains(logs, "PRIVATE KEY") {
			t.Errorf("a private key in the logs:\n%s", logs)
		}
	})
	return h
}

// certFor waits for OnCert to get a certificate for name that pass accepts.
func (h *harness) certFor(t *testing.T, name string, pass func(Cert) bool) Cert {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		h.mu.Lock()
		for _, c := range h.got {
			if c.Name == name && (pass == nil || pass(c)) {
				h.mu.Unlock()
				return c
			}
		}
		h.mu.Unlock()
		select {
		case <-h.cond:
		case <-deadline:
			t.Fatalf("no certificate for %s; statuses %+v; logs:\n%s", name, h.statuses(t), h.logs.String())
		}
	}
}

func (h *harness) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.got {
		if c.Name == name {
			n++
		}
	}
	return n
}

func (h *harness) statuses(t *testing.T) map[string]store.CertStatus {
	t.Helper()
	list, err := h.st.ListCertStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.CertStatus{}
	for _, st := range list {
		out[st.Name] = st
	}
	return out
}

// waitStatus waits until name's status passes.
func (h *harness) waitStatus(t *testing.T, name string, pass func(store.CertStatus) bool) store.CertStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, ok := h.statuses(t)[name]
		if ok && pass(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status of %s: %+v; logs:\n%s", name, st, h.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verify fails t unless c's chain verifies for name against the roots in
// rootPEM and its key is the leaf's.
func verify(t *testing.T, c Cert, name string, rootPEM []byte) *x509.Certificate {
	t.Helper()
	b, err := certbundle.Parse(join(c.ChainPEM, c.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatal("no root")
	}
	inter := x509.NewCertPool()
	for _, c := range b.Chain[1:] {
		inter.AddCert(c)
	}
	if _, err := b.Leaf().Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("certificate for %s does not verify: %v", name, err)
	}
	return b.Leaf()
}

func TestEngineInternal(t *testing.T) {
	st := openStore(t)
	root := filepath.Join(t.TempDir(), "root.crt")
	h := startEngine(t, st, Options{Mode: DefaultMode("upscale.localhost"), RootFile: root})
	if h.e.RootFile() != root {
		t.Errorf("RootFile() = %q", h.e.RootFile())
	}
	rootPEM, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"hello.test.upscale.localhost", "*.test.upscale.localhost"}
	if err := h.e.Manage(t.Context(), names...); err != nil {
		t.Fatal(err)
	}
	certs := map[string]Cert{}
	for _, n := range names {
		certs[n] = h.certFor(t, n, nil)
		verify(t, certs[n], strings.Replace(n, "*", "other", 1), rootPEM)
		st := h.waitStatus(t, n, func(st store.CertStatus) bool { return st.State == store.CertLive })
		if st.Issuer != IssuerInternal || !st.NotAfter.Equal(verify(t, certs[n], strings.Replace(n, "*", "x", 1), rootPEM).NotAfter) || st.LastError != "" {
			t.Errorf("status %+v", st)
		}
	}

	// Printing or logging a Cert never shows its key.
	c := certs[names[0]]
	for _, text := range []string{fmt.Sprint(c), fmt.Sprintf("%+v %#v %s %x %q", c, c, c.KeyPEM, c.KeyPEM, c.KeyPEM)} {
		if strings.Contains(text, "PRIVATE") || !strings.Contains(text, redacted) {
			t.Errorf("a Cert printed: %s", text)
		}
	}

	// certs renew: a new certificate, said to be a renewal.
	if err := h.e.Renew(t.Context(), names[0]); err != nil {
		t.Fatal(err)
	}
	renewed := h.certFor(t, names[0], func(c Cert) bool { return c.Renewal })
	if bytes.Equal(renewed.ChainPEM, c.ChainPEM) {
		t.Error("a forced renewal delivered the same certificate")
	}
	verify(t, renewed, names[0], rootPEM)
	if err := h.e.Renew(t.Context(), "nope.test.upscale.localhost"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Renew of a name not managed: %v", err)
	}

	// A restarted server on the same store installs what it had, without
	// issuing anew, and keeps the same root.
	again := startEngine(t, st, Options{Mode: ModeInternal, RootFile: filepath.Join(t.TempDir(), "root.crt")})
	if !bytes.Equal(again.e.RootPEM(), rootPEM) {
		t.Error("the restarted engine has another root")
	}
	for _, n := range names {
		want := certs[n].ChainPEM
		if n == names[0] {
			want = renewed.ChainPEM
		}
		got := again.certFor(t, n, nil)
		if !bytes.Equal(got.ChainPEM, want) {
			t.Errorf("%s: the restarted engine delivered another certificate than the stored one", n)
		}
	}
}

func TestEngineBringYourOwn(t *testing.T) {
	st := openStore(t)
	h := startEngine(t, st, Options{Mode: ModeManual})
	ctx := t.Context()
	if err := h.e.Manage(ctx, "www.example.com"); err != nil {
		t.Fatal(err)
	}
	pending := h.waitStatus(t, "www.example.com", func(st store.CertStatus) bool { return st.LastError != "" })
	if pending.State != store.CertPending || !strings.Contains(pending.LastError, "certs add") {
		t.Errorf("a manual name without a certificate: %+v", pending)
	}

	ca := testCA(t)
	key, other := newKey(t), newKey(t)
	now := time.Now()
	good := leafPEM(t, ca, key, []string{"www.example.com"}, now.Add(-time.Hour), now.Add(30*24*time.Hour))
	for _, tc := range []struct {
		name, pem, want string
	}{
		{"mismatched key", string(join(good, keyPEM(t, other))), "key: does not match the certificate"},
		{"expired", string(join(leafPEM(t, ca, key, []string{"www.example.com"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour)), keyPEM(t, key))), "certificate: expired on"},
		{"wrong name", string(join(leafPEM(t, ca, key, []string{"shop.example.com"}, now.Add(-time.Hour), now.Add(time.Hour)), keyPEM(t, key))), "not www.example.com"},
		{"not a key", string(join(good, []byte("not a key\n"))), "key: no PEM private key found"},
	} {
		_, err := h.e.AddCert(ctx, "www.example.com", []byte(tc.pem))
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", tc.name, err, tc.want)
		}
	}
	if st := h.statuses(t)["www.example.com"]; st.State != store.CertPending || h.count("www.example.com") != 0 {
		t.Fatalf("refused certificates changed something: %+v", st)
	}
	if _, err := h.e.AddCert(ctx, "www.example.com", join(keyPEM(t, key), good, ca.RootPEM())); err != nil {
		t.Fatal(err)
	}
	c := h.certFor(t, "www.example.com", nil)
	verify(t, c, "www.example.com", ca.RootPEM())
	if st := h.statuses(t)["www.example.com"]; st.State != store.CertLive || st.Issuer != IssuerManual {
		t.Errorf("status after certs add: %+v", st)
	}
	if err := h.e.RemoveCert(ctx, "www.example.com"); err != nil {
		t.Fatal(err)
	}
	if err := h.e.RemoveCert(ctx, "www.example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing twice: %v", err)
	}
	h.waitStatus(t, "www.example.com", func(st store.CertStatus) bool { return st.State == store.CertPending })
}

func TestEngineFailureDoesNotBlockOthers(t *testing.T) {
	// A "directory" that answers 404 HTML, as a mistyped URL does.
	notACME := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>not here</html>", http.StatusNotFound)
	}))
	t.Cleanup(notACME.Close)
	st := openStore(t)
	h := startEngine(t, st, Options{Mode: ModeACME, Directory: notACME.URL + "/directory", RetryBase: time.Hour})
	if err := h.e.Manage(t.Context(), "web.acme.example.net", "app.acme.upscale.test"); err != nil {
		t.Fatal(err)
	}
	// The .test name comes from the internal CA meanwhile.
	h.certFor(t, "app.acme.upscale.test", nil)
	failed := h.waitStatus(t, "web.acme.example.net", func(st store.CertStatus) bool { return st.State == store.CertFailed })
	if failed.Failures != 1 || failed.Issuer != IssuerACME || failed.LastError == "" || strings.Contains(failed.LastError, "\n") {
		t.Errorf("failed status: %+v", failed)
	}
	// Backed off: the next try is about RetryBase away, not now.
	if d := time.Until(failed.NextTry); d < 50*time.Minute || d > 70*time.Minute {
		t.Errorf("next try in %v, want about an hour", d)
	}
	t.Logf("last error: %s", failed.LastError)
	if !strings.Contains(failed.LastError, "ACME directory "+notACME.URL+"/directory: no ACME directory there, or the CA is down: HTTP 404") {
		t.Errorf("last error %q does not say the directory answered 404", failed.LastError)
	}
}

func TestEngineHeldBack(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	// Half of a weekly limit of 4 is spent already for example.net.
	for i := range 2 {
		if _, err := st.ReserveCertIssue(ctx, "example.net", fmt.Sprintf("h%d.example.net", i), time.Now(), time.Now().Add(-time.Hour), 2); err != nil {
			t.Fatal(err)
		}
	}
	h := startEngine(t, st, Options{Mode: ModeACME, Directory: "http://127.0.0.1:1/directory", WeeklyLimit: 4})
	if err := h.e.Manage(ctx, "web.acme.example.net"); err != nil {
		t.Fatal(err)
	}
	held := h.waitStatus(t, "web.acme.example.net", func(st store.CertStatus) bool { return st.State != store.CertPending })
	if held.State != store.CertHeldBack || !strings.Contains(held.LastError, "held back: 2 certificates for example.net in 7 days, half of the CA's weekly 4") {
		t.Errorf("status %+v, want held back, saying why", held)
	}
	if d := time.Until(held.NextTry); d < 50*time.Minute {
		t.Errorf("next try of a held-back name in %v, want an hour or more", d)
	}
	if n, _ := st.CountCertIssues(ctx, "example.net", time.Now().Add(-time.Hour)); n != 2 {
		t.Errorf("%d orders counted, want the 2 before", n)
	}
}

func TestOptionErrors(t *testing.T) {
	st := openStore(t)
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Mode: "auto"}, `--tls "auto": want off, acme, internal or manual`},
		{Options{Mode: ModeACME, Directory: "acme-v02.api.letsencrypt.org/directory"}, "not an http(s) URL"},
		{Options{Mode: ModeACME, Email: "me at example.com"}, "not an email address"},
		{Options{Mode: ModeACME, CARootFile: "/nonexistent/root.pem"}, "--acme-ca-root"},
		{Options{Mode: ModeACME, HTTPChallengeAddr: "localhost"}, "HTTP challenge address"},
		{Options{Mode: ModeACME, DNS: &RFC2136{Server: "ns1:53"}}, "no zone"},
	} {
		tc.opts.Store = st
		_, err := New(t.Context(), tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v, want one line with %q", tc.opts, err, tc.want)
		}
	}
	e, err := New(t.Context(), Options{Mode: ModeACME, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Manage(t.Context(), "*.acme.example.com"); err == nil || !strings.Contains(err.Error(), "needs a DNS provider") {
		t.Errorf("a wildcard without a DNS provider: %v", err)
	}
	for _, n := range []string{"", "localhost", "*.com", "Web.example.com", "a..b", "-a.b", "a_b.example.com"} {
		if err := e.Manage(t.Context(), n); err == nil {
			t.Errorf("Manage(%q) took it", n)
		}
	}
	if list, _ := e.Status(t.Context()); len(list) != 0 {
		t.Errorf("refused names have statuses: %+v", list)
	}
}

func TestRegisteredDomain(t *testing.T) {
	for in, want := range map[string]string{
		"web.acme.example.com":  "example.com",
		"*.acme.example.co.uk":  "example.co.uk",
		"example.com":           "example.com",
		"shop.example.com.":     "example.com",
		"a.b.c.upscale.example": "upscale.example",
	} {
		if got := RegisteredDomain(in); got != want {
			t.Errorf("RegisteredDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEngineRenewsInBackground(t *testing.T) {
	// Certificates of a minute, backdated five (for clients' clocks): due
	// for renewal as soon as issued. Looked at every half second, each look
	// renews, without anyone asking.
	h := startEngine(t, openStore(t), Options{Mode: ModeInternal, InternalLifetime: time.Minute, CheckInterval: 500 * time.Millisecond})
	if err := h.e.Manage(t.Context(), "web.acme.upscale.test"); err != nil {
		t.Fatal(err)
	}
	first := h.certFor(t, "web.acme.upscale.test", nil)
	renewed := h.certFor(t, "web.acme.upscale.test", func(c Cert) bool { return c.Renewal })
	if bytes.Equal(first.ChainPEM, renewed.ChainPEM) {
		t.Error("the renewal delivered the same certificate")
	}
	st := h.waitStatus(t, "web.acme.upscale.test", func(st store.CertStatus) bool { return st.State == store.CertLive })
	if st.NextTry.IsZero() || st.Failures != 0 {
		t.Errorf("status of a renewed name: %+v", st)
	}
}

func TestEngineOff(t *testing.T) {
	h := startEngine(t, openStore(t), Options{Mode: ModeOff})
	if err := h.e.Manage(t.Context(), "web.acme.example.com"); err != nil {
		t.Fatal(err)
	}
	st := h.waitStatus(t, "web.acme.example.com", func(st store.CertStatus) bool { return true })
	if st.State != store.CertPending || st.Issuer != "" || h.e.RootFile() != "" || h.e.RootPEM() != nil {
		t.Errorf("--tls off: status %+v, root file %q", st, h.e.RootFile())
	}
	// The HTTP-01 handler answers nothing.
	rec := httptest.NewRecorder()
	h.e.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "http://web.acme.example.com/.well-known/acme-challenge/x", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("challenge handler with --tls off: %d", rec.Code)
	}
}
