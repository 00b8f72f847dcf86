package dnsproof

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/upscalehq/upscale/dnsproof/dnsprooftest"
)

const (
	host   = "shop.example.com"
	token  = "K3TOKENK3TOKENK3TOKENK3TO"
	target = "web.acme.upscale.test"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(s *dnsprooftest.Server)
		how   string // "" when it must fail
		why   string
	}{
		{"nothing", func(*dnsprooftest.Server) {}, "",
			"no TXT record at _upscale-challenge.shop.example.com; shop.example.com has no CNAME to web.acme.upscale.test"},
		{"TXT", func(s *dnsprooftest.Server) { s.SetTXT("_upscale-challenge."+host, token) }, "TXT record", ""},
		{"TXT among others", func(s *dnsprooftest.Server) { s.SetTXT("_upscale-challenge."+host, "v=spf1 -all", token) }, "TXT record", ""},
		{"TXT in capitals", func(s *dnsprooftest.Server) { s.SetTXT("_UPSCALE-CHALLENGE.Shop.Example.COM", token) }, "TXT record", ""},
		{"another claim's token", func(s *dnsprooftest.Server) { s.SetTXT("_upscale-challenge."+host, "OTHERTOKEN") }, "",
			"the TXT record at _upscale-challenge.shop.example.com does not hold this domain's token; shop.example.com has no CNAME to web.acme.upscale.test"},
		{"token as a prefix", func(s *dnsprooftest.Server) { s.SetTXT("_upscale-challenge."+host, token+"x") }, "", "does not hold this domain's token"},
		{"token at the hostname itself", func(s *dnsprooftest.Server) { s.SetTXT(host, token) }, "", "no TXT record at _upscale-challenge.shop.example.com"},
		{"CNAME", func(s *dnsprooftest.Server) { s.SetCNAME(host, target) }, "CNAME", ""},
		{"CNAME with a trailing dot in capitals", func(s *dnsprooftest.Server) { s.SetCNAME(host, "WEB.acme.upscale.test.") }, "CNAME", ""},
		{"CNAME chain", func(s *dnsprooftest.Server) {
			s.SetCNAME(host, "edge.cdn.example.net")
			s.SetCNAME("edge.cdn.example.net", target)
		}, "CNAME", ""},
		{"CNAME to another app", func(s *dnsprooftest.Server) { s.SetCNAME(host, "api.acme.upscale.test") }, "",
			"no TXT record at _upscale-challenge.shop.example.com; shop.example.com is a CNAME to api.acme.upscale.test, not web.acme.upscale.test"},
		{"CNAME loop", func(s *dnsprooftest.Server) {
			s.SetCNAME(host, "a.example.net")
			s.SetCNAME("a.example.net", host)
		}, "", "shop.example.com has a CNAME chain longer than 8 without reaching web.acme.upscale.test"},
		{"resolver fails", func(s *dnsprooftest.Server) { s.Fail(true) }, "",
			"DNS lookup of _upscale-challenge.shop.example.com TXT failed: SERVFAIL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := dnsprooftest.Start(t)
			tc.setup(s)
			c, err := New(s.Addr)
			if err != nil {
				t.Fatal(err)
			}
			how, err := c.Check(t.Context(), host, token, target)
			switch {
			case tc.how != "" && (err != nil || how != tc.how):
				t.Errorf("Check = %q, %v; want proven by %s", how, err, tc.how)
			case tc.how == "" && err == nil:
				t.Errorf("Check = %q, want it to fail with %q", how, tc.why)
			case tc.how == "" && (!strings.Contains(err.Error(), tc.why) || strings.Contains(err.Error(), "\n")):
				t.Errorf("Check failed with %q, want one line with %q", err, tc.why)
			}
		})
	}
}

// An empty token proves nothing, even against an empty TXT record.
func TestCheckEmptyToken(t *testing.T) {
	s := dnsprooftest.Start(t)
	s.SetTXT("_upscale-challenge."+host, "")
	c, err := New(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if how, err := c.Check(t.Context(), host, "", target); err == nil {
		t.Errorf("an empty token was proven by %s", how)
	}
}

func TestResolverSilent(t *testing.T) {
	// A UDP socket that reads nothing: every query times out.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := New(pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.timeout = 100e6
	_, err = c.Check(t.Context(), host, token, target)
	if err == nil || !strings.HasPrefix(err.Error(), "DNS lookup of _upscale-challenge.shop.example.com TXT failed: resolver "+pc.LocalAddr().String()) {
		t.Errorf("Check with a silent resolver: %v", err)
	}
}

func TestNewBadResolver(t *testing.T) {
	for _, bad := range []string{"127.0.0.1", "dns.example.com", ":", "127.0.0.1:", ":53"} {
		if _, err := New(bad); err == nil || !strings.Contains(err.Error(), "want host:port") {
			t.Errorf("New(%q) = %v, want it refused", bad, err)
		}
	}
}

// FuzzCheck feeds any DNS message as the answer to every question: Check
// neither panics nor loops, says why in one line, and proves a claim only
// when the message holds the token at the challenge name or a CNAME to the
// target.
func FuzzCheck(f *testing.F) {
	f.Fuzz(func(t *testing.T, packed []byte) {
		r := new(dns.Msg)
		if err := r.Unpack(packed); err != nil {
			return
		}
		queries := 0
		c := &Checker{exchange: func(_ context.Context, q *dns.Msg) (*dns.Msg, error) {
			queries++
			a := r.Copy()
			a.Id = q.Id
			return a, nil
		}}
		how, err := c.Check(context.Background(), host, token, target)
		if queries > 1+maxChain {
			t.Fatalf("%d queries", queries)
		}
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("not one line: %q", err)
			}
			return
		}
		text := r.String()
		switch how {
		case "TXT record":
			if !strings.Contains(text, token) {
				t.Fatalf("proven by TXT without the token:\n%s", text)
			}
		case "CNAME":
			if !strings.Contains(strings.ToLower(text), target) {
				t.Fatalf("proven by CNAME without the target:\n%s", text)
			}
		default:
			t.Fatalf("proven by %q", how)
		}
	})
}
