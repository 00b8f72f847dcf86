package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
	"github.com/upscalehq/upscale/msgtext"
)

// deployWorld is a server that runs apps, with namespace acme, apps
// acme/web and acme/api and one admin key that does everything.
type deployWorld struct {
	srv *rig.Server
	key rig.Key
}

// newDeployWorld starts a server with its own agent; extra are more server
// flags (--build-timeout 5s...).
func newDeployWorld(t *testing.T, extra ...string) *deployWorld {
	t.Helper()
	d := &deployWorld{srv: rig.StartWithAgent(t, bin, extra...), key: rig.NewKey(t, "admin")}
	mustLocal(t, d.srv, "keys", "add", "--admin", "--name", "admin", "--public", d.key.Public)
	for _, args := range [][]string{{"namespace", "create", "acme"}, {"app", "create", "acme/web"}, {"app", "create", "acme/api"}} {
		mustSSH(t, d.srv, d.key, "", args...)
	}
	return d
}

// ssh runs an ssh command that must succeed and returns its stdout.
func (d *deployWorld) ssh(t *testing.T, args ...string) string {
	t.Helper()
	return mustSSH(t, d.srv, d.key, "", args...)
}

// push pushes HEAD of the work tree dir to app's master; it returns git's
// stderr (where the remote: lines are) and exit status.
func (d *deployWorld) push(dir, app string) (string, int) {
	_, errs, code := d.srv.Git(d.key, dir, "push", d.srv.Remote(app), "HEAD:master")
	return errs, code
}

// mustPush is push that must deploy.
func (d *deployWorld) mustPush(t *testing.T, dir, app string) string {
	t.Helper()
	errs, code := d.push(dir, app)
	if code != 0 || !strings.Contains(errs, "=====> Application deployed: http://") {
		t.Fatalf("push to %s: exit %d\n%s\nserver log:\n%s", app, code, errs, tail(d.srv.Log(), 40))
	}
	return errs
}

// branch is the commit app's master points at, as git ls-remote says.
func (d *deployWorld) branch(t *testing.T, app string) string {
	t.Helper()
	out, errs, code := d.srv.Git(d.key, t.TempDir(), "ls-remote", d.srv.Remote(app), "refs/heads/master")
	if code != 0 {
		t.Fatalf("ls-remote: %s", errs)
	}
	if f := strings.Fields(out); len(f) > 0 {
		return f[0]
	}
	return ""
}

// get fetches / of app through HAProxy; an error reads as status 0.
func (d *deployWorld) get(app string) (int, string) {
	code, body, err := d.srv.Get(app, "/")
	if err != nil {
		return 0, err.Error()
	}
	return code, body
}

// mustServe waits (generously) until app answers 200 with body.
func (d *deployWorld) mustServe(t *testing.T, app, body string) {
	t.Helper()
	var code int
	var got string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if code, got = d.get(app); code == 200 && got == body {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s answers %d %q, want 200 %q", app, code, got, body)
}

// appInfo is what `app info --format json` says about the live release.
type appInfo struct {
	Release   string `json:"release"`
	Instances int    `json:"instances"`
	Stopped   bool   `json:"stopped"`
}

func (d *deployWorld) info(t *testing.T, app string) appInfo {
	t.Helper()
	var v appInfo
	if err := json.Unmarshal([]byte(d.ssh(t, "app", "info", app, "--format", "json")), &v); err != nil {
		t.Fatalf("app info: %v", err)
	}
	return v
}

// process is one row of `app ps --format json`.
type process struct {
	Name      string    `json:"name"`
	Host      string    `json:"host"`
	Addr      string    `json:"addr"`
	Release   int       `json:"release"`
	State     string    `json:"state"`
	StartedAt time.Time `json:"started_at"`
}

func (d *deployWorld) ps(t *testing.T, app string) []process {
	t.Helper()
	var v []process
	if err := json.Unmarshal([]byte(d.ssh(t, "app", "ps", app, "--format", "json")), &v); err != nil {
		t.Fatalf("app ps: %v", err)
	}
	slices.SortFunc(v, func(a, b process) int { return strings.Compare(a.Name, b.Name) })
	return v
}

// psNames are the names of app's instances, all of which must run.
func (d *deployWorld) running(t *testing.T, app string) []string {
	t.Helper()
	var out []string
	for _, p := range d.ps(t, app) {
		if p.State != "running" {
			t.Errorf("%s instance %s is %q, want running", app, p.Name, p.State)
		}
		out = append(out, p.Name)
	}
	return out
}

// containers lists the agent's containers as LXC sees them on the host,
// sorted: app instances and build containers alike.
func (d *deployWorld) containers(t *testing.T) []string {
	t.Helper()
	out, errs, code := rig.Exec(exec.Command("lxc-ls", "-1", "-P", d.lxcpath()), "")
	if code != 0 {
		t.Fatalf("lxc-ls: %s", errs)
	}
	names := strings.Fields(out)
	slices.Sort(names)
	return names
}

func (d *deployWorld) lxcpath() string { return filepath.Join(d.srv.Agent.State, "containers") }

// hostContainers is the container count `hosts list` reports for the one
// host.
func (d *deployWorld) hostContainers(t *testing.T) (int, string) {
	t.Helper()
	var hosts []struct {
		Name       string `json:"name"`
		State      string `json:"state"`
		Containers int    `json:"containers"`
	}
	if err := json.Unmarshal([]byte(d.ssh(t, "hosts", "list", "--format", "json")), &hosts); err != nil {
		t.Fatalf("hosts list: %v", err)
	}
	if len(hosts) != 1 {
		t.Fatalf("hosts list shows %d hosts, want 1: %+v", len(hosts), hosts)
	}
	return hosts[0].Containers, hosts[0].State
}

// waitHostContainers waits until `hosts list` shows the host up with n
// containers (its figure is a heartbeat, up to a second old).
func (d *deployWorld) waitHostContainers(t *testing.T, n int) {
	t.Helper()
	var got int
	var state string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if got, state = d.hostContainers(t); got == n && state == "up" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("hosts list: host %s with %d containers, want up with %d", state, got, n)
}

// snapshot is what users and operators see of an app that serves.
type snapshot struct {
	branch     string
	body       string
	info       appInfo
	instances  []string
	containers []string
}

func (d *deployWorld) snapshot(t *testing.T, app, body string) snapshot {
	t.Helper()
	d.mustServe(t, app, body)
	return snapshot{branch: d.branch(t, app), body: body, info: d.info(t, app), instances: d.running(t, app), containers: d.containers(t)}
}

// unchanged asserts that nothing users or operators see of app moved since
// s: the branch, the body served, the live release, the instances, and the
// host's containers (nothing half-made left behind).
func (d *deployWorld) unchanged(t *testing.T, app string, s snapshot) {
	t.Helper()
	if got := d.branch(t, app); got != s.branch {
		t.Errorf("master moved from %s to %s", s.branch, got)
	}
	if code, body := d.get(app); code != 200 || body != s.body {
		t.Errorf("%s answers %d %q, want 200 %q (the old body)", app, code, body, s.body)
	}
	if got := d.info(t, app); got != s.info {
		t.Errorf("app info says %+v, want %+v as before", got, s.info)
	}
	if got := d.running(t, app); !slices.Equal(got, s.instances) {
		t.Errorf("app ps shows %v, want %v as before", got, s.instances)
	}
	if got := d.containers(t); !slices.Equal(got, s.containers) {
		t.Errorf("the host has containers %v, want %v as before (leftovers?)", got, s.containers)
	}
	d.waitHostContainers(t, len(s.containers))
}

// mustHave asserts that every want is in the push output.
func mustHave(t *testing.T, errs string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(errs, w) {
			t.Errorf("output lacks %q:\n%s", w, errs)
		}
	}
}

// rejected asserts a push failed with the usual closing lines.
func rejected(t *testing.T, app, errs string, code int) {
	t.Helper()
	if code == 0 {
		t.Fatalf("push accepted; want it rejected:\n%s", errs)
	}
	mustHave(t, errs, "remote: error: push rejected; "+app+" is unchanged", "(pre-receive hook declined)")
}

// exampleFiles reads examples/NAME into a map for rig.Repo.
func exampleFiles(t *testing.T, name string) map[string]string {
	t.Helper()
	dir := filepath.Join("..", "examples", name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	return files
}

// loop requests an app through HAProxy every 5 ms until stopped and counts
// the answers that are not 200 with a good body. Every other request uses a
// fresh connection, the rest a kept-alive one.
type loop struct {
	stop, done chan struct{}
	mu         sync.Mutex
	ok         int
	failures   []string
	slow       time.Duration
	more       chan struct{} // closed once minRequests were answered
}

// minRequests is how many answers a loop waits for before it stops,
// however quick the operation it watched: the requests after it prove the
// app still answers right.
const minRequests = 40

// startLoop expects one of bodies.
func startLoop(t *testing.T, srv *rig.Server, app string, bodies ...string) *loop {
	t.Helper()
	return startLoopFunc(t, srv, app, func(body string) bool { return slices.Contains(bodies, body) })
}

func startLoopFunc(t *testing.T, srv *rig.Server, app string, good func(body string) bool) *loop {
	t.Helper()
	ns, name, _ := strings.Cut(app, "/")
	l := &loop{stop: make(chan struct{}), done: make(chan struct{}), more: make(chan struct{})}
	clients := []*http.Client{
		{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		{Timeout: 10 * time.Second, Transport: &http.Transport{}},
	}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", srv.HTTPPort), nil)
			req.Host = name + "." + ns + ".upscale.localhost"
			failure := ""
			start := time.Now()
			resp, err := clients[i%2].Do(req)
			if err != nil {
				failure = err.Error()
			} else {
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || !good(string(b)) {
					failure = fmt.Sprintf("%s %q %v", resp.Status, msgtext.Truncate(string(b), 80), err)
				}
			}
			took := time.Since(start)
			l.mu.Lock()
			l.slow = max(l.slow, took)
			if failure == "" {
				l.ok++
			} else {
				l.failures = append(l.failures, start.Format("15:04:05.000")+" "+failure)
			}
			if l.ok+len(l.failures) == minRequests {
				close(l.more)
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(l.halt)
	return l
}

func (l *loop) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// check stops the loop and asserts every request was answered right.
func (l *loop) check(t *testing.T, what string) {
	t.Helper()
	l.checkRate(t, what, 0)
}

// checkRate stops the loop and asserts that at most maxRate of the
// requests failed.
func (l *loop) checkRate(t *testing.T, what string, maxRate float64) {
	t.Helper()
	// Each request has a 10 s timeout, so a loop that stalls this long
	// past the operation has requests that hang, not a slow machine.
	select {
	case <-l.more:
	case <-time.After(time.Minute):
	}
	l.halt()
	l.mu.Lock()
	defer l.mu.Unlock()
	total := l.ok + len(l.failures)
	if total < minRequests {
		t.Errorf("%s: only %d of %d requests were answered within a minute", what, total, minRequests)
	}
	if float64(len(l.failures)) > maxRate*float64(total) {
		t.Errorf("%s: %d of %d requests failed (at most %.0f%% may); first ones:\n%s", what, len(l.failures), total, maxRate*100,
			strings.Join(l.failures[:min(10, len(l.failures))], "\n"))
	} else {
		t.Logf("%s: %d requests, %d failed, slowest %s", what, total, len(l.failures), l.slow.Round(time.Millisecond))
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// agentPIDs are the processes of the server's local agent (found by its
// --state flag, which only this test's agent has).
func agentPIDs(a *rig.Agent) []int {
	return pidsMatching(func(args []string) bool {
		if filepath.Base(args[0]) != "upscale-agent" || slices.Contains(args, "--teardown") {
			return false
		}
		i := slices.Index(args, "--state")
		return i >= 0 && i+1 < len(args) && args[i+1] == a.State
	})
}

// pidsMatching are the processes whose command line match accepts.
func pidsMatching(match func(args []string) bool) []int {
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, e := range dirs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if match(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// agentPID waits for the one running agent of the server.
func agentPID(t *testing.T, a *rig.Agent) int {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for {
		if pids := agentPIDs(a); len(pids) == 1 {
			return pids[0]
		} else if time.Now().After(deadline) {
			t.Fatalf("want one agent process of %s, found %v", a.State, pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// descendants are the processes under pid (through
// /proc/PID/task/*/children).
func descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			for _, s := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(s); err == nil {
					out = append(out, c)
					queue = append(queue, c)
				}
			}
		}
	}
	return out
}

// uids are the real, effective, saved and file-system uids of pid.
func uids(t *testing.T, pid int) []int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("status of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			var out []int
			for _, f := range strings.Fields(rest) {
				n, _ := strconv.Atoi(f)
				out = append(out, n)
			}
			return out
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return nil
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
}
