package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
	"github.com/upscalehq/upscale/msgtext"
)

// What a user does with a deployed app: see where it runs (as a mapped
// uid, never host root), read its logs and follow them, restart it without
// downtime, stop it (503) and run it again.
func TestDeployLifecycle(t *testing.T) {
	d, dns := newDomainWorld(t)
	dns.SetCNAME("lifecycle.example.test", "web.acme.upscale.localhost")
	const app, body = "acme/web", "lifecycle\n"
	d.mustPush(t, rig.Repo(t, helloApp(t, "lifecycle", "runtime: python\nhealth: /\n")), app)
	d.mustServe(t, app, body)

	t.Run("runs as a mapped uid", func(t *testing.T) {
		ps := d.ps(t, app)
		if len(ps) != 1 {
			t.Fatalf("app ps: %+v", ps)
		}
		out, errs, code := rig.Exec(exec.Command("lxc-info", "-P", d.lxcpath(), "-n", ps[0].Name, "-p", "-H"), "")
		if code != 0 {
			t.Fatalf("lxc-info: %s", errs)
		}
		init, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil || init <= 1 {
			t.Fatalf("lxc-info -p: %q", out)
		}
		appPID := 0
		for _, pid := range append([]int{init}, descendants(init)...) {
			if strings.Contains(cmdline(pid), "app.py") {
				appPID = pid
			}
			for _, uid := range uids(t, pid) {
				if uid < 100000 {
					t.Errorf("container process %d (%s) runs as host uid %d, want a mapped uid >= 100000", pid, cmdline(pid), uid)
				}
			}
		}
		if appPID == 0 {
			t.Fatalf("no process of %s's container (init %d) runs app.py", ps[0].Name, init)
		}
		t.Logf("app.py is host pid %d, uids %v", appPID, uids(t, appPID))
		// And it is in a user namespace of its own, not the host's.
		mine, _ := os.Readlink("/proc/self/ns/user")
		theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", appPID))
		if err != nil || theirs == mine {
			t.Errorf("app.py's user namespace is %q (%v), the host's is %q", theirs, err, mine)
		}
	})

	t.Run("ps", func(t *testing.T) {
		out := d.ssh(t, "app", "ps", app)
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if len(lines) != 2 || !regexp.MustCompile(`^INSTANCE +HOST +ADDRESS +RELEASE +STATE +UPTIME +RESTARTS$`).MatchString(lines[0]) {
			t.Fatalf("app ps:\n%s", out)
		}
		p := d.ps(t, app)[0]
		row := regexp.MustCompile(`^` + p.Name + ` +` + p.Host + ` +10\.[0-9.]+:8080 +v1 +running +[0-9hms.]+ +0$`)
		if !row.MatchString(lines[1]) || !strings.Contains(lines[1], p.Addr) {
			t.Errorf("app ps row %q, want %s on %s at %s, v1, running, an uptime, 0 restarts", lines[1], p.Name, p.Host, p.Addr)
		}
	})

	t.Run("logs", func(t *testing.T) {
		path := fmt.Sprintf("/logs-%d", time.Now().UnixNano())
		sent := time.Now()
		if code, got, err := d.srv.Get(app, path); err != nil || code != 200 || got != body {
			t.Fatalf("GET %s: %d %q %v", path, code, got, err)
		}
		answered := time.Now()
		// Read later than the line was written: the time shown must be
		// when it was captured, not when it was read.
		time.Sleep(1500 * time.Millisecond)
		name := d.ps(t, app)[0].Name
		// Each line: capture time (UTC, ms), process and number, container.
		want := regexp.MustCompile(`(?m)^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) web\.1 ` + name + `\| 10\.[0-9.]+ "GET ` + path + ` HTTP/1\.1" 200 -$`)
		var out string
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if out = d.ssh(t, "app", "logs", app); want.MatchString(out) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !want.MatchString(out) || !regexp.MustCompile(`(?m)^\S+Z web\.1 `+name+`\| listening on port 8080$`).MatchString(out) {
			t.Errorf("app logs lacks the start line or the access line for %s:\n%s", path, out)
		}
		// The time is when the agent captured the line: while the request
		// was answered, give or take the 0.1 s capture tick.
		at, err := time.Parse("2006-01-02T15:04:05.000Z", want.FindStringSubmatch(out)[1])
		if err != nil || at.Before(sent.Add(-time.Second)) || at.After(answered.Add(time.Second)) {
			t.Errorf("access line captured at %v (%v), want between %v and %v", at, err, sent, answered)
		}
		// Lines are in capture order.
		var last string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if stamp, _, _ := strings.Cut(l, " "); stamp < last {
				t.Errorf("app logs out of order at %q", l)
			} else {
				last = stamp
			}
		}
		if out := d.ssh(t, "app", "logs", app, "-n", "1"); strings.Count(out, "\n") != 1 || !want.MatchString(out) {
			t.Errorf("app logs -n 1: %q, want the one access line", out)
		}
	})

	t.Run("logs -f", func(t *testing.T) {
		argv := append(d.srv.SSHCommand(d.key), "upscale@127.0.0.1", "app", "logs", app, "-f", "-n", "0")
		cmd := exec.Command(argv[0], argv[1:]...)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Kill()
			cmd.Wait()
		}()
		lines := make(chan string, 1000)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Until a request shows up the follow may not be set up yet: ask
		// again every half second; then one more must show up at once.
		var container string // of the last line seen
		seen := func(path string, within time.Duration) bool {
			timer := time.After(within)
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("app logs -f ended: %s", stderr.String())
					}
					if strings.Contains(l, `"GET `+path+` HTTP/1.1" 200`) {
						m := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z web\.1 (\S+)\| `).FindStringSubmatch(l)
						if m == nil {
							t.Errorf("app logs -f line %q lacks the time, process and container", l)
						} else {
							container = m[1]
						}
						return true
					}
				case <-timer:
					return false
				}
			}
		}
		ready := false
		for i := 0; i < 20 && !ready; i++ {
			path := fmt.Sprintf("/warm-up-%d", i)
			d.srv.Get(app, path)
			ready = seen(path, 500*time.Millisecond)
		}
		if !ready {
			t.Fatalf("app logs -f printed no request line within 10 s: %s", stderr.String())
		}
		path := fmt.Sprintf("/follow-%d", time.Now().UnixNano())
		if code, _, err := d.srv.Get(app, path); code != 200 || err != nil {
			t.Fatalf("GET %s: %d %v", path, code, err)
		}
		if !seen(path, 10*time.Second) {
			t.Errorf("app logs -f did not print the request to %s within 10 s", path)
		}

		// It follows the app, not a container: after app restart (and so
		// after a push) the new instance's output shows, and no error.
		before := container
		d.ssh(t, "app", "restart", app)
		path = fmt.Sprintf("/after-restart-%d", time.Now().UnixNano())
		if code, _, err := d.srv.Get(app, path); code != 200 || err != nil {
			t.Fatalf("GET %s: %d %v", path, code, err)
		}
		if !seen(path, 10*time.Second) || container == before {
			t.Errorf("app logs -f did not print the new instance's request to %s (container %s, before %s); stderr %q", path, container, before, stderr.String())
		}
		if stderr.Len() != 0 {
			t.Errorf("app logs -f across a restart printed on stderr: %q", stderr.String())
		}
	})

	t.Run("restart", func(t *testing.T) {
		before := d.ps(t, app)
		l := startLoop(t, d.srv, app, body)
		time.Sleep(200 * time.Millisecond)
		out := d.ssh(t, "app", "restart", app)
		time.Sleep(300 * time.Millisecond)
		l.check(t, "requests during app restart")
		if !strings.Contains(out, "=====> acme/web restarted") {
			t.Errorf("app restart said:\n%s", out)
		}
		after := d.ps(t, app)
		if len(after) != 1 || after[0].Name == before[0].Name || after[0].Release != 1 || after[0].State != "running" {
			t.Errorf("app ps after restart: %+v, want one new running instance of v1 (was %+v)", after, before)
		}
		if got := d.containers(t); len(got) != 1 || got[0] != after[0].Name {
			t.Errorf("containers after restart: %v, want only %s", got, after[0].Name)
		}
		if info := d.info(t, app); info.Release != "v1" {
			t.Errorf("app info after restart: %+v, want release v1", info)
		}
	})

	t.Run("stop", func(t *testing.T) {
		out := d.ssh(t, "app", "stop", app)
		if !strings.Contains(out, "acme/web stopped") {
			t.Errorf("app stop said:\n%s", out)
		}
		code, page := d.get(app)
		if code != 503 || !strings.Contains(page, "Upscale") || !strings.Contains(page, "acme/web is not running") {
			t.Errorf("a stopped app answers %d:\n%s", code, page)
		}
		if ps := d.ps(t, app); len(ps) != 0 {
			t.Errorf("app ps of a stopped app: %+v", ps)
		}
		if text := d.ssh(t, "app", "ps", app); !regexp.MustCompile(`^No instances of acme/web run: it is stopped \(ssh -p \d+ upscale@localhost app run acme/web starts it\)\.\n$`).MatchString(text) {
			t.Errorf("app ps of a stopped app: want it to say so:\n%s", text)
		}
		if info := d.info(t, app); !info.Stopped || info.Instances != 0 || info.Release != "v1" {
			t.Errorf("app info of a stopped app: %+v", info)
		}
		if got := d.containers(t); len(got) != 0 {
			t.Errorf("containers of a stopped app: %v", got)
		}
		_, errs, code := d.srv.SSH(d.key, "", "app", "logs", app)
		oneErrorLine(t, "app logs of a stopped app", errs, code, "runs no instances")
		_, errs, code = d.srv.SSH(d.key, "", "app", "restart", app)
		oneErrorLine(t, "app restart of a stopped app", errs, code, "is stopped; start it with app run")
	})

	t.Run("run", func(t *testing.T) {
		if out := d.ssh(t, "app", "run", app); !regexp.MustCompile(`(?m)^=====> Application running again: http://web\.acme\.upscale\.localhost\S* \(v1\)$`).MatchString(out) {
			t.Errorf("app run of a stopped app: no closing line:\n%s", out)
		}
		d.mustServe(t, app, body)
		if info := d.info(t, app); info.Stopped || info.Instances != 1 || info.Release != "v1" {
			t.Errorf("app info after app run: %+v, want v1 running again", info)
		}
		if ps := d.ps(t, app); len(ps) != 1 || ps[0].State != "running" || ps[0].Release != 1 {
			t.Errorf("app ps after app run: %+v", ps)
		}
	})

	t.Run("run again deploys the branch head", func(t *testing.T) {
		out := d.ssh(t, "app", "run", app)
		if !strings.Contains(out, "=====> Application deployed: http://web.acme.upscale.localhost:") || !strings.Contains(out, "(v2)") {
			t.Errorf("app run of a running app said:\n%s", out)
		}
		d.mustServe(t, app, body)
		if ps := d.ps(t, app); len(ps) != 1 || ps[0].Release != 2 {
			t.Errorf("app ps: %+v, want one instance of v2", ps)
		}
	})

	t.Run("delete", func(t *testing.T) {
		// A deleted app stops answering at once, everywhere: its name and
		// its custom domain get the 404 page, and nothing of it runs.
		d.ssh(t, "domains", "add", app, "lifecycle.example.test")
		if code, got := getHost(d.srv, "lifecycle.example.test", "/"); code != 200 || got != body {
			t.Fatalf("custom domain before app delete: %d %q", code, got)
		}
		if out := d.ssh(t, "app", "delete", app); !strings.Contains(out, "Application acme/web deleted.") {
			t.Errorf("app delete said:\n%s", out)
		}
		for _, host := range []string{"web.acme.upscale.localhost", "lifecycle.example.test"} {
			if code, page := getHost(d.srv, host, "/"); code != 404 || !strings.Contains(page, "No app at "+host) {
				t.Errorf("Host %s after app delete: %d %q, want Upscale's 404 page", host, code, msgtext.Truncate(page, 200))
			}
		}
		if got := d.containers(t); len(got) != 0 {
			t.Errorf("containers after app delete: %v", got)
		}
	})
}
