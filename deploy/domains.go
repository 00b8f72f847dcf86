package deploy

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/upscalehq/upscale/msgtext"
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

// DomainTakenError is what AddDomain and VerifyDomain return when another
// app has the hostname verified. Owner is for those allowed to know it;
// Error() does not name it.
type DomainTakenError struct {
	Hostname string
	Owner    names.App // zero when the owner could not be read
}

func (e *DomainTakenError) Error() string {
	return fmt.Sprintf("domain %s is already in use", e.Hostname)
}

func (e *DomainTakenError) Unwrap() error { return store.ErrConflict }

// ProofChecker looks up a proof that hostname is meant for target, an app's
// platform hostname (see dnsproof.Checker). It returns how it was proven,
// or an error saying why not in one line.
type ProofChecker interface {
	Check(ctx context.Context, hostname, token, target string) (how string, err error)
}

// Retries of a pending domain's check: often while its owner is likely
// setting DNS up, then rarely, for as long as it stays pending.
const (
	DomainRetryFast  = 30 * time.Second
	DomainFastPeriod = 10 * time.Minute
	DomainRetrySlow  = 10 * time.Minute
)

// lostRace is the failure recorded on a claim when another app proved
// ownership first; it does not say which app.
const lostRace = "another app proved ownership of this name first"

// AddDomain claims hostname (normalized by NormalizeHostname) for app with
// a fresh token, and checks the proof at once: a verified domain is routed
// before AddDomain returns, a pending one is not. It returns the claim as
// it stands and whether it is new; a claim the app had already is checked
// again when pending. A hostname another app has verified is a
// *DomainTakenError; other apps' pending claims do not matter.
func (d *Deployer) AddDomain(ctx context.Context, app names.App, hostname, by string) (dom store.Domain, added bool, err error) {
	dom, err = d.cfg.Store.AddDomain(ctx, store.Domain{Hostname: hostname, Namespace: app.Namespace, App: app.Name, Token: rand.Text()})
	if errors.Is(err, store.ErrConflict) {
		list, lerr := d.cfg.Store.ListDomains(ctx, app.Namespace, app.Name)
		if lerr == nil {
			for _, own := range list {
				if own.Hostname == hostname {
					dom, err = d.checkDomain(ctx, own, by)
					return dom, false, err
				}
			}
		}
		return store.Domain{}, false, d.taken(ctx, hostname)
	}
	if err != nil {
		return store.Domain{}, false, err
	}
	d.domainEvent(ctx, app, "added domain "+hostname+" (pending proof of ownership)", by)
	dom, err = d.checkDomain(ctx, dom, by)
	return dom, true, err
}

// VerifyDomain checks app's claim on hostname now. It returns the claim as
// it stands; a verified one is routed before VerifyDomain returns. Another
// app having verified it first is a *DomainTakenError; ErrNotFound when
// the app has no such claim.
func (d *Deployer) VerifyDomain(ctx context.Context, app names.App, hostname, by string) (store.Domain, error) {
	list, err := d.cfg.Store.ListDomains(ctx, app.Namespace, app.Name)
	if err != nil {
		return store.Domain{}, err
	}
	for _, dom := range list {
		if dom.Hostname == hostname {
			return d.checkDomain(ctx, dom, by)
		}
	}
	return store.Domain{}, fmt.Errorf("app %s has no domain %s: %w", app, hostname, store.ErrNotFound)
}

// taken is the error of a hostname another app has verified.
func (d *Deployer) taken(ctx context.Context, hostname string) error {
	taken := &DomainTakenError{Hostname: hostname}
	list, err := d.cfg.Store.ListDomains(ctx, "", "")
	if err != nil {
		return taken
	}
	for _, dom := range list {
		if dom.Hostname == hostname && dom.Verified() {
			taken.Owner = names.App{Namespace: dom.Namespace, Name: dom.App}
		}
	}
	return taken
}

// checkDomain looks for dom's proof and records what it found. A verified
// claim is not checked again: like Heroku's and Vercel's, a route, once
// proven, stays until its app removes it.
func (d *Deployer) checkDomain(ctx context.Context, dom store.Domain, by string) (store.Domain, error) {
	if dom.Verified() {
		return dom, nil
	}
	app := names.App{Namespace: dom.Namespace, Name: dom.App}
	if d.cfg.Proofs == nil {
		return dom, errors.New("domain checks are off on this server")
	}
	how, why := d.cfg.Proofs.Check(ctx, dom.Hostname, dom.Token, Hostname(dom.Namespace, dom.App, d.cfg.Domain))
	if ctx.Err() != nil {
		// Cut short (the server is stopping): nothing was learned.
		return dom, ctx.Err()
	}
	if why != nil {
		// The store keeps up to 1,024 bytes; names from DNS make it long.
		return d.cfg.Store.FailDomainCheck(ctx, dom.Namespace, dom.App, dom.Hostname, d.now(), msgtext.Truncate(msgtext.OneLine(why.Error()), 1000))
	}
	verified, err := d.cfg.Store.VerifyDomain(ctx, dom.Namespace, dom.App, dom.Hostname, d.now())
	if errors.Is(err, store.ErrConflict) {
		if failed, ferr := d.cfg.Store.FailDomainCheck(ctx, dom.Namespace, dom.App, dom.Hostname, d.now(), lostRace); ferr == nil {
			dom = failed
		}
		return dom, d.taken(ctx, dom.Hostname)
	}
	if err != nil {
		return dom, err
	}
	d.domainEvent(ctx, app, "verified domain "+dom.Hostname+" ("+how+")", by)
	if err := d.Sync(ctx); err != nil {
		return verified, fmt.Errorf("domain %s verified, but the router was not updated (it will be on the next deploy): %w", dom.Hostname, err)
	}
	return verified, nil
}

// DomainDue says whether a pending claim's next background check is due
// at now: at once when never checked, then DomainRetryFast apart for the
// claim's first DomainFastPeriod, DomainRetrySlow apart after that.
func DomainDue(dom store.Domain, now time.Time) bool {
	if dom.Verified() {
		return false
	}
	if dom.CheckedAt.IsZero() {
		return true
	}
	every := DomainRetrySlow
	if dom.CheckedAt.Sub(dom.CreatedAt) < DomainFastPeriod {
		every = DomainRetryFast
	}
	return !now.Before(dom.CheckedAt.Add(every))
}

// CheckDomains checks every pending claim whose check is due, one after
// another, and returns how many it checked.
func (d *Deployer) CheckDomains(ctx context.Context) (int, error) {
	list, err := d.cfg.Store.ListDomains(ctx, "", "")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, dom := range list {
		if !DomainDue(dom, d.now()) {
			continue
		}
		n++
		_, err := d.checkDomain(ctx, dom, "upscale")
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		var taken *DomainTakenError
		if err != nil && !errors.As(err, &taken) && !errors.Is(err, store.ErrNotFound) {
			d.cfg.Log.Warn("checking a custom domain", "domain", dom.Hostname, "app", dom.Namespace+"/"+dom.App, "err", err)
		}
	}
	return n, nil
}

// RunDomainChecks runs CheckDomains every tick until ctx ends.
func (d *Deployer) RunDomainChecks(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		if _, err := d.CheckDomains(ctx); err != nil && ctx.Err() == nil {
			d.cfg.Log.Warn("checking custom domains", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Deployer) now() time.Time {
	if d.cfg.Now != nil {
		return d.cfg.Now()
	}
	return time.Now()
}

// RemoveDomain drops app's claim on hostname and stops routing it if it
// was verified. ErrNotFound when the app does not have it.
func (d *Deployer) RemoveDomain(ctx context.Context, app names.App, hostname, by string) error {
	if err := d.cfg.Store.RemoveDomain(ctx, app.Namespace, app.Name, hostname); err != nil {
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
	if _, err := d.cfg.Store.RecordEvent(ctx, store.Event{Namespace: app.Namespace, App: app.Name, Kind: "domain", Message: msg, By: by}); err != nil {
		d.cfg.Log.Warn("recording an event", "app", app.String(), "kind", "domain", "err", err)
	}
}

// customDomains is every app's verified custom hostnames, by "ns/app":
// they answer like the app's own hostname. Pending ones are not routed, so
// a request for one gets the router's answer for an unknown host.
func (d *Deployer) customDomains(ctx context.Context) (map[string][]string, error) {
	list, err := d.cfg.Store.ListDomains(ctx, "", "")
	if err != nil {
		return nil, err
	}
	hosts := map[string][]string{}
	for _, dom := range list {
		if !dom.Verified() {
			continue
		}
		key := dom.Namespace + "/" + dom.App
		hosts[key] = append(hosts[key], dom.Hostname)
	}
	return hosts, nil
}
