package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// What a tenant writes to its containers' filesystems lands on the host's
// disk: an instance that writes past its limit is stopped and replaced by
// a fresh one, with an event saying why, and a build that does is refused
// with the app unchanged.
func TestDiskLimitsRegression(t *testing.T) {
	d := newDeployWorld(t, "--container-disk", "32M", "--build-disk", "64M")
	const app = "acme/web"
	dir := rig.Repo(t, lifecycleFiles("runtime: python\nhealth: /\nenv:\n  MESSAGE: fine\n"))
	d.mustPush(t, dir, app)
	d.mustServe(t, app, "fine\n")

	t.Run("an instance writing 320M with a limit of 32M", func(t *testing.T) {
		before := d.ps(t, app)
		if len(before) != 1 {
			t.Fatalf("app ps: %+v", before)
		}
		if code, body, err := d.srv.Get(app, "/fill"); err != nil || code != 200 {
			t.Fatalf("GET /fill: %d %q %v", code, body, err)
		}
		var msg string
		deadline := time.Now().Add(60 * time.Second)
		for msg == "" && time.Now().Before(deadline) {
			for _, e := range d.events(t, app) {
				if e.Kind == "disk" {
					msg = e.Message
				}
			}
			time.Sleep(250 * time.Millisecond)
		}
		if msg == "" {
			t.Fatalf("no disk event within 60 s; events: %+v", d.events(t, app))
		}
		want := before[0].Name + " on " + before[0].Host + " wrote more than its limit of 32M to its filesystem and was stopped; a fresh instance replaces it"
		if !strings.HasPrefix(msg, want) {
			t.Errorf("disk event %q, want it to start %q", msg, want)
		}
		d.mustServe(t, app, "fine\n")
		var now []process
		for time.Now().Before(deadline) {
			if now = d.ps(t, app); len(now) == 1 && now[0].Name != before[0].Name && now[0].State == "running" {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if len(now) != 1 || now[0].Name == before[0].Name {
			t.Fatalf("app ps after the stop: %+v, want one fresh instance in place of %s", now, before[0].Name)
		}
		// The full container is gone from the host, not just stopped.
		for time.Now().Before(deadline) {
			if n, _ := d.hostContainers(t); n == 1 {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if n, state := d.hostContainers(t); n != 1 || state != "up" {
			t.Errorf("host %s with %d containers, want up with 1", state, n)
		}
	})

	t.Run("app exec writing 320M with a limit of 32M", func(t *testing.T) {
		out, errs, code := d.srv.SSH(d.key, "", "app", "exec", app, "--", "sh", "-c",
			`'for i in $(seq 40); do head -c 8M /dev/urandom > /tmp/$i; sleep 0.2; done; echo wrote it all'`)
		if code == 0 || strings.Contains(out, "wrote it all") {
			t.Errorf("exec: exit %d, stdout %q; want it stopped before the end", code, out)
		}
		mustHave(t, errs, "the command wrote more than its limit of 32M to its filesystem and was stopped")
		d.mustServe(t, app, "fine\n")
	})

	t.Run("a build writing 320M with a limit of 64M", func(t *testing.T) {
		before := d.snapshot(t, app, "fine\n")
		defer gitOut(t, dir, "reset", "-q", "--hard", before.branch)
		rig.Commit(t, dir, "a build that fills the disk", lifecycleFiles("runtime: python\nhealth: /\nenv:\n  MESSAGE: new\n"+
			"build:\n  - mkdir junk && for i in $(seq 40); do head -c 8M /dev/urandom > junk/$i; sleep 0.2; done; echo wrote it all\n"))
		errs, code := d.push(dir, app)
		if code == 0 {
			t.Fatalf("push accepted; want it refused:\n%s", errs)
		}
		mustHave(t, errs, "remote: error: build failed: the build wrote more than its limit of 64M to its filesystem and was stopped; clean up caches in the build steps, or ask the operator to raise --build-disk",
			"remote: error: push rejected; "+app+" is unchanged")
		if strings.Contains(errs, "remote:        wrote it all") {
			t.Errorf("the build step wrote all of it:\n%s", errs)
		}
		d.unchanged(t, app, before)
	})
}
