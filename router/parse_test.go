package router

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// seed reads a fuzz seed's string, so that unit tests check the same real
// HAProxy 2.6 answers the fuzz targets start from.
func seed(t *testing.T, target, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", target, name))
	if err != nil {
		t.Fatal(err)
	}
	s, ok := strings.CutPrefix(string(b), "go test fuzz v1\nstring(")
	if !ok {
		t.Fatalf("%s/%s: not a string seed", target, name)
	}
	s, err = strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(s), ")"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseProc(t *testing.T) {
	p, err := parseProc(seed(t, "FuzzParseProc", "old-workers"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (procs{masterPID: 27350, reloads: 1, worker: 27446, old: []int{27352}}); !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v, want %+v", p, want)
	}
	p, err = parseProc(seed(t, "FuzzParseProc", "failed-reload"))
	if err != nil || p.failed != 1 || p.reloads != 2 || p.worker != 32441 {
		t.Errorf("failed reload: %+v, %v", p, err)
	}
	p, err = parseProc(seed(t, "FuzzParseProc", "no-worker"))
	if err != nil || p.worker != 0 {
		t.Errorf("no worker: %+v, %v", p, err)
	}
	for _, bad := range []string{"", "Unknown command.\n", "# workers\n12 worker 0\n"} {
		if _, err := parseProc(bad); err == nil {
			t.Errorf("parseProc(%q) succeeded", bad)
		}
	}
}

func TestParseServersState(t *testing.T) {
	got, err := parseServersState(seed(t, "FuzzParseServersState", "dynamic-ipv6-drain"))
	if err != nil {
		t.Fatal(err)
	}
	want := []runServer{
		{"acme.web", "s1", serverState{"127.0.0.1:18001", 8}},
		{"acme.web", "s2", serverState{"[::1]:18002", 1}},
		{"acme.web", "s3", serverState{"127.0.0.1:18003", 0}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if got, err := parseServersState(seed(t, "FuzzParseServersState", "no-servers")); err != nil || len(got) != 0 {
		t.Errorf("no servers: %v, %v", got, err)
	}
	for _, bad := range []string{"", "2\n# be_name\n", "1\n# be_name srv_name\n", "No such backend.\n"} {
		if _, err := parseServersState(bad); err == nil {
			t.Errorf("parseServersState(%q) succeeded", bad)
		}
	}
}

func TestParseSessions(t *testing.T) {
	got, err := parseSessions(seed(t, "FuzzParseSessions", "servers"))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"acme.web/s1": 0, "acme.web/s2": 0, "acme.web/s3": 0}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	got, err = parseSessions("# pxname,svname,qcur,qmax,scur\nweb,a,0,0,3\nweb,BACKEND,0,0,3\n")
	if err != nil || !reflect.DeepEqual(got, map[string]int{"web/a": 3}) {
		t.Errorf("got %v, %v", got, err)
	}
}

func TestParseMap(t *testing.T) {
	got, err := parseMap(seed(t, "FuzzParseMap", "duplicate-key"))
	if err != nil {
		t.Fatal(err)
	}
	want := []mapEntry{{"web.acme.localhost", "acme.web"}, {"api.acme.localhost", "acme.api"}, {"api.acme.localhost", "acme.web"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := parseMap("Unknown map identifier. Please use #<id> or <file>.\n"); err == nil {
		t.Error("an error message parsed as a map")
	}
}

func TestParseBackends(t *testing.T) {
	got, err := parseBackends(seed(t, "FuzzParseBackends", "backends"))
	if err != nil || !reflect.DeepEqual(got, []string{"upscale_404", "acme.web"}) {
		t.Errorf("got %v, %v", got, err)
	}
}

func FuzzParseProc(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseProc(s)
		if err != nil {
			return
		}
		if p.masterPID <= 0 || p.worker < 0 {
			t.Errorf("parsed %+v", p)
		}
		for _, pid := range p.old {
			if pid <= 0 {
				t.Errorf("old worker pid %d", pid)
			}
		}
	})
}

func FuzzParseServersState(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		servers, err := parseServersState(s)
		if err != nil {
			return
		}
		for _, srv := range servers {
			// Addresses go back into commands and are compared with
			// normalized desired ones: they must be clean IP:PORT.
			if _, err := netip.ParseAddrPort(srv.addr); err != nil {
				t.Errorf("address %q: %v", srv.addr, err)
			}
			if srv.name == "" || srv.backend == "" || strings.ContainsAny(srv.name+srv.backend, " \t\n") {
				t.Errorf("server %+v", srv)
			}
		}
	})
}

func FuzzParseSessions(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		sess, err := parseSessions(s)
		if err != nil {
			return
		}
		for k, n := range sess {
			if n < 0 {
				t.Errorf("%s: %d sessions", k, n)
			}
		}
	})
}

func FuzzParseMap(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		entries, err := parseMap(s)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.key == "" || e.value == "" || strings.ContainsAny(e.key+e.value, " \t\r\n") {
				t.Errorf("entry %+v", e)
			}
		}
	})
}

func FuzzParseBackends(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		names, err := parseBackends(s)
		if err != nil {
			return
		}
		for _, n := range names {
			if n == "" || strings.ContainsAny(n, " \t\r\n") {
				t.Errorf("backend name %q", n)
			}
		}
	})
}
