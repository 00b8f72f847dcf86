package main

import (
	"fmt"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/e2e/rig"
)

// benchStart measures a container start as upscale-agent does one: create
// (overlay on the cached python image, /app copied, LXC config) and start
// an unprivileged container of the example app until its port accepts a
// TCP connection, against the same Python app started on the host with
// the same command until its port answers: the ratio is what the
// container costs.
func benchStart(e *env) ([]row, []string) {
	runs := 20
	if e.quick {
		runs = 5
	}
	l := e.lxc()
	n := 0
	ctr := func() (total time.Duration, t ctrTimes, ready, destroy time.Duration) {
		n++
		name := fmt.Sprintf("bench-start-%d", n)
		t0 := time.Now()
		t = l.run(name, "start")
		t2 := time.Now()
		l.waitCtr(name, t.ip)
		total, ready = time.Since(t0), time.Since(t2)
		return total, t, ready, l.destroy(name)
	}
	host := func() time.Duration {
		port := rig.FreePort(e.t)
		t0 := time.Now()
		cmd := l.startHost(port, "start", "")
		waitPort(e.t, fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second,
			func() bool { return !exited(cmd) }, func() string { return "" })
		d := time.Since(t0)
		l.stopHost(cmd)
		return d
	}
	// One of each first, untimed: the image's and Python's files come into
	// the page cache, as on any host that has run the runtime before.
	ctr()
	host()

	progress("start: %d container starts and %d host starts, alternating", runs, runs)
	var up, base, create, start, ready, destroy []time.Duration
	for i := range runs {
		var u time.Duration
		var t ctrTimes
		var r, d time.Duration
		if i%2 == 0 {
			u, t, r, d = ctr()
			base = append(base, host())
		} else {
			base = append(base, host())
			u, t, r, d = ctr()
		}
		up, create, start, ready, destroy = append(up, u), append(create, t.create), append(start, t.start), append(ready, r), append(destroy, d)
	}
	rows := latencyRows("container start until port answers", up, base, "p50 <= 200 ms",
		func(u, _ time.Duration) bool { return u <= 200*time.Millisecond })
	rows = append(rows,
		part("start: Create (dirs, /app copy, LXC config), p50", create),
		part("start: Start (lxc-start until running), p50", start),
		part("start: app listening after Start returned, p50", ready),
		part("start: Destroy (SIGKILL, teardown, rm), p50", destroy),
	)
	return rows, []string{
		fmt.Sprintf("start: container = lxc.Runtime Create+Start of the example app (cached python image %s, its start command, %s=%d, 512 MiB limit, pids 512) "+
			"until a TCP connect to its address succeeds (polled every 1 ms after Start returns); baseline = the same command in /bin/sh on the host, "+
			"same environment, until 127.0.0.1:PORT accepts; runs alternate sides after one untimed run of each; all runs, container %s, host %s",
			l.image, l.port, agentapi.Port, fmtMs(up), fmtMs(base)),
	}
}

// part is a diagnostic row with no baseline: the median of ds.
func part(name string, ds []time.Duration) row {
	return row{name: name, upscale: ms(percentile(ds, 50)), baseline: "-", ratio: "-", diff: "-", goal: "(where the time goes)"}
}

func fmtMs(ds []time.Duration) string {
	return fmtRuns(ds, func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 })
}
