package certs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/upscalehq/upscale/certbundle"
	"github.com/upscalehq/upscale/msgtext"
	"github.com/upscalehq/upscale/store"
)

// Issuer names in a status.
const (
	IssuerACME   = "acme"
	IssuerManual = "manual"
)

// Engine obtains and renews the certificates of the names it is asked
// for, each on its own schedule: a name that fails backs off alone and
// never holds the others up.
type Engine struct {
	opts    Options
	st      store.CertStore
	storage *Storage
	log     *slog.Logger

	cache       *certmagic.Cache
	httpCfg     *certmagic.Config // ACME, HTTP-01
	dnsCfg      *certmagic.Config // ACME, DNS-01; nil without a DNS provider
	internalCfg *certmagic.Config
	httpIssuer  *certmagic.ACMEIssuer
	ca          *InternalCA

	mu    sync.Mutex
	names map[string]*nameState
	wake  chan struct{}
}

type nameState struct {
	failures  int
	next      time.Time
	running   bool
	force     bool
	delivered [32]byte // hash of the chain last given to OnCert
}

// New checks the options, makes the internal CA on first start (its root
// file written to opts.RootFile), and returns an engine that does nothing
// until Run.
func New(ctx context.Context, opts Options) (*Engine, error) {
	opts.defaults()
	if err := opts.check(); err != nil {
		return nil, err
	}
	e := &Engine{opts: opts, st: opts.Store, log: opts.Log, storage: NewStorage(opts.Store, opts.LockLease),
		names: map[string]*nameState{}, wake: make(chan struct{}, 1)}
	if opts.Mode == ModeOff || opts.Mode == ModeManual {
		return e, nil
	}
	var err error
	if e.ca, err = LoadOrCreateCA(ctx, e.storage, opts.InternalLifetime); err != nil {
		return nil, err
	}
	if opts.RootFile != "" {
		if err := e.ca.WriteRoot(opts.RootFile); err != nil {
			return nil, err
		}
	}
	zl := zapToSlog(opts.Log)
	e.cache = certmagic.NewCache(certmagic.CacheOptions{
		// Nothing is put in certmagic's cache (HAProxy serves, not Go), so
		// it never asks; the config is for its maintenance goroutine only.
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return e.internalCfg, nil },
		Logger:           zl,
	})
	newCfg := func() *certmagic.Config {
		return certmagic.New(e.cache, certmagic.Config{Storage: e.storage, Logger: zl,
			RenewalWindowRatio: opts.RenewalRatio, DisableStorageCheck: true})
	}
	e.internalCfg = newCfg()
	e.internalCfg.Issuers = []certmagic.Issuer{e.ca}
	if opts.Mode == ModeInternal {
		return e, nil
	}
	roots, err := opts.trustedRoots()
	if err != nil {
		e.cache.Stop()
		return nil, err
	}
	template := certmagic.ACMEIssuer{CA: opts.Directory, TestCA: opts.Directory, Email: opts.Email, Agreed: true,
		TrustedRoots: roots, DisableTLSALPNChallenge: true, Logger: zl}
	if opts.HTTPChallengeAddr != "" {
		host, port, _ := net.SplitHostPort(opts.HTTPChallengeAddr)
		template.ListenHost = host
		template.AltHTTPPort, _ = strconv.Atoi(port)
	}
	e.httpCfg = newCfg()
	e.httpIssuer = certmagic.NewACMEIssuer(e.httpCfg, template)
	e.httpCfg.Issuers = []certmagic.Issuer{&acmeIssuer{e.httpIssuer, e}}
	if opts.DNS != nil {
		dns := template
		dns.DNS01Solver = opts.DNS
		dns.DisableHTTPChallenge = true
		e.dnsCfg = newCfg()
		e.dnsCfg.Issuers = []certmagic.Issuer{&acmeIssuer{certmagic.NewACMEIssuer(e.dnsCfg, dns), e}}
	}
	return e, nil
}

// RootFile is where the internal CA's root certificate is, "" without one.
func (e *Engine) RootFile() string {
	if e.ca == nil {
		return ""
	}
	return e.opts.RootFile
}

// RootPEM is the internal CA's root certificate, nil without one.
func (e *Engine) RootPEM() []byte {
	if e.ca == nil {
		return nil
	}
	return e.ca.RootPEM()
}

// Handler answers the ACME HTTP-01 challenges of this server and of any
// other on the same store; the router forwards /.well-known/acme-challenge/
// to it. Anything else is 404.
func (e *Engine) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.httpIssuer != nil && e.httpIssuer.HandleHTTPChallenge(w, r) {
			return
		}
		http.NotFound(w, r)
	})
}

// Manage asks for certificates for names (an app's hostname, a custom
// domain, a namespace's wildcard "*.NS.DOMAIN"); names asked for already
// are left as they are. The work happens in Run.
func (e *Engine) Manage(ctx context.Context, names ...string) error {
	for _, n := range names {
		if err := CheckName(n); err != nil {
			return err
		}
		if !strings.HasPrefix(n, "*.") || e.opts.Mode != ModeACME || privateName(n) || e.dnsCfg != nil {
			continue
		}
		return fmt.Errorf("%s: a wildcard certificate needs a DNS provider for DNS-01 (RFC 2136)", n)
	}
	statuses, err := e.st.ListCertStatus(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, st := range statuses {
		known[st.Name] = true
	}
	for _, n := range names {
		if known[n] {
			continue
		}
		if err := e.st.SetCertStatus(ctx, store.CertStatus{Name: n, Issuer: e.issuerName(n), State: store.CertPending}); err != nil {
			return err
		}
	}
	e.mu.Lock()
	for _, n := range names {
		if e.names[n] == nil {
			e.names[n] = &nameState{}
		}
	}
	e.mu.Unlock()
	e.poke()
	return nil
}

// Forget stops managing name and drops its status; its certificate stays
// in the store until certmagic's cleaning removes it once expired.
func (e *Engine) Forget(ctx context.Context, name string) error {
	e.mu.Lock()
	delete(e.names, name)
	e.mu.Unlock()
	if err := e.st.DeleteCertStatus(ctx, name); err != nil {
		return err
	}
	return e.storage.Delete(ctx, manualPrefix(name))
}

// Renew has name's certificate renewed now, whether due or not (`certs
// renew`); the quota still holds.
func (e *Engine) Renew(ctx context.Context, name string) error {
	e.mu.Lock()
	s := e.names[name]
	if s != nil {
		s.force, s.next = true, time.Time{}
	}
	e.mu.Unlock()
	if s == nil {
		return fmt.Errorf("%s: no certificate is managed for it: %w", name, store.ErrNotFound)
	}
	e.poke()
	return nil
}

// Status lists every managed name's status, sorted by name.
func (e *Engine) Status(ctx context.Context) ([]store.CertStatus, error) {
	return e.st.ListCertStatus(ctx)
}

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Run works until ctx ends: it takes up the names in the store's status
// (asked for by this server before, or by another on the store), gives
// OnCert the certificates found for them, and obtains and renews each name
// when it is due.
func (e *Engine) Run(ctx context.Context) error {
	if e.cache != nil {
		defer e.cache.Stop()
	}
	statuses, err := e.st.ListCertStatus(ctx)
	if err != nil {
		return err
	}
	e.mu.Lock()
	for _, st := range statuses {
		if e.names[st.Name] == nil {
			// A restart keeps the backoff: it must not hammer a CA.
			e.names[st.Name] = &nameState{failures: st.Failures, next: st.NextTry}
		}
	}
	e.mu.Unlock()
	for _, st := range statuses {
		e.deliverStored(ctx, st.Name)
	}
	sem := make(chan struct{}, e.opts.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		now := time.Now()
		wait := e.opts.CheckInterval
		e.mu.Lock()
		for name, s := range e.names {
			if s.running {
				continue
			}
			if d := s.next.Sub(now); d > 0 {
				wait = min(wait, d)
				continue
			}
			s.running = true
			force := s.force
			s.force = false
			wg.Go(func() {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				defer func() { <-sem }()
				e.attempt(ctx, name, force)
			})
		}
		e.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-e.wake:
		case <-time.After(wait):
		}
	}
}

// deliverStored gives OnCert the certificate the store has for name, if
// any, so that a restarted server installs what it had at once.
func (e *Engine) deliverStored(ctx context.Context, name string) {
	if b, err := e.manual(ctx, name); err == nil {
		if b.Check(name, time.Now()) == nil {
			e.deliver(name, IssuerManual, b)
		}
		return
	}
	if b, issuer, err := e.stored(ctx, name); err == nil {
		if b.Check(name, time.Now()) == nil {
			e.deliver(name, issuer, b)
		}
	}
}

// attempt does what name needs now and records the outcome and the next
// look: at renewal time (or the check interval) after a success, after a
// backoff with jitter after a failure.
func (e *Engine) attempt(ctx context.Context, name string, force bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	st, next, err := e.process(ctx, name, force)
	e.mu.Lock()
	s := e.names[name]
	if s == nil { // forgotten meanwhile
		e.mu.Unlock()
		return
	}
	now := time.Now()
	if err != nil {
		s.failures++
		st.Failures = s.failures
		st.LastError = msgtext.OneLine(err.Error())
		backoff := e.backoff(s.failures)
		var held *heldBackError
		switch {
		case errors.As(err, &held):
			st.State = store.CertHeldBack
			backoff = max(backoff, time.Hour)
		default:
			st.State = store.CertFailed
		}
		if st.NotAfter.After(now) && st.Issuer != IssuerManual {
			// A renewal failed: the certificate in place still serves,
			// and the error says why the next one is not there yet.
			st.State = store.CertLive
		}
		next = now.Add(backoff)
	} else {
		s.failures = 0
	}
	s.next, s.running = next, false
	e.mu.Unlock()
	st.Name, st.NextTry = name, next
	if next.IsZero() || next.Sub(now) > 365*24*time.Hour {
		st.NextTry = time.Time{}
	}
	if err != nil {
		e.log.Warn("certificate not obtained", "name", name, "issuer", st.Issuer, "failures", st.Failures,
			"next_try", st.NextTry, "error", st.LastError)
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return // shutting down: the status stays as it was
	}
	if werr := e.st.SetCertStatus(context.WithoutCancel(ctx), st); werr != nil {
		e.log.Error("certificate status not recorded", "name", name, "error", werr)
	}
	e.poke()
}

// backoff is RetryBase doubled per failure after the first, up to
// RetryMax, give or take a tenth so that names failing together spread out.
func (e *Engine) backoff(failures int) time.Duration {
	d := e.opts.RetryBase
	for i := 1; i < failures && d < e.opts.RetryMax; i++ {
		d *= 2
	}
	d = min(d, e.opts.RetryMax)
	return d + time.Duration((rand.Float64()-0.5)*0.2*float64(d))
}

// never is a next look for names nothing can be done for until someone
// acts (manual mode, --tls off).
var never = time.Now().Add(100 * 365 * 24 * time.Hour)

// process obtains or renews name's certificate when needed and returns its
// status (State, Issuer, NotAfter; the caller fills in the rest) and when
// to look again.
func (e *Engine) process(ctx context.Context, name string, force bool) (store.CertStatus, time.Time, error) {
	st := store.CertStatus{Issuer: e.issuerName(name), State: store.CertPending}
	// A certificate brought by a user wins over any issuer.
	if b, err := e.manual(ctx, name); err == nil {
		st.Issuer, st.NotAfter = IssuerManual, b.Leaf().NotAfter
		if err := b.Check(name, time.Now()); err != nil {
			return st, time.Time{}, fmt.Errorf("the certificate added with certs add: %w", err)
		}
		e.deliver(name, IssuerManual, b)
		st.State = store.CertLive
		return st, e.nextLook(b), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return st, time.Time{}, err
	}
	cfg := e.config(name)
	if cfg == nil {
		if e.opts.Mode == ModeManual {
			st.LastError = "no certificate yet: add one with certs add"
		}
		return st, never, nil
	}
	old, _, oldErr := e.stored(ctx, name)
	if oldErr == nil {
		st.NotAfter = old.Leaf().NotAfter
	}
	var err error
	switch {
	case oldErr == nil && !force && !e.due(old):
	case oldErr == nil:
		err = cfg.RenewCertSync(ctx, name, force)
	default:
		err = cfg.ObtainCertSync(ctx, name)
	}
	if err != nil {
		return st, time.Time{}, e.explain(name, err)
	}
	b, issuer, err := e.stored(ctx, name)
	if err != nil {
		return st, time.Time{}, fmt.Errorf("reading the certificate back: %w", err)
	}
	e.deliver(name, issuer, b)
	st.State, st.Issuer, st.NotAfter = store.CertLive, issuer, b.Leaf().NotAfter
	return st, e.nextLook(b), nil
}

// due says whether b is in its renewal window.
func (e *Engine) due(b *certbundle.Bundle) bool {
	leaf := b.Leaf()
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return time.Until(leaf.NotAfter) < time.Duration(float64(life)*e.opts.RenewalRatio)
}

// nextLook is when b enters its renewal window, or the check interval,
// whichever comes first: another server may renew it, or the CA may ask
// for an early renewal. It is never sooner than a tenth of the interval:
// a certificate that is due as soon as issued (a CA handing out shorter
// ones than the window) must not be renewed in a tight loop.
func (e *Engine) nextLook(b *certbundle.Bundle) time.Time {
	leaf := b.Leaf()
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	renewAt := leaf.NotAfter.Add(-time.Duration(float64(life) * e.opts.RenewalRatio))
	now := time.Now()
	next := earlier(renewAt, now.Add(e.opts.CheckInterval))
	if soonest := now.Add(e.opts.CheckInterval / 10); next.Before(soonest) {
		return soonest
	}
	return next
}

// config is the certmagic config that issues for name, nil when none does.
func (e *Engine) config(name string) *certmagic.Config {
	switch {
	case e.opts.Mode == ModeOff || e.opts.Mode == ModeManual:
		return nil
	case e.opts.Mode == ModeInternal || privateName(name):
		return e.internalCfg
	case strings.HasPrefix(name, "*."):
		return e.dnsCfg
	}
	return e.httpCfg
}

func (e *Engine) issuerName(name string) string {
	switch {
	case e.opts.Mode == ModeOff:
		return ""
	case e.opts.Mode == ModeManual:
		return IssuerManual
	case e.opts.Mode == ModeInternal || privateName(name):
		return IssuerInternal
	}
	return IssuerACME
}

// stored reads name's certificate and key as its issuer left them in
// storage.
func (e *Engine) stored(ctx context.Context, name string) (*certbundle.Bundle, string, error) {
	cfg := e.config(name)
	if cfg == nil {
		return nil, "", fs.ErrNotExist
	}
	issuerKey := cfg.Issuers[0].IssuerKey()
	chain, err := e.storage.Load(ctx, certmagic.StorageKeys.SiteCert(issuerKey, name))
	if err != nil {
		return nil, "", err
	}
	key, err := e.storage.Load(ctx, certmagic.StorageKeys.SitePrivateKey(issuerKey, name))
	if err != nil {
		return nil, "", err
	}
	b, err := certbundle.Parse(append(append(chain, '\n'), key...))
	if err != nil {
		return nil, "", fmt.Errorf("stored certificate of %s: %w", name, err)
	}
	return b, e.issuerName(name), nil
}

// deliver gives b to OnCert unless it was given already.
func (e *Engine) deliver(name, issuer string, b *certbundle.Bundle) {
	sum := sha256.Sum256(b.ChainPEM)
	e.mu.Lock()
	s := e.names[name]
	if s == nil || s.delivered == sum {
		e.mu.Unlock()
		return
	}
	renewal := s.delivered != [32]byte{}
	s.delivered = sum
	e.mu.Unlock()
	c := Cert{Name: name, Issuer: issuer, ChainPEM: b.ChainPEM, KeyPEM: PrivateKeyPEM(b.KeyPEM), NotAfter: b.Leaf().NotAfter, Renewal: renewal}
	e.log.Info("certificate ready", "cert", c)
	e.opts.OnCert(c)
}
