package scheduler

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

const gib = 1 << 30

func TestPlace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		req   Request
		hosts []Host
		want  []string
	}{
		{"one host, several instances", Request{N: 3}, []Host{{Name: "a"}}, []string{"a", "a", "a"}},
		{"distinct hosts first", Request{N: 2}, []Host{{Name: "a"}, {Name: "b"}, {Name: "c", Containers: 5}}, []string{"a", "b"}},
		{"least loaded first", Request{N: 1}, []Host{{Name: "a", Containers: 3}, {Name: "b", Containers: 1}}, []string{"b"}},
		{"weight halves load", Request{N: 1}, []Host{{Name: "a", Containers: 4, Weight: 2}, {Name: "b", Containers: 3}}, []string{"a"}},
		{"one app spreads whatever the weights", Request{N: 4}, []Host{{Name: "a", Weight: 3}, {Name: "b", Weight: 1}}, []string{"a", "b", "a", "b"}},
		{"free memory breaks ties", Request{N: 1}, []Host{{Name: "a", MemFree: 1}, {Name: "b", MemFree: 2}}, []string{"b"}},
		{"more instances than hosts", Request{N: 3}, []Host{{Name: "a"}, {Name: "b"}}, []string{"a", "b", "a"}},
		{"away from the app's hosts", Request{N: 1, Existing: map[string]int{"a": 1}}, []Host{{Name: "a"}, {Name: "b", Containers: 9}}, []string{"b"}},
		{"memory limits a host", Request{N: 3, Memory: gib}, []Host{{Name: "a", MemFree: 1 * gib}, {Name: "b", MemFree: 3 * gib}}, []string{"b", "a", "b"}},
		{"none", Request{N: 0}, []Host{{Name: "a"}}, nil},
	} {
		got, err := Place(tc.req, tc.hosts)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: Place = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	// Many one-instance apps land in proportion to the weights.
	hosts := []Host{{Name: "a", Weight: 2}, {Name: "b", Weight: 1}}
	count := map[string]int{}
	for range 30 {
		got, err := Place(Request{N: 1}, hosts)
		if err != nil {
			t.Fatal(err)
		}
		count[got[0]]++
		for i := range hosts {
			if hosts[i].Name == got[0] {
				hosts[i].Containers++
			}
		}
	}
	if count["a"] != 20 || count["b"] != 10 {
		t.Fatalf("weights 2:1 placed %v", count)
	}
	if _, err := Place(Request{N: 1}, nil); !errors.Is(err, ErrNoHosts) {
		t.Fatalf("no hosts: %v", err)
	}
	_, err := Place(Request{N: 3, Memory: gib}, []Host{{Name: "a", MemFree: 2 * gib}})
	if !errors.Is(err, ErrNoCapacity) || err.Error() != "no host has room: 1 more container(s) of 1024 MiB would not fit on any up host" {
		t.Fatalf("no capacity: %v", err)
	}
}

func BenchmarkPlace(b *testing.B) {
	hosts := make([]Host, 1000)
	for i := range hosts {
		hosts[i] = Host{Name: string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676)), Weight: 1 + i%3, MemFree: 64 * gib}
	}
	for b.Loop() {
		if _, err := Place(Request{N: 10000, Memory: 256 << 20}, hosts); err != nil {
			b.Fatal(err)
		}
	}
}

// naive is Place's rule the slow, obvious way: sort every host for each
// container.
func naive(r Request, hosts []Host) []string {
	s := make([]slot, 0, len(hosts))
	for _, h := range hosts {
		w := float64(h.Weight)
		if h.Weight <= 0 {
			w = 1
		}
		s = append(s, slot{host: h, app: r.Existing[h.Name], load: h.Containers, free: h.MemFree, w: w})
	}
	var out []string
	for len(out) < r.N {
		sort.Slice(s, func(i, j int) bool { return less(&s[i], &s[j]) })
		i := 0
		for i < len(s) && s[i].free < r.Memory {
			i++
		}
		if i == len(s) {
			return nil
		}
		out = append(out, s[i].host.Name)
		s[i].app++
		s[i].load++
		s[i].free -= r.Memory
	}
	return out
}

// Both ways Place works (a scan for a few containers, a heap for many)
// choose what sorting every host for each container would.
func TestPlaceMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 2))
	for range 300 {
		hosts := make([]Host, 1+rng.IntN(30))
		for i := range hosts {
			hosts[i] = Host{Name: fmt.Sprintf("h%02d", i), Weight: rng.IntN(4), MemFree: uint64(rng.IntN(8)) * gib, Containers: rng.IntN(6)}
		}
		r := Request{N: 1 + rng.IntN(40), Memory: uint64(rng.IntN(2)) * gib / 2, Existing: map[string]int{}}
		for range rng.IntN(4) {
			r.Existing[hosts[rng.IntN(len(hosts))].Name]++
		}
		got, err := Place(r, hosts)
		want := naive(r, hosts)
		if (err != nil) != (want == nil) || !slices.Equal(got, want) {
			t.Fatalf("Place(%+v, %+v) = %v, %v; want %v", r, hosts, got, err, want)
		}
	}
}
