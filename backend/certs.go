package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// Certs is the certificate engine as the use cases drive it (see
// certs.Engine); nil where no server runs.
type Certs interface {
	// NameFor is the name host's certificate is managed under: host
	// itself, or its namespace's wildcard when wildcards are issued.
	NameFor(host string) string
	Manage(ctx context.Context, names ...string) error
	Renew(ctx context.Context, name string) error
	// AddCert checks and installs a certificate brought for name: one
	// line saying what is wrong, nothing changed, when it does not fit.
	AddCert(ctx context.Context, name string, pem []byte) (notAfter time.Time, err error)
	RemoveCert(ctx context.Context, name string) error
}

// CertStatus is what the certificate engine says of one name.
type CertStatus = store.CertStatus

// HostCert is one hostname of an app with the status of the certificate
// that serves it (its own, or its namespace's wildcard); Status is nil
// when none is asked for.
type HostCert struct {
	App    names.App
	Host   string
	Status *CertStatus
}

// MaxHSTS is the longest HSTS max-age `app set` takes: two years, what
// browsers' preload lists ask for.
const MaxHSTS = 2 * 365 * 24 * time.Hour

// ParseHSTS reads `app set NS/APP hsts` values: "max-age=N" (seconds),
// "N", or "off".
func ParseHSTS(v string) (time.Duration, error) {
	if v == "off" || v == "0" || v == "max-age=0" {
		return 0, nil
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(v, "max-age="), 10, 64)
	if err != nil || n < 1 || time.Duration(n)*time.Second > MaxHSTS {
		return 0, fmt.Errorf("invalid hsts %s: want max-age=SECONDS (1 to %d) or off", names.Quote(v), int64(MaxHSTS/time.Second))
	}
	return time.Duration(n) * time.Second, nil
}

// ParseOnOff reads on/off settings.
func ParseOnOff(setting, v string) (bool, error) {
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("invalid %s %s: want on or off", setting, names.Quote(v))
}

// SetHTTPSRedirect says whether app's plain HTTP requests get a 301 to
// HTTPS once it has a certificate (the default), and reroutes at once
// where a server runs.
func (b *Backend) SetHTTPSRedirect(ctx context.Context, who keys.Principal, app names.App, on bool) error {
	return b.setPolicy(ctx, who, app, func() error { return b.cfg.Store.SetHTTPSRedirect(ctx, app.Namespace, app.Name, on) })
}

// SetHSTS has app's HTTPS answers carry Strict-Transport-Security for
// maxAge (0: none).
func (b *Backend) SetHSTS(ctx context.Context, who keys.Principal, app names.App, maxAge time.Duration) error {
	if maxAge < 0 || maxAge > MaxHSTS || maxAge%time.Second != 0 {
		return fmt.Errorf("invalid hsts max-age %s: whole seconds up to two years", maxAge)
	}
	return b.setPolicy(ctx, who, app, func() error { return b.cfg.Store.SetHSTS(ctx, app.Namespace, app.Name, int64(maxAge/time.Second)) })
}

func (b *Backend) setPolicy(ctx context.Context, who keys.Principal, app names.App, set func() error) error {
	if err := checkApp(app); err != nil {
		return err
	}
	if err := allow(who, keys.AppSet, keys.Target{Namespace: app.Namespace, App: app.Name}, appNotFound(app), ""); err != nil {
		return err
	}
	if err := set(); err != nil {
		return notFound(err, appNotFound(app))
	}
	if b.cfg.Reroute != nil {
		if err := b.cfg.Reroute(ctx); err != nil {
			return fmt.Errorf("setting stored, but the router was not updated (it will be on the next deploy): %w", err)
		}
	}
	return nil
}

// appHosts are app's routed hostnames: its own, then its verified custom
// domains.
func (b *Backend) appHosts(ctx context.Context, app names.App) ([]string, error) {
	hosts := []string{Hostname(app, b.cfg.Domain)}
	doms, err := b.cfg.Store.ListDomains(ctx, app.Namespace, app.Name)
	if err != nil {
		return nil, notFound(err, appNotFound(app))
	}
	for _, d := range doms {
		if d.Verified() {
			hosts = append(hosts, d.Hostname)
		}
	}
	return hosts, nil
}

// certFor finds host's certificate status in list: host's own, else the
// wildcard one label up.
func certFor(list []store.CertStatus, host string) *CertStatus {
	_, parent, _ := strings.Cut(host, ".")
	var wild *CertStatus
	for i := range list {
		switch list[i].Name {
		case host:
			return &list[i]
		case "*." + parent:
			wild = &list[i]
		}
	}
	return wild
}

// Certificates lists the HTTPS status of app's hostnames, or, for an
// admin, with app zero, of every app's.
func (b *Backend) Certificates(ctx context.Context, who keys.Principal, app names.App) ([]HostCert, error) {
	var apps []names.App
	if app == (names.App{}) {
		if err := allow(who, keys.CertsList, keys.Target{}, "", "certs list"); err != nil {
			return nil, err
		}
		all, err := b.cfg.Store.ListApps(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, a := range all {
			apps = append(apps, names.App{Namespace: a.Namespace, Name: a.Name})
		}
	} else {
		if err := checkApp(app); err != nil {
			return nil, err
		}
		if err := allow(who, keys.CertsList, keys.Target{Namespace: app.Namespace, App: app.Name}, appNotFound(app), ""); err != nil {
			return nil, err
		}
		if _, err := b.cfg.Store.GetApp(ctx, app.Namespace, app.Name); err != nil {
			return nil, notFound(err, appNotFound(app))
		}
		apps = []names.App{app}
	}
	list, err := b.cfg.Store.ListCertStatus(ctx)
	if err != nil {
		return nil, err
	}
	out := []HostCert{}
	for _, a := range apps {
		hosts, err := b.appHosts(ctx, a)
		if err != nil {
			return nil, err
		}
		for _, h := range hosts {
			out = append(out, HostCert{App: a, Host: h, Status: certFor(list, h)})
		}
	}
	return out, nil
}

// certHost authorizes who to manage app's certificates and checks host is
// one of app's routed hostnames (its own or a verified custom domain).
func (b *Backend) certHost(ctx context.Context, who keys.Principal, app names.App, host string) error {
	if err := checkApp(app); err != nil {
		return err
	}
	if err := allow(who, keys.CertsManage, keys.Target{Namespace: app.Namespace, App: app.Name}, appNotFound(app), ""); err != nil {
		return err
	}
	if _, err := b.cfg.Store.GetApp(ctx, app.Namespace, app.Name); err != nil {
		return notFound(err, appNotFound(app))
	}
	if b.cfg.Certs == nil {
		return ErrNeedsServer
	}
	if host == "" {
		return nil
	}
	hosts, err := b.appHosts(ctx, app)
	if err != nil {
		return err
	}
	if !slices.Contains(hosts, host) {
		return fmt.Errorf("%s is not a hostname of %s: its own is %s; add a custom domain with domains add first", names.Quote(host), app, hosts[0])
	}
	return nil
}

// AddCert installs a certificate the user brings for one of app's
// hostnames: pem holds the chain, leaf first, and its key. A pair that
// does not match, an expired certificate or one for another name is one
// line, and nothing changes.
func (b *Backend) AddCert(ctx context.Context, who keys.Principal, app names.App, host string, pem []byte) (time.Time, error) {
	if err := b.certHost(ctx, who, app, host); err != nil {
		return time.Time{}, err
	}
	return b.cfg.Certs.AddCert(ctx, host, pem)
}

// RemoveCert takes back the certificate brought for host; the name's
// issuer takes over.
func (b *Backend) RemoveCert(ctx context.Context, who keys.Principal, app names.App, host string) error {
	if err := b.certHost(ctx, who, app, host); err != nil {
		return err
	}
	err := b.cfg.Certs.RemoveCert(ctx, host)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no certificate was added for %s", host)
	}
	return err
}

// RenewCerts renews the certificates of app's hostnames now (host "":
// all of them), whether due or not; the CA's quota still holds. It
// returns the names renewed.
func (b *Backend) RenewCerts(ctx context.Context, who keys.Principal, app names.App, host string) ([]string, error) {
	if err := b.certHost(ctx, who, app, host); err != nil {
		return nil, err
	}
	hosts := []string{host}
	if host == "" {
		var err error
		if hosts, err = b.appHosts(ctx, app); err != nil {
			return nil, err
		}
	}
	var done []string
	for _, h := range hosts {
		n := b.cfg.Certs.NameFor(h)
		if slices.Contains(done, n) {
			continue
		}
		if err := b.cfg.Certs.Renew(ctx, n); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return done, fmt.Errorf("%s has no certificate managed (HTTPS is off, or it is not routed yet)", h)
			}
			return done, err
		}
		done = append(done, n)
	}
	return done, nil
}

// manageCert asks for the certificate of app's hostname, best effort:
// routing tells the engine again at the next change.
func (b *Backend) manageCert(ctx context.Context, app names.App) {
	if b.cfg.Certs == nil {
		return
	}
	if err := b.cfg.Certs.Manage(ctx, b.cfg.Certs.NameFor(Hostname(app, b.cfg.Domain))); err != nil {
		b.cfg.Log.Warn("asking for a certificate", "app", app.String(), "err", err)
	}
}
