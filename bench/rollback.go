package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// benchRollback times `rollback` from the moment the ssh command starts
// until HAProxy serves the old body: a new release of a kept artifact,
// with no build. Each rollback goes back to the release before the live
// one, so the body flips between two values. The baseline is the floor
// of any ssh command: `true` run over OpenSSH's sshd.
func benchRollback(e *env) ([]row, []string) {
	runs := 10
	if e.quick {
		runs = 3
	}
	s := e.apps()
	const app = "bench/rb"
	s.local(e.t, "app", "create", app)
	src, err := os.ReadFile(filepath.Join(examplePython(), "app.py"))
	if err != nil {
		e.t.Fatalf("example app: %v", err)
	}
	dir := rig.Repo(e.t, map[string]string{"app.py": string(src), "app.yaml": "runtime: python\nhealth: /\nenv:\n  MESSAGE: A\n"})
	progress("rollback: deploying an app, then a second release")
	pushApp(e.t, s, dir, app)
	if _, errs, code := s.srv.SSH(s.key, "", "config", "set", app, "MESSAGE=B"); code != 0 {
		e.t.Fatalf("config set: %s", errs)
	}
	get := func() string {
		code, body, err := s.srv.Get(app, "/")
		if err != nil || code != 200 {
			return ""
		}
		return body
	}
	want := map[string]string{"B\n": "A\n", "A\n": "B\n"}
	var served, returned, base []time.Duration
	for i := range runs {
		cur := get()
		next, ok := want[cur]
		if !ok {
			e.t.Fatalf("rollback: the app answers %q", cur)
		}
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			_, errs, code := s.srv.SSH(s.key, "", "rollback", app)
			if code != 0 {
				done <- fmt.Errorf("rollback: exit %d: %s", code, errs)
				return
			}
			done <- nil
		}()
		var at time.Duration
		for at == 0 {
			if get() == next {
				at = time.Since(start)
			} else if time.Since(start) > 30*time.Second {
				e.t.Fatalf("rollback: %q not served within 30 s", next)
			} else {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if err := <-done; err != nil {
			e.t.Fatalf("%v", err)
		}
		served, returned = append(served, at), append(returned, time.Since(start))
		t0 := time.Now()
		cmd := append(e.sshd.SSHCommand(), "root@127.0.0.1", "true")
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			e.t.Fatalf("ssh true: %v: %s", err, out)
		}
		base = append(base, time.Since(t0))
		progress("rollback %d/%d: old body served after %s, rollback returned after %s", i+1, runs, ms(at), ms(returned[i]))
	}
	rows := latencyRows("rollback: until the old body is served", served, base, "p50 <= 1.0 s",
		func(u, _ time.Duration) bool { return u <= time.Second })
	u, b := percentile(returned, 50), percentile(base, 50)
	rows = append(rows, row{name: fmt.Sprintf("rollback: until the command returns, p50 of %d", runs),
		upscale: ms(u), baseline: ms(b), ratio: ratio(u.Seconds(), b.Seconds()), diff: signedMs(u - b), goal: "(report)"})
	return rows, []string{fmt.Sprintf("rollback: the example Python app, one instance; each `rollback %s` (no version: the release before the live one) "+
		"makes a new release of a kept artifact and rolls it out (start, GET / health, switch, drain, SIGTERM); served = GET / through HAProxy "+
		"polled every 5 ms from the ssh command's start returns the old body; the command returns once the old instance is gone; "+
		"baseline = `ssh root@127.0.0.1 true` against sshd, the floor of any ssh command", app)}
}
