// Package dnsprooftest is a small authoritative DNS server for tests: it
// answers TXT, A and CNAME questions from records the test sets, on
// 127.0.0.1 at a free port, over UDP and TCP; StartZone's also takes RFC
// 2136 dynamic updates of TXT records, as a zone's primary does for an
// ACME client solving DNS-01.
package dnsprooftest

import (
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server answers what was set; every other name does not exist (NXDOMAIN).
type Server struct {
	// Addr is host:port, what --dns-resolver takes.
	Addr string

	mu    sync.Mutex
	txt   map[string][]string
	a     map[string][]net.IP
	cname map[string]string
	fail  bool

	zone    string            // updates accepted for this zone only; "" for none
	tsig    map[string]string // key name -> secret; nil: unsigned updates accepted
	updates int
}

// Start serves until the test ends.
func Start(t testing.TB) *Server { return start(t, "", nil) }

// StartZone is Start with updates to zone's TXT records accepted, signed
// with one of the TSIG keys in tsig (name -> base64 secret), or unsigned
// when tsig is nil.
func StartZone(t testing.TB, zone string, tsig map[string]string) *Server {
	return start(t, zone, tsig)
}

func start(t testing.TB, zone string, tsig map[string]string) *Server {
	t.Helper()
	s := &Server{txt: map[string][]string{}, a: map[string][]net.IP{}, cname: map[string]string{}, tsig: map[string]string{}}
	if zone != "" {
		s.zone = key(zone)
	}
	for name, secret := range tsig {
		s.tsig[dns.Fqdn(name)] = secret
	}
	if tsig == nil {
		s.tsig = nil
	}
	var pc net.PacketConn
	var ln net.Listener
	var err error
	// TCP on the same port, for answers too long for UDP: a free UDP port
	// whose TCP twin is taken (another test's) is tried again.
	for try := 0; ; try++ {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 50 {
			t.Fatal(err)
		}
	}
	s.Addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: s, TsigSecret: s.tsig, MsgAcceptFunc: acceptUpdates}
	tcp := &dns.Server{Listener: ln, Handler: s, TsigSecret: s.tsig, MsgAcceptFunc: acceptUpdates}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return s
}

func key(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// SetTXT replaces name's TXT records, one per value; none removes them.
func (s *Server) SetTXT(name string, values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.txt[key(name)] = values
}

// SetCNAME points name at target; "" removes it.
func (s *Server) SetCNAME(name, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if target == "" {
		delete(s.cname, key(name))
		return
	}
	s.cname[key(name)] = dns.Fqdn(target)
}

// SetA gives name the IPv4 addresses ips; none removes them.
func (s *Server) SetA(name string, ips ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []net.IP
	for _, ip := range ips {
		list = append(list, net.ParseIP(ip).To4())
	}
	if len(list) == 0 {
		delete(s.a, key(name))
		return
	}
	s.a[key(name)] = list
}

// TXT returns name's TXT values, as set or updated.
func (s *Server) TXT(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.txt[key(name)]...)
}

// Updates counts the updates applied.
func (s *Server) Updates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updates
}

// Fail makes every answer SERVFAIL (true) or not.
func (s *Server) Fail(fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = fail
}

func (s *Server) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := new(dns.Msg)
	r.SetReply(q)
	r.Authoritative = true
	if s.fail {
		r.Rcode = dns.RcodeServerFailure
		w.WriteMsg(r)
		return
	}
	if len(q.Question) != 1 {
		r.Rcode = dns.RcodeFormatError
		w.WriteMsg(r)
		return
	}
	if q.Opcode == dns.OpcodeUpdate {
		s.update(w, q, r)
		return
	}
	name := key(q.Question[0].Name)
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: 1}
	}
	// A name with a CNAME has no other records (RFC 1034 3.6.2): the
	// CNAME answers any question.
	target, isAlias := s.cname[name]
	values, hasTXT := s.txt[name]
	addrs, hasA := s.a[name]
	switch {
	case isAlias:
		r.Answer = append(r.Answer, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: target})
	case hasTXT && q.Question[0].Qtype == dns.TypeTXT:
		for _, v := range values {
			r.Answer = append(r.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{v}})
		}
	case hasA && q.Question[0].Qtype == dns.TypeA:
		for _, ip := range addrs {
			r.Answer = append(r.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: ip})
		}
	case hasTXT || hasA: // the name exists, without records of that type
	default:
		r.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(r)
}

// update applies an RFC 2136 update of TXT records (add, delete one, delete
// all of a name) in the server's zone, as a primary would, and refuses the
// rest: another zone, other record types, a missing or bad signature.
func (s *Server) update(w dns.ResponseWriter, q, r *dns.Msg) {
	sig := q.IsTsig()
	defer func() {
		if sig != nil && r.Rcode != dns.RcodeNotAuth {
			r.SetTsig(sig.Hdr.Name, sig.Algorithm, 300, int64(sig.TimeSigned))
		}
		w.WriteMsg(r)
	}()
	switch {
	case s.zone == "" || key(q.Question[0].Name) != s.zone:
		r.Rcode = dns.RcodeNotAuth
		return
	case s.tsig != nil && (sig == nil || w.TsigStatus() != nil):
		r.Rcode = dns.RcodeNotAuth
		sig = nil
		return
	}
	for _, rr := range q.Ns {
		h := rr.Header()
		if h.Rrtype != dns.TypeTXT || !dns.IsSubDomain(s.zone, key(h.Name)) {
			r.Rcode = dns.RcodeRefused
			return
		}
	}
	for _, rr := range q.Ns {
		name := key(rr.Header().Name)
		switch rr.Header().Class {
		case dns.ClassINET:
			v := txtValue(rr)
			if !slices.Contains(s.txt[name], v) {
				s.txt[name] = append(s.txt[name], v)
			}
		case dns.ClassNONE:
			v := txtValue(rr)
			s.txt[name] = slices.DeleteFunc(s.txt[name], func(x string) bool { return x == v })
			if len(s.txt[name]) == 0 {
				delete(s.txt, name)
			}
		case dns.ClassANY:
			delete(s.txt, name)
		}
	}
	s.updates++
}

func txtValue(rr dns.RR) string {
	if t, ok := rr.(*dns.TXT); ok {
		return strings.Join(t.Txt, "")
	}
	return ""
}

// acceptUpdates is miekg/dns's default filter, which answers NOTIMP to
// every update, letting updates through to ServeDNS.
func acceptUpdates(h dns.Header) dns.MsgAcceptAction {
	if h.Bits&(1<<15) == 0 && int(h.Bits>>11)&0xF == dns.OpcodeUpdate && h.Qdcount == 1 {
		return dns.MsgAccept
	}
	return dns.DefaultMsgAcceptFunc(h)
}
