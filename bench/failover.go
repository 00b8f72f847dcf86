package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
	"github.com/upscalehq/upscale/msgtext"
)

// benchFailover: an app of 2 instances on 3 hosts (network namespaces
// with their own sshd, added with hosts add, each with its own agent,
// bridge and subnet) under 100 requests a second, open loop; one of its
// hosts is cut (agent killed, containers stopped, link down). It reports
// the time until the host is marked down, until the router stops sending
// to the lost instance, until a replacement answers, and the requests that
// failed meanwhile, against the same load with no failure (the baseline,
// same run). Goals: detection <= 5 s, replacement <= 10 s, failures < 1%.
func benchFailover(e *env) ([]row, []string) {
	const rate = 100
	baseFor, maxWindow := 10*time.Second, 30*time.Second
	if e.quick {
		baseFor = 5 * time.Second
	}
	progress("failover: starting a server and three hosts (network namespaces with sshd)")
	net := rig.NewHostNetwork(e.t)
	users := rig.NewHostUsers(e.t)
	srv := rig.StartForHosts(e.t, e.bin, net)
	local := func(args ...string) string {
		out, errs, code := srv.Local(args...)
		if code != 0 {
			e.t.Fatalf("upscale %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		return out
	}
	ssh := func(stdin string, args ...string) string {
		out, errs, code := srv.SSH(e.key, stdin, args...)
		if code != 0 {
			e.t.Fatalf("ssh %s: exit %d: %s%s", strings.Join(args, " "), code, out, errs)
		}
		return out
	}
	local("keys", "add", "--admin", "--name", "bench", "--public", e.key.Public)
	ssh("", "namespace", "create", "bench")
	ssh("", "app", "create", "bench/fo")
	identity, err := os.ReadFile(users.Key.Path)
	if err != nil {
		e.t.Fatalf("%v", err)
	}
	hosts := map[string]*rig.HostNet{}
	for _, name := range []string{"h1", "h2", "h3"} {
		h := rig.NewHostNet(e.t, net, users)
		hosts[name] = h
		ssh(string(identity), "hosts", "add", "--host", h.IP, "-u", "root", "-i", "-", "--name", name, "--dir", h.AgentDir, "--host-key", "'"+h.HostKey()+"'")
	}
	progress("failover: deploying an app of 2 instances")
	dir := rig.Repo(e.t, map[string]string{"app.yaml": "runtime: python\ninstances: 2\nmemory: 128M\nhealth: /\n", "app.py": failoverApp})
	if _, errs, code := srv.Git(e.key, dir, "push", srv.Remote("bench/fo"), "HEAD:master"); code != 0 {
		e.t.Fatalf("push: %s", errs)
	}
	type proc struct{ Name, Host, State string }
	ps := func() []proc {
		var v []proc
		if err := json.Unmarshal([]byte(ssh("", "app", "ps", "bench/fo", "--format", "json")), &v); err != nil {
			e.t.Fatalf("app ps: %v", err)
		}
		return v
	}
	before := ps()
	if len(before) != 2 || before[0].Host == before[1].Host {
		e.t.Fatalf("the app runs %+v, want 2 instances on 2 hosts", before)
	}

	progress("failover: baseline, %d req/s for %s with every host up", rate, baseFor)
	base := startFailoverLoad(srv, "fo.bench.upscale.localhost", rate)
	time.Sleep(baseFor)
	baseRes := base.stop()

	victim := before[0]
	progress("failover: %d req/s; cutting %s (runs %s)", rate, victim.Host, victim.Name)
	load := startFailoverLoad(srv, "fo.bench.upscale.localhost", rate)
	time.Sleep(3 * time.Second)
	cut := time.Now()
	if err := hosts[victim.Host].Cut(); err != nil {
		e.t.Fatalf("cutting %s: %v", victim.Host, err)
	}
	old := map[string]bool{}
	for _, p := range before {
		old["fo "+p.Name] = true
	}
	var replaced time.Time
	for time.Since(cut) < maxWindow {
		if t := load.firstNew(old, cut); !t.IsZero() {
			replaced = t
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Some more after the replacement: the window ends once the app is
	// whole again.
	time.Sleep(5 * time.Second)
	res := load.stop()
	end := time.Now()

	log := srv.Log()
	detected := foLogTime(log, `msg="host down" host=`+victim.Host, cut)
	left := foLogTime(log, `msg="draining servers" servers=[bench.fo/`+victim.Name, cut)
	since := func(t time.Time) (string, time.Duration, bool) {
		if t.IsZero() {
			return "never", 0, false
		}
		d := t.Sub(cut)
		return fmt.Sprintf("%.2f s", d.Seconds()), d, true
	}
	detStr, det, detOK := since(detected)
	leftStr, _, _ := since(left)
	repStr, rep, repOK := since(replaced)
	detPass, repPass := detOK && det <= 5*time.Second, repOK && rep <= 10*time.Second

	var window []foResult
	for _, r := range res {
		if !r.at.Before(cut) && r.at.Before(end) {
			window = append(window, r)
		}
	}
	failed, baseFailed := foFailed(window), foFailed(baseRes)
	rateW, rateB := foPct(failed, len(window)), foPct(baseFailed, len(baseRes))
	failPass := len(window) > 0 && rateW < 1
	p99 := func(rs []foResult) time.Duration {
		var ds []time.Duration
		for _, r := range rs {
			ds = append(ds, r.took)
		}
		if len(ds) == 0 {
			return 0
		}
		return percentile(ds, 99)
	}
	wP99, bP99 := p99(window), p99(baseRes)
	rows := []row{
		{name: "failover: host marked down after the cut", upscale: detStr, baseline: "-", ratio: "-", diff: "-", goal: "<= 5 s", pass: &detPass},
		{name: "failover: lost instance leaves HAProxy after the cut", upscale: leftStr, baseline: "-", ratio: "-", diff: "-", goal: "(info)"},
		{name: "failover: replacement answering after the cut", upscale: repStr, baseline: "-", ratio: "-", diff: "-", goal: "<= 10 s", pass: &repPass},
		{name: fmt.Sprintf("failover: failed requests, %d req/s (window %d / baseline %d requests)", rate, len(window), len(baseRes)),
			upscale: fmt.Sprintf("%d (%.2f%%)", failed, rateW), baseline: fmt.Sprintf("%d (%.2f%%)", baseFailed, rateB),
			ratio: "-", diff: fmt.Sprintf("%+d", failed-baseFailed), goal: "< 1%", pass: &failPass},
		{name: "failover: request latency p99", upscale: ms(wP99), baseline: ms(bP99), ratio: ratio(wP99.Seconds(), bP99.Seconds()),
			diff: signedMs(wP99 - bP99), goal: "(tail)"},
	}
	notes := []string{fmt.Sprintf("failover: 3 hosts = network namespaces with sshd, agents installed by hosts add; the cut kills %s's agent, stops its containers and downs its link; "+
		"the window runs from the cut to 5 s after the replacement answered; the baseline is the same load for %s before, with every host up; first failures: %s",
		victim.Host, baseFor, foFirstFailures(window, 3))}
	return rows, notes
}

const failoverApp = `import os, socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = socket.gethostname()


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("fo " + NAME + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 128


Server(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Hello).serve_forever()
`

// foLogTime is the time of the first server log line containing what at or
// after since; zero when there is none.
func foLogTime(log, what string, since time.Time) time.Time {
	re := regexp.MustCompile(`^time=(\S+) `)
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, what) {
			continue
		}
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, m[1])
		if err == nil && !t.Before(since.Add(-time.Millisecond)) {
			return t
		}
	}
	return time.Time{}
}

type foResult struct {
	at   time.Time
	took time.Duration
	ok   bool
	body string
	err  string
}

// failoverLoad sends requests at a steady rate, open loop: each leaves on
// schedule in its own goroutine however long the earlier ones take, as
// users' requests would. Every other request has a connection of its own.
type failoverLoad struct {
	quit chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	res  []foResult
}

func startFailoverLoad(srv *rig.Server, host string, rate int) *failoverLoad {
	l := &failoverLoad{quit: make(chan struct{}), done: make(chan struct{})}
	clients := []*http.Client{
		{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", srv.HTTPPort)
	every := time.Second / time.Duration(rate)
	go func() {
		defer close(l.done)
		next := time.Now()
		for i := 0; ; i++ {
			select {
			case <-l.quit:
				l.wg.Wait()
				return
			case <-time.After(time.Until(next)):
			}
			next = next.Add(every)
			l.wg.Add(1)
			go func(c *http.Client) {
				defer l.wg.Done()
				r := foResult{at: time.Now()}
				req, _ := http.NewRequest("GET", url, nil)
				req.Host = host
				resp, err := c.Do(req)
				if err == nil {
					b, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					r.body = strings.TrimSpace(string(b))
					r.ok = rerr == nil && resp.StatusCode == 200 && strings.HasPrefix(r.body, "fo ")
					if !r.ok {
						r.err = fmt.Sprintf("%s %q", resp.Status, msgtext.Truncate(r.body, 60))
					}
				} else {
					r.err = err.Error()
				}
				r.took = time.Since(r.at)
				l.mu.Lock()
				l.res = append(l.res, r)
				l.mu.Unlock()
			}(clients[i%2])
		}
	}()
	return l
}

// firstNew is when a request sent after since was first answered by an
// instance not in old; zero if none yet.
func (l *failoverLoad) firstNew(old map[string]bool, since time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, r := range l.res {
		if r.ok && !old[r.body] && r.at.After(since) {
			if at := r.at.Add(r.took); first.IsZero() || at.Before(first) {
				first = at
			}
		}
	}
	return first
}

func (l *failoverLoad) stop() []foResult {
	close(l.quit)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Clone(l.res)
	slices.SortFunc(out, func(a, b foResult) int { return a.at.Compare(b.at) })
	return out
}

func foFailed(rs []foResult) int {
	n := 0
	for _, r := range rs {
		if !r.ok {
			n++
		}
	}
	return n
}

func foPct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

func foFirstFailures(rs []foResult, n int) string {
	var out []string
	for _, r := range rs {
		if !r.ok && len(out) < n {
			out = append(out, r.at.Format("15:04:05.000")+" "+r.err)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "; ")
}
