package e2e

import (
	"regexp"
	"strings"
	"testing"

	"github.com/upscalehq/upscale/e2e/rig"
)

// app events says what happened to an app, who did it and when, newest
// first: deploys, config changes (names, never values), scaling, restart,
// stop, run, rollback and failures.
func TestLifecycleEvents(t *testing.T) {
	d := newDeployWorld(t)
	const app = "acme/web"
	member := rig.NewKey(t, "alice")
	d.ssh(t, "keys", "add", "--namespace", "acme", "--name", "alice", "--public", "'"+member.Public+"'")
	dir := rig.Repo(t, lifecycleFiles("runtime: python\nhealth: /\nenv:\n  MESSAGE: one\n"))
	d.mustPush(t, dir, app)
	mustSSH(t, d.srv, member, "", "config", "set", app, "TOKEN=hunter2")
	d.ssh(t, "app", "scale", app, "2")
	d.ssh(t, "app", "restart", app)
	d.ssh(t, "app", "stop", app)
	d.ssh(t, "app", "run", app)
	mustSSH(t, d.srv, member, "", "rollback", app)
	rig.Commit(t, dir, "broken", map[string]string{"app.yaml": "runtime: python\nhealth: /\nstart: exit 3\n"})
	if _, code := d.push(dir, app); code == 0 {
		t.Fatal("broken push deployed")
	}
	d.mustServe(t, app, "one\n")

	evs := d.events(t, app)
	var got []string
	for _, e := range evs {
		got = append(got, e.Kind+" by "+e.By+": "+e.Message)
		if strings.Contains(e.Message, "hunter2") {
			t.Errorf("an event shows a config value: %+v", e)
		}
	}
	want := []string{
		`^failure by admin: v4 failed \(push [0-9a-f]{7}\): starting v4 failed: instance 1 of 2 .*the app exited \(status 3\)`,
		`^rollback by alice: rollback to v1 \([0-9a-f]{7}\) as v3$`,
		`^run by admin: started again$`,
		`^stop by admin: every instance stopped$`,
		`^restart by admin: instances replaced$`,
		`^scale by admin: web=2 \(was web=1\)$`,
		`^config by alice: set TOKEN: v2$`,
		`^deploy by admin: v1 deployed: push of [0-9a-f]{7} "initial commit"$`,
	}
	if len(got) != len(want) {
		t.Fatalf("events:\n%s", strings.Join(got, "\n"))
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(got[i]) {
			t.Errorf("event %d: %q, want %s", i, got[i], re)
		}
	}

	out := d.ssh(t, "app", "events", app, "-n", "2")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^WHEN +EVENT +BY +WHAT$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^20\d\d-\d\d-\d\d \d\d:\d\d:\d\dZ +failure +admin +v4 failed`).MatchString(lines[1]) ||
		!regexp.MustCompile(` +rollback +alice +rollback to v1 `).MatchString(lines[2]) {
		t.Errorf("app events -n 2:\n%s", out)
	}
	d.fails(t, "error: app acme/nope not found", "app", "events", "acme/nope")

	// A deploy key pushes; it does not see or change config, releases
	// or scale: to it those read like an app that does not exist.
	ci := rig.NewKey(t, "ci")
	d.ssh(t, "keys", "add", "--app", app, "--name", "ci", "--public", "'"+ci.Public+"'")
	for _, args := range [][]string{{"config", "list", app}, {"config", "set", app, "A=1"}, {"releases", app}, {"rollback", app}, {"app", "scale", app, "3"}, {"app", "events", app}} {
		out, errs, code := d.srv.SSH(ci, "", args...)
		if code != 1 || out != "" || errs != "error: app acme/web not found\n" {
			t.Errorf("deploy key runs %v: exit %d, %q %q", args, code, out, errs)
		}
	}
	// (The rollback to v1 took TOKEN away: v1 had no config vars.)
	if got := d.ssh(t, "config", "list", app); got != "" {
		t.Errorf("config after the deploy key's attempts: %q", got)
	}
	d.fails(t, "error: -n must be 0 or more, not -1", "app", "events", app, "-n", "-1")
}
