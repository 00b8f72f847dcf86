package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/upscalehq/upscale/deploy"
	"github.com/upscalehq/upscale/keys"
	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// DomainClaims is what the release engine does with custom domains (see
// deploy.Deployer): AddDomain and VerifyDomain return the claim as it
// stands even with some errors.
type DomainClaims interface {
	AddDomain(ctx context.Context, app names.App, hostname, by string) (dom store.Domain, added bool, err error)
	VerifyDomain(ctx context.Context, app names.App, hostname, by string) (store.Domain, error)
	RemoveDomain(ctx context.Context, app names.App, hostname, by string) error
}

// DomainClaim is a custom domain of an app, with where it answers once
// verified and the platform hostname a CNAME proof points to.
type DomainClaim struct {
	Domain
	URL    string
	Target string
	// HTTPS is the status of the certificate serving it (Domains only);
	// nil when none is asked for.
	HTTPS *CertStatus
}

// DomainList is an app's custom domains and where the app itself answers.
type DomainList struct {
	AppURL  string
	Domains []DomainClaim
}

// NormalizeHostname checks a custom domain for apps under the platform
// domain and returns its one spelling (see deploy.NormalizeHostname).
func NormalizeHostname(h, platform string) (string, error) {
	return deploy.NormalizeHostname(h, platform)
}

// Hostname is app's own hostname under the platform domain.
func Hostname(app names.App, platform string) string {
	return deploy.Hostname(app.Namespace, app.Name, platform)
}

func (b *Backend) claim(app names.App, d store.Domain) DomainClaim {
	return DomainClaim{Domain: d, URL: b.domainURL(d.Hostname), Target: Hostname(app, b.cfg.Domain)}
}

// domainURL is where a custom domain answers: the router's public port is
// the one in app URLs.
func (b *Backend) domainURL(hostname string) string {
	u, err := url.Parse(b.url(names.App{Namespace: "ns", Name: "app"}))
	if err != nil || u.Port() == "" {
		return "http://" + hostname
	}
	return "http://" + net.JoinHostPort(hostname, u.Port())
}

// claimable authorizes who to manage app's domains and normalizes hostname,
// refused before anything else when malformed (which tells nobody
// anything).
func (b *Backend) claimable(ctx context.Context, who keys.Principal, app names.App, hostname string) (string, error) {
	if err := checkApp(app); err != nil {
		return "", err
	}
	h, err := NormalizeHostname(hostname, b.cfg.Domain)
	if err != nil {
		return "", err
	}
	return h, b.running(ctx, who, keys.DomainsManage, app)
}

// domainRefusal is the one line for a hostname another app has verified:
// it names that app only to whoever may know it.
func domainRefusal(who keys.Principal, app names.App, hostname string, err error) error {
	var taken *deploy.DomainTakenError
	switch {
	case errors.As(err, &taken):
		if o := taken.Owner; o.Name != "" && (who.Role == keys.RoleAdmin || o.Namespace == who.Namespace) {
			return fmt.Errorf("domain %s is already in use by %s", hostname, o)
		}
		return fmt.Errorf("domain %s is already in use", hostname)
	case errors.Is(err, store.ErrNotFound):
		return errors.New(appNotFound(app))
	}
	return err
}

// AddDomain claims hostname for app, routed once DNS proves its owner
// controls it (checked at once). It returns the claim as it stands, even
// with an error, and whether it is new.
func (b *Backend) AddDomain(ctx context.Context, who keys.Principal, app names.App, hostname string) (DomainClaim, bool, error) {
	h, err := b.claimable(ctx, who, app, hostname)
	if err != nil {
		return DomainClaim{}, false, err
	}
	dom, added, err := b.cfg.Apps.AddDomain(ctx, app, h, who.Name)
	var c DomainClaim
	if dom.Hostname != "" {
		c = b.claim(app, dom)
	}
	return c, added, domainRefusal(who, app, h, err)
}

// VerifyDomain checks app's claim on hostname now and returns it as it
// stands; a verified one routes.
func (b *Backend) VerifyDomain(ctx context.Context, who keys.Principal, app names.App, hostname string) (DomainClaim, error) {
	h, err := b.claimable(ctx, who, app, hostname)
	if err != nil {
		return DomainClaim{}, err
	}
	dom, err := b.cfg.Apps.VerifyDomain(ctx, app, h, who.Name)
	if errors.Is(err, store.ErrNotFound) {
		return DomainClaim{}, fmt.Errorf("app %s has no domain %s", app, h)
	}
	var c DomainClaim
	if dom.Hostname != "" {
		c = b.claim(app, dom)
	}
	return c, domainRefusal(who, app, h, err)
}

// RemoveDomain drops app's claim on hostname, routed or pending.
func (b *Backend) RemoveDomain(ctx context.Context, who keys.Principal, app names.App, hostname string) error {
	h, err := b.claimable(ctx, who, app, hostname)
	if err != nil {
		return err
	}
	err = b.cfg.Apps.RemoveDomain(ctx, app, h, who.Name)
	if errors.Is(err, store.ErrNotFound) {
		if _, aerr := b.cfg.Store.GetApp(ctx, app.Namespace, app.Name); errors.Is(aerr, store.ErrNotFound) {
			return errors.New(appNotFound(app))
		}
		return fmt.Errorf("app %s has no domain %s", app, h)
	}
	return err
}

// Domains are app's custom domains, verified or pending.
func (b *Backend) Domains(ctx context.Context, who keys.Principal, app names.App) (DomainList, error) {
	if err := checkApp(app); err != nil {
		return DomainList{}, err
	}
	if err := allow(who, keys.DomainsList, keys.Target{Namespace: app.Namespace, App: app.Name}, appNotFound(app), ""); err != nil {
		return DomainList{}, err
	}
	list, err := b.cfg.Store.ListDomains(ctx, app.Namespace, app.Name)
	if err != nil {
		return DomainList{}, notFound(err, appNotFound(app))
	}
	certs, err := b.cfg.Store.ListCertStatus(ctx)
	if err != nil {
		return DomainList{}, err
	}
	l := DomainList{AppURL: b.url(app), Domains: make([]DomainClaim, 0, len(list))}
	for _, d := range list {
		c := b.claim(app, d)
		if d.Verified() {
			c.HTTPS = certFor(certs, d.Hostname)
		}
		l.Domains = append(l.Domains, c)
	}
	return l, nil
}
