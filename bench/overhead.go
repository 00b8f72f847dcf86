package main

import (
	"fmt"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// benchOverhead measures what Upscale adds to an everyday push of a small
// change: the Go SSH server, the pre-receive policy, the post-receive
// record, against a bare repository with no hooks. It pushes a branch
// other than the deploy branch: a push there builds and runs the app,
// which is the deploy benchmark.
func benchOverhead(e *env) ([]row, []string) {
	pushes := 20
	if e.quick {
		pushes = 5
	}
	const app = "bench/overhead"
	mustLocal(e, "app", "create", app)
	// Gone afterwards, so that the list benchmark counts only its own apps.
	defer mustLocal(e, "app", "delete", app)
	repo, repoKex := bareRepo(e.t), bareRepo(e.t)
	dir := rig.Repo(e.t, map[string]string{"app.yaml": "runtime: python\n", "counter.txt": "0\n"})
	// Upscale always gets curve25519 (Go's SSH has no sntrup761x25519,
	// OpenSSH 9.x's favourite); the third series gives sshd the same key
	// exchange, to tell Upscale's own overhead from the handshake's.
	const kex = "curve25519-sha256"
	targets := []func() time.Duration{
		func() time.Duration { return pushRef(e.t, dir, e.srv.SSHCommand(e.key), e.srv.Remote(app), sideBranch) },
		func() time.Duration { return pushRef(e.t, dir, e.sshd.SSHCommand(), e.sshd.Remote(repo), sideBranch) },
		func() time.Duration {
			return pushRef(e.t, dir, e.sshd.SSHCommand("-o", "KexAlgorithms="+kex), e.sshd.Remote(repoKex), sideBranch)
		},
	}
	// The first push creates the branch and carries the initial commit;
	// the measured ones are fast-forwards of one small commit.
	for _, p := range targets {
		p()
	}

	progress("overhead: %d one-commit pushes to each of %d targets", pushes, len(targets))
	d := make([][]time.Duration, len(targets))
	for i := range pushes {
		rig.Commit(e.t, dir, fmt.Sprintf("change %d", i+1), map[string]string{"counter.txt": fmt.Sprintf("%d\n", i+1)})
		// Each round starts with a different target.
		for j := range targets {
			k := (i + j) % len(targets)
			d[k] = append(d[k], targets[k]())
		}
	}
	rows := latencyRows("push one commit", d[0], d[1], "diff <= +50 ms",
		func(u, b time.Duration) bool { return u-b <= 50*time.Millisecond })
	u, b := percentile(d[0], 50), percentile(d[2], 50)
	rows = append(rows, row{name: fmt.Sprintf("push one commit, sshd with kex %s, p50 of %d", kex, pushes),
		upscale: ms(u), baseline: ms(b), ratio: ratio(u.Seconds(), b.Seconds()), diff: signedMs(u - b),
		goal: "(where the time goes)"})
	return rows, []string{"overhead: each push is a fast-forward of one commit changing one small file, to branch bench (not the deploy branch: " +
		"a push to master builds and runs the app, which the deploy benchmark measures); " +
		"the baseline repository has no hooks, Upscale's runs pre-receive (push policy) and post-receive (push record)"}
}
