package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/schedslice"
)

// These tests run the real HAProxy. `make test` sets UPSCALE_E2E=1, which
// turns a missing haproxy into a failure instead of a skip.
func needHAProxy(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		if os.Getenv("UPSCALE_E2E") == "1" {
			t.Fatalf("haproxy is required (UPSCALE_E2E=1): %v", err)
		}
		t.Skipf("haproxy not installed (apt-get install haproxy, or make test): %v", err)
	}
}

// rig is one HAProxy under test, in its own directory and on its own port.
type rig struct {
	t      *testing.T
	r      *Router
	cfg    Config
	client *http.Client
}

func newRig(t *testing.T, drain time.Duration) *rig {
	t.Helper()
	needHAProxy(t)
	cfg := Config{
		Dir:          testDir(t),
		HTTPAddr:     freeAddr(t),
		DrainTimeout: drain,
		Log:          slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	// Registered before Start, so that a half-started HAProxy goes too.
	t.Cleanup(func() { stopDir(t, cfg) })
	r, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &rig{t: t, r: r, cfg: cfg, client: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

// testDir names the state directory so that HAProxy's command line holds
// "upscale-e2e-": `make clean-test` ends what a crashed run left behind.
func testDir(t *testing.T) string {
	return filepath.Join(t.TempDir(), "upscale-e2e-router")
}

// stopDir stops whatever HAProxy runs for cfg.Dir and checks nothing is left.
func stopDir(t *testing.T, cfg Config) {
	r, err := newRouter(cfg)
	if err != nil {
		t.Error(err)
		return
	}
	if err := r.Stop(); err != nil {
		t.Error(err)
	}
	if pids := haproxyPIDs(cfg.Dir); len(pids) > 0 {
		t.Errorf("haproxy processes %v left for %s", pids, cfg.Dir)
	}
}

// haproxyPIDs finds live processes whose command line names a file in dir.
func haproxyPIDs(dir string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		zombie := strings.Contains(string(stat), ") Z ")
		if err == nil && !zombie && strings.Contains(string(cmd), dir+"/") {
			out = append(out, pid)
		}
	}
	return out
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (g *rig) apply(bs ...Backend) {
	g.t.Helper()
	if err := g.r.Apply(g.t.Context(), bs); err != nil {
		g.t.Fatal(err)
	}
}

func (g *rig) get(host, path string) (int, string, error) {
	req, err := http.NewRequest("GET", "http://"+g.cfg.HTTPAddr+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func (g *rig) mustGet(host, path string) (int, string) {
	g.t.Helper()
	code, body, err := g.get(host, path)
	if err != nil {
		g.t.Fatalf("GET %s%s: %v", host, path, err)
	}
	return code, body
}

// seen returns which servers answered n requests to host.
func (g *rig) seen(host string, n int) map[string]int {
	g.t.Helper()
	out := map[string]int{}
	for range n {
		code, body := g.mustGet(host, "/")
		if code != 200 {
			g.t.Fatalf("GET %s: %d %s", host, code, body)
		}
		out[body]++
	}
	return out
}

func (g *rig) procs() procs {
	g.t.Helper()
	p, err := g.r.showProc(g.t.Context())
	if err != nil {
		g.t.Fatal(err)
	}
	return p
}

// app is a container stand-in: it answers with its name; /slow takes a
// while; /headers echoes the forwarding headers. After retire, any request
// reaching it is counted as late: a removed server must get none.
type app struct {
	name     string
	srv      *httptest.Server
	inflight atomic.Int64
	slower   atomic.Int64 // /slower requests in flight
	retired  atomic.Bool
	late     atomic.Int64
}

func newApp(t *testing.T, name string) *app {
	a := &app{name: name}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.retired.Load() {
			a.late.Add(1)
		}
		a.inflight.Add(1)
		defer a.inflight.Add(-1)
		switch r.URL.Path {
		case "/slow":
			time.Sleep(150 * time.Millisecond)
		case "/slower":
			a.slower.Add(1)
			defer a.slower.Add(-1)
			time.Sleep(time.Second)
		case "/headers":
			for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port"} {
				fmt.Fprintf(w, "%s: %s\n", h, strings.Join(r.Header.Values(h), ","))
			}
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *app) server() Server {
	return Server{Name: a.name, Addr: strings.TrimPrefix(a.srv.URL, "http://")}
}

func servers(apps ...*app) []Server {
	out := []Server{}
	for _, a := range apps {
		out = append(out, a.server())
	}
	return out
}

// load runs 4 clients looping GETs on host (one in four slow) until stopped
// or for at most 10 s, and counts every failure.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(g *rig, host string) *load {
	l := &load{stop: make(chan struct{})}
	deadline := time.Now().Add(10 * time.Second)
	for w := range 4 {
		l.wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				path := "/"
				if (i+w)%4 == 0 {
					path = "/slow"
				}
				code, body, err := g.get(host, path)
				if err == nil && code != 200 {
					err = fmt.Errorf("status %d: %.80s", code, body)
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		})
	}
	return l
}

func (l *load) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if l.failed.Load() > 0 || l.ok.Load() == 0 {
		t.Errorf("under load: %d ok, %d failed: %v", l.ok.Load(), l.failed.Load(), l.errs)
	}
	t.Logf("under load: %d requests, none failed", l.ok.Load())
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// run lets the load run for a while: the requests, not the clock, are
// what the tests check.
func run(d time.Duration) { time.Sleep(d) }

func TestRoutingByHost(t *testing.T) {
	g := newRig(t, 5*time.Second)
	web, api := newApp(t, "web-1"), newApp(t, "api-1")
	g.apply(
		Backend{Name: "acme/web", Hosts: []string{"web.acme.test", "www.example.com"}, Servers: servers(web)},
		Backend{Name: "acme/api", Hosts: []string{"api.acme.test"}, Servers: servers(api)},
		Backend{Name: "acme/empty", Hosts: []string{"empty.acme.test"}},
	)
	port := g.cfg.HTTPAddr[strings.LastIndexByte(g.cfg.HTTPAddr, ':'):]
	for host, want := range map[string]string{
		"web.acme.test":        "web-1",
		"WEB.Acme.Test":        "web-1",
		"web.acme.test" + port: "web-1",
		"Www.Example.Com:80":   "web-1",
		"api.acme.test":        "api-1",
	} {
		if code, body := g.mustGet(host, "/"); code != 200 || body != want {
			t.Errorf("Host %s: %d %q, want 200 %q", host, code, body, want)
		}
	}

	code, body := g.mustGet("nope.acme.test:8080", "/")
	if code != 404 || !strings.Contains(body, "No app at nope.acme.test<") || !strings.Contains(body, "Upscale") {
		t.Errorf("unknown host: %d %q", code, body)
	}
	// Raw, since net/http refuses to send such a Host.
	c, err := net.Dial("tcp", g.cfg.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x<script>\"y\r\nConnection: close\r\n\r\n")
	raw, _ := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(raw), "HTTP/1.1 404") || strings.Contains(string(raw), "<script>") || !strings.Contains(string(raw), "No app at x_script__y<") {
		t.Errorf("hostile host: %q", raw)
	}
	code, body = g.mustGet("empty.acme.test", "/")
	if code != 503 || !strings.Contains(body, "acme/empty is not running") || strings.Contains(strings.ToLower(body), "haproxy") {
		t.Errorf("app without servers: %d %q", code, body)
	}

	_, body = g.mustGet("Web.acme.test"+port, "/headers")
	for _, want := range []string{
		"X-Forwarded-For: 127.0.0.1\n",
		"X-Forwarded-Proto: http\n",
		"X-Forwarded-Host: Web.acme.test" + port + "\n",
		"X-Forwarded-Port: " + port[1:] + "\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("app got headers %q, want %q", body, want)
		}
	}
	// A client cannot pass itself off as having come over TLS.
	req, _ := http.NewRequest("GET", "http://"+g.cfg.HTTPAddr+"/headers", nil)
	req.Host = "web.acme.test"
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "X-Forwarded-Proto: http\n") {
		t.Errorf("client's X-Forwarded-Proto kept: %q", b)
	}
}

func TestApplyAddsAndRemovesServers(t *testing.T) {
	g := newRig(t, 5*time.Second)
	s1, s2, s3 := newApp(t, "s1"), newApp(t, "s2"), newApp(t, "s3")
	web := Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}}

	web.Servers = servers(s1)
	g.apply(web)
	if got := g.seen("web.acme.test", 6); len(got) != 1 || got["s1"] != 6 {
		t.Errorf("one server: answers %v", got)
	}

	web.Servers = servers(s1, s2, s3)
	g.apply(web)
	if got := g.seen("web.acme.test", 30); len(got) != 3 {
		t.Errorf("three servers: answers %v, want all three", got)
	}

	web.Servers = servers(s2)
	g.apply(web)
	s1.retired.Store(true)
	s3.retired.Store(true)
	if got := g.seen("web.acme.test", 10); len(got) != 1 || got["s2"] != 10 {
		t.Errorf("after removing s1 and s3: answers %v", got)
	}
	if n := s1.late.Load() + s3.late.Load(); n != 0 {
		t.Errorf("removed servers got %d requests", n)
	}

	routes, err := g.r.Routes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []Backend{web}; fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Errorf("Routes = %v, want %v", routes, want)
	}

	// Nothing to do: no reload, no change.
	before := g.procs()
	g.apply(web)
	if after := g.procs(); after.reloads != before.reloads || after.worker != before.worker {
		t.Errorf("an unchanged Apply reloaded HAProxy: %+v -> %+v", before, after)
	}

	// Everything gone: no backend, every host a 404.
	g.apply()
	if code, body := g.mustGet("web.acme.test", "/"); code != 404 {
		t.Errorf("after removing the app: %d %q", code, body)
	}
	if s2.inflight.Load() != 0 {
		t.Error("Apply returned while the removed server had requests in flight")
	}
}

// Custom domains come and go on a running app through the host map alone:
// no reload, and the app's own hostname never stops answering.
func TestHostsAddedAndRemovedWithoutReload(t *testing.T) {
	g := newRig(t, 5*time.Second)
	web, api := newApp(t, "web-1"), newApp(t, "api-1")
	webB := Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(web)}
	apiB := Backend{Name: "acme/api", Hosts: []string{"api.acme.test"}, Servers: servers(api)}
	g.apply(webB, apiB)
	before := g.procs()

	webB.Hosts = []string{"web.acme.test", "www.example.com", "example.com"}
	g.apply(webB, apiB)
	for _, host := range []string{"web.acme.test", "www.example.com", "EXAMPLE.com"} {
		if code, body := g.mustGet(host, "/"); code != 200 || body != "web-1" {
			t.Errorf("Host %s after adding domains: %d %q, want 200 web-1", host, code, body)
		}
	}
	if code, body := g.mustGet("www.example.org", "/"); code != 404 {
		t.Errorf("Host www.example.org: %d %q, want 404", code, body)
	}
	map1, err := os.ReadFile(filepath.Join(g.cfg.Dir, "hosts.map"))
	if err != nil || !strings.Contains(string(map1), "www.example.com acme.web\n") {
		t.Errorf("hosts.map on disk lacks the new host: %q %v", map1, err)
	}

	// The domain moves to another app, and one is dropped.
	webB.Hosts = []string{"web.acme.test", "example.com"}
	apiB.Hosts = []string{"api.acme.test", "www.example.com"}
	g.apply(webB, apiB)
	if code, body := g.mustGet("www.example.com", "/"); code != 200 || body != "api-1" {
		t.Errorf("moved domain: %d %q, want 200 api-1", code, body)
	}
	webB.Hosts = []string{"web.acme.test"}
	g.apply(webB, apiB)
	if code, body := g.mustGet("example.com", "/"); code != 404 || !strings.Contains(body, "No app at example.com<") {
		t.Errorf("removed domain: %d %q, want the 404 page", code, body)
	}
	if code, body := g.mustGet("web.acme.test", "/"); code != 200 || body != "web-1" {
		t.Errorf("own hostname after removing a domain: %d %q", code, body)
	}
	if after := g.procs(); after.reloads != before.reloads || after.worker != before.worker {
		t.Errorf("host changes reloaded HAProxy: %+v -> %+v", before, after)
	}
	routes, err := g.r.Routes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []Backend{apiB, webB}; fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Errorf("Routes = %v, want %v", routes, want)
	}
}

func TestSwitchUnderLoad(t *testing.T) {
	g := newRig(t, 10*time.Second)
	old, next := newApp(t, "old"), newApp(t, "new")
	web := Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(old)}
	g.apply(web)

	l := startLoad(g, "web.acme.test")
	run(500 * time.Millisecond)
	// A slow request is in flight on the old server when the switch starts.
	slow := make(chan string, 1)
	go func() {
		code, body, err := g.get("web.acme.test", "/slower")
		slow <- fmt.Sprint(code, " ", body, " ", err)
	}()
	waitFor(t, "the slow request on old", func() bool { return old.slower.Load() > 0 })
	web.Servers = servers(next)
	g.apply(web)
	old.retired.Store(true)
	if old.inflight.Load() != 0 {
		t.Error("Apply returned while the old server had requests in flight")
	}
	run(1500 * time.Millisecond)
	l.finish(t)

	if got := <-slow; got != "200 old <nil>" {
		t.Errorf("slow request in flight during the switch: %s", got)
	}
	if n := old.late.Load(); n != 0 {
		t.Errorf("old server got %d requests after it was removed", n)
	}
	if got := g.seen("web.acme.test", 4); got["new"] != 4 {
		t.Errorf("after the switch: %v", got)
	}
}

// A lost server (its host is gone) leaves at once: Apply does not wait
// for what it has in flight, which would never finish, and cuts it.
func TestLostServerIsCutAtOnce(t *testing.T) {
	g := newRig(t, 10*time.Second)
	old, next := newApp(t, "old"), newApp(t, "new")
	web := Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(old)}
	g.apply(web)
	slow := make(chan string, 1)
	go func() {
		code, body, err := g.get("web.acme.test", "/slower")
		slow <- fmt.Sprint(code, " ", body, " ", err)
	}()
	waitFor(t, "the slow request on old", func() bool { return old.slower.Load() > 0 })
	web.Servers, web.Lost = servers(next), []string{"old", "never-there"}
	g.apply(web)
	if old.slower.Load() == 0 {
		t.Error("Apply waited for the lost server's request to finish")
	}
	if got := <-slow; got == "200 old <nil>" {
		t.Errorf("the lost server's request was not cut: %s", got)
	}
	if got := g.seen("web.acme.test", 4); got["new"] != 4 {
		t.Errorf("after the switch: %v", got)
	}
	web.Lost = nil
	routes, err := g.r.Routes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := []Backend{web}; fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Errorf("Routes = %v, want %v", routes, want)
	}
}

func TestNewBackendUnderLoad(t *testing.T) {
	g := newRig(t, 10*time.Second)
	web, api, blog := newApp(t, "web"), newApp(t, "api"), newApp(t, "blog")
	webBE := Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(web)}
	g.apply(webBE)

	l := startLoad(g, "web.acme.test")
	run(300 * time.Millisecond)
	slow := make(chan string, 1)
	go func() {
		code, body, err := g.get("web.acme.test", "/slower")
		slow <- fmt.Sprint(code, " ", body, " ", err)
	}()
	waitFor(t, "the slow request on web", func() bool { return web.slower.Load() > 0 })
	before := g.procs()
	apiBE := Backend{Name: "acme/api", Hosts: []string{"api.acme.test"}, Servers: servers(api)}
	g.apply(webBE, apiBE)
	if after := g.procs(); after.reloads == before.reloads {
		t.Error("adding a backend did not reload HAProxy")
	}
	if code, body := g.mustGet("api.acme.test", "/"); code != 200 || body != "api" {
		t.Errorf("new backend: %d %q", code, body)
	}
	run(300 * time.Millisecond)
	// More reloads while the load goes on: another app, then one removed.
	blogBE := Backend{Name: "blog/www", Hosts: []string{"blog.example.org"}, Servers: servers(blog)}
	g.apply(webBE, apiBE, blogBE)
	g.apply(webBE, blogBE)
	run(300 * time.Millisecond)
	l.finish(t)

	if got := <-slow; got != "200 web <nil>" {
		t.Errorf("slow request in flight across the reload: %s", got)
	}
	if code, _ := g.mustGet("api.acme.test", "/"); code != 404 {
		t.Errorf("removed backend answers %d", code)
	}
	if code, body := g.mustGet("blog.example.org", "/"); code != 200 || body != "blog" {
		t.Errorf("blog: %d %q", code, body)
	}
	if _, err := os.Stat(filepath.Join(g.cfg.Dir, "errors", "acme.api.503.http")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error page of the removed app left behind: %v", err)
	}
}

func TestReadopt(t *testing.T) {
	g := newRig(t, 5*time.Second)
	s1, s2 := newApp(t, "s1"), newApp(t, "s2")
	web := Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(s1)}
	g.apply(web)
	before := g.procs()

	l := startLoad(g, "web.acme.test")
	run(200 * time.Millisecond)
	// A new process: a fresh Router on the same directory, the old one
	// simply abandoned as when the Upscale server restarts.
	r2, err := Start(t.Context(), g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.r = r2
	if after := g.procs(); after.masterPID != before.masterPID || after.reloads != before.reloads {
		t.Errorf("adoption restarted or reloaded HAProxy: %+v -> %+v", before, after)
	}
	routes, err := r2.Routes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(routes) != fmt.Sprint([]Backend{web}) {
		t.Errorf("adopted routes %v, want %v", routes, []Backend{web})
	}
	web.Servers = servers(s1, s2)
	g.apply(web)
	run(200 * time.Millisecond)

	// A process with a different setting reloads, keeping every route.
	cfg := g.cfg
	cfg.DrainTimeout = 7 * time.Second
	r3, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.r = r3
	if after := g.procs(); after.masterPID != before.masterPID || after.reloads == before.reloads {
		t.Errorf("a changed configuration was not reloaded in place: %+v -> %+v", before, after)
	}
	run(200 * time.Millisecond)
	l.finish(t)

	if got := g.seen("web.acme.test", 20); len(got) != 2 {
		t.Errorf("after adoption: answers %v, want s1 and s2", got)
	}
	if cfgText, _ := os.ReadFile(filepath.Join(cfg.Dir, "haproxy.cfg")); !strings.Contains(string(cfgText), "hard-stop-after 7000ms") {
		t.Error("the adopting process's configuration was not written")
	}
}

func TestStopLeavesNothing(t *testing.T) {
	g := newRig(t, time.Second)
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(newApp(t, "s1"))})
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}}, Backend{Name: "acme/api"}) // a reload
	if pids := haproxyPIDs(g.cfg.Dir); len(pids) < 2 {
		t.Fatalf("want a master and a worker running, got %v", pids)
	}
	if err := g.r.Stop(); err != nil {
		t.Fatal(err)
	}
	if pids := haproxyPIDs(g.cfg.Dir); len(pids) > 0 {
		t.Errorf("processes left after Stop: %v", pids)
	}
	l, err := net.Listen("tcp", g.cfg.HTTPAddr)
	if err != nil {
		t.Errorf("port still taken after Stop: %v", err)
	} else {
		l.Close()
	}
	if err := g.r.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	// Apply after a crash (here: a Stop) starts HAProxy again.
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}})
	if code, _ := g.mustGet("web.acme.test", "/"); code != 503 {
		t.Errorf("after restart: %d", code)
	}
}

func TestStartPortTaken(t *testing.T) {
	needHAProxy(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := Config{Dir: testDir(t), HTTPAddr: l.Addr().String()}
	t.Cleanup(func() { stopDir(t, cfg) })
	_, err = Start(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("Start on a taken port: %v", err)
	}
	if pids := haproxyPIDs(cfg.Dir); len(pids) > 0 {
		t.Errorf("failed Start left processes %v", pids)
	}
}

func TestConcurrentApply(t *testing.T) {
	g := newRig(t, 5*time.Second)
	apps := []*app{newApp(t, "a"), newApp(t, "b"), newApp(t, "c")}
	// A second Router on the same directory stands for a second process:
	// the directory lock, not the mutex, keeps the two apart.
	r2, err := Start(t.Context(), g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	routers := []*Router{g.r, r2}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			bs := []Backend{{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(apps[i%3])}}
			if i%2 == 0 {
				bs = append(bs, Backend{Name: "acme/api", Hosts: []string{"api.acme.test"}, Servers: servers(apps[(i+1)%3])})
			}
			if err := routers[i%2].Apply(context.Background(), bs); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	routes, err := g.r.Routes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) == 0 || routes[0].Name != "acme/api" && routes[0].Name != "acme/web" {
		t.Errorf("routes after concurrent Applies: %v", routes)
	}
}

func TestDirPermissions(t *testing.T) {
	g := newRig(t, time.Second)
	for _, name := range []string{"", "master.sock", "admin.sock"} {
		fi, err := os.Stat(filepath.Join(g.cfg.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o700 && perm != 0o600 {
			t.Errorf("%s: mode %v", filepath.Join(g.cfg.Dir, name), perm)
		}
		if name != "" && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is open to others: %v", name, fi.Mode())
		}
	}
	if fi, _ := os.Stat(g.cfg.Dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", fi.Mode().Perm())
	}
}

// HAProxy's worker dies (a crash, the OOM killer, a stray kill): every app
// stayed down until the next deploy. Watch starts it again with the routes
// of the last Apply, without one.
func TestWatchRestartsADeadHAProxy(t *testing.T) {
	g := newRig(t, time.Second)
	s1, s2 := newApp(t, "s1"), newApp(t, "s2")
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(s1)},
		Backend{Name: "acme/api", Hosts: []string{"api.acme.test"}, Servers: servers(s2)})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { g.r.Watch(ctx, 100*time.Millisecond); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	for round, victim := range []string{"worker", "master and worker"} {
		p := g.procs()
		if victim == "worker" {
			syscall.Kill(p.worker, syscall.SIGKILL)
		} else {
			syscall.Kill(p.masterPID, syscall.SIGKILL)
			syscall.Kill(p.worker, syscall.SIGKILL)
		}
		waitFor(t, "the "+victim+" to die", func() bool { return !slices.Contains(haproxyPIDs(g.cfg.Dir), p.worker) })
		waitFor(t, "the apps answering again after the "+victim+" was killed", func() bool {
			c1, b1, err1 := g.get("web.acme.test", "/")
			c2, b2, err2 := g.get("api.acme.test", "/")
			return err1 == nil && err2 == nil && c1 == 200 && b1 == "s1" && c2 == 200 && b2 == "s2"
		})
		// The listener answers a moment before Watch has seen the master
		// up and counted the restart.
		var st Status
		waitFor(t, "the status to show the restart", func() bool {
			st = g.r.Status(t.Context())
			return st.Running && st.Restarts == round+1
		})
		if st.Worker == p.worker || st.LastRestart.IsZero() {
			t.Errorf("after killing the %s (worker %d): status %+v, want running on a new worker, %d restarts", victim, p.worker, st, round+1)
		}
	}
	// The routes are still the router's own: the next change applies on top.
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(s2)})
	if code, body := g.mustGet("web.acme.test", "/"); code != 200 || body != "s2" {
		t.Errorf("after a change: %d %q", code, body)
	}
	if code, _ := g.mustGet("api.acme.test", "/"); code != 404 {
		t.Errorf("removed app answers %d, want 404", code)
	}
}

// HAProxy serves with the short scheduler slice, its worker after a
// reload too (inherited from the master), so that a request preempts a
// neighbour's deploy work at once.
func TestHAProxyRunsWithTheShortSlice(t *testing.T) {
	if !schedslice.Supported() {
		t.Skip("this kernel keeps no custom slices")
	}
	g := newRig(t, time.Second)
	g.apply(Backend{Name: "acme/web", Hosts: []string{"web.acme.test"}, Servers: servers(newApp(t, "web-1"))}) // a new app: a reload
	pids := haproxyPIDs(g.cfg.Dir)
	if len(pids) < 2 {
		t.Fatalf("haproxy processes for %s: %v, want a master and a worker", g.cfg.Dir, pids)
	}
	for _, pid := range pids {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			if got, err := schedslice.Slice(tid); err == nil && got != schedslice.Short {
				t.Errorf("haproxy pid %d thread %d: slice %v, want %v", pid, tid, got, schedslice.Short)
			}
		}
	}
}
