package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/upscalehq/upscale/certs/pebbletest"
	"github.com/upscalehq/upscale/e2e/rig"
)

// benchHTTPS measures HTTPS with a real ACME CA (Pebble, HTTP-01 through
// HAProxy): the time from `app create` to a valid HTTPS answer after the
// first push; HTTPS against plain HTTP through the same HAProxy; and the
// renewal of every certificate under 300 requests/s, each on a new TLS
// connection (a handshake each), which must lose none.
func benchHTTPS(e *env) ([]row, []string) {
	apps := 5
	duration := "10s"
	if e.quick {
		apps, duration = 3, "3s"
	}
	const domain = "upscale.example.net"
	resolver := startResolver(e.t)
	httpPort, httpsPort := rig.FreePort(e.t), rig.FreePort(e.t)
	progress("https: starting Pebble and a server with HTTPS on")
	peb := pebbletest.Start(e.t, pebbletest.Options{HTTPPort: httpPort, DNS: resolver, Validity: 24 * time.Hour})
	srv := rig.StartWithAgent(e.t, e.bin, "--domain", domain, "--http", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--https", fmt.Sprintf("127.0.0.1:%d", httpsPort), "--acme-directory", peb.Directory, "--acme-ca-root", peb.CARoot)
	srv.HTTPPort = httpPort
	s := &appServer{srv: srv, key: e.key}
	s.local(e.t, "keys", "add", "--admin", "--name", "bench", "--public", e.key.Public)
	s.local(e.t, "namespace", "create", "bench")
	src, err := os.ReadFile(filepath.Join(examplePython(), "app.py"))
	if err != nil {
		e.t.Fatalf("example app: %v", err)
	}
	var roots *x509.CertPool
	var total, afterPush []time.Duration
	var hosts []string
	for i := range apps {
		app := fmt.Sprintf("bench/tls%d", i)
		host := fmt.Sprintf("tls%d.bench.%s", i, domain)
		dir := rig.Repo(e.t, map[string]string{"app.py": string(src), "app.yaml": "runtime: python\nhealth: /\nenv:\n  MESSAGE: tls\n"})
		progress("https: %s: app create, push, wait for a valid certificate", app)
		start := time.Now()
		s.local(e.t, "app", "create", app)
		if _, errs, code := srv.Git(e.key, dir, "push", srv.Remote(app), "HEAD:master"); code != 0 {
			e.t.Fatalf("push %s: %s", app, errs)
		}
		pushed := time.Now()
		if roots == nil {
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(peb.RootPEM(e.t)) {
				e.t.Fatalf("pebble's root: no certificate in it")
			}
		}
		for deadline := time.Now().Add(60 * time.Second); httpsGet(roots, httpsPort, host, false) != nil; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				out, _, _ := srv.Local("certs", "list", app)
				e.t.Fatalf("https://%s: no valid answer a minute after the push: %v\n%s\npebble:\n%s", host, httpsGet(roots, httpsPort, host, false), out, peb.Log())
			}
		}
		total, afterPush = append(total, time.Since(start)), append(afterPush, time.Since(pushed))
		hosts = append(hosts, host)
	}
	slices.Sort(total)
	slices.Sort(afterPush)
	p50 := total[len(total)/2]
	pass := p50 <= 5*time.Second
	rows := []row{
		{name: fmt.Sprintf("https: app create → valid HTTPS after the first push, p50 of %d (Pebble, HTTP-01)", apps),
			upscale: ms(p50), baseline: "-", ratio: "-", diff: "-", goal: "≤ 5 s", pass: &pass},
		{name: "https: of which after the push returned, p50", upscale: ms(afterPush[len(afterPush)/2]), baseline: "-", ratio: "-", diff: "-", goal: "report"},
	}

	// HTTPS vs HTTP through the same HAProxy, keep-alive connections.
	args := []string{"-t2", "-c32", "-d" + duration, "--latency", "-H", "Host: " + hosts[0]}
	progress("https: wrk %s over HTTPS, then HTTP", strings.Join(args, " "))
	s.local(e.t, "app", "set", "bench/tls0", "https-redirect", "off")
	wrk(e.t, append([]string{"-t2", "-c32", "-d1s", "-H", "Host: " + hosts[0]}, fmt.Sprintf("https://127.0.0.1:%d/", httpsPort))...)
	hs := wrk(e.t, append(args, fmt.Sprintf("https://127.0.0.1:%d/", httpsPort))...)
	hp := wrk(e.t, append(args, fmt.Sprintf("http://127.0.0.1:%d/", httpPort))...)
	rows = append(rows,
		row{name: fmt.Sprintf("https: requests/s through HAProxy, HTTPS vs HTTP, wrk -t2 -c32 -d%s", duration),
			upscale: fmt.Sprintf("%.0f/s", hs.rps), baseline: fmt.Sprintf("%.0f/s", hp.rps), ratio: ratio(hs.rps, hp.rps),
			diff: fmt.Sprintf("%+.0f/s", hs.rps-hp.rps), goal: "report"},
		row{name: "https: latency p99, HTTPS vs HTTP", upscale: ms(hs.p99), baseline: ms(hp.p99), ratio: ratio(hs.p99.Seconds(), hp.p99.Seconds()),
			diff: signedMs(hs.p99 - hp.p99), goal: "report"})

	// Every certificate renewed under 300 requests/s, a handshake each.
	progress("https: renewing %d certificates under 300 requests/s of new TLS connections", apps)
	serials := map[string]string{}
	for _, h := range hosts {
		serials[h] = leafSerial(roots, httpsPort, h)
	}
	stop := make(chan struct{})
	results := make(chan []error)
	go func() { results <- tlsOpenLoop(roots, httpsPort, hosts, 300, stop) }()
	time.Sleep(time.Second)
	renewStart := time.Now()
	for i := range apps {
		s.local(e.t, "certs", "renew", fmt.Sprintf("bench/tls%d", i))
	}
	for _, h := range hosts {
		for deadline := time.Now().Add(60 * time.Second); leafSerial(roots, httpsPort, h) == serials[h]; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				close(stop)
				e.t.Fatalf("https: %s not renewed within a minute", h)
			}
		}
	}
	renewed := time.Since(renewStart)
	time.Sleep(time.Second)
	close(stop)
	errs := <-results
	var failed, handshakes int
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed++
		if strings.Contains(err.Error(), "tls") || strings.Contains(err.Error(), "x509") || strings.Contains(err.Error(), "certificate") {
			handshakes++
		}
	}
	ok := failed == 0
	rows = append(rows, row{name: fmt.Sprintf("https: renewal of %d certificates under 300 req/s (new TLS connection each): failed requests / handshake errors", apps),
		upscale: fmt.Sprintf("%d / %d of %d", failed, handshakes, len(errs)), baseline: "-", ratio: "-", diff: "-", goal: "0", pass: &ok})
	return rows, []string{
		fmt.Sprintf("https: Pebble 2.10 as the CA (HTTP-01 answered through HAProxy's port 80), certificates installed into HAProxy through its runtime API; "+
			"every name renewed within %s of the first certs renew", renewed.Round(time.Millisecond)),
		"https: wrk sends no SNI to 127.0.0.1, so HAProxy answers with its pending certificate (ECDSA P-256 as the issued ones): the cost measured is TLS on keep-alive connections, " +
			fmt.Sprintf("HTTPS %d requests, %s; HTTP %d requests, %s", hs.requests, hs.errors, hp.requests, hp.errors),
	}
}

// httpsGet fetches https://host/ through the router, verifying the chain
// against roots.
func httpsGet(roots *x509.CertPool, port int, host string, keepAlive bool) error {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepAlive,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host}}}
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/", port), nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// leafSerial is the serial of the certificate served for host.
func leafSerial(roots *x509.CertPool, port int, host string) string {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", port),
		&tls.Config{RootCAs: roots, ServerName: host})
	if err != nil {
		return ""
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// tlsOpenLoop sends rate requests/s in turn to hosts, each on a new
// verified TLS connection, on schedule whatever earlier ones did, until
// stop; it returns each request's error (nil: answered 200).
func tlsOpenLoop(roots *x509.CertPool, port int, hosts []string, rate int, stop <-chan struct{}) []error {
	var mu sync.Mutex
	var out []error
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	for i := 0; ; i++ {
		select {
		case <-stop:
			wg.Wait()
			return out
		case <-time.After(time.Until(next)):
		}
		next = next.Add(interval)
		host := hosts[i%len(hosts)]
		wg.Go(func() {
			err := httpsGet(roots, port, host, false)
			mu.Lock()
			out = append(out, err)
			mu.Unlock()
		})
	}
}

// startResolver answers every A question with 127.0.0.1, over UDP and
// TCP (Pebble asks over TCP), for Pebble: the apps' names all lead to the
// router.
func startResolver(t *tb) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		t.Fatalf("%v", err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qq := range q.Question {
			if qq.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.IPv4(127, 0, 0, 1)})
			}
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.ShutdownContext(context.Background()) })
	}
	return ln.Addr().String()
}
