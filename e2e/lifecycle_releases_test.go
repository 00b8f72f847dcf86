package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// Releases list what was deployed, by whom, and what is live; rollback
// makes an older release's code and config live again as a new release,
// without a rebuild or a failed request; releases whose artifact was
// pruned, that failed or do not exist are refused with one clear line.
func TestLifecycleReleases(t *testing.T) {
	d := newDeployWorld(t)
	const app = "acme/web"
	yaml := func(msg string) string { return "runtime: python\nhealth: /\nenv:\n  MESSAGE: " + msg + "\n" }
	dir := rig.Repo(t, lifecycleFiles(yaml("one")))
	d.mustPush(t, dir, app)
	d.ssh(t, "config", "set", app, "SECRET=s1")
	rig.Commit(t, dir, "second version", lifecycleFiles(yaml("two")))
	d.mustPush(t, dir, app)
	d.mustServe(t, app, "two\n")
	first, second := gitOut(t, dir, "rev-parse", "HEAD~1"), gitOut(t, dir, "rev-parse", "HEAD")

	t.Run("releases", func(t *testing.T) {
		out := d.ssh(t, "releases", app)
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		if len(lines) != 4 || !regexp.MustCompile(`^RELEASE +COMMIT +SUBJECT +AUTHOR +BY +WHEN +STATUS +CHANGE$`).MatchString(lines[0]) {
			t.Fatalf("releases:\n%s", out)
		}
		for i, re := range []string{
			`^v3 +` + second[:7] + ` +second version +E2E Author +admin +20\d\d-\d\d-\d\d \d\d:\d\d:\d\dZ +live +push ` + second[:7] + `$`,
			`^v2 +` + first[:7] + ` +.+ +admin +.+ +superseded +set SECRET$`,
			`^v1 +` + first[:7] + ` +.+ +admin +.+ +superseded +push ` + first[:7] + `$`,
		} {
			if !regexp.MustCompile(re).MatchString(lines[i+1]) {
				t.Errorf("releases row %d: %q, want %s", i+1, lines[i+1], re)
			}
		}
		rels := d.releases(t, app)
		if statuses(rels) != "v3:live v2:superseded v1:superseded" || rels[0].Commit != second || rels[0].Subject != "second version" {
			t.Errorf("releases --format json: %+v", rels)
		}
	})

	t.Run("rollback to the previous release", func(t *testing.T) {
		l := startLoop(t, d.srv, app, "one\n", "two\n")
		start := time.Now()
		out := d.ssh(t, "rollback", app)
		took := time.Since(start)
		mustHave(t, out, "-----> v4: rollback to v2 ("+first[:7]+" of v2)", "=====> rollback to v2: v4 is live")
		if strings.Contains(out, "Building") {
			t.Errorf("rollback built something:\n%s", out)
		}
		d.mustServe(t, app, "one\n")
		l.check(t, "requests during rollback")
		t.Logf("rollback took %s", took)
		rels := d.releases(t, app)
		if statuses(rels) != "v4:live v3:superseded v2:superseded v1:superseded" || rels[0].Commit != first || rels[0].Change != "rollback to v2" {
			t.Errorf("after rollback: %+v", rels)
		}
		if got := d.ssh(t, "config", "get", app, "SECRET"); got != "s1\n" {
			t.Errorf("SECRET after rollback: %q", got)
		}
	})

	t.Run("rollback to a named release restores its config", func(t *testing.T) {
		d.ssh(t, "rollback", app, "v1")
		d.mustServe(t, app, "one\n")
		if code, body, _ := d.srv.Get(app, "/env/SECRET"); code != 404 {
			t.Errorf("v1 had no SECRET, the app sees %d %q", code, body)
		}
		if got := d.ssh(t, "config", "list", app); got != "" {
			t.Errorf("config list after rolling back to v1: %q", got)
		}
		d.ssh(t, "rollback", app, "v3")
		d.mustServe(t, app, "two\n")
		if code, body, _ := d.srv.Get(app, "/env/SECRET"); code != 200 || body != "s1" {
			t.Errorf("v3 had SECRET=s1, the app sees %d %q", code, body)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		// v7: a push whose app cannot start fails; v6 keeps serving.
		rig.Commit(t, dir, "broken", map[string]string{"app.yaml": yaml("broken") + "start: exit 3\n"})
		errs, code := d.push(dir, app)
		if code == 0 {
			t.Fatalf("broken push deployed:\n%s", errs)
		}
		before := d.snapshot(t, app, "two\n")
		d.fails(t, "error: acme/web has no release v42; see releases acme/web", "rollback", app, "v42")
		d.fails(t, `error: "latest" is not a release; write it as v3`, "rollback", app, "latest")
		d.fails(t, "error: v6 is already live", "rollback", app, "v6")
		rels := d.releases(t, app)
		if rels[0].Version != 7 || rels[0].Status != "failed" {
			t.Fatalf("releases: %+v", rels)
		}
		_, errs2, code2 := d.srv.SSH(d.key, "", "rollback", app, "v7")
		if code2 != 1 || !strings.HasPrefix(errs2, "error: v7 failed, so there is nothing to roll back to: ") || strings.Count(errs2, "\n") != 1 {
			t.Errorf("rollback to a failed release: exit %d %q", code2, errs2)
		}
		d.fails(t, "error: app acme/nope not found", "rollback", "acme/nope")
		d.fails(t, "error: acme/api has no live release to roll back from", "rollback", "acme/api")
		d.unchanged(t, app, before)
	})

	t.Run("the last 10 releases keep their artifact", func(t *testing.T) {
		// v8..v17: ten config changes of v6 (second's artifact).
		for i := 0; i < 10; i++ {
			d.ssh(t, "config", "set", app, "N="+itoa(i))
		}
		rels := d.releases(t, app)
		if got := statuses(rels[10:]); got != "v7:failed v6:pruned v5:pruned v4:pruned v3:pruned v2:pruned v1:pruned" {
			t.Errorf("older releases: %s", got)
		}
		before := d.snapshot(t, app, "two\n")
		d.fails(t, "error: v5 was pruned: only the last 10 releases keep their artifact; push again to rebuild", "rollback", app, "v5")
		d.unchanged(t, app, before)
		// first's artifact is gone from the object store: only a push brings it back.
		d.ssh(t, "rollback", app, "v9")
		d.mustServe(t, app, "two\n")
	})
}
