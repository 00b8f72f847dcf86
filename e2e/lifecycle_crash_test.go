package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// A release that turns crashy after it went live (GET /crash makes it exit
// 3, then exit again a moment after every start): its agent restarts it
// at once, then with a growing backoff; app ps shows the restarts climb
// and the last exit status; the host and another app on it stay fine.
func TestLifecycleCrashLoop(t *testing.T) {
	d := newDeployWorld(t)
	const app, other = "acme/web", "acme/api"
	d.mustPush(t, rig.Repo(t, lifecycleFiles("runtime: python\nhealth: /\nenv:\n  MESSAGE: fine\n")), app)
	d.mustPush(t, rig.Repo(t, lifecycleFiles("runtime: python\nhealth: /\nenv:\n  MESSAGE: other\n")), other)
	d.mustServe(t, app, "fine\n")
	d.mustServe(t, other, "other\n")

	l := startLoop(t, d.srv, other, "other\n")
	begin := time.Now()
	// The connection drops: no answer to check. A connection of its own,
	// since Go's client sends a GET again when a reused connection closes
	// without an answer, and a second /crash could reach the release
	// that is meant to cure the app.
	go func() {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/crash", d.srv.HTTPPort), nil)
		req.Host = "web.acme.upscale.localhost"
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	var seen []int
	var ps []psRow
	for time.Since(begin) < 12*time.Second {
		ps = d.psFull(t, app)
		if len(ps) != 1 {
			t.Fatalf("app ps: %+v", ps)
		}
		if n := ps[0].Restarts; len(seen) == 0 || seen[len(seen)-1] != n {
			seen = append(seen, n)
			t.Logf("%5.1fs: restarts %d, state %s, last exit %d", time.Since(begin).Seconds(), n, ps[0].State, ps[0].LastExit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.check(t, "the other app during the crash loop")
	last := seen[len(seen)-1]
	if len(seen) < 3 {
		t.Errorf("restarts did not climb: %v", seen)
	}
	// At once, then 1 s, 2 s, 4 s (+ 0.3 s each run): 4 or 5 in 12 s. Without
	// backoff it would be dozens.
	if last < 3 || last > 6 {
		t.Errorf("restarts in 12 s: %v, want 3 to 6 (climbing with backoff)", seen)
	}
	if ps[0].LastExit != 3 {
		t.Errorf("last exit %d, want 3", ps[0].LastExit)
	}
	out := d.ssh(t, "app", "ps", app)
	if !strings.Contains(out, "(last exit 3)") {
		t.Errorf("app ps does not show the last exit:\n%s", out)
	}
	if n, state := d.hostContainers(t); state != "up" || n != 2 {
		t.Errorf("host %s with %d containers, want up with 2 (no extra containers from the crash loop)", state, n)
	}
	// app events has the crashes, from the agent's restart counts.
	crashes := 0
	for _, e := range d.events(t, app) {
		if e.Kind == "crash" {
			crashes++
			if e.By != "upscale" || !strings.Contains(e.Message, "exited with status 3; restarted by its agent") {
				t.Errorf("crash event %+v", e)
			}
		}
	}
	if crashes < 2 || crashes > last {
		t.Errorf("%d crash events for %d restarts", crashes, last)
	}
	// A new release cures it: the crashing instance is replaced.
	d.ssh(t, "config", "set", app, "MESSAGE=cured")
	// The marker is in the old container's files, not the new one's.
	d.mustServe(t, app, "cured\n")
	if ps := d.psFull(t, app); len(ps) != 1 || ps[0].Restarts != 0 || ps[0].State != "running" {
		t.Errorf("after a new release: %+v", ps)
	}
}
