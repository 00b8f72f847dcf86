package certs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
	"github.com/miekg/dns"
)

// RFC2136 solves DNS-01 challenges by dynamic updates (RFC 2136) sent to
// the zone's primary server, which BIND, Knot and PowerDNS accept, signed
// with TSIG (RFC 8945) when a key is given. It is how a namespace gets its
// wildcard "*.NS.DOMAIN".
type RFC2136 struct {
	Server string // the primary's host:port, where updates go
	Zone   string // the zone the records are in, e.g. "example.com"
	// TSIG key; empty name for unsigned updates (a server that trusts the
	// source address).
	TSIGName   string
	TSIGSecret string // base64, as in BIND's key file
	TSIGAlg    string // "hmac-sha256" when empty

	// WaitTimeout bounds Wait (0: two minutes).
	WaitTimeout time.Duration
}

var (
	_ acmez.Solver = (*RFC2136)(nil)
	_ acmez.Waiter = (*RFC2136)(nil)
)

// Check says what is missing or malformed in the configuration, in one line.
func (p *RFC2136) Check() error {
	switch {
	case p.Server == "":
		return errors.New("DNS provider rfc2136: no server (host:port of the zone's primary)")
	case p.Zone == "":
		return errors.New("DNS provider rfc2136: no zone")
	case (p.TSIGName == "") != (p.TSIGSecret == ""):
		return errors.New("DNS provider rfc2136: a TSIG key needs both its name and its secret")
	}
	if _, _, err := splitHostPortDefault(p.Server); err != nil {
		return fmt.Errorf("DNS provider rfc2136: server %q: %v", p.Server, err)
	}
	if _, ok := dns.IsDomainName(p.Zone); !ok {
		return fmt.Errorf("DNS provider rfc2136: zone %q is not a domain name", p.Zone)
	}
	switch alg := p.alg(); alg {
	case dns.HmacSHA256, dns.HmacSHA512, dns.HmacSHA1, dns.HmacSHA224, dns.HmacSHA384:
	default:
		return fmt.Errorf("DNS provider rfc2136: TSIG algorithm %q is not one of hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512", strings.TrimSuffix(alg, "."))
	}
	return nil
}

func splitHostPortDefault(addr string) (string, string, error) {
	if !strings.Contains(addr, ":") {
		return addr, "53", nil
	}
	h, port, err := net.SplitHostPort(addr)
	return h, port, err
}

func (p *RFC2136) server() string {
	h, port, _ := splitHostPortDefault(p.Server)
	return net.JoinHostPort(h, port)
}

func (p *RFC2136) alg() string {
	if p.TSIGAlg == "" {
		return dns.HmacSHA256
	}
	return dns.Fqdn(strings.ToLower(p.TSIGAlg))
}

func (p *RFC2136) record(chal acme.Challenge) (*dns.TXT, error) {
	// A wildcard's authorization names its base ("acme.example.com");
	// strip a "*." should a caller pass the wildcard itself.
	chal.Identifier.Value = strings.TrimPrefix(chal.Identifier.Value, "*.")
	name := dns.Fqdn(chal.DNS01TXTRecordName())
	if !dns.IsSubDomain(dns.Fqdn(p.Zone), name) {
		return nil, fmt.Errorf("DNS-01: %s is outside the zone %s the DNS provider updates", strings.TrimSuffix(name, "."), p.Zone)
	}
	return &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
		Txt: []string{chal.DNS01KeyAuthorization()}}, nil
}

// Present adds the challenge's TXT record.
func (p *RFC2136) Present(ctx context.Context, chal acme.Challenge) error {
	rr, err := p.record(chal)
	if err != nil {
		return err
	}
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(p.Zone))
	m.Insert([]dns.RR{rr})
	return p.send(ctx, m, "add TXT "+rr.Hdr.Name)
}

// CleanUp removes that record, and only it: other challenges for the same
// name (a wildcard and its base name) may be in flight.
func (p *RFC2136) CleanUp(ctx context.Context, chal acme.Challenge) error {
	rr, err := p.record(chal)
	if err != nil {
		return err
	}
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(p.Zone))
	m.Remove([]dns.RR{rr})
	return p.send(ctx, m, "remove TXT "+rr.Hdr.Name)
}

// Wait asks the primary until it serves the record, so the CA is not sent
// to look before the update took.
func (p *RFC2136) Wait(ctx context.Context, chal acme.Challenge) error {
	rr, err := p.record(chal)
	if err != nil {
		return err
	}
	timeout := p.WaitTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	var last error
	for {
		q := new(dns.Msg)
		q.SetQuestion(rr.Hdr.Name, dns.TypeTXT)
		r, _, err := c.ExchangeContext(ctx, q, p.server())
		if err == nil {
			for _, a := range r.Answer {
				if t, ok := a.(*dns.TXT); ok && strings.Join(t.Txt, "") == rr.Txt[0] {
					return nil
				}
			}
			last = fmt.Errorf("%s answers %s without the record", p.Server, dns.RcodeToString[r.Rcode])
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("DNS-01: TXT %s not served by %s after %v: %v", rr.Hdr.Name, p.Server, timeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (p *RFC2136) send(ctx context.Context, m *dns.Msg, what string) error {
	c := &dns.Client{Net: "tcp", Timeout: 10 * time.Second}
	if p.TSIGName != "" {
		name := dns.Fqdn(p.TSIGName)
		c.TsigSecret = map[string]string{name: p.TSIGSecret}
		m.SetTsig(name, p.alg(), 300, time.Now().Unix())
	}
	r, _, err := c.ExchangeContext(ctx, m, p.server())
	if err != nil {
		return fmt.Errorf("DNS update (%s) to %s: %v", what, p.Server, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("DNS update (%s) refused by %s: %s", what, p.Server, dns.RcodeToString[r.Rcode])
	}
	return nil
}
