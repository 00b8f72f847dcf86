package main

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/upscalehq/upscale/scheduler"
)

// benchScheduler measures scheduler.Place, a pure function, placing 10,000
// containers over 1,000 simulated hosts of mixed weights and memory: 5,000
// apps of 2 instances, each placed with the hosts' loads as the earlier
// placements left them. The baseline is the naive way in the same run:
// sort every host by the same criteria for each container. Goal: at least
// 10,000 placements a second.
func benchScheduler(e *env) ([]row, []string) {
	const hostsN, apps, per = 1000, 5000, 2
	rounds := 5
	if e.quick {
		rounds = 2
	}
	progress("scheduler: %d placements over %d hosts, %d rounds each way", apps*per, hostsN, rounds)
	var placeRate, naiveRate []float64
	var placed, naivePlaced map[string]int
	for r := range rounds {
		// Alternate which runs first: the second runs warmer.
		if r%2 == 0 {
			placeRate = append(placeRate, placeRound(hostsN, apps, per, place, &placed, e))
			naiveRate = append(naiveRate, placeRound(hostsN, apps, per, naivePlace, &naivePlaced, e))
		} else {
			naiveRate = append(naiveRate, placeRound(hostsN, apps, per, naivePlace, &naivePlaced, e))
			placeRate = append(placeRate, placeRound(hostsN, apps, per, place, &placed, e))
		}
	}
	// Both must agree, or the baseline measures something else.
	for h, n := range placed {
		if naivePlaced[h] != n {
			e.t.Fatalf("scheduler: Place and the naive baseline disagree on %s: %d vs %d containers", h, n, naivePlaced[h])
		}
	}
	up, base := schedMedian(placeRate), schedMedian(naiveRate)
	ok := up >= 10000
	minLoad, maxLoad := 1<<30, 0
	for _, n := range placed {
		minLoad, maxLoad = min(minLoad, n), max(maxLoad, n)
	}
	return []row{{
		name:     fmt.Sprintf("scheduler: placements/s, %d containers on %d hosts (median of %d)", apps*per, hostsN, rounds),
		upscale:  fmt.Sprintf("%.0f/s", up),
		baseline: fmt.Sprintf("%.0f/s", base),
		ratio:    ratio(up, base),
		diff:     fmt.Sprintf("%+.0f/s", up-base),
		goal:     ">= 10000/s",
		pass:     &ok,
	}}, []string{fmt.Sprintf("scheduler: baseline = the same choice made by sorting all %d hosts for every container; both placed the same containers on the same hosts (per-host new containers %d..%d)", hostsN, minLoad, maxLoad)}
}

func schedMedian(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

type placer func(r scheduler.Request, hosts []scheduler.Host) ([]string, error)

func place(r scheduler.Request, hosts []scheduler.Host) ([]string, error) {
	return scheduler.Place(r, hosts)
}

// placeRound places apps × per containers on fresh simulated hosts and
// returns placements a second; counts gets the containers per host.
func placeRound(hostsN, apps, per int, p placer, counts *map[string]int, e *env) float64 {
	rng := rand.New(rand.NewPCG(1, 2))
	hosts := make([]scheduler.Host, hostsN)
	index := map[string]int{}
	for i := range hosts {
		hosts[i] = scheduler.Host{
			Name:       fmt.Sprintf("host-%04d", i),
			Weight:     1 + rng.IntN(4),
			MemFree:    uint64(16+rng.IntN(48)) << 30,
			Containers: rng.IntN(5),
		}
		index[hosts[i].Name] = i
	}
	got := map[string]int{}
	const memory = 256 << 20
	start := time.Now()
	for range apps {
		placed, err := p(scheduler.Request{N: per, Memory: memory, Existing: map[string]int{}}, hosts)
		if err != nil {
			e.t.Fatalf("scheduler: %v", err)
		}
		for _, h := range placed {
			i := index[h]
			hosts[i].Containers++
			hosts[i].MemFree -= memory
			got[h]++
		}
	}
	took := time.Since(start)
	*counts = got
	return float64(apps*per) / took.Seconds()
}

// naivePlace is Place's rule done the obvious way: for each container,
// sort every host with room by (this app's instances, load per weight,
// free memory, name) and take the first.
func naivePlace(r scheduler.Request, hosts []scheduler.Host) ([]string, error) {
	type cand struct {
		h         scheduler.Host
		app, load int
		free      uint64
	}
	cands := make([]cand, 0, len(hosts))
	for _, h := range hosts {
		cands = append(cands, cand{h: h, app: r.Existing[h.Name], load: h.Containers, free: h.MemFree})
	}
	w := func(c cand) float64 { return float64(max(c.h.Weight, 1)) }
	var out []string
	for len(out) < r.N {
		sort.Slice(cands, func(i, j int) bool {
			a, b := cands[i], cands[j]
			if a.app != b.app {
				return a.app < b.app
			}
			if la, lb := float64(a.load)/w(a), float64(b.load)/w(b); la != lb {
				return la < lb
			}
			if a.free != b.free {
				return a.free > b.free
			}
			return a.h.Name < b.h.Name
		})
		i := 0
		for i < len(cands) && cands[i].free < r.Memory {
			i++
		}
		if i == len(cands) {
			return nil, scheduler.ErrNoCapacity
		}
		out = append(out, cands[i].h.Name)
		cands[i].app++
		cands[i].load++
		cands[i].free -= r.Memory
	}
	return out, nil
}
