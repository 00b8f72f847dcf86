package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// Redeploys of a 2-instance app under a request loop answer every request
// (the full 20-redeploy run at 300 req/s is make bench's zerodowntime); a
// request in flight when the switch happens finishes on the old instance.
func TestLifecycleZeroDowntime(t *testing.T) {
	d := newDeployWorld(t)
	const app = "acme/web"
	d.mustPush(t, rig.Repo(t, lifecycleFiles("runtime: python\nhealth: /\ninstances: 2\nenv:\n  MESSAGE: r0\n")), app)
	d.mustServe(t, app, "r0\n")

	bodies := []string{"r0\n", "r1\n", "r2\n", "r3\n", "slow\n"}
	l := startLoop(t, d.srv, app, bodies...)
	for i := 1; i <= 3; i++ {
		d.ssh(t, "config", "set", app, "MESSAGE=r"+itoa(i))
		d.mustServe(t, app, "r"+itoa(i)+"\n")
		if n := len(d.running(t, app)); n != 2 {
			t.Errorf("after redeploy %d: %d instances, want 2", i, n)
		}
	}
	// A restart is a redeploy too.
	d.ssh(t, "app", "restart", app)
	time.Sleep(200 * time.Millisecond)
	l.check(t, "3 redeploys and a restart")

	t.Run("in-flight requests finish on the old release", func(t *testing.T) {
		d.ssh(t, "config", "set", app, "MESSAGE=slow")
		type answer struct {
			code int
			body string
			err  error
		}
		done := make(chan answer, 1)
		go func() {
			code, body, err := d.srv.Get(app, "/slow") // 2 s
			done <- answer{code, body, err}
		}()
		time.Sleep(300 * time.Millisecond)
		start := time.Now()
		d.ssh(t, "config", "set", app, "MESSAGE=after")
		took := time.Since(start)
		a := <-done
		if a.err != nil || a.code != 200 || a.body != "slow\n" {
			t.Errorf("the request in flight during the switch: %d %q %v, want 200 from the old release", a.code, a.body, a.err)
		}
		// The switch waited for it: the old instance drained first.
		if took < time.Second {
			t.Errorf("config set returned after %s, before the in-flight request could finish", took)
		}
		d.mustServe(t, app, "after\n")
	})

	t.Run("no leftovers", func(t *testing.T) {
		names := d.running(t, app)
		cs := d.containers(t)
		for _, c := range cs {
			if strings.HasPrefix(c, "acme-web-") && !strings.Contains(strings.Join(names, " "), c) {
				t.Errorf("container %s is left over; instances are %v", c, names)
			}
		}
	})
}
