package certs

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"

	"github.com/upscalehq/upscale/dnsproof/dnsprooftest"
)

func challenge(name, keyAuth string) acme.Challenge {
	return acme.Challenge{Type: acme.ChallengeTypeDNS01, KeyAuthorization: keyAuth,
		Identifier: acme.Identifier{Type: "dns", Value: name}}
}

func TestRFC2136(t *testing.T) {
	ctx := t.Context()
	secret := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	srv := dnsprooftest.StartZone(t, "example.com", map[string]string{"upscale": secret})
	p := &RFC2136{Server: srv.Addr, Zone: "example.com", TSIGName: "upscale", TSIGSecret: secret, WaitTimeout: 5 * time.Second}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	// A wildcard and its base name share the record name.
	wild, base := challenge("acme.example.com", "token-1.thumb"), challenge("acme.example.com", "token-2.thumb")
	for _, c := range []acme.Challenge{wild, base} {
		if err := p.Present(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	got := srv.TXT("_acme-challenge.acme.example.com")
	if want := []string{wild.DNS01KeyAuthorization(), base.DNS01KeyAuthorization()}; !slices.Equal(got, want) {
		t.Fatalf("TXT records %q, want %q", got, want)
	}
	if err := p.CleanUp(ctx, wild); err != nil {
		t.Fatal(err)
	}
	if got := srv.TXT("_acme-challenge.acme.example.com"); !slices.Equal(got, []string{base.DNS01KeyAuthorization()}) {
		t.Fatalf("after cleaning up the wildcard's challenge: %q, want the base name's left", got)
	}

	before := srv.Updates()
	for _, tc := range []struct {
		p    RFC2136
		c    acme.Challenge
		want string
	}{
		{RFC2136{Server: srv.Addr, Zone: "example.com", TSIGName: "upscale", TSIGSecret: base64.StdEncoding.EncodeToString([]byte("wrong"))}, base, "refused by " + srv.Addr + ": NOTAUTH"},
		{RFC2136{Server: srv.Addr, Zone: "example.com"}, base, "NOTAUTH"}, // unsigned
		{RFC2136{Server: srv.Addr, Zone: "example.org", TSIGName: "upscale", TSIGSecret: secret}, base, "outside the zone example.org"},
		{RFC2136{Server: "127.0.0.1:1", Zone: "example.com"}, base, "DNS update (add TXT _acme-challenge.acme.example.com.) to 127.0.0.1:1"},
	} {
		err := tc.p.Present(ctx, tc.c)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v, want one line with %q", tc.p, err, tc.want)
		}
	}
	if srv.Updates() != before {
		t.Error("a refused update changed the zone")
	}
	p.WaitTimeout = 600 * time.Millisecond
	if err := p.Wait(ctx, wild); err == nil || !strings.Contains(err.Error(), "not served by") {
		t.Errorf("Wait for a record that is not there: %v", err)
	}
}

func TestRFC2136Check(t *testing.T) {
	for _, tc := range []struct {
		p    RFC2136
		want string
	}{
		{RFC2136{Zone: "example.com"}, "no server"},
		{RFC2136{Server: "ns1.example.com"}, "no zone"},
		{RFC2136{Server: "ns1.example.com", Zone: "example.com", TSIGName: "k"}, "needs both its name and its secret"},
		{RFC2136{Server: "ns1.example.com:x:y", Zone: "example.com"}, "server"},
		{RFC2136{Server: "ns1.example.com", Zone: "example.com", TSIGName: "k", TSIGSecret: "c2VjcmV0", TSIGAlg: "md5"}, `TSIG algorithm "md5"`},
	} {
		if err := tc.p.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
	}
	ok := RFC2136{Server: "ns1.example.com", Zone: "example.com", TSIGName: "k", TSIGSecret: "c2VjcmV0", TSIGAlg: "HMAC-SHA512"}
	if err := ok.Check(); err != nil {
		t.Error(err)
	}
}
