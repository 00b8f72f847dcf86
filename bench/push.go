package main

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// benchPush measures the throughput of a big first push: the SSH
// transport and git's receiving side, with Upscale's hooks and server in
// the way, against sshd + git-receive-pack.
func benchPush(e *env) ([]row, []string) {
	files, fileSize, runs := 20, 10_000_000, 3
	if e.quick {
		files, runs = 5, 1
	}
	payload := files * fileSize
	progress("push: committing %d MB of random bytes", payload/1_000_000)
	tree := map[string]string{"app.yaml": "runtime: python\n"}
	for i := range files {
		b := make([]byte, fileSize)
		rand.Read(b)
		tree[fmt.Sprintf("blob-%02d.bin", i)] = string(b)
	}
	dir := rig.Repo(e.t, tree)
	// Packed once here, so each push reuses the compressed objects instead
	// of spending client CPU on zlib, which both sides would pay alike.
	git(e.t, dir, "repack", "-a", "-d", "-q")

	n := 0
	// Each push goes to a fresh, empty repository so every run sends the
	// whole payload.
	toUpscale := func(opts ...string) time.Duration {
		n++
		app := fmt.Sprintf("bench/push-%d", n)
		mustLocal(e, "app", "create", app)
		defer mustLocal(e, "app", "delete", app)
		return pushRef(e.t, dir, e.srv.SSHCommand(e.key, opts...), e.srv.Remote(app), sideBranch)
	}
	toOpenSSH := func(opts ...string) time.Duration {
		repo := bareRepo(e.t)
		return pushRef(e.t, dir, e.sshd.SSHCommand(opts...), e.sshd.Remote(repo), sideBranch)
	}
	mbps := func(d time.Duration) float64 { return float64(payload) / 1e6 / d.Seconds() }

	var up, base []time.Duration
	for i := range runs {
		// Alternating which side goes first evens out page cache and
		// frequency effects.
		if i%2 == 0 {
			up = append(up, toUpscale())
			base = append(base, toOpenSSH())
		} else {
			base = append(base, toOpenSSH())
			up = append(up, toUpscale())
		}
		progress("push %d/%d: upscale %.1f MB/s, openssh %.1f MB/s", i+1, runs, mbps(up[i]), mbps(base[i]))
	}
	u, b := mbps(percentile(up, 50)), mbps(percentile(base, 50))
	pass := u/b >= 0.9

	const gcm = "aes128-gcm@openssh.com"
	progress("push: once more each way with -c %s", gcm)
	gb := mbps(toOpenSSH("-c", gcm))
	gu := mbps(toUpscale("-c", gcm))
	// The same push without SSH at all: git's own floor on this machine.
	local := mbps(pushRef(e.t, dir, nil, bareRepo(e.t), sideBranch))

	name := fmt.Sprintf("push %d MB", payload/1_000_000)
	return []row{
			{name: fmt.Sprintf("%s, default cipher, median of %d", name, runs),
				upscale: mbs(u), baseline: mbs(b), ratio: ratio(u, b), diff: fmt.Sprintf("%+.1f MB/s", u-b),
				goal: "ratio >= 0.90", pass: &pass},
			{name: fmt.Sprintf("%s, -c %s, 1 run", name, gcm),
				upscale: mbs(gu), baseline: mbs(gb), ratio: ratio(gu, gb), diff: fmt.Sprintf("%+.1f MB/s", gu-gb),
				goal: "(where the time goes)"},
		}, []string{
			fmt.Sprintf("push: %d files x %d MB of random bytes plus app.yaml, one commit, pushed as branch bench (not the deploy branch) to a fresh empty repository each run; "+
				"runs alternate sides; all runs, upscale %s, openssh %s", files, fileSize/1_000_000, fmtRuns(up, mbps), fmtRuns(base, mbps)),
			fmt.Sprintf("push: git alone (file:// push into the same kind of bare repository, no SSH) does %s", mbs(local)),
			"push: the baseline repository is configured like Upscale's (receive.fsckObjects=true, receive.unpackLimit=1), so both sides fsck what they receive and keep the pack",
		}
}

func mbs(v float64) string { return fmt.Sprintf("%.1f MB/s", v) }

func fmtRuns(ds []time.Duration, f func(time.Duration) float64) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%.1f", f(d)))
	}
	return fmt.Sprint(s)
}
