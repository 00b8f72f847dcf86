package main

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// benchList measures `ssh upscale@host app list` over 1,000 apps against
// the cost of any OpenSSH connection: `ssh root@host true` to sshd.
func benchList(e *env) ([]row, []string) {
	apps, runs := 1000, 20
	if e.quick {
		apps, runs = 100, 5
	}
	const ns = "many"
	mustLocal(e, "namespace", "create", ns)
	// More apps than the default apps quota of a namespace.
	mustLocal(e, "namespace", "quota", "set", ns, fmt.Sprintf("apps=%d", apps))
	progress("list: creating %d apps", apps)
	createApps(e, ns, apps)

	list := append(e.srv.SSHCommand(e.key), "upscale@127.0.0.1", "app", "list")
	out := sshRun(e.t, list)
	if got := strings.Count(out, "\n") - 1; got != apps {
		e.t.Fatalf("app list shows %d apps, want %d:\n%s", got, apps, out)
	}
	// Go's SSH has no sntrup761x25519, which OpenSSH 9.x prefers, so the
	// two servers may not do the same key exchange. The floor pair forces
	// one on both: a command that reads almost nothing, against `true`.
	const kex = "curve25519-sha256"
	cmds := [][]string{
		list,
		append(e.sshd.SSHCommand(), "root@127.0.0.1", "true"),
		// JSON is written in one piece where text goes through a
		// tabwriter: the difference is the cost of the output path.
		append(e.srv.SSHCommand(e.key), "upscale@127.0.0.1", "app", "list", "--format", "json"),
		append(e.srv.SSHCommand(e.key, "-o", "KexAlgorithms="+kex), "upscale@127.0.0.1", "namespace", "list"),
		append(e.sshd.SSHCommand("-o", "KexAlgorithms="+kex), "root@127.0.0.1", "true"),
	}
	progress("list: %d runs of each of %d commands", runs, len(cmds))
	d := rotate(e.t, runs, cmds)

	rows := latencyRows(fmt.Sprintf("ssh app list, %d apps", apps), d[0], d[1], "p50 <= 50 ms",
		func(u, _ time.Duration) bool { return u <= 50*time.Millisecond })
	info := func(name string, up, base []time.Duration) row {
		u, b := percentile(up, 50), percentile(base, 50)
		return row{name: fmt.Sprintf("%s, p50 of %d", name, len(up)), upscale: ms(u), baseline: ms(b),
			ratio: ratio(u.Seconds(), b.Seconds()), diff: signedMs(u - b), goal: "(where the time goes)"}
	}
	rows = append(rows,
		info(fmt.Sprintf("ssh app list --format json, %d apps", apps), d[2], d[1]),
		info("ssh connection floor, kex "+kex, d[3], d[4]))
	return rows, []string{
		fmt.Sprintf("list: `app list` prints %d bytes; the baseline column is `ssh root@127.0.0.1 true` to sshd, "+
			"the cost of an OpenSSH connection itself, with the key exchange each server negotiates by default", len(out)),
		"list: the floor row is `ssh upscale@127.0.0.1 namespace list` (a few rows) against `ssh root@127.0.0.1 true`, both forced to " + kex,
	}
}

// rotate runs every command n times, round after round, starting each
// round with the next command so that none always goes first, and
// returns the durations of each command.
func rotate(t *tb, n int, cmds [][]string) [][]time.Duration {
	d := make([][]time.Duration, len(cmds))
	for i := range n {
		for j := range cmds {
			k := (i + j) % len(cmds)
			d[k] = append(d[k], timed(t, cmds[k]))
		}
	}
	return d
}

// createApps makes n apps with the local CLI, four at a time: it is setup,
// and one at a time would take longer than the measurement.
func createApps(e *env, ns string, n int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	next := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range next {
				if _, stderr, code := e.srv.Local("app", "create", fmt.Sprintf("%s/app-%04d", ns, i)); code != 0 {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("app-%04d: exit %d: %s", i, code, strings.TrimSpace(stderr)))
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		e.t.Fatalf("%d of %d app creations failed, e.g.:\n%s", len(errs), n, strings.Join(errs[:min(5, len(errs))], "\n"))
	}
}

func sshRun(t *tb, args []string) string {
	stdout, stderr, code := rig.Exec(exec.Command(args[0], args[1:]...), "")
	if code != 0 {
		t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

func timed(t *tb, args []string) time.Duration {
	start := time.Now()
	sshRun(t, args)
	return time.Since(start)
}
