package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// benchRouter measures what HAProxy costs the example app: wrk against
// the app through HAProxy (by Host header) and against the container's
// own address, same run, same wrk options. There is no goal: the figures
// are reported.
func benchRouter(e *env) ([]row, []string) {
	duration := "10s"
	if e.quick {
		duration = "3s"
	}
	s := e.apps()
	stdout, stderr, code := s.srv.SSH(s.key, "", "app", "ps", s.app, "--format", "json")
	if code != 0 {
		e.t.Fatalf("app ps: exit %d: %s", code, stderr)
	}
	var procs []struct {
		Name  string `json:"name"`
		Addr  string `json:"addr"`
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(stdout), &procs); err != nil || len(procs) == 0 || procs[0].Addr == "" {
		e.t.Fatalf("app ps --format json: %v: %s", err, stdout)
	}
	direct := "http://" + procs[0].Addr + "/"
	routed := fmt.Sprintf("http://127.0.0.1:%d/", s.srv.HTTPPort)
	args := []string{"-t2", "-c32", "-d" + duration, "--latency", "-H", "Host: " + s.host()}

	// A short untimed run of each first (connections, caches).
	progress("router: warming up")
	wrk(e.t, append([]string{"-t2", "-c32", "-d1s", "-H", "Host: " + s.host()}, routed)...)
	wrk(e.t, append([]string{"-t2", "-c32", "-d1s", "-H", "Host: " + s.host()}, direct)...)
	progress("router: wrk %s through HAProxy, then direct to %s", strings.Join(args, " "), procs[0].Addr)
	// The container's TCP counters tell dropped connections (a full
	// listen queue) from slow answers.
	pid := containerPID(e.t, s.srv.Agent.State+"/containers", procs[0].Name)
	o0 := listenOverflows(e.t, pid)
	h := wrk(e.t, append(args, routed)...)
	o1 := listenOverflows(e.t, pid)
	d := wrk(e.t, append(args, direct)...)
	o2 := listenOverflows(e.t, pid)

	lat := func(name string, u, b time.Duration) row {
		return row{name: name, upscale: ms(u), baseline: ms(b), ratio: ratio(u.Seconds(), b.Seconds()), diff: signedMs(u - b), goal: "report"}
	}
	rows := []row{
		{name: fmt.Sprintf("router: requests/s, wrk -t2 -c32 -d%s", duration),
			upscale: fmt.Sprintf("%.0f/s", h.rps), baseline: fmt.Sprintf("%.0f/s", d.rps), ratio: ratio(h.rps, d.rps),
			diff: fmt.Sprintf("%+.0f/s", h.rps-d.rps), goal: "report"},
		lat("router: latency p99", h.p99, d.p99),
		lat("router: latency p50", h.p50, d.p50),
	}
	return rows, []string{
		fmt.Sprintf("router: the example app (one container, idle otherwise); upscale = through HAProxy %s with Host %s, baseline = the container's address %s from `app ps --format json`; "+
			"wrk %s, one untimed 1 s run of each first; both sides share the machine's 2 cores with wrk",
			routed, s.host(), procs[0].Addr, strings.Join(args, " ")),
		fmt.Sprintf("router: through HAProxy %d requests, %s, %d connections dropped by the app's full listen queue (TcpExt ListenOverflows in its network namespace); "+
			"direct %d requests, %s, %d dropped; a dropped SYN is retried after 1 s, which is what a p99 near 1 s means",
			h.requests, h.errors, o1-o0, d.requests, d.errors, o2-o1),
	}
}

// wrkResult is what the bench reads from wrk's output.
type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	requests int
	errors   string // socket errors and non-2xx/3xx answers, as wrk prints them
}

var (
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	wrkRequests = regexp.MustCompile(`(?m)^\s+([0-9]+) requests in`)
	wrkSocket   = regexp.MustCompile(`(?m)^\s+Socket errors: (.*)$`)
	wrkNon2xx   = regexp.MustCompile(`(?m)^\s+Non-2xx or 3xx responses: ([0-9]+)`)
)

func wrk(t *tb, args ...string) wrkResult {
	out, err := exec.Command("wrk", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("wrk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	s := string(out)
	var r wrkResult
	m := wrkRPS.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("wrk %s: no Requests/sec in:\n%s", strings.Join(args, " "), s)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range wrkPct.FindAllStringSubmatch(s, -1) {
		d, err := time.ParseDuration(m[2] + m[3])
		if err != nil {
			t.Fatalf("wrk: latency %q: %v", m[0], err)
		}
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if m := wrkRequests.FindStringSubmatch(s); m != nil {
		r.requests, _ = strconv.Atoi(m[1])
	}
	r.errors = "no socket errors"
	if m := wrkSocket.FindStringSubmatch(s); m != nil {
		r.errors = "socket errors: " + m[1]
	}
	if m := wrkNon2xx.FindStringSubmatch(s); m != nil {
		r.errors += ", " + m[1] + " non-2xx/3xx answers"
	} else {
		r.errors += ", all answers 2xx/3xx"
	}
	return r
}

// containerPID is the host pid of an agent's container's init.
func containerPID(t *tb, lxcpath, name string) int {
	out, err := exec.Command("lxc-info", "-P", lxcpath, "-n", name, "-p", "-H").CombinedOutput()
	pid, perr := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || perr != nil {
		t.Fatalf("lxc-info -P %s -n %s: %v: %s", lxcpath, name, err, out)
	}
	return pid
}

// listenOverflows is TcpExt ListenOverflows of pid's network namespace:
// connections dropped because the listen queue was full.
func listenOverflows(t *tb, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/netstat", pid))
	if err != nil {
		t.Fatalf("%v", err)
	}
	var header []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TcpExt:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, k := range header {
			if k == "ListenOverflows" && i < len(f) {
				n, _ := strconv.ParseInt(f[i], 10, 64)
				return n
			}
		}
	}
	t.Fatalf("no TcpExt ListenOverflows in /proc/%d/net/netstat", pid)
	return 0
}
