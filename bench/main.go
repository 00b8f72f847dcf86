// Command bench measures Upscale against a baseline run side by side on the
// same machine: OpenSSH's sshd plus git for pushes and for the cost of an
// ssh connection, the same Python process on the host for containers, the
// container's own address for the router. It prints absolute figures,
// ratios and PASS/MISS against the goals; timing goals live here, never in
// tests.
//
//	go run ./bench [-quick] [-only push,overhead,list,deploy,start,router,density,zerodowntime,neighbours,rollback,scheduler,failover,https]
//
// The table goes to stdout, progress to stderr. The exit status is 0 when
// every goal is met, 3 when one is missed, 1 when the bench itself failed.
// Everything it makes lives in one upscale-bench-* temporary directory,
// removed at exit, Ctrl-C included.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/upscalehq/upscale/e2e/rig"
)

// env is what every benchmark shares: one Upscale server and one sshd,
// both reached with the same key and the same OpenSSH client. The server
// that runs apps (apps) and the bench's own LXC runtime (lxc) are started
// by the first benchmark that needs them.
type env struct {
	t     *tb
	bin   string
	srv   *rig.Server
	sshd  *sshd
	key   rig.Key
	quick bool

	appSrv *appServer
	lx     *lxcEnv
}

// row is one line of the results table. Rows without a goal are
// diagnostics that explain the others.
type row struct {
	name, upscale, baseline, ratio, diff, goal string
	pass                                       *bool
}

type benchmark struct {
	name string
	run  func(*env) (rows []row, notes []string)
}

var benchmarks = []benchmark{
	{"push", benchPush},
	{"overhead", benchOverhead},
	{"list", benchList},
	{"deploy", benchDeploy},
	{"start", benchStart},
	{"router", benchRouter},
	{"density", benchDensity},
	{"zerodowntime", benchZeroDowntime},
	{"neighbours", benchNeighbours},
	{"rollback", benchRollback},
	{"scheduler", benchScheduler},
	{"failover", benchFailover},
	{"https", benchHTTPS},
}

func benchmarkNames() string {
	var names []string
	for _, b := range benchmarks {
		names = append(names, b.name)
	}
	return strings.Join(names, ", ")
}

func main() {
	quick := flag.Bool("quick", false, "smaller payloads and fewer runs, for trying the bench out")
	only := flag.String("only", "", "comma-separated benchmarks to run: "+benchmarkNames())
	flag.Parse()
	os.Exit(run(*quick, *only))
}

func run(quick bool, only string) (code int) {
	selected := map[string]bool{}
	for _, n := range strings.Split(only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			if !slices.ContainsFunc(benchmarks, func(b benchmark) bool { return b.name == n }) {
				fmt.Fprintf(os.Stderr, "bench: unknown benchmark %q (known: %s)\n", n, benchmarkNames())
				return 2
			}
			selected[n] = true
		}
	}
	if missing := rig.Missing(); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "bench: missing programs: %s (make test-deps)\n", strings.Join(missing, ", "))
		return 1
	}

	t, err := newTB()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	// Ctrl-C or a kill must not leave a server, an sshd or 1 GB of
	// repositories behind.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "bench: %v, cleaning up\n", s)
		t.cleanup()
		os.Exit(130)
	}()
	defer t.cleanup()
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(failure)
			if !ok {
				panic(r)
			}
			fmt.Fprintln(os.Stderr, "bench: FAILED:", string(f))
			code = 1
		}
	}()

	progress("building upscale")
	bin, err := rig.Build(t.TempDir())
	if err != nil {
		t.Fatalf("%v", err)
	}
	e := &env{t: t, bin: bin, quick: quick, key: rig.NewKey(t, "bench")}
	progress("starting upscale server and sshd")
	e.srv = rig.Start(t, bin)
	e.sshd = startSSHD(t, e.key)
	mustLocal(e, "keys", "add", "--admin", "--name", "bench", "--public", e.key.Public)
	mustLocal(e, "namespace", "create", "bench")

	notes := []string{fmt.Sprintf("OpenSSH client against Upscale: %s; against sshd: %s. "+
		"sshd runs with its own host key, no PAM, no DNS, HOME=/nonexistent; it is the BASELINE of push, overhead, list and deploy",
		negotiated(e.t, append(e.srv.SSHCommand(e.key), "upscale@127.0.0.1", "namespace", "list")),
		negotiated(e.t, append(e.sshd.SSHCommand(), "root@127.0.0.1", "true")))}
	var rows []row
	for _, b := range benchmarks {
		if len(selected) > 0 && !selected[b.name] {
			continue
		}
		r, n := b.run(e)
		rows, notes = append(rows, r...), append(notes, n...)
	}
	printTable(rows, notes)
	for _, r := range rows {
		if r.pass != nil && !*r.pass {
			return 3
		}
	}
	return 0
}

func printTable(rows []row, notes []string) {
	// The load average says whether the machine was shared during the run:
	// both sides suffer alike, but the absolute figures do not.
	load, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(load)); len(f) >= 3 {
		load = []byte(strings.Join(f[:3], " "))
	}
	fmt.Printf("upscale bench: %s, %s, %s, %d CPUs, load average %s, %s\n",
		version("git", "--version"), version("ssh", "-V"), runtime.Version(), runtime.NumCPU(), load, time.Now().Format(time.DateTime))
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "BENCHMARK\tUPSCALE\tBASELINE\tRATIO\tDIFF\tGOAL\tRESULT")
	for _, r := range rows {
		result := "info"
		if r.pass != nil {
			result = map[bool]string{true: "PASS", false: "MISS"}[*r.pass]
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.upscale, r.baseline, r.ratio, r.diff, r.goal, result)
	}
	w.Flush()
	for _, n := range notes {
		fmt.Println("- " + n)
	}
}

func version(prog, flag string) string {
	out, _ := exec.Command(prog, flag).CombinedOutput()
	return strings.TrimSpace(strings.SplitN(string(out), ",", 2)[0])
}

// negotiated is the key exchange and cipher the OpenSSH client picks
// when it runs cmd.
func negotiated(t *tb, cmd []string) string {
	out, err := exec.Command(cmd[0], append([]string{"-v"}, cmd[1:]...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
	}
	var kex, cipher string
	for _, l := range strings.Split(string(out), "\n") {
		if _, v, ok := strings.Cut(l, "kex: algorithm: "); ok {
			kex = strings.TrimSpace(v)
		}
		if _, v, ok := strings.Cut(l, "kex: client->server cipher: "); ok {
			cipher, _, _ = strings.Cut(strings.TrimSpace(v), " ")
		}
	}
	return "kex " + kex + ", cipher " + cipher
}

func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
}

func mustLocal(e *env, args ...string) string {
	out, errs, code := e.srv.Local(args...)
	if code != 0 {
		e.t.Fatalf("upscale %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// percentile is the nearest-rank percentile: always a measured value.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func signedMs(d time.Duration) string { return fmt.Sprintf("%+.1f ms", float64(d.Microseconds())/1000) }

// latencyRows are the p50 row, judged by pass, and the p95 row, shown for
// the tail.
func latencyRows(name string, up, base []time.Duration, goal string, pass func(u, b time.Duration) bool) []row {
	var rows []row
	for _, p := range []float64{50, 95} {
		u, b := percentile(up, p), percentile(base, p)
		r := row{name: fmt.Sprintf("%s, p%.0f of %d", name, p, len(up)),
			upscale: ms(u), baseline: ms(b), ratio: ratio(u.Seconds(), b.Seconds()),
			diff: signedMs(u - b), goal: "(tail)"}
		if p == 50 {
			ok := pass(u, b)
			r.goal, r.pass = goal, &ok
		}
		rows = append(rows, r)
	}
	return rows
}

func ratio(a, b float64) string { return fmt.Sprintf("%.2f", a/b) }
