// Package dnsprooftest is a small authoritative DNS server for tests: it
// answers TXT and CNAME questions from records the test sets, on
// 127.0.0.1 at a free port, over UDP and TCP.
package dnsprooftest

import (
	"net"
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
	cname map[string]string
	fail  bool
}

// Start serves until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{txt: map[string][]string{}, cname: map[string]string{}}
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
	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: ln, Handler: s}
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
	name := key(q.Question[0].Name)
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: 1}
	}
	// A name with a CNAME has no other records (RFC 1034 3.6.2): the
	// CNAME answers any question.
	target, isAlias := s.cname[name]
	values, hasTXT := s.txt[name]
	switch {
	case isAlias:
		r.Answer = append(r.Answer, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: target})
	case hasTXT && q.Question[0].Qtype == dns.TypeTXT:
		for _, v := range values {
			r.Answer = append(r.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{v}})
		}
	case hasTXT:
	default:
		r.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(r)
}
