package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// appServer is an Upscale server that runs apps (its own upscale-agent,
// bridge, HAProxy and bus, from rig.StartWithAgent) with the example Python
// app deployed, shared by the deploy and router benchmarks.
type appServer struct {
	srv *rig.Server
	key rig.Key
	app string // NS/APP
	dir string // the app's work tree
	n   int    // commits so far: MESSAGE is "bench deploy N"
}

const benchApp = "bench/py"

// apps returns the app server, starting it and deploying the example app
// on first use.
func (e *env) apps() *appServer {
	if e.appSrv != nil {
		return e.appSrv
	}
	progress("starting an upscale server with its agent and HAProxy")
	s := &appServer{srv: rig.StartWithAgent(e.t, e.bin), key: e.key, app: benchApp}
	s.local(e.t, "keys", "add", "--admin", "--name", "bench", "--public", e.key.Public)
	s.local(e.t, "namespace", "create", "bench")
	s.local(e.t, "app", "create", s.app)
	src, err := os.ReadFile(filepath.Join(examplePython(), "app.py"))
	if err != nil {
		e.t.Fatalf("example app: %v", err)
	}
	s.dir = rig.Repo(e.t, map[string]string{"app.py": string(src), "app.yaml": s.appYAML()})
	progress("deploying the example app (first push)")
	d := s.deploy(e.t)
	progress("first deploy served after %s", ms(d.serve))
	e.appSrv = s
	return s
}

func (s *appServer) local(t *tb, args ...string) string {
	out, errs, code := s.srv.Local(args...)
	if code != 0 {
		t.Fatalf("upscale %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

func (s *appServer) message() string { return fmt.Sprintf("bench deploy %d", s.n) }

// appYAML is the example's app.yaml plus the MESSAGE its app.py serves.
func (s *appServer) appYAML() string {
	return fmt.Sprintf("runtime: python\nhealth: /\nenv:\n  MESSAGE: %q\n", s.message())
}

// host is the Host header that reaches the app through HAProxy.
func (s *appServer) host() string {
	ns, name, _ := strings.Cut(s.app, "/")
	return name + "." + ns + ".upscale.localhost"
}

// commit changes MESSAGE, so that the next push deploys a new body.
func (s *appServer) commit(t *tb) {
	s.n++
	rig.Commit(t, s.dir, s.message(), map[string]string{"app.yaml": s.appYAML()})
}

// deployRun is one timed push of a new MESSAGE.
type deployRun struct {
	serve time.Duration            // push start until HAProxy serves the new body
	push  time.Duration            // push start until git exits
	parts map[string]time.Duration // as the push output reports them: checks, build, start, health, switch
	// When each milestone line of the push output arrived, from push
	// start: where the time the output does not report goes.
	firstLine, live, deployed time.Duration
}

// timingRE matches the push output's last line:
// "checks 3ms, build 180ms, start 95ms, health 40ms, switch 6ms".
var timingRE = regexp.MustCompile(`(checks|build|start|health|switch) ([0-9.]+[a-zµ]+)`)

// deploy pushes the work tree's HEAD and times it until HAProxy serves
// the new body, polling every 5 ms from the moment the push starts.
func (s *appServer) deploy(t *tb) deployRun {
	want := s.message() + "\n"
	cmd := exec.Command("git", "push", s.srv.Remote(s.app), "master")
	cmd.Dir, cmd.Env = s.dir, gitEnv(s.dir, s.srv.SSHCommand(s.key))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("%v", err)
	}
	var out strings.Builder
	cmd.Stdout = &out

	r := deployRun{parts: map[string]time.Duration{}}
	served := make(chan time.Duration, 1)
	stop := make(chan struct{})
	var lastBody string
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		for {
			code, body, err := s.srv.Get(s.app, "/")
			if err == nil && code == 200 && body == want {
				served <- time.Since(start)
				return
			}
			lastBody = fmt.Sprintf("%d %q %v", code, body, err)
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	var once sync.Once
	stopPolling := func() { once.Do(func() { close(stop); wg.Wait() }) }
	defer stopPolling()
	if err := cmd.Start(); err != nil {
		t.Fatalf("git push: %v", err)
	}
	// Timestamp the remote's lines as they arrive.
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		at := time.Since(start)
		line := sc.Text()
		out.WriteString(line + "\n")
		msg := strings.TrimSpace(strings.TrimPrefix(line, "remote:"))
		switch {
		case r.firstLine == 0 && strings.HasPrefix(line, "remote:"):
			r.firstLine = at
		case strings.HasPrefix(msg, "-----> v") && strings.Contains(msg, " is live"):
			r.live = at
		case strings.HasPrefix(msg, "=====> Application deployed"):
			r.deployed = at
		case strings.HasPrefix(msg, "checks "):
			for _, m := range timingRE.FindAllStringSubmatch(msg, -1) {
				if d, err := time.ParseDuration(m[2]); err == nil {
					r.parts[m[1]] = d
				}
			}
		}
	}
	io.Copy(io.Discard, stderr)
	err = cmd.Wait()
	r.push = time.Since(start)
	if err != nil {
		t.Fatalf("git push: %v\n%s", err, out.String())
	}
	if len(r.parts) != 5 {
		t.Fatalf("push output has no complete timing line (got %v):\n%s", r.parts, out.String())
	}
	select {
	case r.serve = <-served:
	case <-time.After(30 * time.Second):
		stopPolling()
		t.Fatalf("the new body %q was not served within 30 s of the push's end (last: %s); push output:\n%s", want, lastBody, out.String())
	}
	return r
}
