package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/upscalehq/upscale/agentapi"
	"github.com/upscalehq/upscale/e2e/rig"
)

// benchDensity measures how many idle example apps fit in a GiB: it starts
// n containers of the example Python app the way upscale-agent does, waits
// until every one has answered an HTTP request, lets them settle and sums
// the memory their cgroups are charged. The baseline is the same n apps as
// plain host processes, all in one memory cgroup of the bench's, measured
// the same way.
func benchDensity(e *env) ([]row, []string) {
	n, settle := 50, 5*time.Second
	if e.quick {
		n, settle = 10, 2*time.Second
	}
	l := e.lxc()

	progress("density: starting %d containers of the example app", n)
	time.Sleep(settle / 2)
	availBefore := memAvailable(e.t)
	names := make([]string, n)
	ips := make([]netip.Addr, n)
	t0 := time.Now()
	for i := range n {
		names[i] = fmt.Sprintf("bench-density-%02d", i)
		ips[i] = l.run(names[i], fmt.Sprintf("density %d", i)).ip
	}
	for i := range n {
		waitHTTP(e.t, netip.AddrPortFrom(ips[i], agentapi.Port).String(), 60*time.Second, func() string { return l.logs(names[i]) })
	}
	startAll := time.Since(t0)
	progress("density: %d containers answered in %.1f s; settling %v", n, startAll.Seconds(), settle)
	time.Sleep(settle)
	availAfter := memAvailable(e.t)

	var ctr memUse
	var cgroups []string
	for _, name := range names {
		c, err := l.rt.Get(name)
		if err != nil || c.PID == 0 || c.State != "running" {
			e.t.Fatalf("container %s is %s (pid %d, %v)%s", name, c.State, c.PID, err, l.logs(name))
		}
		dir := memCgroup(e.t, c.PID)
		cgroups = append(cgroups, dir)
		ctr = ctr.add(readMemUse(e.t, dir))
	}
	monitors, monitorPSS := lxcMonitors(l.cfg.LXCPath)

	progress("density: destroying %d containers", n)
	t1 := time.Now()
	for _, name := range names {
		l.destroy(name)
	}
	destroyAll := time.Since(t1)

	progress("density: the same %d apps as host processes in one memory cgroup", n)
	time.Sleep(settle / 2)
	hostBefore := memAvailable(e.t)
	cg := newMemCgroup(e.t)
	var cmds []*exec.Cmd
	for i := range n {
		port := rig.FreePort(e.t)
		cmd := l.startHost(port, fmt.Sprintf("density %d", i), filepath.Join(cg, "cgroup.procs"))
		cmds = append(cmds, cmd)
		waitHTTP(e.t, fmt.Sprintf("127.0.0.1:%d", port), 60*time.Second, func() string { return "" })
	}
	time.Sleep(settle)
	hostAfter := memAvailable(e.t)
	host := readMemUse(e.t, cg)
	for _, cmd := range cmds {
		l.stopHost(cmd)
	}

	gib := func(b int64) float64 { return float64(b) / (1 << 30) }
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	perGiB := func(b int64) float64 { return float64(n) / gib(b) }
	u, b := perGiB(ctr.usage), perGiB(host.usage)
	pass := u >= 40
	availCtr, availHost := availBefore-availAfter, hostBefore-hostAfter
	rows := []row{
		{name: fmt.Sprintf("density: idle example apps per GiB, %d running (cgroup memory)", n),
			upscale: fmt.Sprintf("%.1f", u), baseline: fmt.Sprintf("%.1f", b), ratio: ratio(u, b), diff: fmt.Sprintf("%+.1f", u-b),
			goal: ">= 40", pass: &pass},
		{name: "density: memory per app, cgroup usage",
			upscale: mib(ctr.usage / int64(n)), baseline: mib(host.usage / int64(n)),
			ratio: ratio(float64(ctr.usage), float64(host.usage)), diff: mib((ctr.usage - host.usage) / int64(n)), goal: "(where the time goes)"},
		{name: "density: memory per app, MemAvailable drop",
			upscale: mib(availCtr / int64(n)), baseline: mib(availHost / int64(n)),
			ratio: ratio(float64(availCtr), float64(availHost)), diff: mib((availCtr - availHost) / int64(n)), goal: "(where the time goes)"},
	}
	notes := []string{
		fmt.Sprintf("density: %d containers as in `start`, each answered GET / once, then %v idle; memory = sum over the containers' memory cgroups (%s) of %s; "+
			"baseline = the same command as %d host processes, each answered once, all in one memory cgroup made for the bench, same counters",
			n, settle, cgroupPattern(cgroups), ctr.counter, n),
		fmt.Sprintf("density: containers: %s in all (%s anon/rss + %s page cache), %.1f apps per GiB by MemAvailable (%s dropped); "+
			"host processes: %s (%s rss + %s cache), %.1f per GiB by MemAvailable (%s dropped); MemAvailable is machine-wide, so anything else running moves it",
			mib(ctr.usage), mib(ctr.rss), mib(ctr.cache), perGiB(availCtr), mib(availCtr),
			mib(host.usage), mib(host.rss), mib(host.cache), perGiB(availHost), mib(availHost)),
		fmt.Sprintf("density: outside the containers' cgroups, LXC keeps one monitor process per container: %d of them, %s PSS in all (%s each); "+
			"starting the %d took %.1f s, destroying them %.1f s",
			monitors, mib(monitorPSS), mib(monitorPSS/int64(max(monitors, 1))), n, startAll.Seconds(), destroyAll.Seconds()),
	}
	return rows, notes
}

// memUse is what a memory cgroup is charged.
type memUse struct {
	usage, rss, cache int64
	counter           string // the file usage comes from
}

func (m memUse) add(o memUse) memUse {
	return memUse{usage: m.usage + o.usage, rss: m.rss + o.rss, cache: m.cache + o.cache, counter: o.counter}
}

// memCgroup is the directory of pid's memory cgroup: the v1 memory
// hierarchy when there is one (hybrid hosts, where LXC puts the limits),
// else the unified one.
func memCgroup(t *tb, pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatalf("%v", err)
	}
	var unified string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == "memory" {
				return filepath.Join("/sys/fs/cgroup/memory", f[2])
			}
		}
		if f[0] == "0" && f[1] == "" {
			unified = f[2]
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil && unified != "" {
		return filepath.Join("/sys/fs/cgroup", unified)
	}
	t.Fatalf("pid %d has no memory cgroup:\n%s", pid, data)
	return ""
}

// readMemUse reads a memory cgroup's usage (v1 memory.usage_in_bytes or
// v2 memory.current) and its anon/file split from memory.stat.
func readMemUse(t *tb, dir string) memUse {
	var m memUse
	stat, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		t.Fatalf("%v", err)
	}
	vals := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(stat))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok {
			vals[k], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	for _, f := range []string{"memory.usage_in_bytes", "memory.current"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		if m.usage, err = strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64); err != nil {
			t.Fatalf("%s/%s: %v", dir, f, err)
		}
		m.counter = f
		if f == "memory.usage_in_bytes" {
			// total_* include the descendants, as usage_in_bytes does.
			m.rss, m.cache = vals["total_rss"], vals["total_cache"]
		} else {
			m.rss, m.cache = vals["anon"], vals["file"]
		}
		return m
	}
	t.Fatalf("%s has no memory usage counter", dir)
	return m
}

// newMemCgroup makes a memory cgroup for the host baseline next to the
// bench's own, removed at cleanup (after its processes are gone).
func newMemCgroup(t *tb) string {
	b := make([]byte, 4)
	rand.Read(b)
	dir := filepath.Join(memCgroup(t, os.Getpid()), "upscale-bench-"+hex.EncodeToString(b))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("memory cgroup for the host baseline: %v", err)
	}
	t.Cleanup(func() {
		// rmdir fails while a process is still being torn down.
		for deadline := time.Now().Add(5 * time.Second); os.Remove(dir) != nil && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	})
	return dir
}

// memAvailable is /proc/meminfo's MemAvailable in bytes.
func memAvailable(t *tb) int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatalf("%v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("meminfo: %q: %v", line, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no MemAvailable in /proc/meminfo")
	return 0
}

// lxcMonitors counts LXC's monitor processes for lxcpath and sums their
// proportional set size.
func lxcMonitors(lxcpath string) (n int, pss int64) {
	entries, _ := os.ReadDir("/proc")
	for _, en := range entries {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !bytes.HasPrefix(cmdline, []byte("[lxc monitor] "+lxcpath+" ")) {
			continue
		}
		n++
		rollup, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		for _, line := range strings.Split(string(rollup), "\n") {
			if v, ok := strings.CutPrefix(line, "Pss:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				pss += kb << 10
			}
		}
	}
	return n, pss
}

// cgroupPattern shows where the containers' cgroups are, with the name of
// the first standing for all.
func cgroupPattern(dirs []string) string {
	if len(dirs) == 0 {
		return "none"
	}
	return fmt.Sprintf("%s, ... (%d)", dirs[0], len(dirs))
}
