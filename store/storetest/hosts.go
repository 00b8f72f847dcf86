package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/store"
)

// newHost makes a host reached at 10.0.0.N with containers in 10.77.N.0/24,
// leaving State and Weight to the defaults.
func newHost(name string, n int) store.Host {
	return store.Host{
		Name:     name,
		Address:  fmt.Sprintf("10.0.0.%d", n),
		Subnet:   fmt.Sprintf("10.77.%d.0/24", n),
		Provider: "ssh",
		HostKey:  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + name + " root@" + name,
	}
}

// hostStates is "name:weight:state" for each host.
func hostStates(list []store.Host) []string {
	var out []string
	for _, h := range list {
		out = append(out, fmt.Sprintf("%s:%d:%s", h.Name, h.Weight, h.State))
	}
	return out
}

func testHosts(t *testing.T, s store.Store) {
	ctx := t.Context()
	if list := must(s.ListHosts(ctx))(t); len(list) != 0 {
		t.Fatalf("a new store has hosts %v", hostStates(list))
	}
	at := time.Date(2025, 3, 4, 5, 6, 7, 890123456, time.FixedZone("CET", 3600))
	before := time.Now()
	for _, tc := range []struct {
		name string
		in   store.Host
		want func(h store.Host) store.Host // from in; CreatedAt is checked apart
	}{
		{"defaults", newHost("h1", 1), func(h store.Host) store.Host {
			h.Weight, h.State = 1, store.HostActive
			return h
		}},
		{"everything given", store.Host{
			Name: "ec2-a", Address: "ip-172-31-5-9.eu-west-1.compute.internal", Subnet: "10.77.200.0/24",
			Weight: 7, State: store.HostDraining, Provider: "ec2", InstanceID: "i-0123456789abcdef0", Region: "eu-west-1",
			HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIec2 root@ip-172-31-5-9", CreatedAt: at,
		}, func(h store.Host) store.Host { return h }},
		{"weight 1 and active given", func() store.Host {
			h := newHost("h2", 2)
			h.Weight, h.State = 1, store.HostActive
			return h
		}(), func(h store.Host) store.Host { return h }},
		{"draining with the default weight", func() store.Host {
			h := newHost("h3", 3)
			h.State = store.HostDraining
			return h
		}(), func(h store.Host) store.Host { h.Weight = 1; return h }},
		{"local, IPv6, heavy", store.Host{Name: "local", Address: "::1", Subnet: "fd77::/64", Weight: 1 << 40, Provider: "local"},
			func(h store.Host) store.Host { h.State = store.HostActive; return h }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := must(s.AddHost(ctx, tc.in))(t)
			want := tc.want(tc.in)
			// A CreatedAt given is kept, in UTC.
			if tc.in.CreatedAt.IsZero() {
				recent(t, "CreatedAt", h.CreatedAt, before)
			} else if !h.CreatedAt.Equal(tc.in.CreatedAt) || h.CreatedAt.Location() != time.UTC {
				t.Errorf("CreatedAt = %v, want %v in UTC", h.CreatedAt, tc.in.CreatedAt)
			}
			want.CreatedAt = h.CreatedAt
			equal(t, "AddHost", h, want)
			equal(t, "GetHost", must(s.GetHost(ctx, h.Name))(t), h)
			if i := slices.IndexFunc(must(s.ListHosts(ctx))(t), func(l store.Host) bool { return l.Name == h.Name }); i < 0 {
				t.Errorf("ListHosts does not list %s", h.Name)
			}
		})
	}
	equal(t, "ListHosts", hostStates(must(s.ListHosts(ctx))(t)),
		[]string{"ec2-a:7:draining", "h1:1:active", "h2:1:active", "h3:1:draining", "local:1099511627776:active"})
	// Hosts are not instances: none appeared.
	if list := must(s.ListInstances(ctx, "", ""))(t); len(list) != 0 {
		t.Errorf("instances after AddHost: %v", instanceNames(list))
	}
}

func testListHosts(t *testing.T, s store.Store) {
	ctx := t.Context()
	var added []store.Host
	for i, name := range []string{"h10", "b-2", "h9", "a1", "a-b", "h1"} {
		added = append(added, must(s.AddHost(ctx, newHost(name, i+1)))(t))
	}
	list := must(s.ListHosts(ctx))(t)
	// Byte order: '-' sorts before digits, digits before letters, "h10"
	// before "h9".
	var names []string
	for _, h := range list {
		names = append(names, h.Name)
	}
	equal(t, "names", names, []string{"a-b", "a1", "b-2", "h1", "h10", "h9"})
	for _, h := range added {
		i := slices.IndexFunc(list, func(l store.Host) bool { return l.Name == h.Name })
		equal(t, "listed "+h.Name, list[i], h)
	}
}

// testAddHostConflicts adds each host to a store holding h1 and h2, and
// checks which taken column the error names.
func testAddHostConflicts(t *testing.T, s store.Store) {
	ctx := t.Context()
	h1 := must(s.AddHost(ctx, newHost("h1", 1)))(t)
	h2 := must(s.AddHost(ctx, newHost("h2", 2)))(t)
	with := func(name, address, subnet string) store.Host {
		h := newHost(name, 9)
		h.Address, h.Subnet = address, subnet
		return h
	}
	for _, tc := range []struct {
		name string
		host store.Host
		want string // the whole error text
	}{
		{"name", with("h1", "10.0.0.9", "10.77.9.0/24"), `host "h1": already exists`},
		{"the same host again", h1, `host "h1": already exists`},
		{"name before address and subnet", with("h1", h2.Address, h2.Subnet), `host "h1": already exists`},
		{"address", with("h3", h1.Address, "10.77.9.0/24"), `host "h3": address 10.0.0.1 is taken by host h1`},
		{"subnet", with("h3", "10.0.0.9", h2.Subnet), `host "h3": subnet 10.77.2.0/24 is taken by host h2`},
		{"address before subnet", with("h3", h2.Address, h1.Subnet), `host "h3": address 10.0.0.2 is taken by host h2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := must(s.ListHosts(ctx))(t)
			_, err := s.AddHost(ctx, tc.host)
			checkError(t, err, store.ErrConflict, tc.host.Name)
			if err.Error() != tc.want {
				t.Errorf("error %q, want %q", err, tc.want)
			}
			equal(t, "hosts after a refused AddHost", must(s.ListHosts(ctx))(t), before)
		})
	}

	// What a removed host held is free again.
	must(0, s.RemoveHost(ctx, "h1"))(t)
	for _, h := range []store.Host{with("h3", h1.Address, "10.77.3.0/24"), with("h4", "10.0.0.4", h1.Subnet), with("h1", "10.0.0.5", "10.77.5.0/24")} {
		must(s.AddHost(ctx, h))(t)
	}
	equal(t, "hosts", hostStates(must(s.ListHosts(ctx))(t)), []string{"h1:1:active", "h2:1:active", "h3:1:active", "h4:1:active"})
}

func testHostErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	must(s.AddHost(ctx, newHost("h1", 1)))(t)
	must(s.AddHost(ctx, newHost("h2", 2)))(t)
	// web-v1 runs on h1, and api-v1 on "ghost", a host never added.
	releaseIn(t, s, "acme", "web", store.ReleaseLive)
	api := releaseIn(t, s, "acme", "api", store.ReleaseBuilt)
	must(0, s.Activate(ctx, "acme", "api", api.Version, []store.Instance{newInstance("api-v1", "ghost")}))(t)
	before := snapshot(t, s)
	add := func(h store.Host) func(ctx context.Context) error {
		return func(ctx context.Context) error { _, err := s.AddHost(ctx, h); return err }
	}
	change := func(f func(*store.Host)) store.Host {
		h := newHost("h3", 3)
		f(&h)
		return h
	}

	tests := []struct {
		name string
		op   func(ctx context.Context) error
		// want is the sentinel, or nil for an error that is none of them.
		want    error
		mention string
	}{
		{"add negative weight", add(change(func(h *store.Host) { h.Weight = -1 })), nil, `host "h3": weight -1`},
		{"add unknown state", add(change(func(h *store.Host) { h.State = "gone" })), nil, `host "h3": unknown state "gone"`},
		{"add state in capitals", add(change(func(h *store.Host) { h.State = "Active" })), nil, `host "h3": unknown state "Active"`},
		{"add without name", add(change(func(h *store.Host) { h.Name = "" })), nil, "no name"},
		{"add without address", add(change(func(h *store.Host) { h.Address = "" })), nil, `host "h3": no address`},
		{"add without subnet", add(change(func(h *store.Host) { h.Subnet = "" })), nil, `host "h3": no subnet`},
		{"add bad weight and taken name", add(change(func(h *store.Host) { h.Name, h.Weight = "h1", -1 })), nil, `host "h1": weight -1`},
		{"get missing host", func(ctx context.Context) error { _, err := s.GetHost(ctx, "nope"); return err },
			store.ErrNotFound, `host "nope"`},
		{"get a host that only instances name", func(ctx context.Context) error { _, err := s.GetHost(ctx, "ghost"); return err },
			store.ErrNotFound, `host "ghost"`},
		{"weight 0", func(ctx context.Context) error { return s.SetHostWeight(ctx, "h1", 0) }, nil, `host "h1": weight 0`},
		{"negative weight", func(ctx context.Context) error { return s.SetHostWeight(ctx, "h1", -5) }, nil, `host "h1": weight -5`},
		{"weight 0 of a missing host", func(ctx context.Context) error { return s.SetHostWeight(ctx, "nope", 0) },
			nil, `host "nope": weight 0`},
		{"weight of missing host", func(ctx context.Context) error { return s.SetHostWeight(ctx, "nope", 2) },
			store.ErrNotFound, `host "nope"`},
		{"unknown state", func(ctx context.Context) error { return s.SetHostState(ctx, "h1", "gone") },
			nil, `host "h1": unknown state "gone"`},
		{"empty state", func(ctx context.Context) error { return s.SetHostState(ctx, "h1", "") },
			nil, `host "h1": unknown state ""`},
		{"state of missing host", func(ctx context.Context) error { return s.SetHostState(ctx, "nope", store.HostDraining) },
			store.ErrNotFound, `host "nope"`},
		{"remove missing host", func(ctx context.Context) error { return s.RemoveHost(ctx, "nope") },
			store.ErrNotFound, `host "nope"`},
		{"remove a host that only instances name", func(ctx context.Context) error { return s.RemoveHost(ctx, "ghost") },
			store.ErrNotFound, `host "ghost"`},
		{"remove a host with an instance", func(ctx context.Context) error { return s.RemoveHost(ctx, "h1") },
			store.ErrNotEmpty, `host "h1": still has 1 instance:`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkError(t, tc.op(ctx), tc.want, tc.mention) })
	}
	if after := snapshot(t, s); after != before {
		t.Errorf("failed calls changed the store:\nbefore %s\nafter  %s", before, after)
	}
}

// testSetHost changes h1 step by step and checks that h2 never changes.
func testSetHost(t *testing.T, s store.Store) {
	ctx := t.Context()
	h1 := must(s.AddHost(ctx, newHost("h1", 1)))(t)
	h2 := must(s.AddHost(ctx, newHost("h2", 2)))(t)
	for _, step := range []struct {
		name   string
		weight int             // SetHostWeight when not 0
		state  store.HostState // SetHostState when not ""
	}{
		{"heavier", 5, ""},
		{"same weight again", 5, ""},
		{"drain", 0, store.HostDraining},
		{"drain again", 0, store.HostDraining},
		{"weight while draining", 3, ""},
		{"activate", 0, store.HostActive},
		{"activate again", 0, store.HostActive},
		{"lightest", 1, ""},
		{"very heavy", 1 << 40, ""},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.weight != 0 {
				must(0, s.SetHostWeight(ctx, "h1", step.weight))(t)
				h1.Weight = step.weight
			}
			if step.state != "" {
				must(0, s.SetHostState(ctx, "h1", step.state))(t)
				h1.State = step.state
			}
			equal(t, "GetHost", must(s.GetHost(ctx, "h1"))(t), h1)
			equal(t, "ListHosts", must(s.ListHosts(ctx))(t), []store.Host{h1, h2})
		})
	}
}

func testRemoveHost(t *testing.T, s store.Store) {
	ctx := t.Context()
	seed(t, s)
	for i, name := range []string{"h1", "h2", "h3", "h10"} {
		must(s.AddHost(ctx, newHost(name, i+1)))(t)
	}
	web := releaseIn(t, s, "acme", "web", store.ReleaseBuilt).Version
	api := releaseIn(t, s, "acme", "api", store.ReleaseBuilt).Version
	site := releaseIn(t, s, "beta", "site", store.ReleaseBuilt).Version
	must(0, s.Activate(ctx, "acme", "web", web, []store.Instance{newInstance("web-a", "h1"), newInstance("web-b", "h2")}))(t)
	must(0, s.Activate(ctx, "acme", "api", api, []store.Instance{newInstance("api-a", "h1"), newInstance("api-b", "h1")}))(t)
	// h10 is no prefix match for h1.
	must(0, s.Activate(ctx, "beta", "site", site, []store.Instance{newInstance("site-a", "h10")}))(t)

	for _, step := range []struct {
		name    string
		do      func() error // moves instances first, when not nil
		remove  string
		want    error
		mention string
		hosts   []string // ListHosts after
	}{
		{"h1 runs three instances", nil, "h1", store.ErrNotEmpty, `host "h1": still has 3 instances`,
			[]string{"h1", "h10", "h2", "h3"}},
		{"h2 runs one", nil, "h2", store.ErrNotEmpty, `host "h2": still has 1 instance:`,
			[]string{"h1", "h10", "h2", "h3"}},
		{"h3 runs none", nil, "h3", nil, "", []string{"h1", "h10", "h2"}},
		{"draining changes nothing", func() error { return s.SetHostState(ctx, "h1", store.HostDraining) },
			"h1", store.ErrNotEmpty, `host "h1": still has 3 instances`, []string{"h1", "h10", "h2"}},
		{"web moved off h1", func() error {
			return s.Activate(ctx, "acme", "web", web, []store.Instance{newInstance("web-a", "h2"), newInstance("web-b", "h2")})
		}, "h1", store.ErrNotEmpty, `host "h1": still has 2 instances`, []string{"h1", "h10", "h2"}},
		{"api moved off h1", func() error {
			return s.SetInstances(ctx, "acme", "api", []store.Instance{{Name: "api-a", Release: api, Host: "h10"}})
		}, "h1", nil, "", []string{"h10", "h2"}},
		{"h1 again", nil, "h1", store.ErrNotFound, `host "h1"`, []string{"h10", "h2"}},
		{"web's app deleted", func() error { return s.DeleteApp(ctx, "acme", "web") }, "h2", nil, "", []string{"h10"}},
		{"h10 runs two", nil, "h10", store.ErrNotEmpty, `host "h10": still has 2 instances`, []string{"h10"}},
		{"the apps stopped", func() error {
			return errors.Join(s.SetInstances(ctx, "acme", "api", nil), s.SetInstances(ctx, "beta", "site", nil))
		}, "h10", nil, "", nil},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.do != nil {
				must(0, step.do())(t)
			}
			err := s.RemoveHost(ctx, step.remove)
			if step.want == nil {
				must(0, err)(t)
			} else {
				checkError(t, err, step.want, step.mention)
			}
			var names []string
			for _, h := range must(s.ListHosts(ctx))(t) {
				names = append(names, h.Name)
			}
			equal(t, "hosts", names, step.hosts)
		})
	}
	// A name comes back as a new host: active, not draining as h1 was.
	h1 := must(s.AddHost(ctx, newHost("h1", 1)))(t)
	equal(t, "re-added", must(s.GetHost(ctx, "h1"))(t), h1)
	if h1.State != store.HostActive {
		t.Errorf("re-added host is %s", h1.State)
	}
}

func testConcurrentAddHost(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		host func(i int) store.Host
		// taken is the text of a loser's error, given the winner.
		taken func(loser, winner store.Host) string
	}{
		{"same name", func(i int) store.Host { return newHost("same", 10+i) },
			func(loser, _ store.Host) string { return `host "same": already exists` }},
		{"same address", func(i int) store.Host {
			h := newHost(fmt.Sprintf("addr-%d", i), 30+i)
			h.Address = "10.1.1.1"
			return h
		}, func(loser, winner store.Host) string {
			return fmt.Sprintf("host %q: address 10.1.1.1 is taken by host %s", loser.Name, winner.Name)
		}},
		{"same subnet", func(i int) store.Host {
			h := newHost(fmt.Sprintf("net-%d", i), 50+i)
			h.Subnet = "10.78.0.0/24"
			return h
		}, func(loser, winner store.Host) string {
			return fmt.Sprintf("host %q: subnet 10.78.0.0/24 is taken by host %s", loser.Name, winner.Name)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 10
			errs := race(n, func(i int) error { _, err := s.AddHost(ctx, tc.host(i)); return err })
			winner := tc.host(oneWins(t, errs, store.ErrConflict))
			for i, err := range errs {
				if want := tc.taken(tc.host(i), winner); err != nil && err.Error() != want {
					t.Errorf("error %q, want %q", err, want)
				}
			}
			got := must(s.GetHost(ctx, winner.Name))(t)
			winner.Weight, winner.State, winner.CreatedAt = 1, store.HostActive, got.CreatedAt
			equal(t, "stored host", got, winner)
		})
	}
	if list := must(s.ListHosts(ctx))(t); len(list) != 3 {
		t.Errorf("hosts %v, want one winner of each race", hostStates(list))
	}
}

// hostsFreeText adds a host whose free-text fields are text and checks that
// they read back as given.
func hostsFreeText(t *testing.T, s store.Store, n int, text string) {
	t.Helper()
	ctx := t.Context()
	h := newHost(fmt.Sprintf("text-%d", n), 100+n)
	h.Provider, h.InstanceID, h.Region = text, text, text
	h.HostKey += " " + text
	added := must(s.AddHost(ctx, h))(t)
	got := must(s.GetHost(ctx, h.Name))(t)
	equal(t, "host", got, added)
	if got.Provider != text || got.InstanceID != text || got.Region != text || !strings.HasSuffix(got.HostKey, " "+text) {
		t.Errorf("Provider, InstanceID, Region, HostKey = %q, %q, %q, %q; want %q", got.Provider, got.InstanceID, got.Region, got.HostKey, text)
	}
}
