package lxc

import (
	"slices"

	"github.com/upscalehq/upscale/schedslice"

	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A container starts with its cgroup marked idle (cpu.idle = 1, the
// cgroup form of SCHED_IDLE) and gets its ordinary share once its app is
// ready (Ready) or, at the latest, startIdleMax after the start. Measured
// on two cores, one app's redeploys raised another app's p99 latency
// mostly through scheduling delays of a millisecond or more: the
// scheduler lets a running task finish its slice (about 1.5 ms on two
// cores) before a task that just woke up, HAProxy or the other app's
// process with a request to serve, may run; a lower weight or nice value
// does not shorten that wait, an idle entity is preempted at once. While
// the CPU has room, idle changes nothing else: the starting app gets all
// the CPU nobody else wants.
const startIdleMax = 5 * time.Second

// detectIdle says whether the cgroup the containers get has cpu.idle
// (Linux 5.15 and later, with the cpu controller): LXC refuses to start a
// container whose configuration names a cgroup file that does not exist.
func (r *Runtime) detectIdle() string {
	if !r.cgroup2 {
		// v1: the cpu hierarchy's root has the file when the kernel does.
		if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.idle"); err != nil {
			return "no cpu.idle in the v1 cpu hierarchy (/sys/fs/cgroup/cpu): Linux 5.15 or later with the cpu controller mounted"
		}
		return ""
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "uname: " + err.Error()
	}
	if !kernelAtLeast(unix.ByteSliceToString(uts.Release[:]), 5, 15) {
		return "cpu.idle needs Linux 5.15 or later, this is " + unix.ByteSliceToString(uts.Release[:])
	}
	own := cgroupOf("self")
	if own == "" {
		own = "/"
	}
	ctrls, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", own, "cgroup.controllers"))
	if err != nil || !hasWord(string(ctrls), "cpu") {
		return fmt.Sprintf("the cpu controller is not delegated to this process's cgroup %s (systemd: Delegate=yes)", own)
	}
	return ""
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// kernelAtLeast compares a release string such as "6.1.0-18-amd64".
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	digits := parts[1]
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i] // "15rc1", "15-arch1"
	}
	mi, err2 := strconv.Atoi(digits)
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// cgroupOf is the cgroup v2 path of process pid ("self" for this one),
// "/..." under /sys/fs/cgroup; "" on a host without the unified tree.
func cgroupOf(pid string) string { return cgroupIn(pid, "") }

// cgroupIn is pid's path in the v1 hierarchy of controller, or with ""
// in the v2 tree.
func cgroupIn(pid, controller string) string {
	data, _ := os.ReadFile(filepath.Join("/proc", pid, "cgroup"))
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && (controller == "" && f[0] == "0" || controller != "" && slices.Contains(strings.Split(f[1], ","), controller)) {
			return filepath.Clean("/" + f[2])
		}
	}
	return ""
}

// Ready gives a started container its ordinary CPU share: the agent calls
// it once the app answers. Its processes also get the short scheduler
// slice HAProxy has (schedslice), so that a request woken for them does
// not wait out the slice of a neighbour's deploy work; processes they
// start later inherit it. A stopped container, or one already ready, is
// left as it is.
func (r *Runtime) Ready(name string) error {
	c, err := r.get(name)
	if err != nil {
		return err
	}
	if err := r.ready(c); err != nil {
		return err
	}
	return r.quicken(c)
}

func (r *Runtime) quicken(c *ctr) error {
	if !r.shortSlice {
		return nil
	}
	lx, err := c.lxc(r.cfg.LXCPath)
	if err != nil {
		return err
	}
	pid := lx.InitPid()
	if pid <= 0 {
		return nil
	}
	dir := "/sys/fs/cgroup"
	cg := cgroupOf(strconv.Itoa(pid))
	if !r.cgroup2 {
		dir, cg = "/sys/fs/cgroup/cpu", cgroupIn(strconv.Itoa(pid), "cpu")
	}
	if cg == "" {
		return nil
	}
	if err := schedslice.SetCgroup(filepath.Join(dir, cg), schedslice.Short); err != nil {
		return fmt.Errorf("lxc: %s: scheduler slice: %w", c.name, err)
	}
	return nil
}

func (r *Runtime) ready(c *ctr) error {
	if !r.idleStart {
		return nil
	}
	lx, err := c.lxc(r.cfg.LXCPath)
	if err != nil {
		return err
	}
	if !lx.Running() {
		return nil
	}
	if err := lx.SetCgroupItem("cpu.idle", "0"); err != nil && lx.Running() {
		return fmt.Errorf("lxc: %s: cpu.idle: %w", c.name, err)
	}
	return nil
}

// readyLater is the bound on a start's idle time, for the starts nobody
// calls Ready on (a crash restart, a build, an exec container, an agent
// that died waiting for the app).
func (r *Runtime) readyLater(c *ctr, started time.Time) {
	if !r.idleStart {
		return
	}
	time.AfterFunc(startIdleMax, func() {
		c.mu.Lock()
		same := c.meta.StartedAt.Equal(started) && !c.gone
		c.mu.Unlock()
		if same {
			r.ready(c)
		}
	})
}
