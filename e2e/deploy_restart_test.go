package e2e

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// waitAdopted waits until app ps shows exactly the instances want, all
// running and started when they were before: adopted, not recreated.
func (d *deployWorld) waitAdopted(t *testing.T, app string, want []process) {
	t.Helper()
	var got []process
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) {
		got = d.ps(t, app)
		if len(got) == len(want) && !slices.ContainsFunc(got, func(p process) bool { return p.State != "running" }) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(got) != len(want) {
		t.Fatalf("app ps: %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].State != "running" || !got[i].StartedAt.Equal(want[i].StartedAt) || got[i].Addr != want[i].Addr {
			t.Errorf("app ps: %+v, want %+v (the same container, still running)", got[i], want[i])
		}
	}
}

// The agent crashes (SIGKILL) and is stopped (SIGTERM); its supervisor
// brings it back, it adopts the running container, and the app answers
// every request throughout. A push afterwards deploys.
func TestDeployAgentRestart(t *testing.T) {
	d := newDeployWorld(t)
	const app = "acme/web"
	dir := rig.Repo(t, helloApp(t, "steady", "runtime: python\ninstances: 2\n"))
	d.mustPush(t, dir, app)
	d.mustServe(t, app, "steady\n")
	before := d.ps(t, app)
	containers := d.containers(t)

	l := startLoop(t, d.srv, app, "steady\n")
	time.Sleep(300 * time.Millisecond)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		pid := agentPID(t, d.srv.Agent)
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
		// The supervisor starts a new agent.
		deadline := time.Now().Add(40 * time.Second)
		for {
			if pids := agentPIDs(d.srv.Agent); len(pids) == 1 && pids[0] != pid {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no new agent 40 s after %v:\n%s", sig, tail(d.srv.Log(), 30))
			}
			time.Sleep(20 * time.Millisecond)
		}
		d.waitAdopted(t, app, before)
	}
	time.Sleep(300 * time.Millisecond)
	l.check(t, "requests while the agent was killed and stopped")
	if got := d.containers(t); !slices.Equal(got, containers) {
		t.Errorf("containers after the agent restarts: %v, want %v", got, containers)
	}
	for _, line := range strings.Split(d.srv.Log(), "\n") {
		if strings.Contains(line, "level=ERROR") && !strings.Contains(line, `msg="local upscale-agent exited; restarting"`) {
			t.Errorf("server log: %s", line)
		}
	}

	// The new agent builds and runs a new release.
	rig.Commit(t, dir, "after the restarts", helloApp(t, "after", "runtime: python\ninstances: 2\n"))
	mustHave(t, d.mustPush(t, dir, app), "-----> v2 is live; removing 2 old instance(s)")
	d.mustServe(t, app, "after\n")
	if got := d.containers(t); len(got) != 2 || slices.Contains(got, containers[0]) || slices.Contains(got, containers[1]) {
		t.Errorf("containers after the push: %v, want 2 new ones", got)
	}
}

// The server stops (SIGTERM) and starts again: HAProxy and the containers
// keep serving meanwhile, the new server adopts them, and a push deploys.
func TestDeployServerRestart(t *testing.T) {
	d := newDeployWorld(t)
	const app = "acme/web"
	dir := rig.Repo(t, helloApp(t, "steady", "runtime: python\n"))
	d.mustPush(t, dir, app)
	d.mustServe(t, app, "steady\n")
	before := d.ps(t, app)
	started := regexp.MustCompile(`msg="haproxy started" .* master=([0-9]+) `).FindStringSubmatch(d.srv.Log())
	if started == nil {
		t.Fatalf("no haproxy start in the server log:\n%s", d.srv.Log())
	}

	l := startLoop(t, d.srv, app, "steady\n")
	time.Sleep(300 * time.Millisecond)
	if err := d.srv.Stop(); err != nil {
		t.Fatalf("stopping the server: %v\n%s", err, d.srv.Log())
	}
	if pids := agentPIDs(d.srv.Agent); len(pids) != 0 {
		t.Errorf("the agent outlived its server: %v", pids)
	}
	// Nothing of Upscale runs but HAProxy and the containers.
	time.Sleep(time.Second)
	d.srv.Run()
	d.srv.WaitHostUp()
	d.waitAdopted(t, app, before)
	time.Sleep(300 * time.Millisecond)
	l.check(t, "requests while the server stopped and started")
	// The new server took over the HAProxy that kept serving.
	if !regexp.MustCompile(`msg="haproxy adopted.* master=` + started[1] + ` `).MatchString(d.srv.Log()) {
		t.Errorf("the new server did not adopt HAProxy (master %s):\n%s", started[1], d.srv.Log())
	}

	if info := d.info(t, app); info.Release != "v1" || info.Instances != 1 {
		t.Errorf("app info after the restart: %+v", info)
	}
	rig.Commit(t, dir, "after the restart", helloApp(t, "after", "runtime: python\n"))
	mustHave(t, d.mustPush(t, dir, app), "-----> v2 is live; removing 1 old instance(s)")
	d.mustServe(t, app, "after\n")
	if got := d.containers(t); len(got) != 1 || got[0] == before[0].Name {
		t.Errorf("containers after the push: %v, want one new one", got)
	}
}

// HAProxy dies (its worker killed, and the master that exits with it):
// apps stayed down until the next deploy. The server starts it again with
// the routes it had, and hosts list says so.
func TestRouterRestartsWhenHAProxyDiesRegression(t *testing.T) {
	d := newDeployWorld(t)
	d.mustPush(t, rig.Repo(t, helloApp(t, "routed", "runtime: python\n")), "acme/web")
	d.mustServe(t, "acme/web", "routed\n")
	if out := d.ssh(t, "hosts", "list"); !strings.Contains(out, "\nrouter: haproxy up (master pid ") || strings.Contains(out, "restarted") {
		t.Fatalf("hosts list before the kill:\n%s", out)
	}
	pids := haproxyPIDs(d.srv.Data)
	if len(pids) == 0 {
		t.Fatalf("no haproxy runs for %s", d.srv.Data)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	d.mustServe(t, "acme/web", "routed\n")
	// HAProxy answers a moment before the server has seen it up and
	// counted the restart.
	restarted := regexp.MustCompile(`\nrouter: haproxy up \(master pid [0-9]+, worker pid [0-9]+\); found dead and restarted 1 time\(s\), last at 20`)
	out := ""
	for deadline := time.Now().Add(15 * time.Second); !restarted.MatchString(out); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("hosts list after the kill:\n%s", out)
		}
		out = d.ssh(t, "hosts", "list")
	}
	if after := haproxyPIDs(d.srv.Data); len(after) == 0 || slices.Contains(after, pids[0]) {
		t.Errorf("haproxy processes %v after killing %v", after, pids)
	}
}

// haproxyPIDs are the HAProxy processes serving the server with data dir
// data.
func haproxyPIDs(data string) []int {
	return pidsMatching(func(args []string) bool {
		return filepath.Base(args[0]) == "haproxy" && slices.Contains(args, filepath.Join(data, "router", "haproxy.cfg"))
	})
}
