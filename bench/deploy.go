package main

import (
	"fmt"
	"strings"
	"time"
)

// benchDeploy measures push-to-serving for the example Python app: from
// the start of `git push` until HAProxy serves the new body, with where
// the time went as the push output reports it. The baseline is the floor
// of any push before building: the same commit pushed with plain git to
// sshd.
func benchDeploy(e *env) ([]row, []string) {
	pushes := 20
	if e.quick {
		pushes = 5
	}
	s := e.apps()
	// Upscale always gets curve25519 (Go's SSH has no sntrup761x25519,
	// OpenSSH 9.x's favourite, which costs sshd some 100 ms a push here);
	// the second baseline gives sshd the same key exchange.
	const kex = "curve25519-sha256"
	repo, repoKex := bareRepo(e.t), bareRepo(e.t)
	toSSHD := func() time.Duration { return push(e.t, s.dir, e.sshd.SSHCommand(), e.sshd.Remote(repo)) }
	toSSHDKex := func() time.Duration {
		return push(e.t, s.dir, e.sshd.SSHCommand("-o", "KexAlgorithms="+kex), e.sshd.Remote(repoKex))
	}
	// The baseline repositories get the history the app already has, so
	// that each measured push is the same one-commit fast-forward.
	toSSHD()
	toSSHDKex()

	progress("deploy: %d pushes, each changing MESSAGE, to Upscale and to sshd (twice)", pushes)
	var runs []deployRun
	var base, baseKex []time.Duration
	targets := []func(){
		func() { runs = append(runs, s.deploy(e.t)) },
		func() { base = append(base, toSSHD()) },
		func() { baseKex = append(baseKex, toSSHDKex()) },
	}
	for i := range pushes {
		s.commit(e.t)
		// Each round starts with a different target.
		for j := range targets {
			targets[(i+j)%len(targets)]()
		}
		r := runs[i]
		progress("deploy %d/%d: served after %s, push returned after %s (%v); sshd push %s, with %s %s",
			i+1, pushes, ms(r.serve), ms(r.push), r.parts, ms(base[i]), kex, ms(baseKex[i]))
	}

	var serve, total, rest, first, removal, tail, afterServe []time.Duration
	parts := map[string][]time.Duration{}
	for _, r := range runs {
		serve, total = append(serve, r.serve), append(total, r.push)
		reported := time.Duration(0)
		for k, d := range r.parts {
			parts[k] = append(parts[k], d)
			reported += d
		}
		rest = append(rest, r.push-reported)
		first = append(first, r.firstLine)
		removal = append(removal, r.deployed-r.live)
		tail = append(tail, r.push-r.deployed)
		afterServe = append(afterServe, r.push-r.serve)
	}
	rows := latencyRows("deploy: git push until new body served", serve, base, "p50 <= 1.0 s",
		func(u, _ time.Duration) bool { return u <= time.Second })
	sk := percentile(serve, 50)
	bk := percentile(baseKex, 50)
	rows = append(rows, row{name: fmt.Sprintf("deploy: new body served, sshd with kex %s, p50 of %d", kex, pushes),
		upscale: ms(sk), baseline: ms(bk), ratio: ratio(sk.Seconds(), bk.Seconds()), diff: signedMs(sk - bk), goal: "(where the time goes)"})
	u, b := percentile(total, 50), percentile(base, 50)
	rows = append(rows, row{name: fmt.Sprintf("deploy: git push until it returns, p50 of %d", pushes),
		upscale: ms(u), baseline: ms(b), ratio: ratio(u.Seconds(), b.Seconds()), diff: signedMs(u - b), goal: "(where the time goes)"})
	r := percentile(rest, 50)
	rows = append(rows, row{name: "deploy: ssh+receive (push minus reported parts), p50, sshd with kex " + kex,
		upscale: ms(r), baseline: ms(bk), ratio: ratio(r.Seconds(), bk.Seconds()), diff: signedMs(r - bk), goal: "(where the time goes)"})
	for _, k := range []string{"checks", "build", "start", "health", "switch"} {
		rows = append(rows, part(fmt.Sprintf("deploy: %s (push output), p50", k), parts[k]))
	}
	return rows, []string{
		fmt.Sprintf("deploy: the example Python app (examples/python, runtime python, health /) on a server with its own agent and HAProxy; "+
			"each push is a fast-forward of one commit changing MESSAGE in app.yaml's env; served = GET / through HAProxy (Host %s), "+
			"polled every 5 ms from the push's start, returns the new MESSAGE; baseline = the same commit pushed by plain git to sshd "+
			"(bare repository, no hooks): what any push costs before building; each round of three pushes starts with a different target", s.host()),
		fmt.Sprintf("deploy: ssh+receive is the push's duration minus the parts its last line reports (checks, build, start, health, switch); "+
			"by when the push output's lines arrived (p50): first remote line after %s (ssh, pack, receive-pack up to pre-receive), "+
			"old instance removed in %s (from \"vN is live\" to \"Application deployed\"), git exits %s after that last line; "+
			"the push returns %s after the new body is first served",
			ms(percentile(first, 50)), ms(percentile(removal, 50)), ms(percentile(tail, 50)), signedMs(percentile(afterServe, 50))),
		fmt.Sprintf("deploy: all runs (ms), served %s, push %s, health %s, switch %s, sshd %s, sshd with %s %s",
			fmtMs(serve), fmtMs(total), fmtMs(parts["health"]), fmtMs(parts["switch"]), fmtMs(base), kex, fmtMs(baseKex)),
		slowPushes(runs),
	}
}

// slowPushes names the pushes served after more than a second, with their
// reported parts: one slow part is a lead, a slow remainder another.
func slowPushes(runs []deployRun) string {
	var slow []string
	for i, r := range runs {
		if r.serve > time.Second {
			slow = append(slow, fmt.Sprintf("#%d served after %s (push %s; checks %v, build %v, start %v, health %v, switch %v)",
				i+1, ms(r.serve), ms(r.push), r.parts["checks"], r.parts["build"], r.parts["start"], r.parts["health"], r.parts["switch"]))
		}
	}
	if len(slow) == 0 {
		return fmt.Sprintf("deploy: every one of the %d pushes was served within 1 s", len(runs))
	}
	return fmt.Sprintf("deploy: %d of %d pushes were served after more than 1 s: %s", len(slow), len(runs), strings.Join(slow, "; "))
}
