package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/upscalehq/upscale/e2e/rig"
)

// hostsWorld is a server without a local agent and three hosts, each a
// network namespace with a real sshd into which `hosts add` installed a
// real agent: h1 over ssh as root (key on stdin), h2 over ssh as a user
// with passwordless sudo, h3 with the local CLI (-i FILE) as root.
type hostsWorld struct {
	*deployWorld
	net   *rig.HostNetwork
	users *rig.HostUsers
	hosts map[string]*rig.HostNet // by host name
	names []string
}

// multiHostApp is the example Python app answering MESSAGE and the name
// of the container it runs in, so that a client can tell instances apart.
func multiHostApp(t *testing.T, msg, appYAML string) map[string]string {
	t.Helper()
	files := helloApp(t, msg, appYAML)
	files["app.py"] = strings.Replace(files["app.py"],
		`body = (MESSAGE + "\n").encode()`,
		`body = (MESSAGE + " " + socket.gethostname() + "\n").encode()`, 1)
	files["app.py"] = strings.Replace(files["app.py"], "import os\n", "import os\nimport socket\n", 1)
	if !strings.Contains(files["app.py"], "socket.gethostname()") {
		t.Fatal("the example app changed: multiHostApp cannot patch it")
	}
	return files
}

func newHostsWorld(t *testing.T, extra ...string) *hostsWorld {
	t.Helper()
	for _, p := range []string{"/usr/sbin/sshd", "sudo", "visudo", "useradd"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("multi-host e2e needs %s (make test-deps installs it)", p)
		}
	}
	w := &hostsWorld{net: rig.NewHostNetwork(t), users: rig.NewHostUsers(t), hosts: map[string]*rig.HostNet{}}
	srv := rig.StartForHosts(t, bin, w.net, extra...)
	w.deployWorld = &deployWorld{srv: srv, key: rig.NewKey(t, "admin")}
	mustLocal(t, srv, "keys", "add", "--admin", "--name", "admin", "--public", w.key.Public)
	for _, args := range [][]string{{"namespace", "create", "acme"}, {"app", "create", "acme/web"}, {"app", "create", "acme/api"}} {
		mustSSH(t, srv, w.key, "", args...)
	}
	keyPEM, err := os.ReadFile(w.users.Key.Path)
	if err != nil {
		t.Fatal(err)
	}
	type add struct {
		name, user string
		local      bool
	}
	adds := []add{{"h1", "root", false}, {"h2", w.users.Sudo, false}, {"h3", "root", true}}
	for _, a := range adds {
		h := rig.NewHostNet(t, w.net, w.users)
		w.hosts[a.name] = h
		w.names = append(w.names, a.name)
		args := []string{"hosts", "add", "--host", h.IP, "-u", a.user, "--name", a.name, "--dir", h.AgentDir}
		var out, errs string
		var code int
		start := time.Now()
		switch {
		case a.local:
			out, errs, code = srv.Local(append(args, "-i", w.users.Key.Path, "--host-key", h.HostKey())...)
		case a.user == "root":
			out, errs, code = srv.SSH(w.key, string(keyPEM), append(args, "-i", "-", "--host-key", "'"+h.HostKey()+"'")...)
		default:
			// A known_hosts file as ssh-keyscan writes it.
			known := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(known, []byte(h.IP+" "+h.HostKey()+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out, errs, code = srv.SSH(w.key, string(keyPEM), append(args, "-i", "-", "--known-hosts", known)...)
		}
		if code != 0 {
			t.Fatalf("hosts add %s: exit %d: %s\n%s\nagent log:\n%s\nsshd log:\n%s\nserver log:\n%s", a.name, code, errs, out,
				h.AgentLog(), h.SSHDLog(), tail(srv.Log(), 30))
		}
		t.Logf("hosts add %s (%s) took %s", a.name, a.user, time.Since(start).Round(time.Millisecond))
		how := "as root"
		if a.user != "root" {
			how = "root via sudo"
		}
		// Every step is shown.
		for _, want := range []string{
			"-----> Connecting to " + h.IP + ":22 as " + a.user,
			"       host key " + hostKeyFP(t, h) + " (as expected)",
			"-----> Checking " + h.IP,
			how,
			"-----> Uploading the agent",
			"-----> Uploading the credentials",
			"-----> Running the install script as root",
			"-----> Packages already installed: lxc debootstrap nftables iproute2 ca-certificates",
			"-----> Starting the agent as a supervised process (no systemd)",
			"-----> Agent started for host " + a.name,
			"-----> Waiting for " + a.name + " to come up",
			"=====> Host " + a.name + " is up:",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("hosts add %s output lacks %q:\n%s", a.name, want, out)
			}
		}
	}
	rows := w.hostRows(t)
	if len(rows) != 3 {
		t.Fatalf("hosts list shows %d hosts, want 3: %+v", len(rows), rows)
	}
	for _, r := range rows {
		if r.State != "up" || r.Address != w.hosts[r.Name].IP {
			t.Fatalf("hosts list: %+v, want up at %s", r, w.hosts[r.Name].IP)
		}
		// The key is pinned for the next connection to the host.
		if r.HostKey != w.hosts[r.Name].HostKey() {
			t.Errorf("hosts list: %s's host key %q, want %q", r.Name, r.HostKey, w.hosts[r.Name].HostKey())
		}
	}
	return w
}

// hostKeyFP is h's sshd key as progress shows it: type and SHA256
// fingerprint.
func hostKeyFP(t *testing.T, h *rig.HostNet) string {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(h.HostKey()))
	if err != nil {
		t.Fatal(err)
	}
	return k.Type() + " " + ssh.FingerprintSHA256(k)
}

func (w *hostsWorld) hostRows(t *testing.T) []rig.HostRow {
	t.Helper()
	rows, err := rig.ParseHosts(w.ssh(t, "hosts", "list", "--format", "json"))
	if err != nil {
		t.Fatalf("hosts list: %v", err)
	}
	return rows
}

func (w *hostsWorld) hostState(t *testing.T, name string) string {
	t.Helper()
	for _, r := range w.hostRows(t) {
		if r.Name == name {
			return r.State
		}
	}
	return "(absent)"
}

// waitHostState waits until hosts list shows host in state.
func (w *hostsWorld) waitHostState(t *testing.T, name, state string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var got string
	for time.Since(start) < within {
		if got = w.hostState(t, name); got == state {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("hosts list shows %s %s after %s, want %s\nserver log:\n%s", name, got, within, state, tail(w.srv.Log(), 30))
	return 0
}

// placement is where app's instances run, host by host, as app ps says;
// every instance must be running.
func (w *hostsWorld) placement(t *testing.T, app string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range w.ps(t, app) {
		if p.State != "running" {
			t.Errorf("%s instance %s on %s is %q, want running", app, p.Name, p.Host, p.State)
		}
		out[p.Host] = append(out[p.Host], p.Name)
	}
	return out
}

// bodies requests app n times and returns the distinct bodies with their
// counts; any failure fails the test.
func (w *hostsWorld) bodies(t *testing.T, app string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		code, body := w.get(app)
		if code != 200 {
			t.Fatalf("%s answered %d %q", app, code, body)
		}
		seen[body]++
	}
	return seen
}

// lxcContainers is every container each host's LXC has, by host name.
func (w *hostsWorld) lxcContainers(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for name, h := range w.hosts {
		cs, err := h.Containers()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(cs)
		out[name] = cs
	}
	return out
}

// desired is every instance the store wants, by host, from app ps of
// apps.
func (w *hostsWorld) desired(t *testing.T, apps ...string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for name := range w.hosts {
		out[name] = nil
	}
	for _, app := range apps {
		for _, p := range w.ps(t, app) {
			out[p.Host] = append(out[p.Host], p.Name)
		}
	}
	for h := range out {
		slices.Sort(out[h])
	}
	return out
}

// waitConverged waits until every host's LXC holds exactly the desired
// containers of apps (nothing orphaned, no duplicate) and hosts list
// counts them.
func (w *hostsWorld) waitConverged(t *testing.T, within time.Duration, apps ...string) map[string][]string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		want, got := w.desired(t, apps...), w.lxcContainers(t)
		same := true
		for h := range w.hosts {
			if !slices.Equal(want[h], got[h]) {
				same = false
			}
		}
		if same {
			counts := true
			for _, r := range w.hostRows(t) {
				if r.State == "up" && r.Containers != len(want[r.Name]) {
					counts = false
				}
			}
			if counts {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts did not converge within %s:\nstore wants %v\nLXC has     %v\nhosts list: %+v\nserver log:\n%s",
				within, want, got, w.hostRows(t), tail(w.srv.Log(), 30))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (w *hostsWorld) dumpOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for name, h := range w.hosts {
			t.Logf("agent log of %s:\n%s", name, tail(h.AgentLog(), 20))
		}
		t.Logf("server log:\n%s", tail(w.srv.Log(), 60))
	})
}

func keysOf(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func writeFile(t *testing.T, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func fmtMap(m map[string]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%q x%d", k, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// startPrefixLoop is a loop for an app whose instances come and go: a
// good body starts with prefix, since the exact ones are not known in
// advance.
func startPrefixLoop(t *testing.T, srv *rig.Server, app, prefix string) *loop {
	t.Helper()
	return startLoopFunc(t, srv, app, func(body string) bool { return strings.HasPrefix(body, prefix) })
}

// newBodyProbe sends a fresh request to an app every 100 ms, each in its
// own goroutine, and notes when one is first answered by an instance not
// in old (placement: host -> instance names).
type newBodyProbe struct {
	mu    sync.Mutex
	first time.Duration
	quit  chan struct{}
	wg    sync.WaitGroup
}

func startNewBodyProbe(w *hostsWorld, app string, old map[string][]string, since time.Time) *newBodyProbe {
	known := map[string]bool{}
	for _, list := range old {
		for _, name := range list {
			known[name] = true
		}
	}
	p := &newBodyProbe{quit: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.quit:
				return
			case <-tick.C:
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				code, body := w.get(app)
				name, ok := strings.CutPrefix(strings.TrimSpace(body), "web ")
				if code != 200 || !ok || known[name] {
					return
				}
				p.mu.Lock()
				if p.first == 0 {
					p.first = time.Since(since)
				}
				p.mu.Unlock()
			}()
		}
	}()
	return p
}

// await lets the probe run until a new instance answered or deadline,
// then stops it: app ps may show the replacement a moment before the
// probe's requests reach it.
func (p *newBodyProbe) await(deadline time.Time) time.Duration {
	for time.Now().Before(deadline) {
		p.mu.Lock()
		first := p.first
		p.mu.Unlock()
		if first != 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p.stop()
}

// stop ends the probe and returns how long after since a new instance
// first answered, 0 if none did.
func (p *newBodyProbe) stop() time.Duration {
	close(p.quit)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first
}
