// Package scheduler decides where containers run. It is pure: hosts in,
// placements out, so it can be tested (and benchmarked) without hosts.
package scheduler

import (
	"errors"
	"sort"
)

// Host is what placement needs to know of a host.
type Host struct {
	Name       string
	Weight     int    // relative share of containers; 0 counts as 1
	MemFree    uint64 // bytes available
	Containers int    // containers it runs now
}

// ErrNoHosts means no host is up to run anything.
var ErrNoHosts = errors.New("no host is up to run containers: is upscale-agent running?")

// Place picks hosts for n new containers: distinct hosts while there are
// enough, the least loaded (containers per weight, then most free memory)
// first.
func Place(n int, hosts []Host) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	if len(hosts) == 0 {
		return nil, ErrNoHosts
	}
	load := make([]int, len(hosts))
	for i, h := range hosts {
		load[i] = h.Containers
	}
	out := make([]string, 0, n)
	for len(out) < n {
		// Each round uses every host at most once, so instances spread.
		order := make([]int, len(hosts))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool {
			ha, hb := hosts[order[a]], hosts[order[b]]
			la, lb := float64(load[order[a]])/weight(ha), float64(load[order[b]])/weight(hb)
			if la != lb {
				return la < lb
			}
			return ha.MemFree > hb.MemFree
		})
		for _, i := range order {
			if len(out) == n {
				break
			}
			out = append(out, hosts[i].Name)
			load[i]++
		}
	}
	return out, nil
}

func weight(h Host) float64 {
	if h.Weight <= 0 {
		return 1
	}
	return float64(h.Weight)
}
