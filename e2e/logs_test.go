package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// app logs merges every container of the app into one stream in capture
// order, each line saying when, which process and which container.
func TestLogsMerged(t *testing.T) {
	d := newDeployWorld(t)
	const app, body = "acme/web", "merged\n"
	d.mustPush(t, rig.Repo(t, helloApp(t, "merged", "runtime: python\ninstances: 2\nhealth: /\n")), app)
	d.mustServe(t, app, body)
	names := d.running(t, app)
	if len(names) != 2 {
		t.Fatalf("instances: %v, want 2", names)
	}
	line := regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (web\.[12]) (\S+)\| (.*)$`)

	// Requests until both containers have logged some.
	var out string
	seen := map[string]bool{}
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; len(seen) < 2 && time.Now().Before(deadline); i++ {
		if code, got, err := d.srv.Get(app, fmt.Sprintf("/merged-%d", i)); code != 200 || got != body {
			t.Fatalf("GET: %d %q %v", code, got, err)
		}
		out = d.ssh(t, "app", "logs", app, "-n", "1000")
		seen = map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if m := line.FindStringSubmatch(l); m != nil && strings.Contains(m[4], `"GET /merged-`) {
				seen[m[3]] = true
			}
		}
	}
	if len(seen) != 2 {
		t.Fatalf("access lines came from %v, want both of %v:\n%s", seen, names, out)
	}

	// Every line is prefixed, labels are one per container, and the
	// merged stream is in time order.
	label := map[string]string{}
	var last string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q lacks the time, process and container", l)
		}
		if m[1] < last {
			t.Errorf("line %q is older than the one before it (%s)", l, last)
		}
		last = m[1]
		if other, ok := label[m[3]]; ok && other != m[2] {
			t.Errorf("container %s is both %s and %s", m[3], other, m[2])
		}
		label[m[3]] = m[2]
	}
	if len(label) != 2 || label[names[0]] != "web.1" || label[names[1]] != "web.2" {
		t.Errorf("labels %v, want web.1 and web.2 for %v (sorted by name)", label, names)
	}

	// -n counts the app's lines, as heroku logs -n does: the newest N of
	// them all, whichever container wrote them.
	for _, n := range []int{1, 3} {
		out = d.ssh(t, "app", "logs", app, "-n", fmt.Sprint(n))
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != n || !line.MatchString(lines[0]) {
			t.Errorf("app logs -n %d: %q, want %d lines", n, out, n)
		}
	}
}
