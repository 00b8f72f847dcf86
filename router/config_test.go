package router

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func TestDesiredRejects(t *testing.T) {
	ok := Server{Name: "acme-web-v3-1", Addr: "10.77.0.5:8080"}
	for name, bs := range map[string][]Backend{
		"bad app name":       {{Name: "acme"}},
		"app name injection": {{Name: "acme/web\n    server x 1.2.3.4:80"}},
		"uppercase app":      {{Name: "Acme/web"}},
		"duplicate backend":  {{Name: "acme/web"}, {Name: "acme/web"}},
		"uppercase host":     {{Name: "acme/web", Hosts: []string{"Web.acme.test"}}},
		"host with port":     {{Name: "acme/web", Hosts: []string{"web.acme.test:80"}}},
		"host with space":    {{Name: "acme/web", Hosts: []string{"web.acme.test x"}}},
		"host with ;":        {{Name: "acme/web", Hosts: []string{"a;show"}}},
		"empty host":         {{Name: "acme/web", Hosts: []string{""}}},
		"empty label":        {{Name: "acme/web", Hosts: []string{"web..test"}}},
		"dash label":         {{Name: "acme/web", Hosts: []string{"-web.test"}}},
		"long label":         {{Name: "acme/web", Hosts: []string{strings.Repeat("a", 64) + ".test"}}},
		"wildcard":           {{Name: "acme/web", Hosts: []string{"*.acme.test"}}},
		"host twice":         {{Name: "acme/web", Hosts: []string{"a.test"}}, {Name: "acme/api", Hosts: []string{"a.test"}}},
		"server name space":  {{Name: "acme/web", Servers: []Server{{Name: "a b", Addr: ok.Addr}}}},
		"server name empty":  {{Name: "acme/web", Servers: []Server{{Addr: ok.Addr}}}},
		"server name slash":  {{Name: "acme/web", Servers: []Server{{Name: "a/b", Addr: ok.Addr}}}},
		"server twice":       {{Name: "acme/web", Servers: []Server{ok, ok}}},
		"hostname address":   {{Name: "acme/web", Servers: []Server{{Name: "a", Addr: "localhost:80"}}}},
		"no port":            {{Name: "acme/web", Servers: []Server{{Name: "a", Addr: "10.0.0.1"}}}},
		"port 0":             {{Name: "acme/web", Servers: []Server{{Name: "a", Addr: "10.0.0.1:0"}}}},
		"address option":     {{Name: "acme/web", Servers: []Server{{Name: "a", Addr: "10.0.0.1:80 backup"}}}},
		"negative HSTS":      {{Name: "acme/web", HSTSMaxAge: -time.Second}},
		"HSTS fraction":      {{Name: "acme/web", HSTSMaxAge: 1500 * time.Millisecond}},
		"HSTS over 2 years":  {{Name: "acme/web", HSTSMaxAge: maxHSTS + time.Second}},
	} {
		if _, err := desired(bs); err == nil {
			t.Errorf("%s: accepted %+v", name, bs)
		}
	}
}

func TestDesiredNormalizes(t *testing.T) {
	st, err := desired([]Backend{{
		Name:    "acme/web",
		Hosts:   []string{"web.acme.test", "xn--bcher-kva.example"},
		Servers: []Server{{Name: "v6", Addr: "[fd00::0005]:8080"}, {Name: "mapped", Addr: "[::ffff:10.0.0.1]:80"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	b := st.backends["acme.web"]
	if b == nil || b.servers["v6"].addr != "[fd00::5]:8080" || b.servers["mapped"].addr != "10.0.0.1:80" {
		t.Errorf("servers %+v", b)
	}
	if len(st.hosts) != 2 {
		t.Errorf("hosts %v", st.hosts)
	}
}

func TestNewRouterRejects(t *testing.T) {
	for _, cfg := range []Config{
		{HTTPAddr: ":80"},
		{Dir: "/tmp/a b", HTTPAddr: ":80"},
		{Dir: "/tmp/a$b", HTTPAddr: ":80"},
		{Dir: "/tmp/" + strings.Repeat("d", 100), HTTPAddr: ":80"},
		{Dir: "/tmp/x", HTTPAddr: "localhost:80"},
		{Dir: "/tmp/x", HTTPAddr: "80"},
		{Dir: "/tmp/x", HTTPAddr: ":http"},
		{Dir: "/tmp/x", HTTPAddr: ":70000"},
		{Dir: "/tmp/x", HTTPAddr: ":80 ssl"},
		{Dir: "/tmp/x", HTTPAddr: ":80", Binary: "/nonexistent/haproxy"},
		{Dir: "/tmp/x", HTTPAddr: ":80", HTTPSAddr: "443"},
		{Dir: "/tmp/x", HTTPAddr: ":80", HTTPSAddr: ":443 ssl crt /etc/passwd"},
		{Dir: "/tmp/x", HTTPAddr: ":80", ACMEAddr: "localhost:8402"},
		{Dir: "/tmp/x", HTTPAddr: ":80", ACMEAddr: ":8402"},
		{Dir: "/tmp/x", HTTPAddr: ":80", ACMEAddr: "127.0.0.1:8402 backup"},
	} {
		if cfg.Binary == "" {
			cfg.Binary = "/bin/true" // validation only: never run
		}
		if _, err := newRouter(cfg); err == nil {
			t.Errorf("accepted %+v", cfg)
		}
	}
}

func TestBackendIDRoundTrip(t *testing.T) {
	st, err := desired([]Backend{{Name: "my-team/web-2"}})
	if err != nil {
		t.Fatal(err)
	}
	for id, b := range st.backends {
		app, ok := appFromID(id)
		if !ok || app != b.app {
			t.Errorf("%s -> %v, %v", id, app, ok)
		}
	}
	if _, ok := appFromID(notFoundBackend); ok {
		t.Errorf("%s parses as an app", notFoundBackend)
	}
}

// The generated configuration, read by people: testdata/haproxy.cfg.golden.
// go test ./router -run Golden -update rewrites it.
func TestConfigGolden(t *testing.T) {
	st, err := desired([]Backend{
		{Name: "acme/web", Hosts: []string{"web.acme.upscale.example", "www.acme.com"}, Servers: []Server{
			{Name: "acme-web-v3-1", Addr: "10.77.0.5:8080"}, {Name: "acme-web-v3-2", Addr: "10.77.1.7:8080"},
		}},
		{Name: "acme/api", Hosts: []string{"api.acme.upscale.example"}, NoHTTPSRedirect: true, HSTSMaxAge: 365 * 24 * time.Hour},
		{Name: "acme/docs", Hosts: []string{"docs.acme.upscale.example"}, HSTSMaxAge: 300 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &Router{cfg: Config{Dir: "/var/lib/upscale/router", DrainTimeout: 10 * time.Second}, bind: ":80", httpsBind: ":443", acmeAddr: "127.0.0.1:8402"}
	checkGolden(t, "haproxy.cfg.golden", r.renderConfig(st))
	checkGolden(t, "hosts.map.golden", renderMap(st))
	noRedirect, hsts := renderPolicy(st)
	checkGolden(t, "noredirect.map.golden", noRedirect)
	checkGolden(t, "hsts.map.golden", hsts)
	p := pages(st)
	checkGolden(t, "404.html.golden", p["404.html"])
	checkGolden(t, "acme.api.503.http.golden", p["acme.api.503.http"])
	if strings.Count(string(p["404.html"]), "%") != 1 {
		t.Error("the 404 page, a log-format file, has a '%' besides its placeholder")
	}
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (go test ./router -run Golden -update):\n%s", name, got)
	}
}
