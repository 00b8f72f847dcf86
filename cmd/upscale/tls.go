package main

// HTTPS: the certificate engine (certs) wired to the router: its HTTP-01
// handler served where the router forwards /.well-known/acme-challenge/,
// every certificate it has installed into HAProxy, and the names it
// manages kept to the hostnames routed (docs/https.md).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/upscalehq/upscale/certs"
	"github.com/upscalehq/upscale/router"
	"github.com/upscalehq/upscale/store"
)

// tlsOptions are the server's HTTPS flags.
type tlsOptions struct {
	HTTPS      string // listen address; "" for none
	Mode       string // --tls; "" for the domain's default
	Directory  string
	Email      string
	CARoot     string
	ACMEListen string // where the HTTP-01 handler listens, for the router
	DNS        certs.RFC2136
	DNSSecret  string // file holding the TSIG secret
}

func (o *tlsOptions) register(f *pflag.FlagSet) {
	f.StringVar(&o.HTTPS, "https", ":443", "HTTPS listen address of the router; empty for plain HTTP only")
	f.StringVar(&o.Mode, "tls", "", "where certificates come from: off, acme, internal or manual (default: internal for a .localhost or .test domain, acme otherwise)")
	f.StringVar(&o.Directory, "acme-directory", certs.LetsEncrypt, "ACME directory URL of the CA")
	f.StringVar(&o.Email, "acme-email", "", "contact address of the ACME account (optional)")
	f.StringVar(&o.CARoot, "acme-ca-root", "", "PEM file of roots to trust when talking to the ACME CA (a test CA such as Pebble)")
	f.StringVar(&o.ACMEListen, "acme-listen", "127.0.0.1:0", "where the server answers ACME HTTP-01 challenges, which HAProxy forwards to it")
	f.StringVar(&o.DNS.Server, "dns-rfc2136-server", "", "for wildcard certificates (DNS-01): HOST:PORT of the zone's primary that takes RFC 2136 updates")
	f.StringVar(&o.DNS.Zone, "dns-rfc2136-zone", "", "the zone holding the platform domain, e.g. example.com")
	f.StringVar(&o.DNS.TSIGName, "dns-tsig-name", "", "TSIG key name the updates are signed with")
	f.StringVar(&o.DNSSecret, "dns-tsig-secret-file", "", "file holding the TSIG key's secret (base64)")
	f.StringVar(&o.DNS.TSIGAlg, "dns-tsig-algorithm", "hmac-sha256", "TSIG algorithm")
}

// mode is --tls, or the default for domain.
func (o *tlsOptions) mode(domain string) (certs.Mode, error) {
	if o.HTTPS == "" {
		return certs.ModeOff, nil
	}
	if o.Mode == "" {
		return certs.DefaultMode(domain), nil
	}
	return certs.ParseMode(o.Mode)
}

// https is the certificate engine of a server, with what it needs to run.
type https struct {
	mode     certs.Mode
	engine   *certs.Engine
	acmeAddr string // the HTTP-01 handler's address, for the router
	port     string // public HTTPS port, for URLs
	srv      *http.Server
	names    *tlsNames
}

// startHTTPS builds the engine and serves its HTTP-01 handler; nil when
// HTTPS is off. The router and OnCert are tied in by attach.
func startHTTPS(ctx context.Context, o *tlsOptions, domain, data string, st store.Store, log *slog.Logger) (*https, error) {
	mode, err := o.mode(domain)
	if err != nil || mode == certs.ModeOff {
		return nil, err
	}
	_, port, err := net.SplitHostPort(o.HTTPS)
	if err != nil {
		return nil, fmt.Errorf("--https %q: %w", o.HTTPS, err)
	}
	ln, err := net.Listen("tcp", o.ACMEListen)
	if err != nil {
		return nil, fmt.Errorf("--acme-listen: %w", err)
	}
	h := &https{mode: mode, acmeAddr: ln.Addr().String(), port: port}
	opts := certs.Options{Mode: mode, Store: st, Log: log, Directory: o.Directory, Email: o.Email, CARootFile: o.CARoot,
		HTTPChallengeAddr: h.acmeAddr, RootFile: filepath.Join(data, "tls", "root.crt")}
	if o.DNS.Server != "" || o.DNS.Zone != "" {
		dns := o.DNS
		if o.DNSSecret != "" {
			b, err := os.ReadFile(o.DNSSecret)
			if err != nil {
				ln.Close()
				return nil, fmt.Errorf("--dns-tsig-secret-file: %w", err)
			}
			dns.TSIGSecret = strings.TrimSpace(string(b))
		}
		opts.DNS = &dns
	}
	if err := os.MkdirAll(filepath.Join(data, "tls"), 0o700); err != nil {
		ln.Close()
		return nil, err
	}
	names := &tlsNames{domain: domain, wildcards: opts.DNS != nil && mode == certs.ModeACME, log: log}
	opts.OnCert = names.install
	if h.engine, err = certs.New(ctx, opts); err != nil {
		ln.Close()
		return nil, err
	}
	names.engine, h.names = h.engine, names
	h.srv = &http.Server{Handler: h.engine.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go h.srv.Serve(ln)
	return h, nil
}

// attach gives the engine the router its certificates go to.
func (h *https) attach(rt *router.Router) {
	h.names.mu.Lock()
	h.names.rt = rt
	h.names.mu.Unlock()
}

// announce says where HTTPS is and, with the internal CA, where its root
// is to be trusted.
func (h *https) announce(log *slog.Logger, domain string) {
	log.Info("HTTPS on", "tls", string(h.mode), "port", h.port)
	if root := h.engine.RootFile(); root != "" {
		url := "https://APP.NS." + domain
		if h.port != "443" {
			url += ":" + h.port
		}
		log.Info(fmt.Sprintf("certificates of names no public CA signs come from Upscale's own CA; trust its root: curl --cacert %s %s/", root, url), "root", root)
	}
}

// run works until ctx ends.
func (h *https) run(ctx context.Context) error {
	defer h.srv.Close()
	return h.engine.Run(ctx)
}

// tlsNames keeps the names the engine manages to the hostnames routed
// (deploy.Certs), maps a hostname to the name its certificate is managed
// under (backend.Certs), and installs what the engine delivers.
type tlsNames struct {
	engine    *certs.Engine
	domain    string
	wildcards bool // a namespace's apps share its *.NS.DOMAIN (DNS-01)
	log       *slog.Logger

	mu    sync.Mutex
	rt    *router.Router
	known map[string]bool // names managed; nil until the first Want
}

// NameFor is host's name, or its namespace's wildcard when wildcards are
// issued and host is an app's own APP.NS.DOMAIN.
func (n *tlsNames) NameFor(host string) string {
	if !n.wildcards {
		return host
	}
	if rest, ok := strings.CutSuffix(host, "."+n.domain); ok && strings.Count(rest, ".") == 1 {
		_, ns, _ := strings.Cut(rest, ".")
		return "*." + ns + "." + n.domain
	}
	return host
}

// Want manages the names of hosts and forgets (and uninstalls) those no
// longer routed.
func (n *tlsNames) Want(ctx context.Context, hosts []string) {
	// A host keeps a certificate brought for it even when its name is
	// managed under the wildcard.
	want, keep := map[string]bool{}, map[string]bool{}
	for _, h := range hosts {
		want[n.NameFor(h)], keep[n.NameFor(h)], keep[h] = true, true, true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.known == nil {
		n.known = map[string]bool{}
		list, err := n.engine.Status(ctx)
		if err != nil {
			n.log.Warn("certificates: reading their status", "err", err)
			n.known = nil
			return
		}
		for _, st := range list {
			n.known[st.Name] = true
		}
	}
	var add []string
	for name := range want {
		if !n.known[name] {
			add = append(add, name)
		}
	}
	slices.Sort(add)
	if len(add) > 0 {
		if err := n.engine.Manage(ctx, add...); err != nil {
			n.log.Warn("certificates: asking for them", "names", add, "err", err)
		} else {
			for _, name := range add {
				n.known[name] = true
			}
		}
	}
	for name := range n.known {
		if keep[name] {
			continue
		}
		if err := n.engine.Forget(ctx, name); err != nil && !errors.Is(err, store.ErrNotFound) {
			n.log.Warn("certificates: forgetting one", "name", name, "err", err)
			continue
		}
		delete(n.known, name)
		if n.rt != nil {
			if err := n.rt.RemoveCert(ctx, name); err != nil && !strings.Contains(err.Error(), "no certificate is installed") {
				n.log.Warn("certificates: uninstalling one", "name", name, "err", err)
			}
		}
	}
}

// install hands a certificate to the router (certs.Options.OnCert).
func (n *tlsNames) install(c certs.Cert) {
	n.mu.Lock()
	rt := n.rt
	n.mu.Unlock()
	if rt == nil {
		n.log.Error("certificate ready before the router", "cert", c)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.InstallCert(ctx, []string{c.Name}, slices.Concat(c.ChainPEM, []byte("\n"), c.KeyPEM)); err != nil {
		n.log.Error("installing a certificate", "cert", c, "err", err)
	}
}

func (n *tlsNames) Manage(ctx context.Context, names ...string) error {
	if err := n.engine.Manage(ctx, names...); err != nil {
		return err
	}
	n.mu.Lock()
	if n.known != nil {
		for _, name := range names {
			n.known[name] = true
		}
	}
	n.mu.Unlock()
	return nil
}

func (n *tlsNames) Renew(ctx context.Context, name string) error { return n.engine.Renew(ctx, name) }

func (n *tlsNames) AddCert(ctx context.Context, name string, pem []byte) (time.Time, error) {
	c, err := n.engine.AddCert(ctx, name, pem)
	return c.NotAfter, err
}

func (n *tlsNames) RemoveCert(ctx context.Context, name string) error {
	return n.engine.RemoveCert(ctx, name)
}

// httpsOff is the certificate engine of a server without HTTPS: the
// certs commands say so rather than that they need a server.
type httpsOff struct{}

var errHTTPSOff = errors.New("HTTPS is off on this server (--tls off, or --https \"\"): no certificates are managed")

func (httpsOff) NameFor(host string) string               { return host }
func (httpsOff) Manage(context.Context, ...string) error  { return nil }
func (httpsOff) Renew(context.Context, string) error      { return errHTTPSOff }
func (httpsOff) RemoveCert(context.Context, string) error { return errHTTPSOff }
func (httpsOff) AddCert(context.Context, string, []byte) (time.Time, error) {
	return time.Time{}, errHTTPSOff
}
