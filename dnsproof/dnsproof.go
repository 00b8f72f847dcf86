// Package dnsproof checks that whoever claims a custom domain controls its
// DNS: the name either has a TXT record _upscale-challenge.NAME holding the
// claim's token, or is a CNAME (directly or through a chain) to the app's
// platform hostname. It asks recursive resolvers, as a browser's resolver
// would, so what it sees is what the world sees.
package dnsproof

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ChallengePrefix is the label under which the TXT proof lives.
const ChallengePrefix = "_upscale-challenge."

// maxChain bounds how many CNAMEs are followed: resolvers give up at about
// this depth too, and a loop must end.
const maxChain = 8

// Checker looks proofs up.
type Checker struct {
	servers []string // host:port, tried in order while they do not answer
	timeout time.Duration
	// exchange sends one query; tests replace it.
	exchange func(ctx context.Context, m *dns.Msg) (*dns.Msg, error)
}

// New returns a Checker that asks server (host:port), or the nameservers
// of /etc/resolv.conf when server is "".
func New(server string) (*Checker, error) {
	var servers []string
	timeout := 3 * time.Second
	if server != "" {
		if h, p, err := net.SplitHostPort(server); err != nil || h == "" || p == "" {
			return nil, fmt.Errorf("DNS resolver %q: want host:port", server)
		}
		servers = []string{server}
	} else {
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("DNS resolvers: %w", err)
		}
		for _, s := range conf.Servers {
			servers = append(servers, net.JoinHostPort(s, conf.Port))
		}
		if len(servers) == 0 {
			return nil, errors.New("DNS resolvers: /etc/resolv.conf names no nameserver; give --dns-resolver")
		}
		if conf.Timeout > 0 {
			timeout = time.Duration(conf.Timeout) * time.Second
		}
	}
	c := &Checker{servers: servers, timeout: timeout}
	c.exchange = c.send
	return c, nil
}

// Servers are the resolvers c asks.
func (c *Checker) Servers() []string { return c.servers }

// send asks each server in turn until one answers, over UDP, then TCP when
// the answer was truncated.
func (c *Checker) send(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	var last error
	for _, s := range c.servers {
		r, _, err := (&dns.Client{Timeout: c.timeout}).ExchangeContext(ctx, m, s)
		if err == nil && r.Truncated {
			r, _, err = (&dns.Client{Net: "tcp", Timeout: c.timeout}).ExchangeContext(ctx, m, s)
		}
		if err == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		last = fmt.Errorf("resolver %s: %w", s, err)
	}
	return nil, last
}

// Check looks for a proof that hostname is meant for target (an app's
// platform hostname): a TXT record at _upscale-challenge.HOSTNAME equal to
// token, or a CNAME chain from hostname to target. It returns how it was
// proven ("TXT record" or "CNAME"), or an error saying in one line, for the
// domain's owner, why no proof was found or the resolvers could not tell.
func (c *Checker) Check(ctx context.Context, hostname, token, target string) (string, error) {
	txt, err := c.txt(ctx, hostname, token)
	if err != nil || txt == "" {
		return "TXT record", err
	}
	cname, err := c.cname(ctx, hostname, target)
	if err != nil || cname == "" {
		return "CNAME", err
	}
	return "", errors.New(txt + "; " + cname)
}

// txt is "" when the TXT record holds token, else why not.
func (c *Checker) txt(ctx context.Context, hostname, token string) (string, error) {
	name := ChallengePrefix + hostname
	r, err := c.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return "", err
	}
	found := false
	for _, rr := range r.Answer {
		t, ok := rr.(*dns.TXT)
		if !ok || !sameName(t.Hdr.Name, name) {
			continue
		}
		found = true
		// A long value comes as several strings: they are one text.
		if token != "" && strings.Join(t.Txt, "") == token {
			return "", nil
		}
	}
	if !found {
		return "no TXT record at " + name, nil
	}
	return "the TXT record at " + name + " does not hold this domain's token", nil
}

// cname is "" when hostname leads to target by CNAMEs, else why not.
func (c *Checker) cname(ctx context.Context, hostname, target string) (string, error) {
	name := hostname
	for range maxChain {
		r, err := c.query(ctx, name, dns.TypeCNAME)
		if err != nil {
			return "", err
		}
		next := ""
		// A resolver may give the whole chain at once: follow it in the
		// answer before asking again.
		for hop := 0; hop < maxChain; hop++ {
			t := cnameOf(r, name)
			if t == "" {
				break
			}
			if sameName(t, target) {
				return "", nil
			}
			name, next = t, t
		}
		if next == "" {
			if name == hostname {
				return hostname + " has no CNAME to " + target, nil
			}
			return hostname + " is a CNAME to " + name + ", not " + target, nil
		}
	}
	return hostname + " has a CNAME chain longer than " + fmt.Sprint(maxChain) + " without reaching " + target, nil
}

func cnameOf(r *dns.Msg, name string) string {
	for _, rr := range r.Answer {
		if t, ok := rr.(*dns.CNAME); ok && sameName(t.Hdr.Name, name) {
			return strings.ToLower(strings.TrimSuffix(t.Target, "."))
		}
	}
	return ""
}

// query asks for name's records of type qtype. A name that does not exist
// is an answer without records; a resolver that fails is an error naming
// the name.
func (c *Checker) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	r, err := c.exchange(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("DNS lookup of %s %s failed: %w", name, dns.TypeToString[qtype], err)
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return r, nil
	}
	return nil, fmt.Errorf("DNS lookup of %s %s failed: %s", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode])
}

func sameName(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}
