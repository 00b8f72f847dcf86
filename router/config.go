package router

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/upscalehq/upscale/names"
)

//go:embed haproxy.cfg.tmpl
var cfgText string

//go:embed page.html.tmpl
var pageText string

var (
	cfgTmpl  = texttemplate.Must(texttemplate.New("haproxy.cfg").Parse(cfgText))
	pageTmpl = template.Must(template.New("page").Parse(pageText))

	// Paths go into haproxy.cfg unquoted and into runtime API command lines,
	// where spaces, quotes, '#', '$', ',' and ')' all mean something.
	dirPattern        = regexp.MustCompile(`^/[A-Za-z0-9/._+-]*$`)
	serverNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	hostLabel         = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// maxSocketPath is sun_path less its terminating NUL: a longer path cannot
// be bound, and HAProxy would only say so at startup.
const maxSocketPath = 107

// notFoundBackend has no dot, so it can never collide with an app's ID.
const notFoundBackend = "upscale_404"

// backendID turns "ns/app" into the HAProxy backend name "ns.app": names
// never contain dots, so the mapping is reversible (appFromID).
func backendID(app names.App) string { return app.Namespace + "." + app.Name }

func appFromID(id string) (names.App, bool) {
	ns, name, ok := strings.Cut(id, ".")
	if !ok {
		return names.App{}, false
	}
	app, err := names.ParseApp(ns + "/" + name)
	return app, err == nil
}

// checkHost accepts a lowercase DNS name: what HAProxy compares against the
// lowercased Host header, and safe in a map file and a command line.
func checkHost(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("invalid host %s: want a DNS name of at most 253 characters", names.Quote(h))
	}
	for _, l := range strings.Split(h, ".") {
		if !hostLabel.MatchString(l) {
			return fmt.Errorf("invalid host %s: want lowercase letters, digits, dashes and dots", names.Quote(h))
		}
	}
	return nil
}

// normalAddr returns the one spelling HAProxy reports back for an address,
// so that desired and running servers compare equal.
func normalAddr(s string) (string, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return "", fmt.Errorf("invalid server address %s: want IP:PORT", names.Quote(s))
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
}

// bindAddr validates a listen address (field names it in errors): an
// optional IP literal and a port.
func bindAddr(field, s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err == nil {
		var p int
		p, err = strconv.Atoi(port)
		if err == nil && (p < 1 || p > 65535) {
			err = fmt.Errorf("port out of range")
		}
	}
	if err == nil && host != "" {
		var a netip.Addr
		if a, err = netip.ParseAddr(host); err == nil && a.Zone() != "" {
			err = fmt.Errorf("zones are not supported")
		}
	}
	if err != nil {
		return "", fmt.Errorf("invalid %s %s: want [IP]:PORT", field, names.Quote(s))
	}
	return net.JoinHostPort(host, port), nil
}

// state is what HAProxy routes, desired or read back: backends by ID and
// the host map.
type state struct {
	backends map[string]*backendState
	hosts    map[string]string // host -> backend ID
	lost     map[string]bool   // "ID/server" to cut rather than drain (Backend.Lost)
}

type backendState struct {
	app     names.App
	servers map[string]serverState // by server name
	policy  policy
}

// policy is an app's HTTPS policy, kept in two maps keyed by backend ID
// (noredirect.map, hsts.map) so that it changes without a reload and is
// read back like the hosts.
type policy struct {
	noRedirect bool
	hsts       int64 // max-age in seconds; 0: no header
}

// maxHSTS bounds max-age at two years, what the HSTS preload list asks
// for: more only makes a mistake last longer.
const maxHSTS = 2 * 365 * 24 * time.Hour

type serverState struct {
	addr  string
	admin int // srv_admin_state bits; 0 means ready for traffic
}

func newState() *state {
	return &state{backends: map[string]*backendState{}, hosts: map[string]string{}, lost: map[string]bool{}}
}

// desired validates the caller's backends: nothing reaches HAProxy unless
// all of it is valid.
func desired(backends []Backend) (*state, error) {
	st := newState()
	for _, b := range backends {
		app, err := names.ParseApp(b.Name)
		if err != nil {
			return nil, fmt.Errorf("backend: %w", err)
		}
		id := backendID(app)
		if _, dup := st.backends[id]; dup {
			return nil, fmt.Errorf("backend %s given twice", b.Name)
		}
		if b.HSTSMaxAge < 0 || b.HSTSMaxAge%time.Second != 0 || b.HSTSMaxAge > maxHSTS {
			return nil, fmt.Errorf("backend %s: invalid HSTS max-age %v: want whole seconds, at most %v", b.Name, b.HSTSMaxAge, maxHSTS)
		}
		bs := &backendState{app: app, servers: map[string]serverState{},
			policy: policy{noRedirect: b.NoHTTPSRedirect, hsts: int64(b.HSTSMaxAge / time.Second)}}
		st.backends[id] = bs
		for _, h := range b.Hosts {
			if err := checkHost(h); err != nil {
				return nil, fmt.Errorf("backend %s: %w", b.Name, err)
			}
			if other, dup := st.hosts[h]; dup {
				return nil, fmt.Errorf("host %s is routed to both %s and %s", h, st.backends[other].app, b.Name)
			}
			st.hosts[h] = id
		}
		for _, s := range b.Servers {
			if !serverNamePattern.MatchString(s.Name) {
				return nil, fmt.Errorf("backend %s: invalid server name %s: want 1-64 of [A-Za-z0-9_.-]", b.Name, names.Quote(s.Name))
			}
			if _, dup := bs.servers[s.Name]; dup {
				return nil, fmt.Errorf("backend %s: server %s given twice", b.Name, s.Name)
			}
			addr, err := normalAddr(s.Addr)
			if err != nil {
				return nil, fmt.Errorf("backend %s: server %s: %w", b.Name, s.Name, err)
			}
			bs.servers[s.Name] = serverState{addr: addr}
		}
		for _, name := range b.Lost {
			st.lost[id+"/"+name] = true
		}
	}
	return st, nil
}

// list turns a state into the API's form, sorted, ready servers only.
func (st *state) list() []Backend {
	out := []Backend{}
	for id, bs := range st.backends {
		b := Backend{Name: bs.app.String(), Hosts: []string{}, Servers: []Server{},
			NoHTTPSRedirect: bs.policy.noRedirect, HSTSMaxAge: time.Duration(bs.policy.hsts) * time.Second}
		for h, to := range st.hosts {
			if to == id {
				b.Hosts = append(b.Hosts, h)
			}
		}
		for name, s := range bs.servers {
			if s.admin == 0 {
				b.Servers = append(b.Servers, Server{Name: name, Addr: s.addr})
			}
		}
		slices.Sort(b.Hosts)
		slices.SortFunc(b.Servers, func(x, y Server) int { return strings.Compare(x.Name, y.Name) })
		out = append(out, b)
	}
	slices.SortFunc(out, func(x, y Backend) int { return strings.Compare(x.Name, y.Name) })
	return out
}

type cfgData struct {
	Dir        string
	Bind       string
	HTTPSBind  string // "" without HTTPS
	HTTPSPort  string // ":PORT" in redirects, "" for 443
	ACMEAddr   string // "" without an ACME handler
	HardStopMS int64
	Backends   []cfgBackend
}

type cfgBackend struct {
	ID      string
	Servers []Server
}

// renderConfig writes haproxy.cfg for st. Servers not ready for traffic are
// left out: a reload is the moment they stop existing.
func (r *Router) renderConfig(st *state) []byte {
	d := cfgData{Dir: r.cfg.Dir, Bind: r.bind, HTTPSBind: r.httpsBind, ACMEAddr: r.acmeAddr, HardStopMS: r.cfg.DrainTimeout.Milliseconds()}
	if _, port, _ := net.SplitHostPort(r.httpsBind); port != "443" && port != "" {
		d.HTTPSPort = ":" + port
	}
	for _, b := range st.list() {
		app, _ := names.ParseApp(b.Name)
		d.Backends = append(d.Backends, cfgBackend{ID: backendID(app), Servers: b.Servers})
	}
	var buf bytes.Buffer
	if err := cfgTmpl.Execute(&buf, d); err != nil {
		panic(err) // the template and its data are ours: a failure is a bug
	}
	return buf.Bytes()
}

func renderMap(st *state) []byte { return renderPairs(st.hosts) }

// renderPolicy writes the two policy maps: the apps that keep plain HTTP,
// and the apps' HSTS max-age.
func renderPolicy(st *state) (noRedirect, hsts []byte) {
	nr, h := policyMaps(st)
	return renderPairs(nr), renderPairs(h)
}

// renderPairs writes a map file: "KEY VALUE" a line, sorted.
func renderPairs(m map[string]string) []byte {
	var buf bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&buf, "%s %s\n", k, m[k])
	}
	return buf.Bytes()
}

type page struct{ Title, Heading, Detail string }

func renderPage(p page) []byte {
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, p); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// errorFile is a raw HTTP response, the format of HAProxy's errorfile.
func errorFile(status int, p page) []byte {
	body := renderPage(p)
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: %d\r\n\r\n",
		status, statusText(status), len(body))
	return append([]byte(head), body...)
}

func statusText(code int) string {
	return map[int]string{502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}[code]
}

// pages returns every error page st needs, by file name under errors/.
func pages(st *state) map[string][]byte {
	out := map[string][]byte{
		// HAProxy fills the placeholder per request (lf-file): the page must
		// hold no other '%'.
		"404.html": renderPage(page{"No app here", "No app at %[var(txn.shown)]", "Check the address, or create the app and deploy it."}),
		"502.http": errorFile(502, page{"Bad gateway", "The app did not answer properly", "It may be restarting; try again in a moment."}),
		"503.http": errorFile(503, page{"Unavailable", "This app is not running", "Try again in a moment."}),
		"504.http": errorFile(504, page{"Timeout", "The app took too long to answer", "Try again in a moment."}),
	}
	for id, bs := range st.backends {
		out[id+".503.http"] = errorFile(503, page{bs.app.String() + " is not running", bs.app.String() + " is not running", "No instance of this app is up. If you own it, deploy it or scale it up."})
	}
	return out
}

// writeFile replaces path atomically, and not at all when unchanged, so
// that HAProxy never reads half a file.
func writeFile(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
