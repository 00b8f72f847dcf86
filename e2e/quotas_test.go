package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// Per-namespace quotas and the default CPU limit on a real server with
// real containers: a change past a quota is refused with one line that
// names the namespace, the quota and the command that raises it, and
// what ran keeps serving; an instance without cpu in app.yaml runs under
// the operator's --default-cpu.
func TestQuotasRegression(t *testing.T) {
	d := newDeployWorld(t, "--default-cpu", "0.5")
	const app = "acme/web"
	d.ssh(t, "namespace", "quota", "set", "acme", "instances=2")
	d.mustPush(t, rig.Repo(t, lifecycleFiles("runtime: python\ninstances: 2\nenv:\n  MESSAGE: quota\n")), app)
	d.mustServe(t, app, "quota\n")

	t.Run("scale past the instances quota is refused, 2 keep serving", func(t *testing.T) {
		l := startLoop(t, d.srv, app, "quota\n")
		d.fails(t, "error: over quota: acme/web would run 3 instance(s) (web=3) and the other apps of namespace acme run 0, "+
			"over its instances quota of 2; an admin raises it with: namespace quota set acme instances=N", "app", "scale", app, "3")
		l.check(t, "requests while a scale was refused")
		if got := d.running(t, app); len(got) != 2 {
			t.Errorf("after a refused scale: %d running instances %v, want the 2 of before", len(got), got)
		}
		if got := d.count(t, app); got != "web=2" {
			t.Errorf("after a refused scale: %s", got)
		}
	})

	t.Run("a push to another app past the quota is refused before its build", func(t *testing.T) {
		errs, code := d.push(rig.Repo(t, lifecycleFiles("runtime: python\nenv:\n  MESSAGE: api\n")), "acme/api")
		if code == 0 || !strings.Contains(errs, "acme/api would run 1 instance(s) (web=1) and the other apps of namespace acme run 2, over its instances quota of 2") ||
			strings.Contains(errs, "Building") {
			t.Errorf("push to acme/api over the quota: exit %d\n%s", code, errs)
		}
		if b := d.branch(t, "acme/api"); b != "" {
			t.Errorf("a refused push moved acme/api's master to %s", b)
		}
		if rels := d.releases(t, "acme/api"); len(rels) != 0 {
			t.Errorf("a refused push made releases %+v", rels)
		}
		d.mustServe(t, app, "quota\n")
	})

	t.Run("namespace info", func(t *testing.T) {
		var v struct {
			Apps, Instances, Memory, Exec struct {
				Used, Limit int64
				Default     bool
			}
		}
		out := d.ssh(t, "namespace", "info", "acme", "--format", "json")
		if err := json.Unmarshal([]byte(strings.Replace(out, `"memory_bytes"`, `"memory"`, 1)), &v); err != nil {
			t.Fatal(err)
		}
		if v.Instances.Used != 2 || v.Instances.Limit != 2 || v.Instances.Default || v.Apps.Used != 2 || v.Apps.Limit != 20 || !v.Apps.Default ||
			v.Memory.Used != 2*512<<20 || v.Memory.Limit != 8<<30 || v.Exec.Limit != 4 {
			t.Errorf("namespace info acme:\n%s", out)
		}
	})

	t.Run("instances run under the default cpu limit", func(t *testing.T) {
		for _, name := range d.running(t, app) {
			if got := cpuQuota(t, d.lxcpath(), name); got != "50000" {
				t.Errorf("%s: CPU quota %q µs per 100 ms, want 50000 (--default-cpu 0.5)", name, got)
			}
		}
	})

	t.Run("app exec past the exec quota is refused until one ends", func(t *testing.T) {
		d.ssh(t, "namespace", "quota", "set", "acme", "exec=1")
		defer d.ssh(t, "namespace", "quota", "set", "acme", "exec=default")
		first := make(chan string, 1)
		go func() {
			out, errs, code := d.srv.SSH(d.key, "", "app", "exec", app, "--", "sh", "-c", "'echo started; sleep 10; echo first done'")
			first <- fmt.Sprintf("exit %d, stdout %q, stderr %q", code, out, errs)
		}()
		// The first counts from the moment the server takes it: wait for
		// namespace info to show it, then a second must be refused.
		deadline := time.Now().Add(30 * time.Second)
		for {
			var v struct{ Exec struct{ Used int } }
			json.Unmarshal([]byte(d.ssh(t, "namespace", "info", "acme", "--format", "json")), &v)
			if v.Exec.Used == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("namespace info never counted the first exec; it ended: %s", <-first)
			}
			time.Sleep(50 * time.Millisecond)
		}
		out, errs, code := d.srv.SSH(d.key, "", "app", "exec", app, "--", "echo", "second")
		if want := "error: over quota: namespace acme already runs 1 app exec command(s), its exec quota; " +
			"wait for one to end, or an admin raises it with: namespace quota set acme exec=N\n"; code != 1 || errs != want || out != "" {
			t.Errorf("second exec while the first runs: exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errs, want)
		}
		if got := <-first; got != `exit 0, stdout "started\nfirst done\n", stderr ""` {
			t.Errorf("first exec: %s", got)
		}
		if out := d.ssh(t, "app", "exec", app, "--", "echo", "third"); out != "third\n" {
			t.Errorf("exec after the first ended: %q", out)
		}
	})

	t.Run("app create past the apps quota is refused", func(t *testing.T) {
		d.ssh(t, "namespace", "create", "solo")
		d.ssh(t, "namespace", "quota", "set", "solo", "apps=1")
		d.ssh(t, "app", "create", "solo/one")
		_, errs, code := d.srv.SSH(d.key, "", "app", "create", "solo/two")
		if code != 1 || !strings.HasPrefix(errs, "error: namespace solo already has 1 app(s), its apps quota; an admin raises it with: ") ||
			!strings.HasSuffix(errs, " namespace quota set solo apps=N\n") || strings.Count(errs, "\n") != 1 {
			t.Errorf("second app of solo: exit %d, %q", code, errs)
		}
		var apps []struct{ Name string }
		json.Unmarshal([]byte(d.ssh(t, "app", "list", "--namespace", "solo", "--format", "json")), &apps)
		if len(apps) != 1 {
			t.Errorf("solo's apps after a refused create: %+v", apps)
		}
	})
}

// cpuQuota is a container's CFS quota in µs per 100 ms period, from
// whichever cgroup hierarchy LXC put it in.
func cpuQuota(t *testing.T, lxcpath, name string) string {
	t.Helper()
	out, err := exec.Command("lxc-cgroup", "-P", lxcpath, "-n", name, "cpu.max").Output()
	if err == nil {
		quota, _, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
		return quota
	}
	out, err = exec.Command("lxc-cgroup", "-P", lxcpath, "-n", name, "cpu.cfs_quota_us").Output()
	if err != nil {
		t.Fatalf("reading %s's CPU quota: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}
