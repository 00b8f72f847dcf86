package lxc

import (
	"github.com/upscalehq/upscale/schedslice"

	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestKernelAtLeast(t *testing.T) {
	for _, c := range []struct {
		release string
		want    bool
	}{
		{"6.1.0-18-amd64", true},
		{"5.15.0-91-generic", true},
		{"5.14.21-150500.55-default", false},
		{"5.10.0-28-amd64", false},
		{"4.19.0", false},
		{"6.18.44-fc-v1147", true},
		{"10.0", true},
		{"5.15rc1", true},
		{"", false},
		{"linux", false},
	} {
		if got := kernelAtLeast(c.release, 5, 15); got != c.want {
			t.Errorf("kernelAtLeast(%q, 5, 15) = %v, want %v", c.release, got, c.want)
		}
	}
}

// The key LXC writes into the container's cgroup before its init runs:
// cpu.idle 1 under whichever hierarchy holds the cpu controller, and none
// at all where the kernel lacks the file (LXC would refuse to start).
func TestLXCConfigIdleStart(t *testing.T) {
	c := &ctr{name: "web", meta: meta{IP: netip.MustParseAddr("10.0.0.2")}, idBase: 100000}
	for _, tc := range []struct {
		cgroup2, idle bool
		want          string
	}{
		{false, true, "lxc.cgroup.cpu.idle=1"},
		{true, true, "lxc.cgroup2.cpu.idle=1"},
		{true, false, ""},
		{false, false, ""},
	} {
		r := &Runtime{cfg: Config{Bridge: "upsb", Subnet: netip.MustParsePrefix("10.0.0.0/24"), IDMapSize: 65536, LXCPath: "/x"},
			gateway: netip.MustParseAddr("10.0.0.1"), cgroup2: tc.cgroup2, idleStart: tc.idle}
		var idle []string
		for _, kv := range r.lxcConfig(c, Spec{Name: "web", Hostname: "web", Image: "/img"}, "/x/web/upper") {
			if strings.HasSuffix(kv[0], "cpu.idle") {
				idle = append(idle, kv[0]+"="+kv[1])
			}
		}
		var want []string
		if tc.want != "" {
			want = []string{tc.want}
		}
		if !slices.Equal(idle, want) {
			t.Errorf("cgroup2=%v idle=%v: cpu.idle keys %q, want %q", tc.cgroup2, tc.idle, idle, want)
		}
	}
}

// A starting container is idle for the scheduler; Ready gives it its
// ordinary share, and a container nobody calls Ready on gets it by the
// start bound. Needs the cpu controller's cpu.idle (Linux 5.15).
func TestIdleUntilReady(t *testing.T) {
	e := newEnv(t, nil)
	if !e.rt.idleStart {
		t.Skipf("no cpu.idle here: %s", e.rt.detectIdle())
	}
	idle := func(name string) string {
		c, err := e.rt.get(name)
		if err != nil {
			t.Fatal(err)
		}
		lx, err := c.lxc(e.cfg.LXCPath)
		if err != nil {
			t.Fatal(err)
		}
		got := lx.CgroupItem("cpu.idle")
		if len(got) != 1 {
			t.Fatalf("%s: cpu.idle = %q", name, got)
		}
		return got[0]
	}
	for _, n := range []string{"ready", "unready"} {
		e.create(e.spec(n, "sleep 600"))
		e.start(n)
		if got := idle(n); got != "1" {
			t.Fatalf("%s just started: cpu.idle = %s, want 1", n, got)
		}
	}
	if err := e.rt.Ready("ready"); err != nil {
		t.Fatal(err)
	}
	if got := idle("ready"); got != "0" {
		t.Fatalf("after Ready: cpu.idle = %s, want 0", got)
	}
	if e.rt.shortSlice {
		slice := func(name string) time.Duration {
			c, _ := e.rt.get(name)
			lx, err := c.lxc(e.cfg.LXCPath)
			if err != nil {
				t.Fatal(err)
			}
			d, err := schedslice.Slice(lx.InitPid())
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return d
		}
		if got := slice("ready"); got != schedslice.Short {
			t.Fatalf("after Ready: the app's scheduler slice = %v, want %v", got, schedslice.Short)
		}
		if got := slice("unready"); got == schedslice.Short {
			t.Fatalf("a container not ready has the short slice already")
		}
	}
	if got := idle("unready"); got != "1" {
		t.Fatalf("the other container: cpu.idle = %s, want 1 until its bound", got)
	}
	deadline := time.Now().Add(startIdleMax + 10*time.Second)
	for idle("unready") != "0" {
		if time.Now().After(deadline) {
			t.Fatalf("a container nobody called Ready on is still idle %v after its start", startIdleMax+10*time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Stopped, Ready is a no-op, not an error.
	if err := e.rt.Stop(t.Context(), "ready", 0); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Ready("ready"); err != nil {
		t.Fatalf("Ready on a stopped container: %v", err)
	}
	if err := e.rt.Ready("nosuch"); err == nil {
		t.Fatal("Ready on a container that does not exist: no error")
	}
}
