package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// Each process type scales on its own; only web is routed; scaling makes
// no release and later releases keep the counts; 0 stops (503); counts
// out of range and unknown types are refused.
func TestLifecycleScale(t *testing.T) {
	d := newDeployWorld(t)
	const app = "acme/web"
	yaml := "runtime: python\nhealth: /\nprocesses:\n  web: python3 app.py\n  worker: while true; do echo tick; sleep 1; done\nenv:\n  MESSAGE: scaled\n"
	out := d.mustPush(t, rig.Repo(t, lifecycleFiles(yaml)), app)
	mustHave(t, out, "remote: -----> Starting web=1 worker=1 of v1")
	d.mustServe(t, app, "scaled\n")
	if got := d.count(t, app); got != "web=1 worker=1" {
		t.Fatalf("after push: %s", got)
	}
	for _, p := range d.psFull(t, app) {
		if p.Process == "worker" && (!strings.Contains(p.Name, "-worker-v1-") || p.State != "running") {
			t.Errorf("worker instance %+v", p)
		}
	}

	t.Run("the worker runs but gets no requests", func(t *testing.T) {
		l := startLoop(t, d.srv, app, "scaled\n")
		time.Sleep(time.Second)
		l.check(t, "requests with a worker running")
		var logs string
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && !strings.Contains(logs, "tick") {
			logs = d.ssh(t, "app", "logs", app, "-n", "5")
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(logs, "tick") {
			t.Errorf("app logs has no worker ticks:\n%s", logs)
		}
	})

	t.Run("up and down without downtime", func(t *testing.T) {
		l := startLoop(t, d.srv, app, "scaled\n")
		out := d.ssh(t, "app", "scale", app, "web=3", "worker=2")
		mustHave(t, out, "=====> acme/web scaled to web=3 worker=2 (was web=1 worker=1)")
		if got := d.count(t, app); got != "web=3 worker=2" {
			t.Errorf("after scale web=3 worker=2: %s", got)
		}
		d.ssh(t, "app", "scale", app, "2")
		if got := d.count(t, app); got != "web=2 worker=2" {
			t.Errorf("after scale 2: %s", got)
		}
		d.ssh(t, "app", "scale", app, "worker=0")
		if got := d.count(t, app); got != "web=2" {
			t.Errorf("after scale worker=0: %s", got)
		}
		l.check(t, "requests while scaling")
		if rels := d.releases(t, app); statuses(rels) != "v1:live" {
			t.Errorf("scaling made releases: %s", statuses(rels))
		}
	})

	t.Run("later releases keep the formation", func(t *testing.T) {
		d.ssh(t, "config", "set", app, "MESSAGE=kept")
		d.mustServe(t, app, "kept\n")
		if got := d.count(t, app); got != "web=2" {
			t.Errorf("after config set: %s, want the scaled web=2", got)
		}
		for _, p := range d.psFull(t, app) {
			if p.Release != 2 {
				t.Errorf("instance %s runs v%d, want v2", p.Name, p.Release)
			}
		}
	})

	t.Run("0 stops, 503 until scaled up", func(t *testing.T) {
		d.ssh(t, "app", "scale", app, "0")
		if got := d.count(t, app); got != "" {
			t.Errorf("after scale 0: %s", got)
		}
		d.mustAnswer(t, app, "/", 503)
		d.ssh(t, "app", "scale", app, "web=1", "worker=1")
		d.mustServe(t, app, "kept\n")
		if got := d.count(t, app); got != "web=1 worker=1" {
			t.Errorf("after scale back: %s", got)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		before := d.snapshot(t, app, "kept\n")
		d.fails(t, "error: web=-1: the count must be from 0 to 100", "app", "scale", app, "-1")
		d.fails(t, "error: web=10000: the count must be from 0 to 100", "app", "scale", app, "10000")
		d.fails(t, "error: worker=-2: the count must be from 0 to 100", "app", "scale", app, "web=1", "worker=-2")
		d.fails(t, `error: acme/web has no process type "clock"; its types are: web, worker`, "app", "scale", app, "clock=1")
		d.fails(t, "error: web=many: the count must be a whole number from 0 to 100", "app", "scale", app, "many")
		d.fails(t, "error: acme/api has no release yet; push first, then scale", "app", "scale", "acme/api", "2")
		d.unchanged(t, app, before)
	})

	t.Run("events", func(t *testing.T) {
		var got []string
		for _, e := range d.events(t, app) {
			if e.Kind == "scale" {
				got = append(got, e.Message)
			}
		}
		want := []string{"web=1 worker=1 (was web=0 worker=0)", "web=0 worker=0 (was web=2 worker=0)", "web=2 worker=0 (was web=2 worker=2)",
			"web=2 worker=2 (was web=3 worker=2)", "web=3 worker=2 (was web=1 worker=1)"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("scale events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}
