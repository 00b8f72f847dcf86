package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"golang.org/x/net/publicsuffix"

	"github.com/upscalehq/upscale/store"
)

// explain turns certmagic's and the CA's errors into the line a user
// reads: the CA's own words when it said something, without certmagic's
// "[name] Obtain:" in front (the status names the name).
func (e *Engine) explain(name string, err error) error {
	var held *heldBackError
	if errors.As(err, &held) {
		return held
	}
	var p acme.Problem
	if errors.As(err, &p) {
		if p.Type == acme.ProblemTypeRateLimited {
			return &heldBackError{msg: "the CA's rate limit: " + p.Detail}
		}
		detail := p.Detail
		for _, sub := range p.Subproblems {
			detail += "; " + sub.Detail
		}
		return fmt.Errorf("the CA refused: %s (%s)", detail, strings.TrimPrefix(p.Type, "urn:ietf:params:acme:error:"))
	}
	msg := strings.TrimPrefix(err.Error(), "["+name+"] ")
	for _, op := range []string{"Obtain: ", "Renew: "} {
		msg = strings.TrimPrefix(msg, op)
		msg = strings.TrimPrefix(msg, "["+name+"] ")
	}
	var netErr *net.OpError
	if errors.As(err, &netErr) && e.config(name) != e.internalCfg {
		return fmt.Errorf("the CA did not answer: %s", msg)
	}
	if _, after, ok := strings.Cut(msg, "provisioning client: "); ok {
		return fmt.Errorf("ACME directory %s: no ACME directory there, or the CA is down: %s", e.opts.Directory, after)
	}
	return errors.New(msg)
}

// heldBackError is an order not placed to stay within the CA's quota.
type heldBackError struct{ msg string }

func (h *heldBackError) Error() string { return "held back: " + h.msg }

// acmeIssuer is certmagic's ACME issuer with the quota kept: an order is
// counted in the store before it is placed and given back when it fails,
// so that two servers share one count. It also never prompts: certmagic
// asks for an email address on the terminal when run "interactively".
type acmeIssuer struct {
	*certmagic.ACMEIssuer
	e *Engine
}

func (a *acmeIssuer) PreCheck(ctx context.Context, names []string, _ bool) error {
	return a.ACMEIssuer.PreCheck(ctx, names, false)
}

func (a *acmeIssuer) Issue(ctx context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	if len(csr.DNSNames) == 0 {
		return nil, errors.New("certificate request names no host")
	}
	name := csr.DNSNames[0]
	domain := RegisteredDomain(name)
	budget := max(1, a.e.opts.WeeklyLimit/2)
	now := time.Now()
	id, err := a.e.st.ReserveCertIssue(ctx, domain, name, now, now.Add(-7*24*time.Hour), budget)
	if errors.Is(err, store.ErrOverQuota) {
		return nil, &heldBackError{msg: fmt.Sprintf("%d certificates for %s in 7 days, half of the CA's weekly %d; Upscale keeps the rest for renewals",
			budget, domain, a.e.opts.WeeklyLimit)}
	}
	if err != nil {
		return nil, err
	}
	cert, err := a.ACMEIssuer.Issue(ctx, csr)
	if err != nil {
		if cerr := a.e.st.CancelCertIssue(context.WithoutCancel(ctx), id); cerr != nil {
			a.e.log.Error("certificate order not given back to the quota", "name", name, "error", cerr)
		}
		return nil, err
	}
	return cert, nil
}

// RegisteredDomain is the domain a CA's quota counts name under: its
// public suffix plus one label ("example.co.uk" for "a.b.example.co.uk").
func RegisteredDomain(name string) string {
	name = strings.TrimPrefix(strings.TrimSuffix(strings.ToLower(name), "."), "*.")
	if d, err := publicsuffix.EffectiveTLDPlusOne(name); err == nil {
		return d
	}
	return name
}
