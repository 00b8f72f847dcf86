package main

import (
	"fmt"
	"time"
)

// benchNeighbours measures what one tenant's deploys cost another: app B
// under a constant open-loop 300 requests/s while app A is redeployed 20
// times, then while A is stopped and started 10 times, against B alone
// under the same load.
func benchNeighbours(e *env) ([]row, []string) {
	const rate = 300
	redeploys, cycles, steady := 20, 10, 10*time.Second
	if e.quick {
		redeploys, cycles, steady = 5, 3, 3*time.Second
	}
	s := e.apps()
	progress("neighbours: deploying two 2-instance apps")
	twoInstanceApp(e, s, "bench/noisy")
	host := twoInstanceApp(e, s, "bench/quiet")
	loadFor(s.srv, host, rate, 2*time.Second) // warm-up, untimed

	progress("neighbours: bench/quiet alone at %d req/s for %s", rate, steady)
	alone, _, _, _ := summarize(loadFor(s.srv, host, rate, steady))
	progress("neighbours: bench/quiet at %d req/s during %d redeploys of bench/noisy", rate, redeploys)
	_, deploying, tookDeploys := loadDuring(s.srv, host, rate, func() {
		for i := range redeploys {
			local(e.t, s, "config", "set", "bench/noisy", fmt.Sprintf("MESSAGE=noisy-%d", i+1))
		}
	})
	progress("neighbours: bench/quiet at %d req/s during %d stops and starts of bench/noisy", rate, cycles)
	_, cycling, tookCycles := loadDuring(s.srv, host, rate, func() {
		for range cycles {
			local(e.t, s, "app", "stop", "bench/noisy")
			local(e.t, s, "app", "run", "bench/noisy")
		}
	})
	a99 := percentile(alone, 99)
	var rows []row
	var failed []string
	for _, m := range []struct {
		what string
		rs   []loadResult
	}{{fmt.Sprintf("%d redeploys", redeploys), deploying}, {fmt.Sprintf("%d stops and starts", cycles), cycling}} {
		lat, non2xx, connErr, first := summarize(m.rs)
		if len(lat) == 0 {
			e.t.Fatalf("neighbours: no request answered during the neighbour's %s: %s", m.what, first)
		}
		if non2xx+connErr > 0 {
			failed = append(failed, fmt.Sprintf("%d of %d requests failed during the neighbour's %s (first: %s)", non2xx+connErr, len(m.rs), m.what, first))
		}
		p99 := percentile(lat, 99)
		ok := p99*2 <= a99*3 && non2xx+connErr == 0
		rows = append(rows, row{name: "neighbours: B's latency p99, during A's " + m.what + " vs B alone",
			upscale: ms(p99), baseline: ms(a99), ratio: ratio(p99.Seconds(), a99.Seconds()), diff: signedMs(p99 - a99),
			goal: "<= 1.5x alone, 0 failed", pass: &ok})
	}
	notes := []string{fmt.Sprintf("neighbours: two apps on one host, both the example Python app with instances: 2: "+
		"B (bench/quiet) under an open-loop load of %d GET/s through HAProxy while A (bench/noisy) is redeployed %d times "+
		"(`config set`, %s) and then stopped and started %d times (`app stop`, `app run`, %s); baseline = B under the same load for %s, A idle",
		rate, redeploys, tookDeploys.Round(time.Millisecond), cycles, tookCycles.Round(time.Millisecond), steady)}
	return rows, append(notes, failed...)
}
