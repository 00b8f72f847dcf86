package deploy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/upscalehq/upscale/names"
	"github.com/upscalehq/upscale/store"
)

// hostLabel is one RFC 1123 label: letters and digits, dashes inside.
var hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// NormalizeHostname checks a custom domain given by a user and returns the
// one spelling the store and the router use: lower case, without the
// trailing dot of a fully qualified name. It refuses what cannot be an
// exact DNS name of an app: wildcards, IP addresses, one-label names,
// non-ASCII (give the xn-- form), and names under the platform's own
// domain (APP.NS.DOMAIN belongs to the apps it names).
func NormalizeHostname(h, platform string) (string, error) {
	orig := h
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("invalid domain %s: %s", names.Quote(orig), why)
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	switch {
	case h == "":
		return bad("empty")
	case len(h) > 253:
		return bad(fmt.Sprintf("%d characters, at most 253", len(h)))
	case strings.Contains(h, "*"):
		return bad("wildcards are not supported; add each hostname")
	case strings.ContainsAny(h, ":/@ "):
		return bad("give a hostname only, without scheme, port, path or spaces")
	}
	for _, r := range h {
		if r >= 0x80 {
			return bad("non-ASCII; give its IDNA form (xn--...)")
		}
	}
	labels := strings.Split(h, ".")
	if len(labels) < 2 {
		return bad("want at least two labels, like example.com")
	}
	for _, l := range labels {
		switch {
		case l == "":
			return bad("empty label")
		case len(l) > 63:
			return bad(fmt.Sprintf("label %s is longer than 63 characters", names.Quote(l)))
		case !hostLabel.MatchString(l):
			return bad(fmt.Sprintf("label %s: want letters, digits and inner dashes", names.Quote(l)))
		}
	}
	if tld := labels[len(labels)-1]; strings.Trim(tld, "0123456789") == "" {
		return bad("an IP address is not a domain")
	}
	if p := strings.ToLower(strings.TrimSuffix(platform, ".")); p != "" && (h == p || strings.HasSuffix(h, "."+p)) {
		return bad(fmt.Sprintf("names under %s are the platform's own (APP.NS.%s)", p, p))
	}
	return h, nil
}

// DomainTakenError is what AddDomain returns when another app has the
// hostname. Owner is for those allowed to know it; Error() does not name it.
type DomainTakenError struct {
	Hostname string
	Owner    names.App // zero when the owner could not be read
}

func (e *DomainTakenError) Error() string {
	return fmt.Sprintf("domain %s is already in use", e.Hostname)
}

func (e *DomainTakenError) Unwrap() error { return store.ErrConflict }

// AddDomain routes hostname (normalized by NormalizeHostname) to app from
// now on: it is recorded, and the router re-synced at once, no deploy
// needed. It returns false when the app already had it. Another app's
// hostname is a *DomainTakenError.
func (d *Deployer) AddDomain(ctx context.Context, app names.App, hostname, by string) (added bool, err error) {
	_, err = d.Store.AddDomain(ctx, store.Domain{Hostname: hostname, Namespace: app.Namespace, App: app.Name})
	if errors.Is(err, store.ErrConflict) {
		taken := &DomainTakenError{Hostname: hostname}
		list, lerr := d.Store.ListDomains(ctx, "", "")
		if lerr != nil {
			return false, taken
		}
		for _, dom := range list {
			if dom.Hostname == hostname {
				taken.Owner = names.App{Namespace: dom.Namespace, Name: dom.App}
			}
		}
		if taken.Owner == app {
			// Already this app's: make sure it is routed, which is what
			// the caller asked for.
			return false, d.Sync(ctx)
		}
		return false, taken
	}
	if err != nil {
		return false, err
	}
	d.domainEvent(ctx, app, "added domain "+hostname, by)
	if err := d.Sync(ctx); err != nil {
		return true, fmt.Errorf("domain %s recorded, but the router was not updated (it will be on the next deploy): %w", hostname, err)
	}
	return true, nil
}

// RemoveDomain stops routing hostname to app. ErrNotFound when the app
// does not have it.
func (d *Deployer) RemoveDomain(ctx context.Context, app names.App, hostname, by string) error {
	if err := d.Store.RemoveDomain(ctx, app.Namespace, app.Name, hostname); err != nil {
		return err
	}
	d.domainEvent(ctx, app, "removed domain "+hostname, by)
	if err := d.Sync(ctx); err != nil {
		return fmt.Errorf("domain %s removed, but the router was not updated (it will be on the next deploy): %w", hostname, err)
	}
	return nil
}

// domainEvent records a domain change of app, best effort: the history is
// worth less than the change it describes.
func (d *Deployer) domainEvent(ctx context.Context, app names.App, msg, by string) {
	if _, err := d.Store.RecordEvent(ctx, store.Event{Namespace: app.Namespace, App: app.Name, Kind: "domain", Message: msg, By: by}); err != nil {
		d.Log.Warn("recording an event", "app", app.String(), "kind", "domain", "err", err)
	}
}

// customDomains is every app's custom hostnames, by "ns/app": they answer
// like the app's own hostname.
func (d *Deployer) customDomains(ctx context.Context) (map[string][]string, error) {
	list, err := d.Store.ListDomains(ctx, "", "")
	if err != nil {
		return nil, err
	}
	hosts := map[string][]string{}
	for _, dom := range list {
		key := dom.Namespace + "/" + dom.App
		hosts[key] = append(hosts[key], dom.Hostname)
	}
	return hosts, nil
}
