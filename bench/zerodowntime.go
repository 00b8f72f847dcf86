package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// loadResult is one request of the open-loop load.
type loadResult struct {
	at      time.Time // when it was due (and sent)
	latency time.Duration
	status  int
	err     error
}

// openLoop sends GET / to the app at rate per second, each request on its
// own schedule whether or not earlier ones answered (a closed loop would
// slow down exactly when the server does, hiding the stall), until stop.
func openLoop(srv *rig.Server, host string, rate int, stop <-chan struct{}) []loadResult {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 200, IdleConnTimeout: 30 * time.Second,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
	url := fmt.Sprintf("http://127.0.0.1:%d/", srv.HTTPPort)
	var mu sync.Mutex
	var results []loadResult
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	for {
		select {
		case <-stop:
			wg.Wait()
			return results
		case <-time.After(time.Until(next)):
		}
		due := next
		next = next.Add(interval)
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(context.Background(), "GET", url, nil)
			req.Host = host
			r := loadResult{at: due}
			resp, err := client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				r.status = resp.StatusCode
			}
			r.latency, r.err = time.Since(due), err
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		})
	}
}

// benchZeroDowntime redeploys a 2-instance app 20 times (config set: a new
// release of the same artifact, the full start, health, switch, drain and
// stop path) under a constant open-loop 300 requests/s, and compares what
// users saw during the redeploys with the same load in steady state.
func benchZeroDowntime(e *env) ([]row, []string) {
	const rate = 300
	redeploys, steady := 20, 10*time.Second
	if e.quick {
		redeploys, steady = 5, 3*time.Second
	}
	s := e.apps()
	const app = "bench/zd"
	progress("zerodowntime: deploying a 2-instance app")
	host := twoInstanceApp(e, s, app)
	loadFor(s.srv, host, rate, 2*time.Second) // warms up connections and the app, untimed

	progress("zerodowntime: %d req/s for %s in steady state", rate, steady)
	base := loadFor(s.srv, host, rate, steady)

	progress("zerodowntime: %d req/s during %d redeploys (config set)", rate, redeploys)
	var each []time.Duration
	all, during, took := loadDuring(s.srv, host, rate, func() {
		for i := range redeploys {
			t0 := time.Now()
			local(e.t, s, "config", "set", app, fmt.Sprintf("MESSAGE=zd-%d", i+1))
			each = append(each, time.Since(t0))
		}
	})
	sum := summarize
	_, dNon, dErr, dFirst := sum(all) // the whole loaded run, edges included
	duringLat, _, _, _ := sum(during)
	bl, bNon, bErr, _ := sum(base)
	if len(duringLat) == 0 || len(bl) == 0 {
		e.t.Fatalf("zerodowntime: no successful requests (steady %d, during %d)", len(bl), len(duringLat))
	}
	failed := dNon + dErr
	ok0 := failed == 0
	up99, b99 := percentile(duringLat, 99), percentile(bl, 99)
	ok2 := up99 <= 2*b99
	rows := []row{
		{name: fmt.Sprintf("zerodowntime: failed requests, %d redeploys at %d req/s", redeploys, rate),
			upscale: fmt.Sprintf("%d of %d", failed, len(all)), baseline: fmt.Sprintf("%d of %d (steady)", bNon+bErr, len(base)),
			ratio: "-", diff: fmt.Sprintf("%d non-2xx, %d conn errors", dNon, dErr), goal: "0 failed", pass: &ok0},
		{name: "zerodowntime: latency p99, during redeploys vs steady state",
			upscale: ms(up99), baseline: ms(b99), ratio: ratio(up99.Seconds(), b99.Seconds()), diff: signedMs(up99 - b99),
			goal: "<= 2x steady", pass: &ok2},
		{name: "zerodowntime: latency p50, during redeploys vs steady state",
			upscale: ms(percentile(duringLat, 50)), baseline: ms(percentile(bl, 50)),
			ratio: ratio(percentile(duringLat, 50).Seconds(), percentile(bl, 50).Seconds()),
			diff:  signedMs(percentile(duringLat, 50) - percentile(bl, 50)), goal: "(report)"},
		{name: "zerodowntime: one redeploy (config set returns), p50",
			upscale: ms(percentile(each, 50)), baseline: "-", ratio: "-", diff: "-", goal: "(report)"},
	}
	notes := []string{fmt.Sprintf("zerodowntime: the example Python app with instances: 2 (%s); %d consecutive `config set MESSAGE=...` "+
		"(each a new release of the same artifact: 2 new containers start and pass GET /, one router switch, the old ones drain, "+
		"get SIGTERM and are destroyed) in %s, under an open-loop load of %d GET/s through HAProxy (each request sent on schedule, "+
		"keep-alive, 10 s timeout); baseline = the same load for %s before, in steady state; %d requests during the redeploys, %d steady",
		app, redeploys, took.Round(time.Millisecond), rate, steady, len(during), len(base))}
	if failed > 0 {
		notes = append(notes, "zerodowntime: first failure: "+dFirst)
	}
	return rows, notes
}

// twoInstanceApp creates app and deploys the example Python app with
// instances: 2 to it; it returns the app's Host header.
func twoInstanceApp(e *env, s *appServer, app string) string {
	s.local(e.t, "app", "create", app)
	src, err := os.ReadFile(filepath.Join(examplePython(), "app.py"))
	if err != nil {
		e.t.Fatalf("example app: %v", err)
	}
	ns, name, _ := strings.Cut(app, "/")
	dir := rig.Repo(e.t, map[string]string{"app.py": string(src), "app.yaml": "runtime: python\nhealth: /\ninstances: 2\nenv:\n  MESSAGE: " + name + "\n"})
	pushApp(e.t, s, dir, app)
	return name + "." + ns + ".upscale.localhost"
}

// loadFor is the open-loop load for d.
func loadFor(srv *rig.Server, host string, rate int, d time.Duration) []loadResult {
	stop := make(chan struct{})
	go func() { time.Sleep(d); close(stop) }()
	return openLoop(srv, host, rate, stop)
}

// loadDuring runs the open-loop load around action: all the results, those
// sent while action ran, and how long it ran.
func loadDuring(srv *rig.Server, host string, rate int, action func()) (all, during []loadResult, took time.Duration) {
	stop := make(chan struct{})
	done := make(chan []loadResult, 1)
	go func() { done <- openLoop(srv, host, rate, stop) }()
	time.Sleep(500 * time.Millisecond)
	begin := time.Now()
	defer func() {
		if r := recover(); r != nil {
			close(stop)
			<-done
			panic(r)
		}
	}()
	action()
	end := time.Now()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	all = <-done
	for _, r := range all {
		if !r.at.Before(begin) && r.at.Before(end) {
			during = append(during, r)
		}
	}
	return all, during, end.Sub(begin)
}

// summarize splits results into the latencies of the answered ones and
// the failures, with the first failure's text.
func summarize(rs []loadResult) (lat []time.Duration, non2xx, connErr int, firstErr string) {
	for _, r := range rs {
		switch {
		case r.err != nil:
			connErr++
			if firstErr == "" {
				firstErr = r.err.Error()
			}
		case r.status < 200 || r.status > 299:
			non2xx++
			if firstErr == "" {
				firstErr = fmt.Sprintf("HTTP %d", r.status)
			}
		default:
			lat = append(lat, r.latency)
		}
	}
	return
}

// local runs an admin command on s's server and fails the bench unless it
// succeeds.
func local(t *tb, s *appServer, args ...string) {
	out, errs, code := s.srv.SSH(s.key, "", args...)
	if code != 0 {
		t.Fatalf("%s: exit %d: %s%s", strings.Join(args, " "), code, errs, out)
	}
}

// pushApp pushes dir's master to app and fails unless it deploys.
func pushApp(t *tb, s *appServer, dir, app string) {
	_, errs, code := s.srv.Git(s.key, dir, "push", s.srv.Remote(app), "master")
	if code != 0 || !strings.Contains(errs, "Application deployed") {
		t.Fatalf("push to %s: exit %d\n%s", app, code, errs)
	}
}
